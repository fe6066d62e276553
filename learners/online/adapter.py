"""LoRA adapters (PEFT) on the generative T5 base model: train, save, load, layer for serving.

Why LoRA and these settings (:class:`~learners.online.config.OnlineConfig`):

* **target modules** ``q, k, v, o`` (every self- and cross-attention projection of encoder and
  decoder) and ``wi, wo`` (the feed-forward layers). Attention lets the encoder re-read a query
  the shoppers' way; the feed-forward layers carry most of what maps a query to a docid path.
  Embeddings are *not* adapted: they are tied to the restricted docid output layer, so adapting
  them would move every docid's score at once -- exactly the forgetting the probe guards;
* **r = 8, alpha = 16** (scale 2): 127k trainable parameters on the 2.3M-parameter base, plenty
  for one hour's few thousand pairs, and an adapter trains in 5-20 s on one shared core;
* **dropout 0**: the hour's pairs are few and replay already regularises, and dropout's random
  masks cost ~25% of a CPU step on this model (measured for the base, generative/model.py).

Each hour's adapter starts from the previous serving adapter's weights (the chain continues:
one consolidated adapter, never a growing stack, as arXiv 2604.23388 advises); a new base starts
a fresh adapter. Serving merges the adapter into a private copy of the base weights
(:func:`load_adapted`), so decoding costs exactly what the base costs.

An adapter directory holds PEFT's ``adapter_config.json`` + ``adapter_model.safetensors`` and a
``metadata.json`` (base, parent, hour, LoRA settings, training stats).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch.nn import functional as F

from learners.generative.data import Example
from learners.generative.model import (
    METADATA_FILE,
    GenerativeModel,
    docid_logits,
    load_version,
    read_metadata,
)
from learners.generative.train import collate
from learners.online.config import OnlineConfig
from learners.online.pairs import Pair

if TYPE_CHECKING:
    from learners.models import ModelVersion

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def lora_config(config: OnlineConfig) -> LoraConfig:
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=[name.strip() for name in config.lora_targets.split(",")],
        bias="none",
    )


def attach(bundle: GenerativeModel, init_from: Path | None, config: OnlineConfig) -> PeftModel:
    """Wrap ``bundle.model`` (in place) with a trainable LoRA adapter, fresh or continued."""
    with _quiet_peft():
        if init_from is not None:
            return PeftModel.from_pretrained(bundle.model, init_from, is_trainable=True)
        torch.manual_seed(config.seed)
        return get_peft_model(bundle.model, lora_config(config))


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft 0.21 asks transformers 5 a deprecated question on every wrap: nothing to act on,
    but it would be a FutureWarning in every worker log, every hour."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        yield


def train_adapter(
    base_dir: Path,
    pairs: Sequence[Pair],
    out_dir: Path,
    *,
    init_from: Path | None,
    config: OnlineConfig,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train an adapter on weighted ``pairs`` (already mixed with replay) into ``out_dir``.

    Returns the training stats (also written to ``metadata.json``). Pairs whose docid the base
    vocabulary cannot spell (products newer than the base) are skipped and counted.
    """
    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    bundle = load_version(base_dir)
    known = [p for p in pairs if bundle.vocab.knows(p.docid)]
    peft_model = attach(bundle, init_from, config)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    stats = _loop(bundle, peft_model, optimizer, known, config)
    stats.update(
        pairs=len(pairs),
        skipped_unknown_docid=len(pairs) - len(known),
        trainable_parameters=sum(p.numel() for p in trainable),
        seconds=round(time.perf_counter() - started, 2),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    info = {**(metadata or {}), "lora": lora_config(config).to_dict(), "training": stats}
    (out_dir / METADATA_FILE).write_text(json.dumps(info, indent=2, default=str))
    return stats


def _loop(
    bundle: GenerativeModel,
    peft_model: PeftModel,
    optimizer: torch.optim.Optimizer,
    pairs: Sequence[Pair],
    config: OnlineConfig,
) -> dict[str, Any]:
    """One pass over ``pairs`` in batches (cycled up to ``min_steps``), within the time budget;
    linear learning-rate decay to 10% so a short run still ends gently."""
    if not pairs:
        return {"steps": 0, "loss": None, "stopped_by_budget": False}
    examples = [Example(p.query, p.docid, "online", p.prefix_only) for p in pairs]
    weights = [p.weight for p in pairs]
    batches = math.ceil(len(examples) / config.batch_size)
    steps = max(config.min_steps, batches)
    output_ids = torch.tensor(bundle.vocab.token_ids)
    peft_model.train()
    started, loss_ema, step = time.perf_counter(), None, 0
    for step in range(steps):
        if time.perf_counter() - started > config.max_seconds:
            break
        start = (step % batches) * config.batch_size
        batch = collate(examples[start : start + config.batch_size], bundle)
        w = torch.tensor(weights[start : start + config.batch_size])
        for group in optimizer.param_groups:
            group["lr"] = config.lr * (1.0 - 0.9 * step / steps)
        loss = weighted_loss(bundle, batch, w, output_ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
    peft_model.eval()
    return {
        "steps": step + 1,
        "examples": len(examples),
        "loss": round(loss_ema or 0.0, 4),
        "stopped_by_budget": step + 1 < steps,
    }


def weighted_loss(
    bundle: GenerativeModel, batch: Any, weights: torch.Tensor, output_ids: torch.Tensor
) -> torch.Tensor:
    """Per-example mean token cross-entropy, averaged with the pairs' weights."""
    logits = docid_logits(
        bundle.model, batch.input_ids, batch.attention_mask, batch.decoder_input_ids, output_ids
    )
    tokens = F.cross_entropy(logits.transpose(1, 2), batch.labels, reduction="none")
    mask = (batch.labels != -100).float()
    per_example = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return (per_example * weights).sum() / weights.sum().clamp(min=1e-9)


def load_adapted(base_dir: Path, adapter_dir: Path | None) -> GenerativeModel:
    """The base model with ``adapter_dir`` merged in (or the plain base when None), in eval mode.

    Each call loads its own copy of the base weights, so a swapped-in model never changes one
    that in-flight requests are still decoding with.
    """
    bundle = load_version(base_dir)
    if adapter_dir is None:
        return bundle
    with _quiet_peft():
        merged = PeftModel.from_pretrained(bundle.model, adapter_dir).merge_and_unload()
    merged.eval()
    info = {**bundle.metadata, "adapter": read_metadata(Path(adapter_dir))}
    return replace(bundle, model=merged, metadata=info)


def chain_base(version: ModelVersion) -> str | None:
    """Name of the base model an adapter version was trained on."""
    return version.metrics.get("base")


def load_for_serving(version: ModelVersion) -> GenerativeModel | None:
    """Serving loader of ``adapter`` versions (``ranking.generative.LOADERS``): the merchant's
    active base with this adapter merged in, or None -- serving then falls back to the base --
    when the adapter belongs to an older base's chain (after a monthly rebuild)."""
    from learners import registry

    base = registry.active("base", version.merchant)
    if base is None or chain_base(version) != base.name:
        return None
    return load_adapted(base.directory, version.directory)
