"""Writing the record tables of finished runs into the store, several runs at once: column arrays to driver
values, then multi-row INSERTs on SQLite or COPY on PostgreSQL.

The store has one writer (the batch's own process), so a batch with several workers is as fast as this
writer; it therefore does as little per value and per run as it can. Workers hand it column arrays (no frames,
and a run's assessments already packed into one row), a stack's runs go in together, and on
SQLite the rows go in as one flat parameter list over statements of many rows each, about 2.5 times faster
than `executemany` over row tuples, which steps SQLite's statement once per row.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np
import pandas as pd
import sqlalchemy as sa

from sim.runs.records import Columns, RunRecords
from sim.runs.tables import (
    CHILD_TABLES,
    arm_days,
    assessment_scores,
    participant_weeks,
    participants,
    runs,
)

# bound parameters per INSERT: SQLite's limit before 3.32, and enough rows per statement that stepping the
# statement costs little beside binding the values
MAX_VARIABLES = 999

# each record table with the name a run's records give it
RECORD_TABLES = ((arm_days, "daily"), (participants, "participants"), (assessment_scores, "assessments"))
# what marking a run done sets from its provenance, in this order, then the run's id
DONE_VALUES = ("batch_id", "code_version", "model_hash", "git_sha", "git_dirty", "packages", "host", "started_at",
               "finished_at", "wall_seconds")
KEYS_PER_STATEMENT = 500


class RunRow(NamedTuple):
    """A run's row in the runs table, as storing it needs it."""

    id: int
    status: str


# Store.save_runs's statements on the runs table go to the driver as SQL text, as the record tables' INSERTs do:
# SQLAlchemy's per-statement work (rendering an expanding IN, an execution context, each row's parameters through
# its type processors in Python) cost about 0.3 ms a transaction more, several transactions per batch on the one
# writer (docs/performance.md). Values still go through the column types' own bind processors, so they are
# stored as SQLAlchemy stores them.
def _marks(c: sa.Connection, n: int) -> str:
    # the driver's positional parameter: psycopg's on PostgreSQL, sqlite3's on SQLite (the store's two backends)
    return ", ".join(["%s" if c.dialect.name == "postgresql" else "?"] * n)


def run_rows(c: sa.Connection, keys: list[str]) -> dict[str, RunRow]:
    """The runs table's rows (id, status) of those of these run keys it holds, by key."""
    key = c.dialect.identifier_preparer.quote("key")
    found = {}
    with contextlib.closing(c.connection.dbapi_connection.cursor()) as cur:
        for k in range(0, len(keys), KEYS_PER_STATEMENT):
            part = keys[k:k + KEYS_PER_STATEMENT]
            cur.execute(f"SELECT {key}, id, status FROM {runs.name} WHERE {key} IN ({_marks(c, len(part))})", part)
            found.update((row[0], RunRow(row[1], row[2])) for row in cur.fetchall())
    return found


def _for_ids(c: sa.Connection, statements: list[str], run_ids: list[int]) -> None:
    """Execute each statement (each ending in `IN`) over the run ids, KEYS_PER_STATEMENT at a time."""
    with contextlib.closing(c.connection.dbapi_connection.cursor()) as cur:
        for k in range(0, len(run_ids), KEYS_PER_STATEMENT):
            part = run_ids[k:k + KEYS_PER_STATEMENT]
            for sql in statements:
                cur.execute(f"{sql} ({_marks(c, len(part))})", part)


def clear_runs(c: sa.Connection, run_ids: list[int]) -> None:
    """Remove every record row of these runs."""
    _for_ids(c, [f"DELETE FROM {table.name} WHERE run_id IN" for table in CHILD_TABLES], run_ids)


def unclaim(c: sa.Connection, run_ids: list[int]) -> None:
    """Clear the claims on these runs."""
    _for_ids(c, [f"UPDATE {runs.name} SET claimed_by = NULL, lease_until = NULL WHERE id IN"], run_ids)


def mark_done(c: sa.Connection, rows: list[tuple]) -> None:
    """Mark runs done, their claims released: each row the DONE_VALUES of one run, then its id."""
    mark, quote = _marks(c, 1), c.dialect.identifier_preparer.quote
    to_driver = [runs.c[name].type.dialect_impl(c.dialect).bind_processor(c.dialect) for name in DONE_VALUES]
    sql = (f"UPDATE {runs.name} SET status = 'done', error = NULL, claimed_by = NULL, lease_until = NULL, "
           + ", ".join(f"{quote(name)} = {mark}" for name in DONE_VALUES) + f" WHERE id = {mark}")
    params = [[v if f is None else f(v) for f, v in zip(to_driver, row[:-1])] + [row[-1]] for row in rows]
    with contextlib.closing(c.connection.dbapi_connection.cursor()) as cur:
        cur.executemany(sql, params)


def column_values(arr: np.ndarray) -> list:
    """A column as Python values with missing ones as None (drivers take neither NumPy scalars nor NaN)."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        missing = np.isnan(arr)
    elif arr.dtype.kind == "O":
        missing = pd.isna(arr)
    else:
        return arr.tolist()
    if not missing.any():
        return arr.tolist()
    values = arr.astype(object)
    values[missing] = None
    return values.tolist()


def write_records(c: sa.Connection, run_ids: list[int], recs: list[RunRecords], panel: bool) -> None:
    """Write the record tables of several runs (with the weekly panel if `panel`), replacing any rows they had."""
    clear_runs(c, run_ids)  # a failed earlier attempt leaves no rows, but be sure
    for table, name in RECORD_TABLES + (((participant_weeks, "weekly"),) if panel else ()):
        parts = [r.tables[name] for r in recs]
        rows = [len(next(iter(p.values()))) for p in parts]
        joined = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        insert(c, table, joined, np.repeat(run_ids, rows))


def insert(c: sa.Connection, table: sa.Table, columns: Columns, run_id: int | np.ndarray) -> None:
    """Insert rows of a record table (column name -> values, one per row) of one run, or of several with
    `run_id` giving each row's run."""
    names = [col.name for col in table.columns if col.name != "run_id"]
    values = [column_values(columns[name]) for name in names]
    n = len(values[0])
    ids = [run_id] * n if np.ndim(run_id) == 0 else np.asarray(run_id).tolist()
    raw = c.connection.dbapi_connection
    sql = f"INSERT INTO {table.name} ({', '.join(['run_id', *names])}) VALUES "
    if c.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(['run_id', *names])}) FROM STDIN") as copy:
            for row in zip(ids, *values):
                copy.write_row(row)
        return
    width = len(names) + 1
    flat = [None] * (n * width)  # row after row, run_id first, in the table's column order
    flat[0::width] = ids
    for j, v in enumerate(values, 1):
        flat[j::width] = v
    per = max(1, MAX_VARIABLES // width)
    step, row = per * width, "(" + ", ".join("?" * width) + ")"
    whole = len(flat) - len(flat) % step
    cur = raw.cursor()
    try:
        if whole:
            many = sql + ", ".join([row] * per)
            for k in range(0, whole, step):
                cur.execute(many, flat[k:k + step])
        if whole < len(flat):  # the last rows, fewer than a statement's worth: one statement text for any number
            rest = iter(flat[whole:])
            cur.executemany(sql + row, zip(*[rest] * width))
    finally:
        cur.close()
