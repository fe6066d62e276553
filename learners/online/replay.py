"""The replay buffer: what an adapter rehearses so that learning this hour does not erase the
base model's catalog knowledge or what earlier hours taught (DSI++, arXiv 2212.09744: replaying
pseudo-queries of old documents recovered +21.1% Hits@10; LoRA updates forget too).

One buffer per base model, on disk under ``<models dir>/replay/<base name>/`` (a monthly rebuild
changes docids, so a new base starts a new buffer, like a new adapter chain)::

    base.jsonl    pseudo-queries and indexing views the base was trained on (fixed, bounded)
    probe.jsonl   a fixed probe set of base pseudo-queries, never replayed: forgetting is
                  measured on it, so training on it would hide forgetting
    hours.jsonl   pairs of earlier hours: a reservoir sample of at most ``capacity`` pairs, so
                  every hour seen stays represented in proportion, however many hours pass
    state.json    hours already added (adding is idempotent) and the reservoir's count

Writers take an exclusive ``flock`` on the directory's lock file, so two workers training
different hours never interleave their updates.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from learners.generative.data import AMBIGUOUS_KINDS, DataConfig, ProductDoc, TrainingData
from learners.online.pairs import Pair

BASE_FILE, PROBE_FILE, HOURS_FILE, STATE_FILE = (
    "base.jsonl",
    "probe.jsonl",
    "hours.jsonl",
    "state.json",
)
#: Example kinds that are not queries (the probe tests query → docid only).
INDEXING_VIEWS = frozenset({"title", "title_brand", "category_brand", "description"})
#: Epochs of base training data drawn for the replay pool, and the (unused) epoch of the probe.
BASE_EPOCHS = (0, 1)
PROBE_EPOCH = 1_000_003


def replay_dir(base_name: str) -> Path:
    from learners.registry import models_dir

    return models_dir() / "replay" / base_name


class ReplayBuffer:
    """See the module docstring. Cheap to construct; files are read on demand."""

    def __init__(self, directory: Path, capacity: int = 20_000, seed: int = 0) -> None:
        self.directory = Path(directory)
        self.capacity = capacity
        self.seed = seed

    # -- base pairs and probe (built once per base) ----------------------------------------

    @property
    def ready(self) -> bool:
        return (self.directory / BASE_FILE).exists() and (self.directory / PROBE_FILE).exists()

    def build_base(
        self,
        products: Sequence[ProductDoc],
        data_config: DataConfig,
        probe_size: int,
        leaf_targets: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Write the base pool and the probe from the base model's own training data.

        The pool replays what the base learnt, the teacher's examples and leaf targets
        (``leaf_targets``) included, so adapters do not wear away the distilled rankings; the
        probe stays unambiguous pseudo-queries, drawn as without a teacher.
        """
        data = TrainingData(products, data_config)
        taught = data.taught_by(leaf_targets) if leaf_targets else data
        pool: dict[tuple[str, str], Pair] = {}
        for epoch in BASE_EPOCHS:
            for ex in taught.epoch(epoch):
                if ex.kind != "description":
                    pool.setdefault(
                        (ex.text, ex.docid), Pair(ex.text, ex.docid, 1.0, ex.prefix_only)
                    )
        probe = _probe(data, {text for text, _ in pool}, probe_size, self.seed)
        with self._locked():
            _write_jsonl(self.directory / BASE_FILE, sorted(pool.values(), key=_key))
            _write_jsonl(self.directory / PROBE_FILE, probe)

    def base_pairs(self) -> list[Pair]:
        return _read_jsonl(self.directory / BASE_FILE)

    def probe(self) -> list[Pair]:
        return _read_jsonl(self.directory / PROBE_FILE)

    # -- earlier hours ---------------------------------------------------------------------

    def hour_pairs(self) -> list[Pair]:
        return _read_jsonl(self.directory / HOURS_FILE)

    def hours(self) -> list[str]:
        return list(self._state()["hours"])

    def add_hour(self, hour: str, pairs: Sequence[Pair]) -> bool:
        """Reservoir-sample an hour's pairs in; False (and no change) if it was added before."""
        with self._locked():
            state = self._state()
            if hour in state["hours"]:
                return False
            buffer = self.hour_pairs()
            rng = random.Random(f"{self.seed}:{hour}")
            for pair in pairs:
                state["seen"] += 1
                if len(buffer) < self.capacity:
                    buffer.append(pair)
                else:
                    slot = rng.randrange(state["seen"])
                    if slot < self.capacity:
                        buffer[slot] = pair
            state["hours"].append(hour)
            _write_jsonl(self.directory / HOURS_FILE, buffer)
            _atomic_write(self.directory / STATE_FILE, json.dumps(state))
        return True

    # -- the training mix ------------------------------------------------------------------

    def sample(self, n: int, rng: random.Random, base_share: float = 0.5) -> list[Pair]:
        """``n`` replayed pairs: ``base_share`` of them base pairs, the rest earlier hours'
        (all base pairs while no hour has been added yet)."""
        hours = self.hour_pairs()
        n_hours = 0 if not hours else round(n * (1.0 - base_share))
        base = self.base_pairs()
        picked = rng.choices(hours, k=n_hours) if n_hours else []
        picked += rng.choices(base, k=n - n_hours) if base and n > n_hours else []
        return picked

    # -- files -----------------------------------------------------------------------------

    def _state(self) -> dict:
        path = self.directory / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else {"seen": 0, "hours": []}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def training_mix(
    new: Sequence[Pair],
    buffer: ReplayBuffer | None,
    *,
    fraction: float,
    base_share: float,
    epochs: float,
    rng: random.Random,
) -> list[Pair]:
    """``epochs`` passes over ``new`` plus replayed pairs making up ``fraction`` of the total,
    shuffled. Weights are rescaled to mean 1 within the new and within the replayed pairs, so
    the new/replay ratio holds in loss mass as well as in count (raw purchase-weighted pairs
    would otherwise drown the weight-1 replay)."""
    repeats = max(1, round(epochs))
    mixed = _unit_mean(list(new)) * repeats
    if buffer is not None and fraction > 0:
        n_replay = round(len(mixed) * fraction / (1.0 - fraction))
        mixed += _unit_mean(buffer.sample(n_replay, rng, base_share))
    rng.shuffle(mixed)
    return mixed


def _unit_mean(pairs: list[Pair]) -> list[Pair]:
    if not pairs:
        return []
    mean = sum(p.weight for p in pairs) / len(pairs)
    return [Pair(p.query, p.docid, p.weight / mean, p.prefix_only) for p in pairs]


def _probe(data: TrainingData, exclude: set[str], size: int, seed: int) -> list[Pair]:
    """Unambiguous pseudo-queries (one docid each) from an epoch training never draws."""
    owners: dict[str, set[str]] = {}
    for ex in data.epoch(PROBE_EPOCH):
        if ex.kind not in INDEXING_VIEWS and ex.kind not in AMBIGUOUS_KINDS:
            owners.setdefault(ex.text, set()).add(ex.docid)
    single = sorted(
        (text, next(iter(docids)))
        for text, docids in owners.items()
        if len(docids) == 1 and text not in exclude
    )
    picked = random.Random(f"{seed}:probe").sample(single, min(size, len(single)))
    return [Pair(text, docid) for text, docid in sorted(picked)]


def _key(pair: Pair) -> tuple[str, str]:
    return pair.query, pair.docid


def _write_jsonl(path: Path, pairs: Sequence[Pair]) -> None:
    _atomic_write(path, "".join(json.dumps(p.as_dict()) + "\n" for p in pairs))


def _read_jsonl(path: Path) -> list[Pair]:
    if not path.exists():
        return []
    with open(path) as handle:
        return [Pair(**json.loads(line)) for line in handle if line.strip()]


def _atomic_write(path: Path, text: str) -> None:
    """Write-then-rename: a reader never sees half a file, a crash never leaves one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
