"""Read stored results back as pandas DataFrames (for the CLI, plots and notebooks)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from sim import store as st


@dataclass
class ScenarioResults:
    """The stored, finished runs of one scenario text, as frames keyed by arm and replicate."""

    name: str
    sha256: str
    text: str
    runs: pd.DataFrame  # one row per run with provenance
    daily: pd.DataFrame  # arm, replicate, day, severity_mean, ...
    participants: pd.DataFrame  # arm, replicate, pid, traits and endpoints
    weekly: pd.DataFrame  # arm, replicate, pid, week, severity, minutes


def scenario_results(store: st.Store, sha256: str, replicates: int | None = None) -> ScenarioResults:
    """All done runs of the scenario with this text hash (the first `replicates` if given)."""
    with store.engine.connect() as c:
        sc = c.execute(sa.select(st.scenarios).where(st.scenarios.c.sha256 == sha256)).one()
        q = sa.select(st.runs).where(st.runs.c.scenario_id == sc.id, st.runs.c.status == "done")
        if replicates is not None:
            q = q.where(st.runs.c.replicate < replicates)
        runs = pd.read_sql(q.order_by(st.runs.c.replicate, st.runs.c.arm), c)
        meta = runs[["id", "arm", "replicate"]].rename(columns={"id": "run_id"})
        wanted = q.with_only_columns(st.runs.c.id).subquery()

        def child(table: sa.Table) -> pd.DataFrame:
            df = pd.read_sql(sa.select(table).where(table.c.run_id.in_(sa.select(wanted.c.id))), c)
            return meta.merge(df, on="run_id").drop(columns="run_id")

        return ScenarioResults(name=sc.name, sha256=sha256, text=sc.text, runs=runs, daily=child(st.arm_days),
                               participants=child(st.participants), weekly=child(st.participant_weeks))
