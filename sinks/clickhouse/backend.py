"""Where the SQL runs: embedded chdb under a data directory, or a ClickHouse server over HTTP.

Both backends take the same SQL text and the same settings (:data:`SESSION_SETTINGS`,
:data:`INSERT_SETTINGS`), so migrations, inserts and queries behave the same whichever one a
deployment uses. :func:`open_backend` picks one from the store DSN: anything with a
``clickhouse://``, ``http://`` or ``https://`` scheme is a server, anything else is a directory.

>>> parse_dsn("clickhouse://ops:s3cret@ch.internal:8123/telemetry", env={})
ServerDsn(interface='http', host='ch.internal', port=8123, user='ops', password='***', database='telemetry')
>>> parse_dsn("https://ch.example.com", env={"RAMPARTS_STORE_PASSWORD": "pw"}).port
8443
>>> is_server_dsn("ramparts-data"), is_server_dsn("http://localhost:8123")
(False, True)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from ramparts.errors import SinkError

from .encoding import arrow_stream

SERVER_SCHEMES = ("clickhouse", "clickhouses", "http", "https")

# Applied to every session (chdb) or client (server) so that both give the same results:
# older servers quote 64-bit integers in JSON output, and clickhouse-connect would set
# date_time_input_format itself; pinning them keeps the two paths byte-for-byte alike.
SESSION_SETTINGS: dict[str, str] = {
    "output_format_json_quote_64bit_integers": "0",
    "date_time_input_format": "best_effort",
}

# Every insert runs with these: JSON objects and arrays land in String columns as their JSON
# text (extra, evidence, input/output...), and a null in a column that is not Nullable takes
# the column's default.
INSERT_SETTINGS: dict[str, str] = {
    "input_format_json_read_objects_as_strings": "1",
    "input_format_json_read_arrays_as_strings": "1",
    "input_format_json_read_numbers_as_strings": "1",
    "input_format_null_as_default": "1",
}

# ClickHouse error codes that mean "a value in the data could not be read as its column's
# type": the batch is fine apart from some rows, which can be found and set aside.
DATA_ERROR_CODES = frozenset({6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349, 407, 691})

_CODE_RE = re.compile(r"Code: (\d+)")


class ClickHouseError(SinkError):
    """A statement failed in ClickHouse (chdb or server); ``code`` is ClickHouse's error code."""

    def __init__(self, message: str, *, code: int | None = None, position: str | None = None):
        super().__init__(message, position=position)
        self.code = code

    @property
    def is_data_error(self) -> bool:
        """Whether the statement failed on a value in the inserted data (not on the store)."""
        return self.code in DATA_ERROR_CODES


class Backend(Protocol):
    """The four verbs the sink and the migrations need. Both implementations run the same SQL."""

    kind: str  # "chdb" or "server"
    where: str  # the directory or the server URL, never with a password

    def command(self, sql: str) -> None: ...

    def insert_json(self, table: str, data: bytes | Sequence[Mapping[str, Any]], *,
                    columns: Sequence[str] | None = None, fmt: str = "JSONEachRow") -> None: ...

    def query(self, sql: str) -> list[dict]: ...

    def close(self) -> None: ...

    # Optional: a backend without it gets every insert as JSON rows.
    def insert_arrow(self, table: str, data: Any) -> None: ...


def insert_statement(table: str, columns: Sequence[str] | None) -> str:
    """The INSERT both backends send (the data follows in the request, in its format)."""
    cols = f" ({', '.join(quote_identifier(c) for c in columns)})" if columns else ""
    return f"INSERT INTO {table}{cols}"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _as_block(data: bytes | Sequence[Mapping[str, Any]], fmt: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if fmt != "JSONEachRow":
        raise ValueError(f"rows given as dicts are sent as JSONEachRow, not {fmt}")
    return b"\n".join(orjson.dumps(r) for r in data)


def parse_json_rows(body: bytes) -> list[dict]:
    """JSONEachRow output to a list of dicts."""
    loads = orjson.loads
    return [loads(line) for line in body.split(b"\n") if line]


def _code_of(message: str) -> int | None:
    m = _CODE_RE.search(message)
    return int(m.group(1)) if m else None


def _one_line(message: str, limit: int = 600) -> str:
    # ClickHouse error texts span lines (row dumps, stack hints): keep the first, which
    # says what failed, so that a log line stays a line.
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return first if len(first) <= limit else first[:limit] + "..."


# -- embedded ----------------------------------------------------------------------------

class ChdbBackend:
    """ClickHouse in this process (chdb), its data under ``path``.

    chdb opens one data directory per process at a time (sessions on that directory may be
    many), and a directory is locked by the process that opened it: both limits become a
    :class:`~ramparts.errors.SinkError` that says what to do instead.
    """

    kind = "chdb"

    def __init__(self, path: str | os.PathLike):
        import chdb.session

        self.path = os.path.realpath(os.fspath(path))
        self.where = self.path
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise SinkError(f"cannot create the store directory {self.path}: {e.strerror}; "
                            "choose a writable directory with --store or store.dsn") from None
        try:
            self._session = chdb.session.Session(self.path)
        except Exception as e:  # chdb raises RuntimeError subclasses with the engine's text
            raise self._open_error(str(e)) from e
        self._closed = False
        try:
            for name, value in SESSION_SETTINGS.items():
                self._session.query(f"SET {name} = '{value}'")
        except Exception:
            self.close()
            raise

    def _open_error(self, text: str) -> SinkError:
        m = re.search(r"already initialized with path '([^']*)'", text)
        if m:
            return SinkError(
                f"this process already has the chdb store {m.group(1)} open, and chdb opens one data directory "
                f"per process: close that store first, or use the same directory instead of {self.path}")
        if "Error initializing EmbeddedServer" in text or "Cannot lock file" in text:
            return SinkError(
                f"the store {self.path} is in use by another process (an embedded chdb store can be opened by one "
                "process at a time): stop that process, choose another directory, or point every process at a "
                "ClickHouse server with a clickhouse:// or http(s):// DSN")
        return SinkError(f"cannot open the chdb store {self.path}: {_one_line(text)}")

    def __repr__(self) -> str:
        return f"ChdbBackend({self.path!r})"

    def _failed(self, what: str, e: Exception) -> ClickHouseError:
        text = str(e)
        return ClickHouseError(f"chdb {what} failed in {self.path}: {_one_line(text)}", code=_code_of(text))

    def _check_open(self) -> None:
        if self._closed:
            raise SinkError(f"the chdb store {self.path} is closed; open a new backend")

    def command(self, sql: str) -> None:
        self._check_open()
        try:
            self._session.query(sql)
        except Exception as e:
            raise self._failed("statement", e) from e

    def insert_json(self, table: str, data: bytes | Sequence[Mapping[str, Any]], *,
                    columns: Sequence[str] | None = None, fmt: str = "JSONEachRow") -> None:
        self._check_open()
        block = _as_block(data, fmt)
        settings = ", ".join(f"{k} = {v}" for k, v in INSERT_SETTINGS.items())
        sql = f"{insert_statement(table, columns)} SETTINGS {settings}"
        try:
            # The streaming inserter hands the bytes to the engine as they are; an INSERT whose
            # data is part of the query text costs about twice as much per row.
            with self._session.send_insert(sql, fmt) as ins:
                ins.append(block)
                ins.finish()
        except Exception as e:
            raise self._failed(f"insert into {table}", e) from e

    def insert_arrow(self, table: str, data: Any) -> None:
        """Insert a ``pyarrow.Table`` (its column names are the table's) as an Arrow IPC stream."""
        self._check_open()
        block = arrow_stream(data)
        settings = ", ".join(f"{k} = {v}" for k, v in INSERT_SETTINGS.items())
        sql = f"{insert_statement(table, data.column_names)} SETTINGS {settings}"
        try:
            with self._session.send_insert(sql, "ArrowStream") as ins:
                ins.append(block)
                ins.finish()
        except Exception as e:
            raise self._failed(f"insert into {table}", e) from e

    def query(self, sql: str) -> list[dict]:
        self._check_open()
        try:
            result = self._session.query(sql, "JSONEachRow")
        except Exception as e:
            raise self._failed("query", e) from e
        return parse_json_rows(result.bytes())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._session.close()


# -- server ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerDsn:
    """A parsed server DSN. ``repr`` and ``str`` never show the password."""

    interface: str  # http or https
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str | None = None

    def __repr__(self) -> str:
        pw = "'***'" if self.password else "''"
        return (f"ServerDsn(interface={self.interface!r}, host={self.host!r}, port={self.port}, user={self.user!r}, "
                f"password={pw}, database={self.database!r})")

    @property
    def url(self) -> str:
        """The server's URL, without credentials: safe to print."""
        return f"{self.interface}://{self.host}:{self.port}"


def is_server_dsn(dsn: str) -> bool:
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    return scheme in SERVER_SCHEMES


def mask_dsn(dsn: str) -> str:
    """A DSN with any password replaced by ``***`` (for messages and logs).

    >>> mask_dsn("clickhouse://ops:s3cret@ch:8123/db")
    'clickhouse://ops:***@ch:8123/db'
    """
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)


def parse_dsn(dsn: str, password_env: str = "RAMPARTS_STORE_PASSWORD",
              env: Mapping[str, str] | None = None) -> ServerDsn:
    """A ``clickhouse://`` or ``http(s)://`` DSN to its parts.

    ``clickhouse://`` speaks HTTP (port 8123; ``clickhouses://`` or ``?secure=true``: HTTPS,
    8443), as clickhouse-connect does. The password is the DSN's, or else the value of the
    ``password_env`` variable; the user defaults to ``default``; the path names the database.
    """
    env = os.environ if env is None else env
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError as e:
        raise SinkError(f"store DSN {mask_dsn(dsn)} is not valid ({e}); expected "
                        "clickhouse://user:password@host:port/database or http(s)://host:port") from None
    scheme = parts.scheme.lower()
    if scheme not in SERVER_SCHEMES:
        raise SinkError(f"store DSN scheme {scheme!r} is not supported; use a directory (embedded chdb), "
                        "clickhouse://, http:// or https://")
    if not parts.hostname:
        raise SinkError(f"store DSN {mask_dsn(dsn)} names no host; expected clickhouse://host:port/database")
    query = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items()}
    secure = scheme in ("https", "clickhouses") or query.get("secure", "").lower() in ("1", "true", "yes")
    interface = "https" if secure else "http"
    password = unquote(parts.password) if parts.password is not None else (env.get(password_env) or "")
    database = unquote(parts.path.strip("/")) or None
    return ServerDsn(interface=interface, host=parts.hostname, port=port or (8443 if secure else 8123),
                     user=unquote(parts.username) if parts.username else "default", password=password,
                     database=database)


class ServerBackend:
    """A ClickHouse server through clickhouse-connect (HTTP interface)."""

    kind = "server"

    def __init__(self, dsn: str | ServerDsn, password_env: str = "RAMPARTS_STORE_PASSWORD",
                 connect_timeout: float = 10, send_receive_timeout: float = 300):
        import clickhouse_connect

        self.dsn = dsn if isinstance(dsn, ServerDsn) else parse_dsn(dsn, password_env)
        self.where = self.dsn.url
        try:
            self._client = clickhouse_connect.get_client(
                host=self.dsn.host, port=self.dsn.port, interface=self.dsn.interface,
                username=self.dsn.user, password=self.dsn.password,
                settings=dict(SESSION_SETTINGS), connect_timeout=connect_timeout,
                send_receive_timeout=send_receive_timeout,
                # No server-side session: every request stands alone, so a retried or
                # concurrent request cannot trip over another's session lock.
                autogenerate_session_id=False)
        except Exception as e:
            raise SinkError(f"cannot connect to the ClickHouse server at {self.where} as {self.dsn.user}: "
                            f"{self._scrub(_one_line(str(e)))}; check the DSN, that the server is up, and the "
                            f"password (from the DSN or the password environment variable)") from e

    def __repr__(self) -> str:
        return f"ServerBackend({self.dsn!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self.dsn.password, "***") if self.dsn.password else text

    def _failed(self, what: str, e: Exception) -> ClickHouseError:
        text = str(e)
        code = getattr(e, "code", None)
        if not isinstance(code, int):
            code = _code_of(text)
        return ClickHouseError(f"ClickHouse server {self.where}: {what} failed: {self._scrub(_one_line(text))}",
                               code=code)

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except Exception as e:
            raise self._failed("statement", e) from e

    def insert_json(self, table: str, data: bytes | Sequence[Mapping[str, Any]], *,
                    columns: Sequence[str] | None = None, fmt: str = "JSONEachRow") -> None:
        block = _as_block(data, fmt)
        try:
            self._client.raw_insert(table, column_names=list(columns) if columns else None, insert_block=block,
                                    settings=dict(INSERT_SETTINGS), fmt=fmt)
        except Exception as e:
            raise self._failed(f"insert into {table}", e) from e

    def insert_arrow(self, table: str, data: Any) -> None:
        """Insert a ``pyarrow.Table`` as an Arrow IPC stream (the body of ``INSERT ... FORMAT ArrowStream``)."""
        block = arrow_stream(data)
        try:
            self._client.raw_insert(table, column_names=list(data.column_names), insert_block=block,
                                    settings=dict(INSERT_SETTINGS), fmt="ArrowStream")
        except Exception as e:
            raise self._failed(f"insert into {table}", e) from e

    def query(self, sql: str) -> list[dict]:
        try:
            body = self._client.raw_query(sql, fmt="JSONEachRow")
        except Exception as e:
            raise self._failed("query", e) from e
        return parse_json_rows(body)

    def close(self) -> None:
        self._client.close()


def open_backend(dsn: str, password_env: str = "RAMPARTS_STORE_PASSWORD") -> Backend:
    """The backend a store DSN names: a server for ``clickhouse://`` / ``http(s)://``, else a directory."""
    if "://" in dsn and not is_server_dsn(dsn):
        parse_dsn(dsn, password_env)  # raises the "scheme not supported" error
    if is_server_dsn(dsn):
        return ServerBackend(dsn, password_env)
    return ChdbBackend(dsn)
