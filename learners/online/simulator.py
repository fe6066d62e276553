"""Simulated shoppers: real searches, position-biased clicks and purchases from judged labels.

Each session picks a query, searches (through the HTTP API, or in-process for benchmarks) and
scans the results with a **cascade click model** (Craswell et al. 2008, with the dependent-click
extension of Guo et al. 2009): from the top, the shopper examines one result after another,
clicks it with an *attractiveness* given by its relevance grade, and after a click goes on
looking with probability ``continue_after_click``; without a click she goes on with
``patience`` (so lower positions are examined less: position bias). A clicked product is added
to the cart and bought with grade-dependent probabilities. Grades are the qrels gains (BestBuy:
E=2 exact, S=1 substitute, C/I=0; unjudged = 0, as in evaluation).

Events (impression, clicks, carts, purchases) are posted to ``/api/events`` -- the real Kafka
path -- with timestamps on a **simulated clock**: session *s* of simulated hour *h* happens at
``start + h hours + offset``, so a day of traffic takes minutes and ``train_adapter --hour``
sees it as ordinary hours. The simulator sends its own impression (on the simulated clock) and
searches with ``track=0`` so the API does not record a second one (an impression stamped with
the real time lies outside the simulated hour, where attribution would never find it).
Everything random comes from ``Random(f"{seed}:{hour}")``, event ids included: the same seed
against the same models sends the same events.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from learners.events.schema import MAX_BATCH_EVENTS

#: Largest number of events posted in one request (the API's limit).
POST_BATCH = MAX_BATCH_EVENTS


@dataclass(frozen=True)
class ShopperModel:
    """Click/purchase probabilities per relevance grade (see the module docstring)."""

    attractiveness: Mapping[int, float] = field(default_factory=lambda: {2: 0.7, 1: 0.35, 0: 0.04})
    add_to_cart: Mapping[int, float] = field(default_factory=lambda: {2: 0.5, 1: 0.25, 0: 0.05})
    purchase: Mapping[int, float] = field(default_factory=lambda: {2: 0.7, 1: 0.5, 0: 0.2})
    patience: float = 0.85  #: P(examine the next result | no click here)
    continue_after_click: float = 0.4  #: P(examine the next result | clicked here)
    depth: int = 10  #: results shown (one page)

    def grade_prob(self, table: Mapping[int, float], grade: int) -> float:
        return table.get(grade, table[0])


@dataclass(frozen=True)
class Result:
    sku: str
    price: str


@dataclass(frozen=True)
class Page:
    request_id: str
    model_version: str
    results: list[Result]


class Storefront(Protocol):
    """Where simulated shoppers search and send their events."""

    def search(self, query: str, k: int, merchant: str, session_id: str) -> Page: ...

    def send(self, events: Sequence[dict[str, Any]]) -> int: ...


class HttpStorefront:
    """The running site: ``GET /api/search`` and ``POST /api/events``."""

    def __init__(self, url: str, timeout: float = 30.0, retries: int = 5) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries

    def search(self, query: str, k: int, merchant: str, session_id: str) -> Page:
        params = urllib.parse.urlencode(
            {"q": query, "k": k, "merchant": merchant, "session_id": session_id, "track": 0}
        )
        with urllib.request.urlopen(f"{self.url}/api/search?{params}", timeout=self.timeout) as r:
            data = json.load(r)
        return _page(data)

    def send(self, events: Sequence[dict[str, Any]]) -> int:
        """POST the events; on 429 (rate limited) or 503 (spool full) wait and retry."""
        body = json.dumps({"events": list(events)}).encode()
        attempt = 0
        while True:
            request = urllib.request.Request(
                f"{self.url}/api/events",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as r:
                    return int(json.load(r)["accepted"])
            except urllib.error.HTTPError as error:
                if error.code not in (429, 503) or attempt >= self.retries:
                    raise
                attempt += 1
                time.sleep(min(float(error.headers.get("Retry-After") or 1), 30.0))


class LocalStorefront:
    """In-process: ``ranking.search`` and ``learners.events.publish`` (the same Kafka path as
    the endpoint, without an HTTP hop that would only add noise to a benchmark)."""

    def search(self, query: str, k: int, merchant: str, session_id: str) -> Page:
        import ranking

        return _page(ranking.search(query, k=k, merchant=merchant).to_json())

    def send(self, events: Sequence[dict[str, Any]]) -> int:
        from learners.events import publish

        return publish(events, fill_defaults=False).accepted


def _page(data: Mapping[str, Any]) -> Page:
    results = [Result(str(r["sku"]), str(r.get("price") or "0")) for r in data["results"]]
    return Page(str(data["request_id"]), str(data.get("model_version") or "none"), results)


@dataclass
class HourTraffic:
    hour: datetime
    sessions: int = 0
    events: int = 0
    accepted: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class Simulator:
    """Sessions of shoppers over the judged queries; see the module docstring."""

    def __init__(
        self,
        storefront: Storefront,
        queries: Mapping[str, str],
        qrels: Mapping[str, Mapping[str, int]],
        merchant: str,
        *,
        seed: int = 0,
        model: ShopperModel | None = None,
    ) -> None:
        self.storefront = storefront
        self.queries = sorted((qid, text) for qid, text in queries.items() if qid in qrels)
        if not self.queries:
            raise ValueError("no query has judgments: nothing to simulate")
        self.qrels = qrels
        self.merchant = merchant
        self.seed = seed
        self.model = model or ShopperModel()

    def run_hour(self, hour: datetime, sessions: int) -> HourTraffic:
        """Simulate ``sessions`` shoppers in the hour starting at ``hour`` and send their events."""
        rng = random.Random(f"{self.seed}:{hour.isoformat()}")
        offsets = sorted(rng.uniform(0, 3300) for _ in range(sessions))
        traffic = HourTraffic(hour=hour, sessions=sessions)
        pending: list[dict[str, Any]] = []
        for index, offset in enumerate(offsets):
            pending += self.session(rng, f"sim-{hour:%Y%m%d%H}-{index}", hour, offset)
            if len(pending) >= POST_BATCH:
                self._flush(pending[:POST_BATCH], traffic)
                pending = pending[POST_BATCH:]
        self._flush(pending, traffic)
        return traffic

    def _flush(self, events: list[dict[str, Any]], traffic: HourTraffic) -> None:
        if not events:
            return
        traffic.events += len(events)
        traffic.accepted += self.storefront.send(events)
        for event in events:
            traffic.counts[event["type"]] = traffic.counts.get(event["type"], 0) + 1

    def session(
        self, rng: random.Random, session_id: str, hour: datetime, offset: float
    ) -> list[dict[str, Any]]:
        """One shopper: search, scan with the cascade model, return the events."""
        qid, query = rng.choice(self.queries)
        page = self.storefront.search(query, self.model.depth, self.merchant, session_id)
        clock = _Clock(hour + timedelta(seconds=offset), rng)
        envelope = {"session_id": session_id, "merchant": self.merchant, "schema_version": 1}
        shown = [{"sku": r.sku, "position": i} for i, r in enumerate(page.results, 1)]
        events = [
            self._event(
                rng,
                envelope,
                clock,
                type="impression",
                request_id=page.request_id,
                query=query,
                items=shown,
                model_version=page.model_version,
            )
        ]
        for position, result in self.cascade(rng, qid, page.results):
            events += self._actions(rng, envelope, clock, page, qid, position, result)
        return events

    def cascade(
        self, rng: random.Random, qid: str, results: Sequence[Result]
    ) -> list[tuple[int, Result]]:
        """The (position, result) pairs a shopper clicks, top to bottom."""
        clicked = []
        for position, result in enumerate(results[: self.model.depth], 1):
            grade = self.qrels[qid].get(result.sku, 0)
            if rng.random() < self.model.grade_prob(self.model.attractiveness, grade):
                clicked.append((position, result))
                if rng.random() >= self.model.continue_after_click:
                    break
            elif rng.random() >= self.model.patience:
                break
        return clicked

    def _actions(
        self,
        rng: random.Random,
        envelope: dict[str, Any],
        clock: _Clock,
        page: Page,
        qid: str,
        position: int,
        result: Result,
    ) -> list[dict[str, Any]]:
        grade = self.qrels[qid].get(result.sku, 0)
        common = {"request_id": page.request_id, "sku": result.sku}
        events = [self._event(rng, envelope, clock, type="click", position=position, **common)]
        common["quantity"] = 1
        if rng.random() < self.model.grade_prob(self.model.add_to_cart, grade):
            events.append(self._event(rng, envelope, clock, type="add_to_cart", **common))
            if rng.random() < self.model.grade_prob(self.model.purchase, grade):
                events.append(
                    self._event(rng, envelope, clock, type="purchase", price=result.price, **common)
                )
        return events

    @staticmethod
    def _event(
        rng: random.Random, envelope: dict[str, Any], clock: _Clock, **fields: Any
    ) -> dict[str, Any]:
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return {**envelope, "event_id": event_id, "ts": clock.tick(), **fields}


class _Clock:
    """A session's simulated time: each event a few seconds after the previous one."""

    def __init__(self, start: datetime, rng: random.Random) -> None:
        self.now = start
        self.rng = rng

    def tick(self) -> str:
        self.now += timedelta(seconds=self.rng.uniform(1.0, 5.0))
        return self.now.isoformat()
