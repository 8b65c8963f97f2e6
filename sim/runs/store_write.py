"""Writing the record tables of finished runs into the store, several runs at once: column arrays to driver
values, then multi-row INSERTs on SQLite or COPY on PostgreSQL.

The store has one writer (the batch's own process), so a batch with several workers is as fast as this
writer; it therefore does as little per value and per run as it can. Workers hand it column arrays (no frames,
and a run's assessments already packed into one row), a stack's runs go in together, and on
SQLite the rows go in as one flat parameter list over statements of many rows each, about 2.5 times faster
than `executemany` over row tuples, which steps SQLite's statement once per row.
"""

from __future__ import annotations

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

# Store.save_runs's statements, built once: building and keying them anew costs more than SQLite takes to run them
RUNS_BY_KEYS = sa.select(runs.c.key, runs.c.id, runs.c.status).where(runs.c.key.in_(sa.bindparam("keys", expanding=True)))
CLEAR_RUNS = tuple(t.delete().where(t.c.run_id.in_(sa.bindparam("run_ids", expanding=True))) for t in CHILD_TABLES)
# each record table with the name a run's records give it
RECORD_TABLES = ((arm_days, "daily"), (participants, "participants"), (assessment_scores, "assessments"))
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


def write_records(c: sa.Connection, run_ids: list[int], recs: list[RunRecords], panel: bool) -> None:
    """Write the record tables of several runs (with the weekly panel if `panel`), replacing any rows they had."""
    for stmt in CLEAR_RUNS:  # a failed earlier attempt leaves no rows, but be sure
        c.execute(stmt, {"run_ids": run_ids})
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
