"""Run a sweep: its design's points (and the base scenario) as scenarios through the batch machinery.

Each point is stored as a scenario of its own (the base text with the point's values written in), so
its runs have the usual idempotent keys, provenance and resume; the sweep and its points are recorded
in `sweeps` and `sweep_points`, which tag each run with its point's factor values.
"""

from __future__ import annotations

import json
from concurrent.futures import Executor
from dataclasses import dataclass

import pandas as pd

from sim.runs import batch, store
from sim.scenario import LoadedScenario
from sim.sweep_spec import Sweep, design_points

BASE_POINT = -1  # the base scenario at its own values: the defaults every figure and interval refers to


@dataclass
class SweepOutcome:
    """What running a sweep did."""

    sweep_id: int
    points: int
    runs: int
    skipped: int
    failed: int
    wall_seconds: float


def point_scenarios(sw: Sweep, with_base: bool = True) -> tuple[pd.DataFrame, list[LoadedScenario]]:
    """The design's points (and the base point, labelled BASE_POINT, unless `with_base` is False) with
    their scenarios."""
    pts = design_points(sw)
    table = pts.copy()
    table.insert(0, "point", range(len(pts)))
    loaded = [sw.point_scenario(row, f"p{k:05d}") for k, row in enumerate(pts.to_dict("records"))]
    if with_base:
        base = pd.DataFrame([{"point": BASE_POINT, **{name: sw.default(name) for name in sw.factor_names}}])
        table = pd.concat([base, table], ignore_index=True)
        loaded = [sw.point_scenario({}, "base"), *loaded]
    return table, loaded


def register(sw: Sweep, db: store.Store, with_base: bool = True) -> tuple[int, pd.DataFrame, list[LoadedScenario]]:
    """Store the sweep, its points' scenarios and the points; returns the sweep id, points and scenarios."""
    table, loaded = point_scenarios(sw, with_base)
    ids = db.add_scenarios(loaded)
    factors = [json.dumps({k: float(v) for k, v in row.items() if k != "point"}) for row in table.to_dict("records")]
    sweep_id = db.add_sweep(sw.name, sw.sha256, str(sw.path), sw.text, sw.spec.design,
                            list(zip(table.point.astype(int).tolist(), ids, factors)))
    return sweep_id, table, loaded


def run_sweep(sw: Sweep, db: store.Store, executor: Executor, replicates: int | None = None,
              command: str = "", executor_name: str = "", panel: bool = False,
              with_base: bool = True) -> SweepOutcome:
    """Run every point x arm x replicate not yet stored; the weekly panel is kept if an outcome needs it.
    `with_base` False leaves out the base scenario's own point (power curves need only the sizes asked for)."""
    sweep_id, table, loaded = register(sw, db, with_base)
    reps = replicates or sw.spec.replicates
    outs = batch.run_batches(loaded, db, executor, reps, panel=panel or sw.needs_panel, command=command,
                             executor_name=executor_name, label=f"sweep {sw.name}")
    return SweepOutcome(sweep_id, len(table), sum(o.total for o in outs), sum(o.skipped for o in outs),
                        sum(o.failed for o in outs), outs[0].wall_seconds if outs else 0.0)
