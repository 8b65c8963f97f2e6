"""Read stored results back as pandas DataFrames (for the CLI, reports and notebooks).

    from sim.runs import results, store
    db = store.Store()                                   # or Store("postgresql+psycopg://...")
    results.runs(db, scenario="standard_prescription")   # one row per run, with provenance
    results.table(db, "participants", scenario="standard_prescription", arm="exercise")
    results.batch_results(db, 3).participants            # everything batch 3 reports, reused runs included

`runs` and `table` filter rows as asked: `batch=` keeps the runs that batch computed and stored (a resumed
or repeated batch reuses runs an earlier batch stored, and those keep their first batch id), and a
scenario name alone spans every model-code version that ran it (filter with `model_hash=`).
`scenario_results` and `batch_results` give one consistent set: one scenario text, one model version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from sim import outputs
from sim.runs import provenance
from sim.runs import store as st
from sim.runs.records import unpack_assessments

# each record table by the name it is read and exported as; the assessments are stored one row per run
# (assessment_scores) and read back one row per assessment made
TABLES = {"arm_days": st.arm_days, "participants": st.participants, "participant_weeks": st.participant_weeks,
          "assessments": st.assessment_scores}


def _run_query(scenario: str | None, batch: int | None, arm: str | None, status: str | None,
               model_hash: str | None = None) -> sa.Select:
    q = (sa.select(st.runs, st.scenarios.c.name.label("scenario"), st.scenarios.c.sha256.label("scenario_sha256"))
         .join(st.scenarios, st.runs.c.scenario_id == st.scenarios.c.id))
    if scenario is not None:  # a name, or a text hash (or its prefix)
        q = q.where(sa.or_(st.scenarios.c.name == scenario, st.scenarios.c.sha256.startswith(scenario)))
    if batch is not None:
        q = q.where(st.runs.c.batch_id == batch)
    if arm is not None:
        q = q.where(st.runs.c.arm == arm)
    if status is not None:
        q = q.where(st.runs.c.status == status)
    if model_hash is not None:
        q = q.where(st.runs.c.model_hash == model_hash)
    return q


def runs(db: st.Store, scenario: str | None = None, batch: int | None = None, arm: str | None = None,
         status: str | None = "done", model_hash: str | None = None) -> pd.DataFrame:
    """Runs with their provenance, filtered by scenario (name or hash), batch, arm, status and the hash
    of the model code that made them."""
    with db.engine.connect() as c:
        return pd.read_sql(_run_query(scenario, batch, arm, status, model_hash).order_by(st.runs.c.id), c)


def table(db: st.Store, name: str, scenario: str | None = None, batch: int | None = None,
          arm: str | None = None, model_hash: str | None = None) -> pd.DataFrame:
    """One record table ('arm_days', 'participants', 'participant_weeks', 'assessments') for the finished
    runs selected,
    with scenario, arm, replicate and seed columns in front."""
    if name not in TABLES:
        raise ValueError(f"table {name!r} is not one of {', '.join(TABLES)}")
    t = TABLES[name]
    sel = _run_query(scenario, batch, arm, "done", model_hash).subquery()
    q = (sa.select(sel.c.scenario, sel.c.arm, sel.c.replicate, sel.c.seed, *[c for c in t.columns])
         .join(sel, sel.c.id == t.c.run_id).order_by(t.c.run_id))
    with db.engine.connect() as c:
        df = pd.read_sql(q, c)
    return _assessment_rows(df) if t is st.assessment_scores else df


def _assessment_rows(packed: pd.DataFrame) -> pd.DataFrame:
    """Stored assessment rows (one per run: the run's columns, then weeks and scores) as one row per
    assessment made: the run's columns, then pid, week and score."""
    front = [c for c in packed.columns if c not in ("weeks", "scores")]
    parts = [unpack_assessments(w, s) for w, s in zip(packed.weeks, packed.scores)]
    counts = [len(p["pid"]) for p in parts]
    rows = {c: np.repeat(packed[c].to_numpy(), counts) for c in front}
    for col, dtype in (("pid", np.int64), ("week", np.int64), ("score", float)):
        rows[col] = np.concatenate([p[col] for p in parts]) if parts else np.array([], dtype=dtype)
    return pd.DataFrame(rows)


@dataclass
class ScenarioResults:
    """The stored, finished runs of one scenario text, as frames keyed by arm and replicate."""

    name: str
    sha256: str
    text: str
    runs: pd.DataFrame
    daily: pd.DataFrame
    participants: pd.DataFrame
    weekly: pd.DataFrame  # empty unless the runs recorded the participant-weekly panel
    assessments: pd.DataFrame  # the trial's assessments (arm, replicate, pid, week, score)


def scenario_results(db: st.Store, sha256: str, replicates: int | None = None,
                     model_hash: str | None = None) -> ScenarioResults:
    """Done runs of the scenario with this text hash, made by the current model code unless another
    `model_hash` is given (replicates below `replicates` if given)."""
    model_hash = model_hash or provenance.model_hash()
    with db.engine.connect() as c:
        sc = c.execute(sa.select(st.scenarios).where(st.scenarios.c.sha256 == sha256)).one()

    def keep(df: pd.DataFrame, drop: tuple[str, ...] = ("scenario", "seed", "run_id")) -> pd.DataFrame:
        df = df if replicates is None else df[df.replicate < replicates]
        return df.drop(columns=list(drop), errors="ignore").reset_index(drop=True)

    return ScenarioResults(
        name=sc.name, sha256=sha256, text=sc.text, runs=keep(runs(db, sha256, model_hash=model_hash), ()),
        daily=keep(table(db, "arm_days", sha256, model_hash=model_hash)),
        participants=keep(table(db, "participants", sha256, model_hash=model_hash)),
        weekly=keep(table(db, "participant_weeks", sha256, model_hash=model_hash)),
        assessments=keep(table(db, "assessments", sha256, model_hash=model_hash)))


def batch_model_hash(db: st.Store, batch_id: int) -> str:
    """The model code a batch ran: that of the runs it stored, else of the latest run of its scenario it reused."""
    q = sa.select(st.runs.c.model_hash).where(st.runs.c.status == "done", st.runs.c.model_hash.is_not(None))
    with db.engine.connect() as c:
        own = list(c.execute(q.where(st.runs.c.batch_id == batch_id)).scalars())
        if own:
            return max(set(own), key=own.count)
        sid = c.execute(sa.select(st.batches.c.scenario_id).where(st.batches.c.id == batch_id)).scalar_one()
        later = q.where(st.runs.c.scenario_id == sid).order_by(st.runs.c.finished_at.desc()).limit(1)
        return c.execute(later).scalar() or provenance.model_hash()


def batch_results(db: st.Store, batch_id: int) -> ScenarioResults:
    """The finished runs a batch covers (its scenario text, its replicates, the model code it ran),
    whether the batch computed them or reused them from an earlier one; KeyError if there is no such batch."""
    with db.engine.connect() as c:
        row = c.execute(sa.select(st.batches.c.replicates, st.scenarios.c.sha256)
                        .join(st.scenarios, st.batches.c.scenario_id == st.scenarios.c.id)
                        .where(st.batches.c.id == batch_id)).first()
    if row is None:
        raise KeyError(f"batch {batch_id} is not in {db.url}")
    return scenario_results(db, row.sha256, row.replicates, model_hash=batch_model_hash(db, batch_id))


def export(db: st.Store, out: Path, fmt: str, scenario: str | None = None) -> list[Path]:
    """Write runs and every record table as parquet or csv files into `out`; returns the paths."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format {fmt!r} is not one of parquet, csv")
    out.mkdir(parents=True, exist_ok=True)
    frames = {"runs": runs(db, scenario, status=None)}
    frames.update({name: table(db, name, scenario) for name in TABLES})
    paths = []
    for name, df in frames.items():
        path = out / f"{name}.{fmt}"
        outputs.write_with(path, lambda tmp, df=df: df.to_parquet(tmp, index=False) if fmt == "parquet"
                           else df.to_csv(tmp, index=False))
        paths.append(path)
    return paths


def sweeps(db: st.Store) -> pd.DataFrame:
    """Every stored sweep: id, name, design, file path, when it was first run and how many points it has."""
    n = sa.select(st.sweep_points.c.sweep_id, sa.func.count().label("points")).group_by(
        st.sweep_points.c.sweep_id).subquery()
    q = (sa.select(st.sweeps.c.id, st.sweeps.c.name, st.sweeps.c.design, st.sweeps.c.path, st.sweeps.c.created_at,
                   n.c.points).join(n, n.c.sweep_id == st.sweeps.c.id).order_by(st.sweeps.c.id))
    with db.engine.connect() as c:
        return pd.read_sql(q, c)


def sweep_points(db: st.Store, sweep_id: int) -> pd.DataFrame:
    """A sweep's points: point number (-1 = the base scenario), one column per factor, and the point's
    scenario (id, name, text hash); KeyError if there is no such sweep."""
    q = (sa.select(st.sweep_points.c.point, st.sweep_points.c.factors, st.sweep_points.c.scenario_id,
                   st.scenarios.c.name.label("scenario"), st.scenarios.c.sha256.label("scenario_sha256"))
         .join(st.scenarios, st.scenarios.c.id == st.sweep_points.c.scenario_id)
         .where(st.sweep_points.c.sweep_id == sweep_id).order_by(st.sweep_points.c.point))
    with db.engine.connect() as c:
        df = pd.read_sql(q, c)
    if df.empty:
        raise KeyError(f"sweep {sweep_id} is not in {db.url}")
    factors = pd.DataFrame([json.loads(f) for f in df.factors], index=df.index)
    return pd.concat([df[["point"]], factors, df[["scenario_id", "scenario", "scenario_sha256"]]], axis=1)


@dataclass
class SweepResults:
    """A sweep's points and the records of their finished runs, each row tagged with its point."""

    sweep_id: int
    name: str
    design: str
    text: str
    points: pd.DataFrame
    runs: pd.DataFrame
    daily: pd.DataFrame
    participants: pd.DataFrame
    weekly: pd.DataFrame
    assessments: pd.DataFrame


def sweep_results(db: st.Store, sweep_id: int, replicates: int | None = None,
                  model_hash: str | None = None) -> SweepResults:
    """Every finished run of a sweep's points made by the current model code (or `model_hash`), with a
    `point` column, read with one query per table."""
    model_hash = model_hash or provenance.model_hash()
    with db.engine.connect() as c:
        sw = c.execute(sa.select(st.sweeps).where(st.sweeps.c.id == sweep_id)).first()
    if sw is None:
        raise KeyError(f"sweep {sweep_id} is not in {db.url}")
    points = sweep_points(db, sweep_id)
    run_sel = (sa.select(st.runs.c.id, st.runs.c.arm, st.runs.c.replicate, st.sweep_points.c.point)
               .join(st.sweep_points, st.sweep_points.c.scenario_id == st.runs.c.scenario_id)
               .where(st.sweep_points.c.sweep_id == sweep_id, st.runs.c.status == "done",
                      st.runs.c.model_hash == model_hash))
    if replicates is not None:
        run_sel = run_sel.where(st.runs.c.replicate < replicates)
    sel = run_sel.subquery()

    def read(t: sa.Table) -> pd.DataFrame:
        cols = [col for col in t.columns if col.name != "run_id"]
        q = sa.select(sel.c.point, sel.c.arm, sel.c.replicate, *cols).join(sel, sel.c.id == t.c.run_id)
        with db.engine.connect() as c:
            df = pd.read_sql(q.order_by(sel.c.point, t.c.run_id), c)
        return _assessment_rows(df) if t is st.assessment_scores else df

    with db.engine.connect() as c:
        run_rows = pd.read_sql(sa.select(sel), c)
    return SweepResults(sweep_id, sw.name, sw.design, sw.text, points, run_rows, read(st.arm_days),
                        read(st.participants), read(st.participant_weeks), read(st.assessment_scores))
