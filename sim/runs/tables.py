"""The results store's tables (SQLAlchemy Core): scenarios, batches, runs with provenance, their records and sweeps.

`sim.runs.store` opens a store and re-exports these; the migrations under `migrations/` build exactly this schema.
"""

from __future__ import annotations

import sqlalchemy as sa

from sim.runs.records import DAILY_COLUMNS, HABIT_COLUMNS, MEASURED_COLUMNS
from sim.scenario import TRAITS

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
    sa.Column("command", sa.Text),
    sa.Column("executor", sa.String(40)),
    sa.Column("record", sa.String(80)),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("wall_seconds", sa.Float),
    sa.Column("store_seconds", sa.Float),
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
    sa.Column("status", sa.String(10), nullable=False),  # running | done | failed
    sa.Column("code_version", sa.String(80)),
    sa.Column("model_hash", sa.String(16), index=True),
    sa.Column("git_sha", sa.String(40)),
    sa.Column("git_dirty", sa.Boolean),
    sa.Column("packages", sa.Text),
    sa.Column("host", sa.String(255)),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("wall_seconds", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("claimed_by", sa.String(120)),  # host:pid of the process computing it (sim.runs.claims)
    sa.Column("lease_until", sa.DateTime),  # the claim holds until then unless renewed
)
arm_days = sa.Table(
    "arm_days", metadata,
    sa.Column("run_id", sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    *(sa.Column(c, sa.Float) for c in DAILY_COLUMNS),
    sqlite_with_rowid=False,
)
PARTICIPANT_COLUMNS = (
    *TRAITS, "habit_rate", "dropout_day", "adherence", "minutes_per_week_programme",
    "minutes_per_week_follow_up", "severity_end_programme", "severity_end", "self_efficacy_end_programme",
    "habit_end_programme", "reserve_end_programme", "cognitive_control_end_programme",
    "reward_sensitivity_end_programme", *HABIT_COLUMNS, *MEASURED_COLUMNS,
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
    sa.Column("sessions", sa.Integer),
    sqlite_with_rowid=False,
)
assessment_scores = sa.Table(  # the trial's assessments, one row per run (records.pack_assessments)
    "assessment_scores", metadata,
    sa.Column("run_id", sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("weeks", sa.Text, nullable=False),  # JSON: the run's scheduled assessment weeks
    sa.Column("scores", sa.Text, nullable=False),  # JSON: per participant (pid order), a score or null per week
)
# On SQLite the narrow record tables are kept WITHOUT ROWID: a row then lives in one B-tree, ordered by its
# primary key, rather than in the table and again in the key's index. A batch's single writer inserts a third
# fewer B-tree entries per run (12% of its time) and a store takes 45% less room (migration 0007). The wide
# participants rows are better off in a rowid table (SQLite's advice for rows over a twentieth of a page).
CHILD_TABLES = (arm_days, participants, participant_weeks, assessment_scores)
sweeps = sa.Table(
    "sweeps", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(80), nullable=False, index=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),  # of the sweep file and its base scenario
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("design", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
sweep_points = sa.Table(
    "sweep_points", metadata,
    sa.Column("sweep_id", sa.ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("point", sa.Integer, primary_key=True),  # -1 is the base scenario at its own values
    sa.Column("scenario_id", sa.ForeignKey("scenarios.id"), nullable=False, index=True),
    sa.Column("factors", sa.Text, nullable=False),  # JSON: factor name -> the design's value
)
