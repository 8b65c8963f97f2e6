"""Opening a results store safely: the URL checked (empty, in-memory, malformed, unsupported) and shown
without its password, SQLite files opened read-only when they cannot be written (so `report` and `export`
read a store in a read-only folder), and a schema that does not match its recorded revision reported as
what it is rather than as an SQL error.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from sim.cli_defaults import DEFAULT_URL
from sim.redact import mask_url, scrub

URL_FORMS = ("expected sqlite:///relative/path.db, sqlite:////absolute/path.db or "
             "postgresql+psycopg://user@host:5432/dbname")


class StoreError(Exception):
    """The database cannot be opened or used; the message says which and why."""


def resolve_url(url: str | None) -> str:
    """The database URL: the argument, else $SIM_DB_URL (unless empty), else the default SQLite file; an empty
    argument is a StoreError, never a silent fallback to the default store."""
    if url is not None:
        if not url.strip():
            raise StoreError(f"--db is empty; give a database URL ({URL_FORMS}), or leave --db out to use "
                             f"$SIM_DB_URL or {DEFAULT_URL}")
        return url.strip()
    return os.environ.get("SIM_DB_URL", "").strip() or DEFAULT_URL


def parse_url(raw: str) -> tuple[sa.engine.URL, str]:
    """The parsed URL and its masked form; a StoreError for a malformed, unsupported or in-memory URL."""
    shown = mask_url(raw)
    try:
        u = sa.engine.make_url(raw)
    except (ArgumentError, ValueError, TypeError):
        raise StoreError(f"database URL {shown!r} is malformed; {URL_FORMS}") from None
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"database URL {shown!r}: {u.get_backend_name()!r} is not supported; {URL_FORMS}")
    if u.get_backend_name() == "sqlite" and (u.database in (None, "", ":memory:") or "mode=memory" in raw):
        raise StoreError(f"database URL {shown!r} is an in-memory SQLite database, whose results would vanish when "
                         f"the command ends; give a file, e.g. {DEFAULT_URL}")
    return u, shown


def sqlite_read_only(path: Path) -> bool:
    """Whether an existing SQLite file must be opened read-only: it, or its folder (where SQLite keeps the
    -wal and -shm files), cannot be written."""
    return not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK)


def read_only_engine(path: Path) -> sa.Engine:
    """An engine that only reads the SQLite file (mode=ro; immutable when its folder is read-only and it has no
    write-ahead log, since SQLite could not make one there)."""
    wal = path.with_name(path.name + "-wal")
    immutable = not os.access(path.parent, os.W_OK) and not wal.exists()
    uri = f"file:{quote(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
    return sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, timeout=60,
                                                                          check_same_thread=False))


def missing_tables(engine: sa.Engine, metadata: sa.MetaData) -> list[str]:
    """Tables of this code's schema that the database lacks."""
    have = set(sa.inspect(engine).get_table_names())
    return [t for t in metadata.tables if t not in have]


def reason(e: BaseException, raw_url: str) -> str:
    """The first line of a database error, with any password scrubbed."""
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return scrub(text[0] if text else e.__class__.__name__, raw_url)


def locked(cause: str) -> bool:
    """Whether a database error says another connection holds a lock (not a full disk or an I/O error)."""
    return any(w in cause.lower() for w in ("locked", "busy", "lock timeout", "deadlock"))


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses at most the last commits
    # A batch commits about 0.3 MB per run. Checkpointing every 16 MB of log rather than SQLite's 4 MB copies the
    # pages every run rewrites (the tables' last leaves) and syncs the file a quarter as often: about 10% off
    # the single writer's time per run
    cur.execute("PRAGMA wal_autocheckpoint=4000")
    cur.close()


def _sqlite_run_writer(dbapi_conn, record) -> None:
    _sqlite_pragmas(dbapi_conn, record)
    # Every row this connection writes refers to the run row it has just read or written in the same transaction,
    # under SQLite's write lock, so the check SQLite makes per child row (a lookup in runs, some 9,000 per
    # trial-sized run) cannot fail; it costs about an eighth of the writer's time. The setting is per connection
    # and for good: changing it inside each run's work would make SQLite prepare every statement again.
    dbapi_conn.execute("PRAGMA foreign_keys=OFF")


def run_writer(engine: sa.Engine) -> sa.Engine:
    """The engine that stores runs: on SQLite a second one on the same file, without foreign-key checks (the
    tables' other writes keep them); otherwise `engine` itself."""
    if engine.dialect.name != "sqlite":
        return engine
    writer = sa.create_engine(engine.url, connect_args={"timeout": 60})
    sa.event.listen(writer, "connect", _sqlite_run_writer)
    sa.event.listen(writer, "begin", _sqlite_begin)
    return writer


def _sqlite_begin(conn: sa.Connection) -> None:
    # Take the write lock at BEGIN: a second process waits (busy timeout) instead of failing mid-run.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_reader(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below); a read-only file takes no pragmas


def _sqlite_begin_read(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def sqlite_hooks(engine: sa.Engine, read_only: bool) -> None:
    """Per-connection settings of a SQLite engine: WAL and BEGIN IMMEDIATE for writers; plain BEGIN for a
    read-only file."""
    sa.event.listen(engine, "connect", _sqlite_reader if read_only else _sqlite_pragmas)
    sa.event.listen(engine, "begin", _sqlite_begin_read if read_only else _sqlite_begin)
