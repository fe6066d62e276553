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
  masks cost ~25% of a CPU step on this model (measured for the base, generative/model.py);
* **distillation** (``ONLINE_DISTILL``, weight 1): a KL term towards a frozen teacher's docid
  distribution on every training input (:func:`distillation_loss`), the EWC-like option the
  design allows. The teacher (``ONLINE_DISTILL_TEACHER``) is the base, or the serving model the
  hour continues from; its logits are computed once per batch before training, not per step.
  On the BestBuy learning curve it let more hours through the gate for the same forgetting
  (config.py).

Each hour's adapter starts from the previous serving adapter's weights (the chain continues:
one consolidated adapter, never a growing stack, as arXiv 2604.23388 advises); a new base starts
a fresh adapter. Serving merges the adapter into a private copy of the base weights
(:func:`load_adapted`), so decoding costs exactly what the base costs.

An adapter directory holds PEFT's ``adapter_config.json`` + ``adapter_model.safetensors`` and a
``metadata.json`` (base, parent, hour, LoRA settings, training stats).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
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


#: Probe recall of a model being trained (``learners.online.gate.probe_recall`` over the base's
#: fixed probe): what checkpoint selection watches.
ProbeScore = Callable[[GenerativeModel], float]


def train_adapter(
    base_dir: Path,
    pairs: Sequence[Pair],
    out_dir: Path,
    *,
    init_from: Path | None,
    config: OnlineConfig,
    metadata: dict[str, Any] | None = None,
    probe: ProbeScore | None = None,
    min_probe: float = 0.0,
) -> dict[str, Any]:
    """Train an adapter on weighted ``pairs`` (already mixed with replay) into ``out_dir``.

    With ``probe``, training is checked ``config.probe_checkpoints`` times and keeps the last
    checkpoint whose probe recall is at least ``min_probe`` (the forgetting bound), stopping at
    the first one below it: an hour's adapter learns as much as it can *before* it forgets, where
    a fixed number of steps either stops short or overshoots into a rejection. Only the probe
    chooses, never the held-out slice, so the gate's held-out comparison stays unbiased.

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
    guard = (
        _ProbeGuard(bundle, peft_model, probe, min_probe)
        if probe is not None and config.probe_checkpoints > 0
        else None
    )
    stats = _loop(bundle, peft_model, optimizer, known, config, guard)
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


class _ProbeGuard:
    """Checkpoint selection by the forgetting bound (see :func:`train_adapter`)."""

    def __init__(
        self, bundle: GenerativeModel, peft_model: PeftModel, probe: ProbeScore, floor: float
    ) -> None:
        self.bundle, self.peft_model, self.probe, self.floor = bundle, peft_model, probe, floor
        self.kept: dict[str, torch.Tensor] | None = None
        self.kept_step = 0
        self.history: list[dict[str, float]] = []

    def check(self, step: int) -> bool:
        """Score the adapter as it is after ``step`` steps; keep it if within bounds."""
        self.peft_model.eval()
        recall = self.probe(self.bundle)
        self.peft_model.train()
        self.history.append({"step": step, "probe_recall": round(recall, 4)})
        if recall < self.floor:
            return False
        self.kept = {k: v.detach().clone() for k, v in self._adapter_state().items()}
        self.kept_step = step
        return True

    def restore(self) -> None:
        """Back to the last checkpoint within bounds (the final weights if none was)."""
        if self.kept is not None:
            with torch.no_grad():
                for name, value in self._adapter_state().items():
                    value.copy_(self.kept[name])

    def _adapter_state(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.peft_model.named_parameters() if p.requires_grad}


def _loop(
    bundle: GenerativeModel,
    peft_model: PeftModel,
    optimizer: torch.optim.Optimizer,
    pairs: Sequence[Pair],
    config: OnlineConfig,
    guard: _ProbeGuard | None = None,
) -> dict[str, Any]:
    """Batches over ``pairs`` (cycled up to ``min_steps``) within the time budget, linear
    learning-rate decay to 10% so a short run still ends gently; with a ``guard``, probe
    checkpoints that stop training at the first one past the forgetting bound."""
    if not pairs:
        return {"steps": 0, "loss": None, "stopped_by_budget": False}
    examples = [Example(p.query, p.docid, "online", p.prefix_only) for p in pairs]
    weights = [p.weight for p in pairs]
    batches = [
        collate(examples[start : start + config.batch_size], bundle)
        for start in range(0, len(examples), config.batch_size)
    ]
    steps = max(config.min_steps, len(batches))
    checkpoints = _checkpoint_steps(steps, config.probe_checkpoints) if guard else set()
    output_ids = torch.tensor(bundle.vocab.token_ids)
    targets = teacher_targets(peft_model, bundle, batches, output_ids, config)
    peft_model.train()
    started, loss_ema, done, stopped_by_probe = time.perf_counter(), None, 0, False
    for step in range(steps):
        if time.perf_counter() - started > config.max_seconds:
            break
        index = step % len(batches)
        batch = batches[index]
        start = index * config.batch_size
        w = torch.tensor(weights[start : start + config.batch_size])
        for group in optimizer.param_groups:
            group["lr"] = config.lr * (1.0 - 0.9 * step / steps)
        logits = batch_logits(bundle, batch, output_ids)
        loss = weighted_loss(logits, batch.labels, w)
        if targets:
            loss = loss + config.distill * distillation_loss(logits, targets[index], batch.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
        done = step + 1
        if guard is not None and done in checkpoints and not guard.check(done):
            stopped_by_probe = True
            break
    if guard is not None:
        if not stopped_by_probe and done not in checkpoints and not guard.check(done):
            stopped_by_probe = True  # the time budget ended between checkpoints
        guard.restore()
    peft_model.eval()
    stats: dict[str, Any] = {
        "steps": done,
        "examples": len(examples),
        "loss": round(loss_ema or 0.0, 4),
        "stopped_by_budget": done < steps and not stopped_by_probe,
    }
    if guard is not None:
        stats["probe_checkpoints"] = guard.history
        # None: no checkpoint was within the bound, the final weights are saved (and rejected)
        stats["kept_step"] = guard.kept_step if guard.kept is not None else None
    return stats


def _checkpoint_steps(steps: int, count: int) -> set[int]:
    """``count`` evenly spaced step numbers ending at ``steps``."""
    return {max(1, round(steps * (i + 1) / count)) for i in range(count)}


def batch_logits(bundle: GenerativeModel, batch: Any, output_ids: torch.Tensor) -> torch.Tensor:
    """Docid-vocabulary logits of a collated batch under the model as it is now."""
    return docid_logits(
        bundle.model, batch.input_ids, batch.attention_mask, batch.decoder_input_ids, output_ids
    )


def weighted_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Per-example mean token cross-entropy, averaged with the pairs' weights."""
    tokens = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    mask = (labels != -100).float()
    per_example = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return (per_example * weights).sum() / weights.sum().clamp(min=1e-9)


def teacher_targets(
    peft_model: PeftModel,
    bundle: GenerativeModel,
    batches: Sequence[Any],
    output_ids: torch.Tensor,
    config: OnlineConfig,
) -> list[torch.Tensor]:
    """The distillation target of every batch: the teacher's docid log-probabilities at the
    batch's labelled positions ([labelled positions, docid classes]), computed once before
    training starts.

    ``config.distill_teacher`` picks the teacher: ``"base"`` (the LoRA layers switched off) or
    ``"serving"`` (the model as the hour starts, i.e. with the adapter it continues from; the
    base when a chain starts). Both are frozen during training, so one forward pass per batch
    replaces one per step, and padding positions are never kept. Empty when distillation is off.
    """
    if config.distill <= 0:
        return []
    off = peft_model.disable_adapter() if config.distill_teacher == "base" else nullcontext()
    peft_model.eval()
    with torch.no_grad(), off:
        return [
            batch_logits(bundle, batch, output_ids).log_softmax(-1)[batch.labels != -100]
            for batch in batches
        ]


def distillation_loss(
    logits: torch.Tensor, target: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """KL(teacher || adapted) of the next-docid-token distributions, per labelled position;
    ``target`` is the teacher's log-probabilities at those positions (:func:`teacher_targets`).

    Why: the gate bounds forgetting *relative to the base*, and replayed hard labels only
    protect the one docid each replayed query names; the teacher's whole distribution carries
    its ranking of every docid, which is what probe recall@10 measures (Learning without
    Forgetting, Li & Hoiem 2016).
    """
    student = logits.log_softmax(-1)[labels != -100]
    kl = F.kl_div(student, target, log_target=True, reduction="sum")
    return kl / max(len(target), 1)


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
