"""The Mesa model: one arm of one virtual trial, one step per day.

Participant state lives in numpy arrays owned by the model (`State`); `Participant` agents are thin
views onto their row, created on first use of `model.agents`, so Mesa's AgentSet queries, DataCollector
and batch_run all work, while a day is one compiled pass over everyone (`kernel.advance`, through a
`stack.Stack` of this one run or of many runs advanced together).
"""

from __future__ import annotations

from pathlib import Path

import mesa
import numpy as np

from sim import parameters as model_parameters
from sim import scales
from sim.model import draws, dynamics, kernel, population
from sim.model.programme import NO_SUPPORT, ArmPlan, form_groups
from sim.model.stack import Stack
from sim.paths import DEFAULT_SCENARIO, scenario_path
from sim.scenario import LoadedScenario, follow_up_of, load
from sim.vocabulary import HABIT_LEVELS

PANEL_CELLS = 20_000_000  # the weekly panel is kept by default up to this many participant-weeks
HABIT_CELLS = 40_000_000  # the habit history is kept as float32 up to this many participant-days, else 16-bit
COLLECTED = {"severity_mean": 0, "enrolled_share": 2, "exercising_share": 3}  # DataCollector: daily columns
HABIT_FORMED = 0.2  # a plateau below this is "no habit formed" (no day to reach it)


class Participant(mesa.Agent):
    """One simulated person: a view onto row `row` of the model's state arrays."""

    def __init__(self, model: "AdherenceModel", row: int):
        super().__init__(model)
        self.row = row

    def view(self) -> dict[str, float]:
        """This person's current state, one value per state array."""
        st = self.model.state
        return {name: getattr(st, name)[self.row].item() for name in st.__dataclass_fields__}

    @property
    def severity(self) -> float:
        return float(self.model.state.S[self.row])

    @property
    def enrolled(self) -> bool:
        return bool(self.model.state.enrolled[self.row])

    @property
    def exercised_today(self) -> bool:
        return bool(self.model.state.acted[self.row])

    def reference_step(self, x, social, day, u, z) -> None:  # noqa: D102 - the per-agent reference
        """Advance this person one day with the scalar reference equations."""
        m = self.model
        kind = int(m.plan.setting("sup_kind", self.row))
        dynamics.reference_update(m.state, self.row, x, float(social[self.row]), kind, day, u[self.row],
                                  float(z[self.row]), m.coef)


class AdherenceModel(mesa.Model):
    """One arm of a scenario run for weeks + follow_up_weeks days.

    scenario: a LoadedScenario, a path to a scenario file or a library scenario's name (relative paths and
    names are found in the current folder, then under the project root; default
    scenarios/standard_prescription.yaml of the project, from any folder); arm: the arm's name (default the first);
    cohort: pre-drawn baseline traits (so arms of a replicate share people); rng: seed or Generator (its first
    draw keys every random number of the run);
    reference: use the per-agent reference update instead of the compiled one (slow; for tests);
    parameters: model parameters by dotted name, over the scenario's own overrides. Dotted names also
    work as keyword arguments, so `mesa.batch_run(AdherenceModel, {"plasticity.gain": [0, 0.1]})`
    sweeps a parameter. panel: keep the weekly panel (severity, minutes, sessions per person and week;
    default: when it has at most PANEL_CELLS entries); habit_history: keep each person's highest habit so far
    after each day, for days to habit (True: float32 up to HABIT_CELLS entries, 16-bit fixed point above;
    default: float32 up to HABIT_CELLS entries, not kept above, so a population-sized run stays small).
    """

    def __init__(self, scenario: LoadedScenario | str | Path = DEFAULT_SCENARIO,
                 arm: str | None = None, cohort: population.Cohort | None = None,
                 rng=None, reference: bool = False, parameters: dict[str, float] | None = None,
                 panel: bool | None = None, habit_history: bool | None = None, **dotted: float):
        super().__init__(rng=rng)
        self.loaded = scenario if isinstance(scenario, LoadedScenario) else load(scenario_path(scenario))
        sc = self.loaded.scenario
        self.arm = arm or next(iter(sc.arms))
        if self.arm not in sc.arms:
            raise ValueError(f"arm {self.arm!r} is not in scenario {sc.name!r}; arms: {', '.join(sc.arms)}")
        values = model_parameters.resolve({**sc.parameters, **(parameters or {}), **dotted})
        self.parameters = values
        self.coef = dynamics.Coefficients(values)
        if cohort is None:
            cohort = population.draw(sc.population, sc.outcomes, values, self.rng)
        self.keys = draws.run_keys(self.rng)
        self.rater_keys = draws.keys_from_seed(cohort.rater_seed)  # the rater's errors: the same in every arm
        self.cohort, self.n = cohort, cohort.n
        spec = sc.arms[self.arm]
        self.plan = ArmPlan(self.loaded.arms[self.arm], spec.assign, spec.stage2, cohort.measured, sc.weeks,
                            values["medication.effect"], cohort.assign_u, follow_up_of(sc, self.arm),
                            sc.follow_up_weeks)
        self.partner = np.full(self.n, -1)
        self.group = np.full(self.n, -1)
        self._next_group = form_groups(~self.plan.having("sup_kind", NO_SUPPORT), self.plan, self.partner,
                                       self.group, 0)
        self.state = dynamics.State.initial(cohort, self.coef)
        self.reference = reference
        self.days, self.programme_days = sc.days, 7 * sc.weeks
        weeks = sc.weeks + sc.follow_up_weeks
        out = sc.outcomes
        self.scale = out.scale
        n = self.n
        self._keeps_panel = n * (weeks + 1) <= PANEL_CELLS if panel is None else bool(panel)
        shape = (n, weeks) if self._keeps_panel else (0, 0)
        self._severity_weekly_internal = np.empty((shape[0], weeks + 1) if self._keeps_panel else shape)
        if self._keeps_panel:
            self._severity_weekly_internal[:, 0] = cohort.severity0
        self.minutes_weekly = np.zeros(shape)
        self.sessions_weekly = np.zeros(shape, dtype=np.int16)
        self.assessment_weeks = out.assessments(weeks)
        self._assessment_index = {w: k for k, w in enumerate(self.assessment_weeks)}
        # what the trial saw, whole scale points (float32 holds them exactly, with NaN for no assessment)
        self.assessed = np.full((n, len(self.assessment_weeks)), np.nan, dtype=np.float32)
        self.assessed[:, 0] = np.round(cohort.measured["baseline_severity"])
        self.planned_count = np.zeros(n, dtype=np.int64)  # prescribed programme sessions (ITT: dropouts too)
        self.done_count = np.zeros(n, dtype=np.int64)
        self.minutes_programme = np.zeros(n)  # minutes exercised in the programme, and in follow-up
        self.minutes_follow_up = np.zeros(n)
        self.habit_max = np.zeros(n)  # the highest habit reached so far
        self.end_of_programme: dynamics.Snapshot | None = None
        big = self.days * n > HABIT_CELLS
        if habit_history and big:
            self.habit_history = np.zeros((self.days, n), dtype=np.uint16)
        else:
            keep = habit_history or (habit_history is None and not big)
            self.habit_history = np.zeros((self.days if keep else 0, n), dtype=np.float32)
        self._response_factor, self._remission_at = 1.0 - out.response_reduction, out.remission_at
        self.daily = np.empty((self.days + 1, 7))  # row 0 = baseline; columns as records.DAILY_COLUMNS
        self._record_day(0)
        self._stack: Stack | None = None
        self._agents_made = False
        self._row = self._days_done = 0
        self.datacollector = mesa.DataCollector(model_reporters={
            name: (lambda m, col=col: float(m.daily[m._row, col])) for name, col in COLLECTED.items()})
        self.datacollector.collect(self)  # day 0, so a collection period of 7 lands on week ends

    @property
    def agents(self):
        """Every participant as a Mesa agent (created on first use: a run needs none)."""
        if not self._agents_made:
            self._agents_made = True
            Participant.create_agents(self, self.n, row=np.arange(self.n))
        return super().agents

    @property
    def agents_by_type(self):
        """Mesa's agents by type (creating the participants on first use)."""
        self.agents  # noqa: B018 - creates them
        return super().agents_by_type

    @property
    def day(self) -> int:
        """Days completed so far."""
        return self._stack.day if self._stack is not None else self._days_done

    @property
    def severity_weekly(self) -> np.ndarray:
        """True severity per person at baseline and the end of each week, scale points (the weekly panel)."""
        if not self._keeps_panel:
            raise ValueError("this run did not keep the weekly panel (panel=False, or more than "
                             f"{PANEL_CELLS:,} participant-weeks); build it with panel=True")
        return scales.from_internal(self.scale, self._severity_weekly_internal)

    def event_days(self) -> set[int]:
        """The days before which something happens to this run (see `events`)."""
        days = {self.programme_days, self.days}
        if self.plan.stage2 is not None:
            days.add(7 * self.plan.stage2.week)
        return {d for d in days if 0 < d <= self.days}

    def events(self, day: int) -> bool | str:
        """What happens between day-1 and `day`: the programme's end, stage 2.
        False if the design's inputs did not change, True if they did, "ties" if partners or classes did."""
        st, plan = self.state, self.plan
        changed: bool | str = False
        if day == self.programme_days:
            self.end_of_programme = st.snapshot()
            if day < self.days and plan.follow_up is not None:
                plan.start_follow_up()
                changed = True
        if plan.stage2 is not None and day == 7 * plan.stage2.week and day < self.days:
            aug = plan.stage2_rows(day, self.assess(plan.stage2.week), self.assessed[:, 0]) & st.enrolled
            plan.augmented |= aug
            plan.apply(plan.stage2.add, aug, start_day=day)
            changed = True
            if plan.stage2.add.support is not None:
                self._next_group = form_groups(aug, plan, self.partner, self.group, self._next_group)
                changed = "ties"
        return changed

    def step(self) -> None:
        """One day for everyone: the design's inputs, the update, the records, then the day's events."""
        day = self.day
        if day >= self.days:
            self.running = False
            return
        if self.reference:
            self._reference_day(day)
            self._days_done = day + 1
            self.events(day + 1)
        else:
            if self._stack is None:
                Stack([self])
            self._stack.advance(day + 1)
        self._row = day + 1
        self.datacollector.collect(self)
        if day + 1 >= self.days:
            self.running = False

    def _reference_day(self, day: int) -> None:
        """One day with the per-agent reference update and records kept in Python."""
        st, plan = self.state, self.plan
        x = plan.inputs(day, st.streak, st.enrolled)
        u, z = draws.day_uniforms(self.keys, self.n, day)
        social = dynamics.social_factor(st, plan.sup_kind, self.partner, self.group)
        self.agents.do("reference_step", x, social, day, u, z)
        week = day // 7
        if day < self.programme_days:
            self.planned_count += x.planned
            self.done_count += st.acted & x.planned
            self.minutes_programme += st.minutes_done
        else:
            self.minutes_follow_up += st.minutes_done
        np.maximum(self.habit_max, st.H, out=self.habit_max)
        if self.habit_history.size:
            self.habit_history[day] = (np.round(self.habit_max * kernel.HABIT_STEPS) if self.habit_history.dtype == np.uint16
                                       else self.habit_max)
        if self._keeps_panel:
            self.minutes_weekly[:, week] += st.minutes_done
            self.sessions_weekly[:, week] += st.acted
            if day % 7 == 6:
                self._severity_weekly_internal[:, week + 1] = st.S
        if day % 7 == 6 and week + 1 in self._assessment_index:
            self.assessed[:, self._assessment_index[week + 1]] = np.where(st.enrolled, self.assess(week + 1), np.nan)
        self._record_day(day + 1)

    def assess(self, week: int) -> np.ndarray:
        """What a rater scores for everyone at the end of `week` (now): true severity plus rater error, in
        whole scale points. The errors come from their own stream, the same in every arm."""
        err = draws.normals(self.rater_keys, self.n, week)
        seen = np.clip(self.state.S + self.coef.measurement_rater_sd * err, 0.0, dynamics.SEVERITY_TOP)
        return np.rint(scales.from_internal(self.scale, seen))

    def _record_day(self, row: int) -> None:
        st = self.state
        S = scales.from_internal(self.scale, st.S)
        S0 = self.cohort.traits["baseline_severity"]
        self.daily[row] = (S.mean(), S.std(ddof=1), st.enrolled.mean(), st.acted.mean(),
                           st.minutes_done.mean(), np.mean(S <= self._response_factor * S0),
                           np.mean(S <= self._remission_at))

    def finished(self, day: int) -> None:
        """Bring Mesa's clock to `day` after a stack advanced this run."""
        self.steps, self.time = day, float(day)
        self.running = day < self.days

    def days_to_habit(self) -> np.ndarray:
        """Per person and level: first day habit reached that share of its own plateau (the highest
        automaticity the person reached, as Lally et al. 2010 fitted each person's asymptote); NaN when
        no habit formed (plateau below HABIT_FORMED)."""
        if self.habit_history.shape[0] < self.day:
            raise ValueError(f"this run did not keep the habit history ({self.n:,} people x {self.days} days is over "
                             f"{HABIT_CELLS:,}); build the model with habit_history=True for days to habit")
        hist = self.habit_history[:self.day]
        tol = 1e-7 if hist.dtype == np.float32 else 0.5  # float32 rounding, or half a 16-bit step
        return kernel.days_to_habit(hist, np.asarray(HABIT_LEVELS, float), HABIT_FORMED, self.habit_max, tol)

    def run(self) -> "AdherenceModel":
        """Run every day of the programme and follow-up (the DataCollector gets every day's row)."""
        if self.reference:
            while self.running:
                self.step()
            return self
        start = self.day
        if self._stack is None:
            Stack([self])
        self._stack.run()
        for row in range(start + 1, self.days + 1):
            self._row, self.time = row, float(row)
            self.datacollector.collect(self)
        self.finished(self.days)
        return self
