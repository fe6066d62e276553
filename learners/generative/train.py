"""Training loop for the generative recall base model: resumable, time-budgeted, self-checking.

``train()`` turns a catalog into a version directory (see :mod:`learners.generative.model`):

1. fit the catalog tokenizer (docid components as dedicated tokens) and build a fresh T5;
2. stream balanced epochs of indexing views + pseudo-queries (:mod:`learners.generative.data`)
   as length-bucketed batches, with AdamW, linear warm-up and cosine decay *over the budget*
   (steps, epochs or minutes, whichever ends first) so a time-boxed run still ends annealed;
3. write a checkpoint (weights, optimiser, RNG, data position) every few minutes into
   ``<version>/checkpoint``; a later call with the same directory resumes from it exactly
   (same tokenizer, same next batch, same RNG), so a killed worker loses minutes, not the run;
4. finish with a memorisation check -- the exact-match rate of decoding the ``title`` view of a
   sample of products back to their own docid with constrained beam search (target ≥ 90%) --
   and write the version with its metrics in ``metadata.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from tqdm import tqdm

from learners.generative.data import (
    DataConfig,
    Example,
    LeafTeacher,
    ProductDoc,
    TrainingData,
    catalog_texts,
    teacher_leaf_targets,
)
from learners.generative.model import (
    GenerativeModel,
    ModelConfig,
    build_model,
    count_parameters,
    docid_logits,
    save_version,
)
from learners.generative.tokenizer import (
    DEFAULT_VOCAB_SIZE,
    DocidVocab,
    load_tokenizer,
    save_tokenizer,
    stem_words,
    train_tokenizer,
)
from learners.precision import autocast, resolve

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
#: The teacher's leaf targets of the run (kept with the version: what its group queries learnt).
LEAF_TARGETS_FILE = "leaf_targets.json"
#: Batches sorted by length together, to cut padding without losing shuffling.
BUCKET_BATCHES = 50


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 128
    lr: float = 1e-3  # BestBuy, 20 min: 3e-3 memorised 14% of titles, 1.5e-3 80%, 1e-3 98%
    min_lr_ratio: float = 0.05
    warmup_steps: int = 300
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    #: budgets: training stops at the first one reached (at least one must be set)
    max_minutes: float | None = 20.0
    max_epochs: float | None = None
    max_steps: int | None = None
    checkpoint_minutes: float = 2.0
    checkpoint_steps: int | None = None
    #: torch intra-op threads. 2 uses both cores of a dev box, but when other processes share
    #: those cores OpenMP threads spin-wait on each other: measured 73-176 samples/s with 2
    #: threads vs ~400 with 1 under load (tiny test models: 10x slower), so use 1 on busy hosts
    threads: int = 2
    vocab_size: int = DEFAULT_VOCAB_SIZE
    #: title views the memorisation check decodes (None: all of them). BestBuy's 24-epoch base
    #: memorised 90.15% of its 3,291 titles, but samples of 500 read 0.892-0.914 (seeds 0-5),
    #: either side of the 90% gate; batched decoding checks all of them in ~13 s (beside other jobs)
    memorisation_sample: int | None = None
    memorisation_beam: int = 5
    #: matrix products of the training forward pass: "bf16" (autocast; weights and optimiser
    #: stay float32), "fp32", or "auto" -- bf16 where the CPU has it natively
    #: (:mod:`learners.precision`). BestBuy base, the same 60 batches (ad hoc): 1,231 samples/s
    #: in bf16 against 813 in fp32 with 2 threads, 760 against 542 with 1
    precision: str = "auto"
    seed: int = 0
    progress: bool = True


@dataclass
class TrainState:
    """Where training is; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    loss_ema: float | None = None
    resumed_from_step: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    #: teacher-forced exact match on title views after each epoch (the memorisation curve)
    epoch_accuracy: list[float] = field(default_factory=list)


@dataclass
class _Run:
    bundle: GenerativeModel
    optimizer: torch.optim.Optimizer
    state: TrainState
    data: TrainingData


StepCallback = Callable[[TrainState], None]


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def train(
    products: Sequence[ProductDoc],
    version_dir: Path | str,
    *,
    model_config: ModelConfig | None = None,
    data_config: DataConfig | None = None,
    config: TrainConfig | None = None,
    merchant: str = "",
    callback: StepCallback | None = None,
    teacher: LeafTeacher | None = None,
) -> dict[str, Any]:
    """Train (or resume training) a base model on ``products`` into ``version_dir``.

    Returns the metadata written to ``metadata.json``. ``callback`` runs after every step (a
    progress hook; an exception it raises interrupts training, leaving the last checkpoint).
    ``teacher`` ranks the products of shared pseudo-queries (see
    :func:`~learners.generative.data.teacher_leaf_targets`); it is asked once, at the start,
    and a resumed run reuses its answers.
    """
    config = config or TrainConfig()
    if not products:
        raise ValueError("no products to train on (do they have docids?)")
    if not (config.max_minutes or config.max_epochs or config.max_steps):
        raise ValueError("set at least one of max_minutes, max_epochs, max_steps")
    logger.info("training in %s", resolve(config.precision))
    version_dir = Path(version_dir)
    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    run = _start_or_resume(
        products, version_dir, model_config or ModelConfig(), data_config, config, teacher
    )
    _loop(run, version_dir, config, callback)
    metrics = evaluate_memorisation(run, config)
    metadata = _metadata(run, config, merchant, metrics, time.perf_counter() - started)
    run.bundle.metadata = metadata
    run.bundle.model.eval()
    save_version(version_dir, run.bundle)
    shutil.rmtree(version_dir / CHECKPOINT_DIR, ignore_errors=True)
    return metadata


def _start_or_resume(
    products: Sequence[ProductDoc],
    version_dir: Path,
    model_config: ModelConfig,
    data_config: DataConfig | None,
    config: TrainConfig,
    teacher: LeafTeacher | None,
) -> _Run:
    ckpt = version_dir / CHECKPOINT_DIR
    if (ckpt / STATE_FILE).exists():
        return _resume(products, ckpt, data_config, config)
    texts = catalog_texts(products)
    if model_config.stem_input:
        texts = (stem_words(text) for text in texts)
    tokenizer = train_tokenizer(texts, [p.docid for p in products], vocab_size=config.vocab_size)
    vocab = DocidVocab.from_tokenizer(tokenizer)
    model = build_model(model_config, tokenizer.get_vocab_size(), seed=config.seed)
    bundle = GenerativeModel(
        model=model,
        tokenizer=tokenizer,
        vocab=vocab,
        docids=[p.docid for p in products],
        metadata={"model_config": asdict(model_config)},
    )
    data_config = data_config or DataConfig(seed=config.seed)
    bundle.metadata["data_config"] = asdict(data_config)
    data = TrainingData(products, data_config)
    leaf_targets = _leaf_targets(data, teacher)
    if leaf_targets is not None:
        version_dir.mkdir(parents=True, exist_ok=True)
        (version_dir / LEAF_TARGETS_FILE).write_text(json.dumps(leaf_targets))
        bundle.metadata["teacher_queries"] = len(leaf_targets)
        data = data.taught_by(leaf_targets)
    return _Run(bundle, _optimizer(model, config), TrainState(), data)


def read_leaf_targets(version_dir: Path) -> dict[str, list[str]] | None:
    """The teacher's answers a version was trained with (None: trained without a teacher)."""
    path = Path(version_dir) / LEAF_TARGETS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _leaf_targets(data: TrainingData, teacher: LeafTeacher | None) -> dict[str, list[str]] | None:
    if teacher is None or data.config.teacher_depth <= 0:
        return None
    started = time.perf_counter()
    targets = teacher_leaf_targets(data, teacher)
    logger.info(
        "teacher answered %d shared, composed and vocabulary queries in %.1f s",
        len(targets),
        time.perf_counter() - started,
    )
    return targets


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "relative" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "relative" not in n)]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98))


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    decoder_input_ids: torch.Tensor
    labels: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])


def epoch_batches(run: _Run, epoch: int, batch_size: int, seed: int) -> list[list[Example]]:
    """Epoch ``epoch`` split into batches of similar input length, in a seeded random order."""
    examples = run.data.epoch(epoch)
    rng = random.Random(f"{seed}:{epoch}:batches")
    chunk = batch_size * BUCKET_BATCHES
    batches: list[list[Example]] = []
    for start in range(0, len(examples), chunk):
        part = sorted(examples[start : start + chunk], key=lambda e: len(e.text))
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Example], bundle: GenerativeModel) -> Batch:
    ids = bundle.encode([e.text for e in examples])
    targets = [bundle.vocab.encode(e.docid) for e in examples]
    inputs = _pad(ids, 0)
    labels = _pad([_label(t, e.prefix_only) for t, e in zip(targets, examples, strict=True)], -100)
    starts = [[bundle.model.config.decoder_start_token_id] for _ in targets]
    decoder_in = _pad(
        [s + bundle.vocab.to_tokens(t[:-1]) for s, t in zip(starts, targets, strict=True)], 0
    )
    return Batch(inputs, (inputs != 0).long(), decoder_in, labels)


def _label(target: list[int], prefix_only: bool) -> list[int]:
    """Targets, with the leaf and EOS ignored (-100) for prefix-only examples."""
    return target[:-2] + [-100, -100] if prefix_only and len(target) > 2 else target


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=torch.long)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def _loop(run: _Run, version_dir: Path, config: TrainConfig, callback: StepCallback | None) -> None:
    state, model = run.state, run.bundle.model
    output_ids = torch.tensor(run.bundle.vocab.token_ids)
    model.train()
    run_start = time.perf_counter()
    base_seconds = state.train_seconds
    last_ckpt = time.perf_counter()
    bar = tqdm(desc="generative: training", unit="step", disable=not config.progress)
    with bar:
        while not _exhausted(state, config):
            batches = epoch_batches(run, state.epoch, config.batch_size, config.seed)
            while state.batch_in_epoch < len(batches) and not _exhausted(state, config):
                batch = collate(batches[state.batch_in_epoch], run.bundle)
                fraction = _progress(state, config, len(batches))
                loss = _train_step(run, batch, output_ids, config, fraction)
                _advance(state, batch, loss, base_seconds + time.perf_counter() - run_start)
                bar.update()
                bar.set_postfix(epoch=state.epoch, loss=f"{state.loss_ema:.3f}")
                if _checkpoint_due(state, config, last_ckpt):
                    save_checkpoint(run, version_dir)
                    last_ckpt = time.perf_counter()
                if callback is not None:
                    callback(state)
            if state.batch_in_epoch >= len(batches):
                state.epoch += 1
                state.batch_in_epoch = 0
                state.epoch_accuracy.append(round(title_accuracy(run, config), 4))
                logger.info("epoch %d: title accuracy %.3f", state.epoch, state.epoch_accuracy[-1])


def _train_step(
    run: _Run, batch: Batch, output_ids: torch.Tensor, config: TrainConfig, fraction: float
) -> float:
    lr = learning_rate(config, run.state.step, fraction)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with autocast(config.precision):
        logits = docid_logits(
            run.bundle.model,
            batch.input_ids,
            batch.attention_mask,
            batch.decoder_input_ids,
            output_ids,
        )
    logits = logits.float()
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1))
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.bundle.model.parameters(), config.grad_clip)
    run.optimizer.step()
    return loss.item()


def _advance(state: TrainState, batch: Batch, loss: float, seconds: float) -> None:
    state.step += 1
    state.batch_in_epoch += 1
    state.samples += batch.size
    state.tokens += int(batch.attention_mask.sum())
    state.train_seconds = seconds
    state.loss_ema = loss if state.loss_ema is None else 0.98 * state.loss_ema + 0.02 * loss
    if state.step % 100 == 0:
        state.history.append(
            {
                "step": state.step,
                "epoch": state.epoch,
                "loss": round(state.loss_ema, 4),
                "seconds": round(seconds, 1),
            }
        )


def _progress(state: TrainState, config: TrainConfig, batches_per_epoch: int) -> float:
    """Fraction of the budget used: the furthest along of steps, epochs and minutes."""
    fractions = [0.0]
    if config.max_steps:
        fractions.append(state.step / config.max_steps)
    if config.max_epochs:
        fractions.append(
            (state.epoch + state.batch_in_epoch / batches_per_epoch) / config.max_epochs
        )
    if config.max_minutes:
        fractions.append(state.train_seconds / (60 * config.max_minutes))
    return min(max(fractions), 1.0)


def _exhausted(state: TrainState, config: TrainConfig) -> bool:
    return bool(
        (config.max_steps and state.step >= config.max_steps)
        or (config.max_epochs and state.epoch >= config.max_epochs)
        or (config.max_minutes and state.train_seconds >= 60 * config.max_minutes)
    )


def learning_rate(config: TrainConfig, step: int, fraction: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` by the end."""
    warm = min(1.0, (step + 1) / max(config.warmup_steps, 1))
    cosine = 0.5 * (1 + math.cos(math.pi * fraction))
    return config.lr * warm * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def _checkpoint_due(state: TrainState, config: TrainConfig, last: float) -> bool:
    if config.checkpoint_steps:
        return state.step % config.checkpoint_steps == 0
    return time.perf_counter() - last >= 60 * config.checkpoint_minutes


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def save_checkpoint(run: _Run, version_dir: Path) -> Path:
    """Write the checkpoint next to the old one, then swap, so a crash never leaves half of one."""
    final = version_dir / CHECKPOINT_DIR
    tmp = version_dir / f"{CHECKPOINT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    run.bundle.model.save_pretrained(tmp, safe_serialization=True)
    save_tokenizer(run.bundle.tokenizer, tmp)
    run.bundle.vocab.save(tmp)
    torch.save(run.optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    torch.save(torch.get_rng_state(), tmp / RNG_FILE)
    payload = {
        "state": asdict(run.state),
        "metadata": run.bundle.metadata,
        "docids": run.bundle.docids,
    }
    (tmp / STATE_FILE).write_text(json.dumps(payload))
    old = version_dir / f"{CHECKPOINT_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _resume(
    products: Sequence[ProductDoc], ckpt: Path, data_config: DataConfig | None, config: TrainConfig
) -> _Run:
    from transformers import T5ForConditionalGeneration

    payload = json.loads((ckpt / STATE_FILE).read_text())
    metadata = payload["metadata"]
    vocab = DocidVocab.load(ckpt)
    model = T5ForConditionalGeneration.from_pretrained(ckpt, local_files_only=True)
    bundle = GenerativeModel(model, load_tokenizer(ckpt), vocab, payload["docids"], metadata)
    known = [p for p in products if vocab.knows(p.docid)]
    data = TrainingData(known, data_config or DataConfig(**metadata["data_config"]))
    leaf_targets = read_leaf_targets(ckpt.parent)
    if leaf_targets is not None:
        data = data.taught_by(leaf_targets)
    optimizer = _optimizer(model, config)
    optimizer.load_state_dict(torch.load(ckpt / OPTIMIZER_FILE, weights_only=True))
    torch.set_rng_state(torch.load(ckpt / RNG_FILE, weights_only=True))
    state = TrainState(**payload["state"])
    state.resumed_from_step = state.step
    return _Run(bundle, optimizer, state, data)


# --------------------------------------------------------------------------------------------
# Final metrics
# --------------------------------------------------------------------------------------------


def title_accuracy(run: _Run, config: TrainConfig, sample: int = 512) -> float:
    """Share of sampled title views whose every docid token is the argmax under teacher forcing.

    A cheap (one batched forward) proxy for the memorisation check, logged once per epoch.
    """
    views = run.data.title_views()
    views = random.Random(config.seed).sample(views, min(sample, len(views)))
    model = run.bundle.model
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        batch = collate(views, run.bundle)
        logits = docid_logits(
            model,
            batch.input_ids,
            batch.attention_mask,
            batch.decoder_input_ids,
            torch.tensor(run.bundle.vocab.token_ids),
        )
        ok = (logits.argmax(-1) == batch.labels) | (batch.labels == -100)
    model.train(was_training)
    return float(ok.all(dim=1).float().mean())


def evaluate_memorisation(run: _Run, config: TrainConfig) -> dict[str, float]:
    """Exact-match rate of title view → own docid (top-1 of constrained beam search)."""
    from learners.generative.decode import GenerativeRetriever

    views = run.data.title_views()
    size = len(views) if config.memorisation_sample is None else config.memorisation_sample
    sample = random.Random(config.seed).sample(views, min(size, len(views)))
    run.bundle.model.eval()
    retriever = GenerativeRetriever(run.bundle)
    top1 = topk = 0
    found = retriever.search_many([e.text for e in sample], k=config.memorisation_beam)
    for example, hits in zip(sample, found, strict=True):
        top1 += bool(hits) and hits[0].docid == example.docid
        topk += any(h.docid == example.docid for h in hits)
    n = max(len(sample), 1)
    return {
        "memorisation_exact_match": top1 / n,
        f"memorisation_hit@{config.memorisation_beam}": topk / n,
        "memorisation_sample": len(sample),
    }


def _metadata(
    run: _Run, config: TrainConfig, merchant: str, metrics: dict[str, float], wall: float
) -> dict[str, Any]:
    state = run.state
    return {
        **run.bundle.metadata,
        "merchant": merchant,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_config": asdict(config),
        "parameters": count_parameters(run.bundle.model),
        "tokenizer_vocab": run.bundle.tokenizer.get_vocab_size(),
        "docid_vocab": len(run.bundle.vocab),
        "products": len(run.data),
        "training": {
            **{k: v for k, v in asdict(state).items() if k != "history"},
            "samples_per_second": state.samples / max(state.train_seconds, 1e-9),
            "wall_seconds_this_run": wall,
            "precision": resolve(config.precision),
        },
        "loss_history": state.history,
        "metrics": metrics,
    }
