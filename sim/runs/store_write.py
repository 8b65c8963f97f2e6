"""Writing a run's record tables into the store: column arrays to driver values, then multi-row INSERTs on
SQLite or COPY on PostgreSQL.

The store has one writer (the batch's own process), so a batch with several workers is as fast as this
writer; it therefore does as little per value as it can. Workers hand it column arrays (no frames), and on
SQLite the rows go in as one flat parameter list over statements of many rows each, about 2.5 times faster
than `executemany` over row tuples, which steps SQLite's statement once per row.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import sqlalchemy as sa

from sim.runs.tables import CHILD_TABLES, runs

# bound parameters per INSERT: SQLite's limit before 3.32, and enough rows per statement that stepping the
# statement costs little beside binding the values
MAX_VARIABLES = 999

# Store.save_run's statements, built once: building and keying them anew costs more than SQLite takes to run them
RUN_BY_KEY = sa.select(runs.c.id, runs.c.status).where(runs.c.key == sa.bindparam("key"))
CLEAR_RUN = tuple(t.delete().where(t.c.run_id == sa.bindparam("run_id")) for t in CHILD_TABLES)
RUN_DONE = runs.update().where(runs.c.id == sa.bindparam("run_id")).values(
    status="done", error=None, claimed_by=None, lease_until=None,
    **{k: sa.bindparam(k) for k in ("batch_id", "code_version", "model_hash", "git_sha", "git_dirty", "packages", "host",
                                    "started_at", "finished_at", "wall_seconds")})


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


def insert(c: sa.Connection, table: sa.Table, columns: dict[str, np.ndarray], run_id: int) -> None:
    """Insert one run's rows of a record table (column name -> values, one per row)."""
    names = [col.name for col in table.columns if col.name != "run_id"]
    values = [column_values(columns[name]) for name in names]
    n = len(values[0])
    raw = c.connection.dbapi_connection
    sql = f"INSERT INTO {table.name} ({', '.join(['run_id', *names])}) VALUES "
    if c.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(['run_id', *names])}) FROM STDIN") as copy:
            for row in zip(itertools.repeat(run_id, n), *values):
                copy.write_row(row)
        return
    width = len(names) + 1
    flat = [run_id] * (n * width)  # row after row, run_id first, in the table's column order
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
