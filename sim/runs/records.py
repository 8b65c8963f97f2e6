"""Records of a finished run: arm-level days, participant endpoints, the trial's assessments and the weekly
panel, kept as column arrays and read as pandas frames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from sim import scales
from sim.model.dynamics import current_reward_control
from sim.model.model import AdherenceModel
from sim.vocabulary import HABIT_LEVELS, TRAITS

HABIT_COLUMNS = tuple(f"days_to_habit_{round(100 * level)}" for level in HABIT_LEVELS)
# each baseline trait as the trial measured it (with the measure's reliability), next to its true value
MEASURED_COLUMNS = tuple(f"measured_{t}" for t in TRAITS)

# Arm-level aggregates per day (day 0 = baseline); severity_sd has ddof=1. Response and remission
# use the scenario's outcome definitions, so effect sizes and rates at any week need no panel.
DAILY_COLUMNS = ("severity_mean", "severity_sd", "enrolled_share", "exercising_share", "minutes_mean",
                 "response_share", "remission_share")

Columns = dict[str, np.ndarray]  # one record table: column name -> one value per row


@dataclass
class RunRecords:
    """Everything one run (scenario x arm x replicate) produced.

    The tables are held as column arrays: a worker sends them cheaply (no frames to build or pickle) and the
    store writes them without pandas. The frames are made on first use."""

    scenario: str
    arm: str
    replicate: int
    seed: str
    tables: dict[str, Columns]  # daily, participants, assessments (packed) and weekly when the panel was kept
    wall_seconds: float = 0.0

    @cached_property
    def daily(self) -> pd.DataFrame:
        """Arm-level aggregates per day (day, *DAILY_COLUMNS)."""
        return pd.DataFrame(self.tables["daily"])

    @cached_property
    def participants(self) -> pd.DataFrame:
        """One row per participant: traits, endpoints, days to habit, measured traits."""
        return pd.DataFrame(self.tables["participants"])

    @cached_property
    def weekly(self) -> pd.DataFrame | None:
        """The per-participant weekly panel, when asked for."""
        return pd.DataFrame(self.tables["weekly"]) if "weekly" in self.tables else None

    @cached_property
    def assessments(self) -> pd.DataFrame:
        """pid, week, score: the trial's assessments (rows only where one was made)."""
        packed = self.tables["assessments"]
        return pd.DataFrame(unpack_assessments(packed["weeks"][0], packed["scores"][0]))


def _columns(values: dict, n: int) -> Columns:
    # each column its own copy, n long: records stay as they were whatever happens to the model afterwards
    return {k: np.full(n, v) if np.ndim(v) == 0 else np.array(v) for k, v in values.items()}


def from_model(model: AdherenceModel, replicate: int, seed: str, wall_seconds: float = 0.0,
               panel: bool = True) -> RunRecords:
    """Turn a finished model into records (with the weekly panel if `panel`).

    The assessments are always recorded: one row per participant and scheduled week at which the trial
    assessed them (score on the scenario's scale, rater error included); a participant who left the trial
    has no rows after it."""
    sc = model.loaded.scenario
    daily = _columns({"day": np.arange(model.days + 1), **dict(zip(DAILY_COLUMNS, model.daily.T))}, model.days + 1)
    st, eop = model.state, model.end_of_programme
    prog_w, fu_w = sc.weeks, sc.follow_up_weeks
    dropout_day = np.where(st.dropout_day >= 0, st.dropout_day + 1, np.nan)  # 1-based day of dropout
    coef = model.coef
    reward_eop, control_eop = current_reward_control(eop, coef)
    parts = _columns({
        "pid": np.arange(model.n),
        "subgroup": model.cohort.subgroup.astype(str),
        **{k: v for k, v in model.cohort.traits.items()},
        **{f"measured_{t}": model.cohort.measured[t] for t in TRAITS},
        "habit_rate": model.cohort.habit_rate,
        "augmented": model.plan.augmented,
        "dropout_day": dropout_day,
        "sessions_planned": model.planned_count,
        "sessions_done": model.done_count,
        "adherence": np.where(model.planned_count > 0, model.done_count / np.maximum(model.planned_count, 1), np.nan),
        "minutes_per_week_programme": model.minutes_programme / prog_w,
        "minutes_per_week_follow_up": model.minutes_follow_up / fu_w if fu_w else np.nan,
        "severity_end_programme": scales.from_internal(sc.outcomes.scale, eop.S),
        "severity_end": scales.from_internal(sc.outcomes.scale, st.S),
        "self_efficacy_end_programme": eop.E,
        "habit_end_programme": eop.H,
        "reserve_end_programme": eop.P,
        "cognitive_control_end_programme": control_eop,
        "reward_sensitivity_end_programme": reward_eop,
        **dict(zip(HABIT_COLUMNS, model.days_to_habit().T)),
    }, model.n)
    tables = {"daily": daily, "participants": parts, "assessments": _assessment_columns(model)}
    if panel:
        severity, minutes = model.severity_weekly, model.minutes_weekly
        n, weeks = severity.shape
        tables["weekly"] = _columns({
            "pid": np.repeat(np.arange(n), weeks),
            "week": np.tile(np.arange(weeks), n),
            "severity": severity.ravel(),
            "minutes": np.column_stack([np.zeros(n), minutes]).ravel(),
            "sessions": np.column_stack([np.zeros(n, int), model.sessions_weekly]).ravel().astype(int),
        }, n * weeks)
    return RunRecords(scenario=sc.name, arm=model.arm, replicate=replicate, seed=seed, tables=tables,
                      wall_seconds=wall_seconds)


def _assessment_columns(model: AdherenceModel) -> Columns:
    """The trial's assessments as the store keeps them: one row (pack_assessments)."""
    packed = pack_assessments(model.assessment_weeks, model.assessed)
    return {k: np.array([v], dtype=object) for k, v in packed.items()}


def pack_assessments(weeks, scores: np.ndarray) -> dict[str, str]:
    """A run's assessments as two JSON texts: `weeks`, the scheduled assessment weeks, and `scores`, one list
    per participant in pid order with the score at each of those weeks, or null where none was made (the
    participant had left the trial). Whole-point scores are written as integers."""
    # one row per run rather than one per participant and week: a 200-person run assessed weekly has 8,600
    # assessments, and one text is stored ~30x faster than 8,600 rows by the batch's single writer
    scores = np.asarray(scores, float)
    made = ~np.isnan(scores)
    whole = bool(np.all(scores[made] == np.rint(scores[made])))
    values = (np.where(made, scores, 0).astype(np.int64) if whole else scores).astype(object)
    values[~made] = None
    compact = {"separators": (",", ":")}
    return {"weeks": json.dumps([int(w) for w in weeks], **compact), "scores": json.dumps(values.tolist(), **compact)}


def unpack_assessments(weeks: str, scores: str) -> Columns:
    """pid, week, score columns (a row where an assessment was made; participants in order, weeks ascending)
    from the two texts pack_assessments wrote."""
    weeks_arr = np.asarray(json.loads(weeks), dtype=np.int64)
    grid = np.array(json.loads(scores), dtype=float).reshape(-1, len(weeks_arr))
    made = ~np.isnan(grid)
    n, k = grid.shape
    return {"pid": np.repeat(np.arange(n), k)[made.ravel()], "week": np.tile(weeks_arr, n)[made.ravel()],
            "score": grid[made]}
