"""Serving the generative recall models: which version serves each merchant, hot-swapped.

:func:`load_active` answers "which model serves this merchant now" from an in-process cache that
re-reads the registry at most every ``GENERATIVE_RELOAD_SECONDS`` (2 s) with one indexed query
for all merchants, so a version activated by a training job or a gate is picked up by every web
worker within seconds and without a restart. A swap only replaces the cache entry: a request
that already holds a :class:`ServingModel` finishes with it.

Which version serves: for each merchant the first kind in :data:`SERVING_KINDS` with an active
version *and a loader* -- an active ``adapter`` (LoRA on a base, added by online learning) wins
over the ``base`` model. Loaders are named in :data:`LOADERS` (``"module:function"``, imported on
first use, taking the :class:`~learners.models.ModelVersion` and returning a
:class:`~learners.generative.model.GenerativeModel`, or None to decline, e.g. an adapter trained
on an older base; asked again whenever the merchant's active versions change). A kind without a
loader, a declined version or one that fails to load falls back to the next kind, so a broken
adapter never takes generative recall down.

Hook for online learning: add ``LOADERS["adapter"] = "module:function"`` returning the active
base with the adapter merged (e.g. ``learners.online.adapter.load_adapted``), None when the
adapter does not belong to the active base's chain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from learners import conf
from learners.registry import models_dir

if TYPE_CHECKING:
    from learners.generative.decode import GenerativeRecall
    from learners.generative.model import GenerativeModel
    from learners.models import ModelVersion
    from ranking.recall import RecallRequest, RecallResult

log = logging.getLogger(__name__)

#: Kinds that can serve generative recall, most specific first.
SERVING_KINDS = ("adapter", "base")
#: kind -> "module:function" loading a version for serving (online learning adds "adapter").
LOADERS: dict[str, str] = {
    "base": "ranking.generative:load_base",
    "adapter": "learners.online.adapter:load_for_serving",
}


@dataclass(frozen=True)
class ServingModel:
    """One loaded version serving one merchant."""

    version: str
    kind: str
    merchant: str
    recall: GenerativeRecall
    docids: frozenset[str]

    def learned(self, docid: str | None) -> bool:
        """Whether the model was trained on this docid (False for products added since)."""
        return docid is not None and docid in self.docids


def load_base(version: ModelVersion) -> GenerativeModel:
    """Loader of ``base`` versions: the version directory as written by training."""
    from learners.generative.model import load_version

    return load_version(version.directory)


class _Cache:
    """merchant slug -> ServingModel, refreshed from the registry at most every few seconds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.checked = float("-inf")
        self.root: Path | None = None
        self.models: dict[str, ServingModel] = {}
        #: merchant -> names of its active servable versions when its model was resolved
        self.keys: dict[str, tuple[str, ...]] = {}
        self.failed: set[str] = set()

    def current(self) -> dict[str, ServingModel]:
        if self._stale():
            with self.lock:
                if self._stale():
                    self.models = self._reconcile()
                    self.root = models_dir()
                    self.checked = time.monotonic()
        return self.models

    def _stale(self) -> bool:
        """Time to re-read the registry; a different models directory (another data directory,
        e.g. per test) is another registry, so it invalidates at once."""
        return time.monotonic() - self.checked >= reload_seconds() or self.root != models_dir()

    def _reconcile(self) -> dict[str, ServingModel]:
        """Keep a merchant's model while its set of active versions is unchanged; when that set
        changes (a promotion, a new base, a rollback) resolve it again from the top, because a
        loader's answer can depend on the other versions (an adapter is only valid on its base).
        """
        models = {}
        for slug, candidates in _wanted_versions().items():
            key = tuple(v.name for v in candidates)
            loaded = self.models.get(slug)
            if loaded is not None and self.keys.get(slug) == key:
                models[slug] = loaded
                continue
            self.keys[slug] = key
            for version in candidates:
                serving = self._load(slug, version)
                if serving is not None:
                    models[slug] = serving
                    break
        return models

    def _load(self, slug: str, version: ModelVersion) -> ServingModel | None:
        if version.name in self.failed:
            return None
        started = time.perf_counter()
        try:
            bundle = _loader(version.kind)(version)
            if bundle is None:  # the loader declined (e.g. an adapter of an older base)
                return None
            serving = _serving_model(slug, version, bundle)
        except Exception:  # a broken version must not take search down: fall back
            log.exception("cannot load %s %s for %s; falling back", version.kind, version, slug)
            self.failed.add(version.name)
            return None
        log.info("serving %s for %s (loaded in %.2f s)", version.name, slug, _since(started))
        return serving


def _wanted_versions() -> dict[str, list[ModelVersion]]:
    """Active servable versions per merchant slug, in :data:`SERVING_KINDS` order."""
    from learners.models import ModelVersion

    rank = {kind: i for i, kind in enumerate(SERVING_KINDS)}
    rows = ModelVersion.objects.filter(
        status="active", kind__in=[k for k in SERVING_KINDS if k in LOADERS], merchant__isnull=False
    ).select_related("merchant")
    wanted: dict[str, list[ModelVersion]] = {}
    for row in sorted(rows, key=lambda r: rank[r.kind]):
        wanted.setdefault(row.merchant.slug, []).append(row)
    return wanted


def _loader(kind: str) -> Callable[[ModelVersion], GenerativeModel | None]:
    module, _, function = LOADERS[kind].partition(":")
    return getattr(import_module(module), function)


def _serving_model(slug: str, version: ModelVersion, bundle: GenerativeModel) -> ServingModel:
    import torch

    from learners.generative.decode import GenerativeRecall, GenerativeRetriever

    # One intra-op thread per web worker: parallelism comes from the workers, and torch's
    # OpenMP threads spin-wait on each other when workers share the cores. Measured on the
    # 2-core box, 2 gunicorn workers, 4 clients: 2 threads 8.6 QPS (p99 1.3 s), 1 thread 67 QPS.
    torch.set_num_threads(serving_threads())
    recall = GenerativeRecall(GenerativeRetriever(bundle), slug, beam=beam_width())
    return ServingModel(version.name, version.kind, slug, recall, frozenset(bundle.docids))


def _since(started: float) -> float:
    return time.perf_counter() - started


_cache = _Cache()


def reload_seconds() -> float:
    return conf.get("GENERATIVE_RELOAD_SECONDS", 2.0)


def beam_width() -> int:
    """Beam of the serving decoder: the candidates generative recall proposes per merchant."""
    return conf.get("GENERATIVE_BEAM", 10)


def serving_threads() -> int:
    return conf.get("GENERATIVE_SERVING_THREADS", 1)


def rrf_weight() -> float:
    """Weight of generative candidates in the hybrid pipeline's rank fusion (see
    ``ranking.service.RRF_WEIGHTS`` for the measurements behind the default)."""
    return conf.get("GENERATIVE_RRF_WEIGHT", 0.1)


def load_active(merchant: str) -> ServingModel | None:
    """The model serving ``merchant`` now (cached; re-checked every couple of seconds)."""
    return _cache.current().get(merchant)


def serving_models() -> dict[str, ServingModel]:
    """Every merchant's serving model (a snapshot)."""
    return dict(_cache.current())


def reset_cache() -> None:
    """Forget loaded models and re-read the registry on next use (tests, after migrations)."""
    global _cache
    _cache = _Cache()


class GenerativeServingRecall:
    """The ``generative`` recall path: each merchant's serving model, merged by log-probability.

    A request for one merchant uses that merchant's model only; a request across merchants
    decodes with each serving model and merges (scores are log-probabilities, comparable
    enough to interleave). ``model_version`` records which version(s) served the request.
    """

    name = "generative"

    def __init__(self) -> None:
        self.model_version: str | None = None

    def recall(self, request: RecallRequest) -> RecallResult:
        from ranking.recall import RecallResult, merge_results

        models = serving_models()
        chosen = [models[request.merchant]] if request.merchant in models else []
        if not request.merchant:
            chosen = [models[slug] for slug in sorted(models)]
        if not chosen:
            return RecallResult(candidates=[], total=0)
        self.model_version = ",".join(m.version for m in chosen)
        results = [m.recall.recall(request) for m in chosen]
        return results[0] if len(results) == 1 else merge_results(results, request.limit)


def learned_flags() -> Callable[[str, str | None], bool | None]:
    """``SearchResult.learned`` for one page: ``(merchant, docid)`` -> None without a serving
    model for the merchant, else whether that model knows the docid.

    The serving models are read once, when the page is built: every result of a response is
    judged by the same models even if a promotion swaps them mid-page, and the registry's
    staleness check runs once per page instead of once per result (ten checks were ~4% of a
    hybrid search's CPU in a profile of ``/api/search``).
    """
    models = serving_models()

    def learned(merchant: str, docid: str | None) -> bool | None:
        serving = models.get(merchant)
        return None if serving is None else serving.learned(docid)

    return learned


def any_active() -> bool:
    """Whether some merchant has a generative model serving."""
    return bool(serving_models())
