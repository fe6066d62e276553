"""Generative recall: a small T5, trained from scratch on a merchant's catalog, that decodes
semantic docids with beam search constrained to the merchant's docid prefix tree.

Modules (import them directly; this package does not import torch on its own, so loading the
``learners`` Django app stays cheap):

* :mod:`~learners.generative.tokenizer` -- catalog BPE tokenizer with one token per docid
  component, and the decoder's restricted output vocabulary (:class:`DocidVocab`);
* :mod:`~learners.generative.data` -- indexing views and pseudo-queries from product fields,
  balanced and reproducible per epoch;
* :mod:`~learners.generative.model` -- model config (sized for 2 CPU cores), the restricted-output
  forward pass, and the version-directory format (``save_version`` / ``load_version``);
* :mod:`~learners.generative.train` -- time-budgeted, checkpointed, resumable training with a
  memorisation check;
* :mod:`~learners.generative.decode` -- lean KV-cached constrained beam search and
  :class:`GenerativeRetriever` (query → scored docids);
* :mod:`~learners.generative.experiment` -- CLI: train on a merchant and measure NDCG@10 /
  Recall@100 / latency against judged queries.

The names below are importable from the package lazily (on first attribute access).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "GenerativeRetriever": "learners.generative.decode",
    "Hit": "learners.generative.decode",
    "ModelConfig": "learners.generative.model",
    "load_version": "learners.generative.model",
    "DataConfig": "learners.generative.data",
    "load_products": "learners.generative.data",
    "TrainConfig": "learners.generative.train",
    "train": "learners.generative.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
