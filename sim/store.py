"""The results store (SQLAlchemy): scenarios, batches, runs with provenance, and their records.

SQLite (WAL) under results/ by default, any SQLAlchemy URL otherwise. One writer: workers return
records and `Store.save_run` writes each finished run in a single transaction, keyed by an
idempotent run key, so an interrupted batch resumes without losing or doubling anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from sim import provenance
from sim.records import DAILY_COLUMNS, RunRecords
from sim.scenario import TRAITS, LoadedScenario

DEFAULT_URL = "sqlite:///results/sim.db"

metadata = sa.MetaData()
scenarios = sa.Table(
    "scenarios", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(80), nullable=False, index=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
batches = sa.Table(
    "batches", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("scenario_id", sa.ForeignKey("scenarios.id"), nullable=False),
    sa.Column("replicates", sa.Integer, nullable=False),
    sa.Column("code_version", sa.String(80), nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
)
runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("scenario_id", sa.ForeignKey("scenarios.id"), nullable=False),
    sa.Column("batch_id", sa.ForeignKey("batches.id")),
    sa.Column("arm", sa.String(80), nullable=False),
    sa.Column("replicate", sa.Integer, nullable=False),
    sa.Column("seed", sa.String(80), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # pending | done | failed
    sa.Column("code_version", sa.String(80)),
    sa.Column("git_sha", sa.String(40)),
    sa.Column("git_dirty", sa.Boolean),
    sa.Column("packages", sa.Text),
    sa.Column("host", sa.String(255)),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("wall_seconds", sa.Float),
    sa.Column("error", sa.Text),
)
arm_days = sa.Table(
    "arm_days", metadata,
    sa.Column("run_id", sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    *(sa.Column(c, sa.Float) for c in DAILY_COLUMNS),
)
PARTICIPANT_COLUMNS = (
    *TRAITS, "habit_rate", "dropout_day", "adherence", "minutes_per_week_programme",
    "minutes_per_week_follow_up", "severity_end_programme", "severity_end", "self_efficacy_end_programme",
    "habit_end_programme", "reserve_end_programme", "cognitive_control_end_programme",
    "reward_sensitivity_end_programme",
)
participants = sa.Table(
    "participants", metadata,
    sa.Column("run_id", sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("pid", sa.Integer, primary_key=True),
    sa.Column("subgroup", sa.String(80)),
    sa.Column("augmented", sa.Boolean),
    sa.Column("sessions_planned", sa.Integer),
    sa.Column("sessions_done", sa.Integer),
    *(sa.Column(c, sa.Float) for c in PARTICIPANT_COLUMNS),
)
participant_weeks = sa.Table(
    "participant_weeks", metadata,
    sa.Column("run_id", sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("pid", sa.Integer, primary_key=True),
    sa.Column("week", sa.Integer, primary_key=True),
    sa.Column("severity", sa.Float),
    sa.Column("minutes", sa.Float),
)
CHILD_TABLES = (arm_days, participants, participant_weeks)


class StoreError(Exception):
    """The database cannot be opened or used; the message says which and why."""


def resolve_url(url: str | None) -> str:
    """The database URL: the argument, else $SIM_DB_URL, else the default SQLite file."""
    return url or os.environ.get("SIM_DB_URL") or DEFAULT_URL


def run_key(scenario_sha: str, arm: str, replicate: int, seed: str) -> str:
    """Idempotent key of a run: the same scenario text, arm and seed always give the same key."""
    return hashlib.sha256(f"{scenario_sha}|{arm}|{replicate}|{seed}".encode()).hexdigest()[:32]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Store:
    """A connection to the results database."""

    def __init__(self, url: str | None = None):
        self.url = resolve_url(url)
        try:
            u = sa.engine.make_url(self.url)
        except ArgumentError:
            raise StoreError(f"database URL {self.url!r} is malformed; expected e.g. sqlite:///results/sim.db "
                             "or postgresql+psycopg://user@host/db") from None
        try:
            if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(u, connect_args={"timeout": 60} if u.get_backend_name() == "sqlite" else {})
        except (ImportError, SQLAlchemyError, OSError, ValueError) as e:
            raise StoreError(f"cannot use database {self.url!r}: {e.__class__.__name__}: {e}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
        except (SQLAlchemyError, ValueError, OSError) as e:
            reason = getattr(e, "orig", None) or e
            raise StoreError(f"cannot open database {self.url!r}: {reason}") from None

    def add_scenario(self, loaded: LoadedScenario) -> int:
        """Id of the scenario text in the store, adding it if new."""
        with self.engine.begin() as c:
            row = c.execute(sa.select(scenarios.c.id).where(scenarios.c.sha256 == loaded.sha256)).first()
            if row:
                return row.id
            return c.execute(scenarios.insert().values(
                name=loaded.scenario.name, sha256=loaded.sha256, path=loaded.path, text=loaded.text,
                created_at=_now())).inserted_primary_key[0]

    def start_batch(self, scenario_id: int, replicates: int) -> int:
        """Record the start of a batch and return its id."""
        with self.engine.begin() as c:
            return c.execute(batches.insert().values(
                scenario_id=scenario_id, replicates=replicates, code_version=provenance.code_version(),
                started_at=_now())).inserted_primary_key[0]

    def finish_batch(self, batch_id: int) -> None:
        """Stamp the batch's end time."""
        with self.engine.begin() as c:
            c.execute(batches.update().where(batches.c.id == batch_id).values(finished_at=_now()))

    def done_keys(self, keys: list[str]) -> set[str]:
        """Those of the keys whose runs are stored complete."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(runs.c.key).where(runs.c.status == "done")).scalars()
            wanted = set(keys)
            return {k for k in rows if k in wanted}

    def _run_row(self, c, key: str, scenario_id: int, batch_id: int, rec_arm: str, replicate: int,
                 seed: str) -> int:
        row = c.execute(sa.select(runs.c.id).where(runs.c.key == key)).first()
        if row is None:
            return c.execute(runs.insert().values(key=key, scenario_id=scenario_id, batch_id=batch_id,
                                                  arm=rec_arm, replicate=replicate, seed=seed,
                                                  status="pending")).inserted_primary_key[0]
        for t in CHILD_TABLES:  # a previous attempt may have left a failed run; start it clean
            c.execute(t.delete().where(t.c.run_id == row.id))
        return row.id

    def save_run(self, key: str, scenario_id: int, batch_id: int, rec: RunRecords) -> None:
        """Store one finished run and its records in a single transaction."""
        sha, dirty = provenance.git_state()
        finished = _now()
        with self.engine.begin() as c:
            run_id = self._run_row(c, key, scenario_id, batch_id, rec.arm, rec.replicate, rec.seed)
            c.execute(arm_days.insert(), _rows(rec.daily, run_id))
            parts = rec.participants[["pid", "subgroup", "augmented", "sessions_planned", "sessions_done",
                                      *PARTICIPANT_COLUMNS]]
            c.execute(participants.insert(), _rows(parts, run_id))
            c.execute(participant_weeks.insert(), _rows(rec.weekly, run_id))
            c.execute(runs.update().where(runs.c.id == run_id).values(
                status="done", batch_id=batch_id, code_version=provenance.code_version(), git_sha=sha,
                git_dirty=dirty, packages=provenance.package_versions(), host=provenance.host(),
                started_at=finished - dt.timedelta(seconds=rec.wall_seconds), finished_at=finished,
                wall_seconds=rec.wall_seconds, error=None))

    def save_failure(self, key: str, scenario_id: int, batch_id: int, arm: str, replicate: int, seed: str,
                     error: str) -> None:
        """Mark a run as failed with its error text (it runs again next time)."""
        with self.engine.begin() as c:
            run_id = self._run_row(c, key, scenario_id, batch_id, arm, replicate, seed)
            c.execute(runs.update().where(runs.c.id == run_id).values(status="failed", error=error,
                                                                       finished_at=_now()))


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _rows(df: pd.DataFrame, run_id: int) -> list[dict]:
    out = df.astype(object).where(df.notna(), None).to_dict("records")
    for r in out:
        r["run_id"] = run_id
    return out
