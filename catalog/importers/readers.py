"""Feed readers: one function per format, each turning a file into ``FeedRow``s.

Readers only parse; validation lives in ``base.validate`` so every format is held to the same
rules. A row the reader cannot parse at all (a broken JSON line) is still yielded, carrying the
parse error, so that the validation report names its line instead of the row vanishing.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from catalog.importers.base import FeedError, FeedRow

CATEGORY_SEPARATORS = re.compile(r"\s*(?:>|/|\|)\s*")
_SKU_IN_IMAGE_URL = re.compile(r"/(\d+)_[a-z]+\.(?:jpg|png|jpeg)$", re.IGNORECASE)


def _require_file(path: Path) -> None:
    if not path.exists():
        raise FeedError(f"feed file not found: {path}")
    if not path.is_file():
        raise FeedError(f"not a file: {path}")


def _split_category(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part for part in CATEGORY_SEPARATORS.split(str(value).strip()) if part]


def _unparsable(line: int, reason: str) -> FeedRow:
    return FeedRow(line=line, sku="", title="", error=reason)


# --- BestBuy (JSON array, or JSON lines with sku) ---------------------------------------------
def read_bestbuy(path: Path) -> Iterator[FeedRow]:
    """BestBuy demo feed: ``products.json`` (array) or ``products.jsonl``.

    The array form has no sku field; BestBuy's SKU is the number in the image file name
    (``.../4984700_sb.jpg``), which is how the ``.jsonl`` form derived its ``sku``.
    """
    _require_file(path)
    for line, record in _json_records(path):
        if record is None:
            yield _unparsable(line, "unparsable JSON")
            continue
        if not isinstance(record, dict):
            yield _unparsable(line, "not a JSON object")
            continue
        sku = record.get("sku") or _sku_from_image(record.get("image", ""))
        yield FeedRow(
            line=line,
            sku=sku,
            title=record.get("name"),
            brand=record.get("brand", ""),
            description=record.get("description", ""),
            categories=_split_category(record.get("categories")),
            price=record.get("price"),
            popularity=record.get("popularity", 0),
            attributes=record.get("attributes") or {},
            image_url=record.get("image", ""),
        )


def _sku_from_image(url: str) -> str:
    match = _SKU_IN_IMAGE_URL.search(url or "")
    return match.group(1) if match else ""


def _json_records(path: Path) -> Iterator[tuple[int, object]]:
    """(position, record) from a JSON array file or a JSON-lines file; ``None`` for a bad line.

    Position is the line number for JSON lines and the 1-based array index for an array.
    """
    with path.open("r", encoding="utf-8") as handle:
        head = handle.read(1024).lstrip()
    if head.startswith("["):
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise FeedError(f"{path.name}: invalid JSON array: {error}") from error
        yield from enumerate(records, start=1)
        return
    with path.open("r", encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError:
                yield number, None


# --- generic JSON lines ---------------------------------------------------------------------
def read_jsonl(path: Path) -> Iterator[FeedRow]:
    """Generic feed, one JSON object per line: ``sku``, ``title``, ``brand``, ``description``,
    ``category`` (list of names, or ``"A > B > C"``), ``price``, ``popularity``,
    ``attributes`` (object), ``image_url``, ``active``."""
    _require_file(path)
    for line, record in _json_records(path):
        if not isinstance(record, dict):
            yield _unparsable(line, "unparsable JSON" if record is None else "not a JSON object")
            continue
        yield FeedRow(
            line=line,
            sku=record.get("sku"),
            title=record.get("title"),
            brand=record.get("brand", ""),
            description=record.get("description", ""),
            categories=_split_category(record.get("category")),
            price=record.get("price"),
            popularity=record.get("popularity", 0),
            attributes=record.get("attributes") or {},
            image_url=record.get("image_url", ""),
            active=record.get("active", True),
        )


# --- generic CSV ----------------------------------------------------------------------------
CSV_REQUIRED = {"sku", "title"}


def read_csv(path: Path) -> Iterator[FeedRow]:
    """Generic CSV feed with a header row: ``sku``, ``title`` (required), ``brand``,
    ``description``, ``category`` (``A > B > C``), ``price``, ``popularity``, ``image_url``,
    ``active``, ``attributes`` (a JSON object) and any ``attr:NAME`` columns."""
    _require_file(path)
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = set(reader.fieldnames or [])
        missing = CSV_REQUIRED - header
        if missing:
            raise FeedError(f"{path.name}: header lacks required column(s) {sorted(missing)}")
        for record in reader:
            line = reader.line_num
            try:
                attributes = _csv_attributes(record)
            except ValueError as error:
                yield FeedRow(
                    line=line,
                    sku=record.get("sku"),
                    title=record.get("title"),
                    error=str(error),
                )
                continue
            yield FeedRow(
                line=line,
                sku=record.get("sku"),
                title=record.get("title"),
                brand=record.get("brand") or "",
                description=record.get("description") or "",
                categories=_split_category(record.get("category")),
                price=record.get("price"),
                popularity=record.get("popularity") or 0,
                attributes=attributes,
                image_url=record.get("image_url") or "",
                active=record.get("active", "true") or "true",
            )


def _csv_attributes(record: dict[str, str]) -> dict:
    attributes: dict = {}
    raw = (record.get("attributes") or "").strip()
    if raw:
        try:
            attributes = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"attributes is not valid JSON: {error.msg}") from error
        if not isinstance(attributes, dict):
            raise ValueError("attributes must be an object of name → value")
    for column, value in record.items():
        if column and column.startswith("attr:") and value not in (None, ""):
            attributes[column.removeprefix("attr:")] = value
    return attributes


# --- Instacart (products.csv + aisles.csv + departments.csv) --------------------------------
def read_instacart(path: Path) -> Iterator[FeedRow]:
    """Instacart's ``products.csv``; ``aisles.csv`` and ``departments.csv`` must sit beside it.

    The category path is department → aisle. A row naming an aisle or department id that the
    lookup files do not have is rejected as "unknown category".
    """
    if path.is_dir():
        path = path / "products.csv"
    _require_file(path)
    aisles = _lookup(path.parent / "aisles.csv", "aisle_id", "aisle")
    departments = _lookup(path.parent / "departments.csv", "department_id", "department")
    with path.open("r", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for record in reader:
            aisle = aisles.get((record.get("aisle_id") or "").strip())
            department = departments.get((record.get("department_id") or "").strip())
            error = None
            if aisle is None or department is None:
                error = (
                    f"unknown category (aisle_id={record.get('aisle_id')!r}, "
                    f"department_id={record.get('department_id')!r})"
                )
            yield FeedRow(
                line=reader.line_num,
                sku=record.get("product_id"),
                title=record.get("product_name"),
                categories=[department.title(), aisle.title()] if not error else [],
                error=error,
            )


def _lookup(path: Path, key: str, value: str) -> dict[str, str]:
    _require_file(path)
    with path.open("r", encoding="utf-8", newline="") as handle:
        return {row[key].strip(): row[value].strip() for row in csv.DictReader(handle)}


def _utf8_only(reader: Callable[[Path], Iterator[FeedRow]]):
    """Turn a decoding failure anywhere in the file into a clear feed-level error."""

    def read(path: Path) -> Iterator[FeedRow]:
        try:
            yield from reader(path)
        except UnicodeDecodeError as error:
            raise FeedError(
                f"{path.name}: not UTF-8 text (byte {error.start}); re-save the feed as UTF-8"
            ) from error

    read.__doc__ = reader.__doc__
    return read


READERS: dict[str, Callable[[Path], Iterator[FeedRow]]] = {
    "bestbuy": _utf8_only(read_bestbuy),
    "instacart": _utf8_only(read_instacart),
    "jsonl": _utf8_only(read_jsonl),
    "csv": _utf8_only(read_csv),
}


def read_feed(format_name: str, path: Path) -> Iterator[FeedRow]:
    reader = READERS.get(format_name)
    if reader is None:
        raise FeedError(f"unknown feed format {format_name!r}; use one of {sorted(READERS)}")
    return reader(Path(path))
