"""Feed import: read a merchant's product feed, validate every row, upsert in batches.

``import_feed`` is the one entry point (management command, console upload task and tests all
call it); ``READERS`` maps a feed format name to the reader that turns a file into rows.
"""

from catalog.importers.base import FeedRow, ImportReport, RowError, import_feed
from catalog.importers.readers import READERS, read_feed

__all__ = ["READERS", "FeedRow", "ImportReport", "RowError", "import_feed", "read_feed"]
