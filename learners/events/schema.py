"""The shopper-event schema: one pydantic model per event type, a union discriminated on ``type``.

Every event carries ``event_id`` (a UUID chosen once by the emitter: the consumer's idempotency
key, so it is *required* here and never defaulted during validation -- a default would mint a
new id on every redelivery), ``session_id`` (the Kafka partition key, so one session's events
stay in order), ``merchant`` (slug), an timezone-aware ``ts`` and ``schema_version``.

Sizes are bounded (query length, shown items, ids, encoded bytes) so a single hostile or buggy
emitter cannot blow up the broker, the event store or the hourly aggregation. Unknown fields
are rejected rather than ignored: a typo in an emitter should surface as a dead letter, not as
silently missing data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

SCHEMA_VERSION = 1
#: Largest accepted event once JSON-encoded (a full 200-item impression is ~12 KiB).
MAX_EVENT_BYTES = 32 * 1024
#: Most events one ``publish`` call takes (the HTTP layer should answer 413 above this).
MAX_BATCH_EVENTS = 1000
#: Most results one impression may list (matches ``SEARCH_MAX_K``).
MAX_SHOWN_ITEMS = 200
#: Longest query (matches ``SEARCH_MAX_QUERY_CHARS``).
MAX_QUERY_CHARS = 256
MAX_POSITION = 10_000
MAX_QUANTITY = 10_000

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
]
MerchantSlug = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")
]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Query = Annotated[str, StringConstraints(max_length=MAX_QUERY_CHARS)]
#: the serving versions, comma-joined (ranking.service.served_by): a generative adapter or base,
#: an encoder and a ranker, each a registry name of up to 200 characters
MAX_MODEL_VERSION_CHARS = 1024
ModelVersion = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MODEL_VERSION_CHARS)]
Position = Annotated[int, Field(ge=1, le=MAX_POSITION, strict=True)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)]
Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _EventBase(_Strict):
    schema_version: Literal[1]
    event_id: UUID
    session_id: Identifier
    merchant: MerchantSlug
    ts: AwareDatetime


class ShownItem(_Strict):
    """One result as the shopper saw it: ``position`` is 1-based over the whole result list."""

    sku: Sku
    position: Position


class Impression(_EventBase):
    """A result list shown for a search request; ``request_id`` ties later clicks to it."""

    type: Literal["impression"]
    request_id: Identifier
    query: Query
    items: list[ShownItem] = Field(max_length=MAX_SHOWN_ITEMS)
    model_version: ModelVersion

    @model_validator(mode="after")
    def _unique_positions(self) -> Impression:
        positions = [item.position for item in self.items]
        if len(set(positions)) != len(positions):
            raise ValueError("items: positions must be unique")  # model-level, so name the field
        return self


class Click(_EventBase):
    type: Literal["click"]
    request_id: Identifier
    sku: Sku
    position: Position


class AddToCart(_EventBase):
    """``request_id`` is set when the add happened from a result list; without it the
    aggregation attributes the add to the session's last click on the sku."""

    type: Literal["add_to_cart"]
    sku: Sku
    quantity: Quantity = 1
    request_id: Identifier | None = None


class Purchase(_EventBase):
    """``price`` is the unit price paid; revenue is ``quantity * price``."""

    type: Literal["purchase"]
    sku: Sku
    quantity: Quantity
    price: Price
    request_id: Identifier | None = None


AnyEvent = Annotated[Impression | Click | AddToCart | Purchase, Field(discriminator="type")]
EVENT_TYPES: tuple[str, ...] = ("impression", "click", "add_to_cart", "purchase")
_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


class EventValidationError(ValueError):
    """An event that does not match the schema; ``errors`` are ``"field.path: message"``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _format(exc: ValidationError) -> list[str]:
    """Turn pydantic's errors into short ``path: message`` lines.

    The discriminated union prefixes every location with the matched tag (``click.position``);
    that tag is dropped because the caller knows which type it sent. Model-level validators
    name their field in the message themselves.
    """
    lines = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        if loc and loc[0] in EVENT_TYPES:
            loc = loc[1:]
        message = error["msg"].removeprefix("Value error, ")
        path = ".".join(str(part) for part in loc)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = "type"
        lines.append(f"{path}: {message}" if path else message)
    return lines


def parse_event(data: Mapping[str, Any] | bytes | str) -> AnyEvent:
    """Validate one event given as a mapping or as JSON text; raise EventValidationError."""
    if isinstance(data, bytes | str):
        size = len(data.encode() if isinstance(data, str) else data)
        if size > MAX_EVENT_BYTES:
            raise EventValidationError([f"event: {size} bytes exceeds {MAX_EVENT_BYTES}"])
        try:
            return _ADAPTER.validate_json(data)
        except ValidationError as exc:
            raise EventValidationError(_format(exc)) from None
    return parse_and_encode(data)[0]


def parse_and_encode(data: object) -> tuple[AnyEvent, bytes]:
    """:func:`parse_event`, also returning the event's wire form.

    For a mapping the size bound is checked on the wire form anyway, so a caller that sends
    the event (``publish``) takes it from here instead of encoding a second time."""
    if isinstance(data, bytes | str):
        event = parse_event(data)
        return event, encode(event)
    if not isinstance(data, Mapping):
        raise EventValidationError([f"event: expected an object, got {type(data).__name__}"])
    try:
        event = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise EventValidationError(_format(exc)) from None
    wire = encode(event)
    if len(wire) > MAX_EVENT_BYTES:
        raise EventValidationError([f"event: {len(wire)} bytes exceeds {MAX_EVENT_BYTES}"])
    return event, wire


def encode(event: AnyEvent) -> bytes:
    """The wire form: compact JSON, the same bytes the consumer validates again."""
    return event.model_dump_json().encode()


def with_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the envelope fields a server-side emitter may leave out: a fresh ``event_id``, the
    current time and the schema version. Done once, before the event enters the pipeline, so
    every retry and redelivery carries the same id."""
    filled = dict(data)
    if "event_id" not in filled:  # not setdefault: uuid4() is costly at thousands per second
        filled["event_id"] = str(uuid4())
    if "ts" not in filled:
        filled["ts"] = datetime.now(UTC).isoformat()
    filled.setdefault("schema_version", SCHEMA_VERSION)
    return filled
