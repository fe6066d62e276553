"""One hour of shopper events → weighted (query → docid) training pairs for an adapter.

A click, an add-to-cart or a purchase of a product after a search says "for this query, this
product". Each event adds its signal's weight (:data:`SIGNAL_WEIGHTS`: purchase > add-to-cart >
click) to its (query, docid) pair, so a product bought after a click collects all three and
outweighs one clicked and abandoned. Pairs are deduplicated by summing, dropped below
``min_weight`` (one stray click is noise) and capped at ``max_weight`` (one very popular query
must not own the loss).

Actions are attributed to the query of the impression they came from exactly as the hourly
aggregates do (:mod:`learners.aggregates`): through ``request_id``, else the session's last
click on the sku. Skus map to docids through the catalog; a sku without a docid (deleted, or
too new) cannot be a target and is counted in ``unknown``.

The last ``holdout_fraction`` of the hour (by event time) is held out: the gate asks whether a
candidate adapter predicts *later* behaviour better than the serving model, which is the
question a promotion answers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

from learners.aggregates import (
    HOUR,
    _last_click,
    _queries_for,
    _session_clicks,
    hour_floor,
)
from learners.generative.data import clean
from learners.models import Event

#: Weight each action adds to its (query, docid) pair.
SIGNAL_WEIGHTS: Mapping[str, float] = {"click": 1.0, "add_to_cart": 2.0, "purchase": 4.0}


@dataclass(frozen=True)
class Pair:
    """A training or evaluation example: ``query`` (cleaned) should decode to ``docid``."""

    query: str
    docid: str
    weight: float = 1.0
    #: train only the docid prefix (ambiguous base pseudo-queries, see generative.data)
    prefix_only: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class HourPairs:
    hour: datetime
    merchant: str
    events: int = 0
    train: list[Pair] = field(default_factory=list)
    holdout: list[Pair] = field(default_factory=list)
    unattributed: int = 0  #: actions with no query to attribute them to
    unknown: int = 0  #: actions on skus without a docid

    def summary(self) -> dict[str, object]:
        return {
            "hour": self.hour.isoformat(),
            "merchant": self.merchant,
            "events": self.events,
            "train_pairs": len(self.train),
            "holdout_pairs": len(self.holdout),
            "unattributed": self.unattributed,
            "unknown_sku": self.unknown,
        }


def build_pairs(
    hour: datetime,
    merchant: str,
    *,
    holdout_fraction: float = 0.2,
    min_weight: float = 1.0,
    max_weight: float = 16.0,
    weights: Mapping[str, float] = SIGNAL_WEIGHTS,
) -> HourPairs:
    """The training and held-out pairs of ``merchant``'s events in the hour of ``hour``."""
    hour = hour_floor(hour)
    cutoff = hour + HOUR * (1.0 - holdout_fraction)
    actions = list(
        Event.objects.filter(
            merchant=merchant, type__in=list(weights), ts__gte=hour, ts__lt=hour + HOUR
        )
        .only("type", "session_id", "ts", "request_id", "sku")
        .order_by("ts", "pk")
    )
    result = HourPairs(hour=hour, merchant=merchant, events=len(actions))
    queries = _attribute(actions, hour)
    docids = docids_of(merchant, {e.sku for e in actions})
    sums: dict[bool, dict[tuple[str, str], float]] = {
        False: defaultdict(float),  # before the cutoff: training
        True: defaultdict(float),  # the held-out slice
    }
    for event, query in zip(actions, queries, strict=True):
        docid = docids.get(event.sku)
        if not query:
            result.unattributed += 1
        elif docid is None:
            result.unknown += 1
        else:
            sums[event.ts >= cutoff][(query, docid)] += weights[event.type]
    result.train = _threshold(sums[False], min_weight, max_weight)
    result.holdout = _threshold(sums[True], min_weight, max_weight)
    return result


def _attribute(actions: list[Event], hour: datetime) -> list[str]:
    """The cleaned query each action is attributed to ("" when none), in order."""
    clicks = _session_clicks(actions, hour)
    request_ids = [e.request_id or _last_click(clicks, e) for e in actions]
    raw = _queries_for({rid for rid in request_ids if rid}, hour)
    return [clean(raw.get(rid, "")) if rid else "" for rid in request_ids]


def docids_of(merchant: str, skus: Iterable[str]) -> dict[str, str]:
    """sku -> docid of ``merchant``'s products among ``skus`` (those without one are absent)."""
    from catalog.models import Docid

    rows = Docid.objects.filter(merchant__slug=merchant, product__sku__in=list(skus))
    return dict(rows.values_list("product__sku", "path"))


def _threshold(sums: Mapping[tuple[str, str], float], low: float, high: float) -> list[Pair]:
    return [
        Pair(query, docid, min(weight, high))
        for (query, docid), weight in sorted(sums.items())
        if weight >= low
    ]


def by_query(pairs: Iterable[Pair]) -> dict[str, dict[str, float]]:
    """``{query: {docid: weight}}``: the relevance judgments the gate evaluates against."""
    grouped: dict[str, dict[str, float]] = defaultdict(dict)
    for pair in pairs:
        grouped[pair.query][pair.docid] = grouped[pair.query].get(pair.docid, 0.0) + pair.weight
    return dict(grouped)
