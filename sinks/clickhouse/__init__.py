"""ClickHouse storage: embedded chdb under a data directory, or a ClickHouse server.

``ClickHouseSink`` is what the pipeline writes to; ``backend`` runs the SQL (the same text
on both kinds of store); ``migrations/`` holds the versioned schema that ``migrate`` applies.
See docs/storage.md.
"""

from .backend import Backend, ChdbBackend, ClickHouseError, ServerBackend, ServerDsn, open_backend, parse_dsn
from .migrate import migrate
from .sink import ClickHouseSink

__all__ = ["Backend", "ChdbBackend", "ClickHouseError", "ClickHouseSink", "ServerBackend", "ServerDsn",
           "migrate", "open_backend", "parse_dsn"]
