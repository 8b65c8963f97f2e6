"""Runs advanced together: their arrays laid end to end and sent through the compiled kernel at once.

A stack holds runs that share a scenario's length and scale (a scenario's arms and replicates, a
sweep's points): their state, design and records live in one set of arrays, each run's `State` a
view onto its rows, and each day of every run is one pass of `kernel.advance`. Between those passes,
at the days where something happens to a run (an assessment, the end of the programme, a stage-2
decision), each run's own events run in Python. Each run keeps its own parameters and random keys,
and no run reads another's rows, so a run gives the same numbers alone (a stack of one) or stacked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sim import scales
from sim.model import blocks, kernel
from sim.model.dynamics import State

if TYPE_CHECKING:
    from sim.model.model import AdherenceModel

RECORD_ARRAYS = ("planned_count", "done_count", "minutes_programme", "minutes_follow_up", "habit_max")


def _joined(arrays: list[np.ndarray], axis: int = 0) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=axis)


class Stack:
    """Models (runs) of the same length and scale, advanced day by day as one set of arrays."""

    def __init__(self, models: list[AdherenceModel], block_rows: int | None = None):
        if not models:
            raise ValueError("a stack needs at least one run")
        first = models[0]
        for m in models[1:]:
            if (m.days, m.scale) != (first.days, first.scale):
                raise ValueError(f"runs stacked together must share their length and scale: "
                                 f"{m.days} days on {m.scale} vs {first.days} days on {first.scale}")
            if m.day != first.day or m._stack is not None:
                raise ValueError("runs are stacked before their first day, and only once")
            if (m._keeps_panel, m.habit_history.dtype, m.habit_history.size > 0) != \
                    (first._keeps_panel, first.habit_history.dtype, first.habit_history.size > 0):
                raise ValueError("runs stacked together keep the same records (panel, habit history)")
        self.models, self.day = models, first.day
        self.block_rows = blocks.BLOCK_ROWS if block_rows is None else block_rows
        sizes = np.array([m.n for m in models])
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.rows = [slice(int(a), int(b)) for a, b in zip(self.offsets[:-1], self.offsets[1:])]
        self.keys = np.stack([m.keys for m in models]).astype(np.uint64)
        self.coefs = kernel.packed([m.coef for m in models])
        self.programme_days = np.array([m.programme_days for m in models], dtype=np.int64)
        self.response_factor = np.array([m._response_factor for m in models])
        self.remission_at = np.array([float(m._remission_at) for m in models])
        self.s0_scale = _joined([m.cohort.traits["baseline_severity"] for m in models])
        self.xp, self.fp = (np.asarray(a, float) for a in scales.anchors(first.scale))
        records = _joined([m.state.records for m in models])
        counts = {a: _joined([getattr(m, a) for m in models]) for a in RECORD_ARRAYS}
        weekly = {a: _joined([getattr(m, a) for m in models]) for a in ("_severity_weekly_internal",
                                                                      "minutes_weekly", "sessions_weekly")}
        hist = _joined([m.habit_history for m in models], axis=1)
        self.daily = np.stack([m.daily for m in models])
        self.rater_keys = np.stack([m.rater_keys for m in models]).astype(np.uint64)
        self.assess_col = np.full((len(models), first.days // 7 + 2), -1, dtype=np.int64)
        for r, m in enumerate(models):
            for w, k in m._assessment_index.items():
                self.assess_col[r, w] = k
        if len({m.assessed.shape[1] for m in models}) > 1:
            raise ValueError("runs stacked together must share their assessment schedule's length")
        self.assessed = _joined([m.assessed for m in models])
        for m, rows, r in zip(models, self.rows, range(len(models))):  # each run now reads its rows of the stack
            m.state = State.over(records[rows])
            for k, v in counts.items():
                setattr(m, k, v[rows])
            if m._keeps_panel:
                for k, v in weekly.items():
                    setattr(m, k, v[rows])
            if hist.size:
                m.habit_history = hist[:, rows]
            m.daily = self.daily[r]
            m.assessed = self.assessed[rows]
            m._stack = self
        self.state = records
        self.counts = tuple(counts[a] for a in RECORD_ARRAYS)
        self.weekly = tuple(weekly.values())
        self.hist = hist
        self.habit_steps = kernel.HABIT_STEPS if hist.dtype == np.uint16 else 0.0
        self.tables = [m.plan.table() for m in models]
        self._gather_plans()
        self._gather_ties()
        self.boundaries = sorted(set().union(*(m.event_days() for m in models)))

    def _gather_plans(self) -> None:
        """The runs' tables of distinct design settings, one after the other, and each row's place in them."""
        shift = np.cumsum([0] + [len(t) for t, _ in self.tables[:-1]])
        self.plan = np.concatenate([t for t, _ in self.tables])
        # a run alone reads its plan's ids as they are (a copy would be memory touched anew at a million people)
        self.plan_id = _joined([ids + k if k else ids for (_, ids), k in zip(self.tables, shift)])

    def _gather_ties(self) -> None:
        """Partners as rows of the stack, classes as stack-wide group ids (each run's own, shifted)."""
        partner, group, shift = [], [], 0
        for m, rows in zip(self.models, self.rows):
            partner.append(np.where(m.partner >= 0, m.partner + rows.start, -1))
            group.append(np.where(m.group >= 0, m.group + shift, -1))
            shift += max(int(m.group.max(initial=-1)) + 1, 0)
        self.partner, self.group = _joined(partner).astype(np.int64), _joined(group).astype(np.int64)
        self.n_groups = shift
        self.visit, self.cuts, self.run_cut = blocks.visit_blocks(self.offsets, self.partner, self.group,
                                                                  self.n_groups, self.block_rows)

    def advance(self, until: int) -> None:
        """Advance every run to the end of day `until` - 1, running each run's events on the way."""
        until = min(until, self.models[0].days)
        while self.day < until:
            nxt = min([b for b in self.boundaries if b > self.day] + [until])
            kernel.advance(self.day, nxt, self.offsets, self.keys, self.coefs, self.programme_days, self.state,
                           self.plan, self.plan_id, self.partner, self.group, self.n_groups, self.s0_scale, self.xp, self.fp,
                           self.response_factor, self.remission_at, self.counts, *self.weekly, self.hist,
                           self.habit_steps, self.daily, self.rater_keys, self.assess_col, self.assessed,
                           self.visit, self.cuts, self.run_cut)
            self.day = nxt
            plans = ties = False
            for r, m in enumerate(self.models):
                changed = m.events(nxt)
                if changed:
                    self.tables[r] = m.plan.table()
                    plans, ties = True, ties or changed == "ties"
            if plans:
                self._gather_plans()
            if ties:
                self._gather_ties()

    def run(self) -> list[AdherenceModel]:
        """Advance every run to its last day; the finished models."""
        self.advance(self.models[0].days)
        for m in self.models:
            m.finished(self.day)
        return self.models
