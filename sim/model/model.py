"""The Mesa model: one arm of one virtual trial, one step per day.

Participant state lives in numpy arrays owned by the model (`State`); `Participant` agents are thin
views onto their row, so Mesa's AgentSet queries, DataCollector and batch_run all work, while a day
is one vectorized update (`dynamics.daily_update`).
"""

from __future__ import annotations

from pathlib import Path

import mesa
import numpy as np

from sim import parameters as model_parameters
from sim import scales
from sim.model import dynamics, population
from sim.model.programme import NO_SUPPORT, ArmPlan, form_groups
from sim.paths import DEFAULT_SCENARIO, scenario_path
from sim.scenario import LoadedScenario, follow_up_of, load
from sim.vocabulary import HABIT_LEVELS

ENGINES = ("numba", "numpy")  # the fused compiled update, or the same equations as numpy array operations
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

    def reference_step(self, x, social, day, u, z) -> None:
        """Advance this person one day with the scalar reference equations."""
        m = self.model
        dynamics.reference_update(m.state, self.row, x, float(social[self.row]), int(m.plan.sup_kind[self.row]),
                                  day, u[self.row], float(z[self.row]), m.coef)


class AdherenceModel(mesa.Model):
    """One arm of a scenario run for weeks + follow_up_weeks days.

    scenario: a LoadedScenario, a path to a scenario file or a library scenario's name (relative paths and
    names are found in the current folder, then under the project root; default
    scenarios/standard_prescription.yaml of the project, from any folder); arm: the arm's name (default the first);
    cohort: pre-drawn baseline traits (so arms of a replicate share people); rng: seed or Generator;
    reference: use the per-agent reference update instead of the vectorized one (slow; for tests);
    engine: "numba" (the fused compiled update, default) or "numpy" (array operations); both are held equal
    to the reference by tests;
    parameters: model parameters by dotted name, over the scenario's own overrides. Dotted names also
    work as keyword arguments, so `mesa.batch_run(AdherenceModel, {"plasticity.gain": [0, 0.1]})`
    sweeps a parameter.
    """

    def __init__(self, scenario: LoadedScenario | str | Path = DEFAULT_SCENARIO,
                 arm: str | None = None, cohort: population.Cohort | None = None,
                 rng=None, reference: bool = False, parameters: dict[str, float] | None = None,
                 engine: str = "numba", **dotted: float):
        super().__init__(rng=rng)
        if engine not in ENGINES:
            raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.engine = engine
        self.loaded = scenario if isinstance(scenario, LoadedScenario) else load(scenario_path(scenario))
        sc = self.loaded.scenario
        self.arm = arm or next(iter(sc.arms))
        if self.arm not in sc.arms:
            raise ValueError(f"arm {self.arm!r} is not in scenario {sc.name!r}; arms: {', '.join(sc.arms)}")
        values = model_parameters.resolve({**sc.parameters, **(parameters or {}), **dotted})
        self.parameters = values
        self.coef = dynamics.Coefficients(values)
        self._fused = None
        if cohort is None:
            cohort = population.draw(sc.population, sc.outcomes, values, self.rng)
        self.cohort, self.n = cohort, cohort.n
        spec = sc.arms[self.arm]
        self.plan = ArmPlan(self.loaded.arms[self.arm], spec.assign, spec.stage2, cohort.measured, sc.weeks,
                            values["medication.effect"], cohort.assign_u, follow_up_of(sc, self.arm),
                            sc.follow_up_weeks)
        self.partner = np.full(self.n, -1)
        self.group = np.full(self.n, -1)
        self._next_group = form_groups(self.plan.sup_kind > NO_SUPPORT, self.plan.sup_kind, self.plan.class_size,
                                       cohort.order, self.partner, self.group, 0)
        self.state = dynamics.State.initial(cohort, self.coef)
        self.reference = reference
        self.days, self.programme_days = sc.days, 7 * sc.weeks
        weeks = sc.weeks + sc.follow_up_weeks
        out = sc.outcomes
        self.scale = out.scale
        self.severity_weekly = np.empty((self.n, weeks + 1))  # true severity, scale points
        self.severity_weekly[:, 0] = cohort.traits["baseline_severity"]
        self.minutes_weekly = np.zeros((self.n, weeks))
        self.sessions_weekly = np.zeros((self.n, weeks), dtype=np.int16)
        self.assessment_weeks = out.assessments(weeks)
        self._assessment_index = {w: k for k, w in enumerate(self.assessment_weeks)}
        self.assessed = np.full((self.n, len(self.assessment_weeks)), np.nan)  # what the trial saw, scale points
        self.assessed[:, 0] = np.round(cohort.measured["baseline_severity"])
        self.planned_count = np.zeros(self.n, dtype=int)  # prescribed programme sessions (ITT: dropouts too)
        self.done_count = np.zeros(self.n, dtype=int)
        self.end_of_programme: dynamics.State | None = None
        self.habit_history = np.zeros((self.days, self.n), dtype=np.float32)  # H after each day
        self._response_factor, self._remission_at = 1.0 - out.response_reduction, out.remission_at
        self.daily = np.empty((self.days + 1, 7))  # row 0 = baseline; columns as records.DAILY_COLUMNS
        self._record_day(0)
        Participant.create_agents(self, self.n, row=np.arange(self.n))
        self.datacollector = mesa.DataCollector(model_reporters={
            "severity_mean": lambda m: float(m.state.S.mean()),
            "enrolled_share": lambda m: float(m.state.enrolled.mean()),
            "exercising_share": lambda m: float(m.state.acted.mean()),
        })
        self.datacollector.collect(self)  # day 0, so a collection period of 7 lands on week ends

    @property
    def day(self) -> int:
        """Days completed so far."""
        return self.steps

    def step(self) -> None:
        """One day: stage-2 decisions, the design's inputs, one update of every participant, records."""
        day = self.steps - 1  # Mesa has already counted this step
        st, plan = self.state, self.plan
        if day == self.programme_days:
            plan.start_follow_up()
        aug = None
        if plan.stage2 is not None and day == 7 * plan.stage2.week:  # decided on what an assessment shows
            aug = plan.stage2_rows(day, self.assess(plan.stage2.week), self.assessed[:, 0])
        if aug is not None:
            aug &= st.enrolled
            plan.augmented |= aug
            plan.apply(plan.stage2.add, aug, start_day=day)
            if plan.stage2.add.support is not None:
                self._next_group = form_groups(aug, plan.sup_kind, plan.class_size, self.cohort.order,
                                               self.partner, self.group, self._next_group)
        x = plan.inputs(day, st.streak, st.enrolled)
        u = self.rng.random((self.n, dynamics.N_UNIFORMS))
        z = self.rng.standard_normal(self.n)
        social = dynamics.social_factor(st, plan.sup_kind, self.partner, self.group)
        if self.reference:
            self.agents.do("reference_step", x, social, day, u, z)
        elif self.engine == "numba":
            if self._fused is None:  # compiled on first use (cached on disk); the kernel updates arrays in place
                from sim.model import kernel

                self._fused = kernel.Fused(st, self.coef)
            self._fused.update(x, social, plan.sup_kind, day, u, z)
        else:
            dynamics.daily_update(st, x, social, plan.sup_kind, day, u, z, self.coef)
        week = day // 7
        self.minutes_weekly[:, week] += st.minutes_done
        self.sessions_weekly[:, week] += st.acted
        if day < self.programme_days:
            self.planned_count += x.planned
            self.done_count += st.acted & x.planned
        self.habit_history[day] = st.H
        if day == self.programme_days - 1:
            self.end_of_programme = st.copy()
        if day % 7 == 6:
            self.severity_weekly[:, week + 1] = scales.from_internal(self.scale, st.S)
            if week + 1 in self._assessment_index:
                k = self._assessment_index[week + 1]
                self.assessed[:, k] = np.where(st.enrolled, self.assess(week + 1), np.nan)
        self._record_day(day + 1)
        self.datacollector.collect(self)
        if self.steps >= self.days:
            self.running = False

    def assess(self, week: int) -> np.ndarray:
        """What a rater scores for everyone at the end of `week` (now): true severity plus rater error, in
        whole scale points. The errors come from their own stream, the same in every arm."""
        err = np.random.default_rng([self.cohort.rater_seed, week]).standard_normal(self.n)
        seen = np.clip(self.state.S + self.coef.measurement_rater_sd * err, 0.0, dynamics.SEVERITY_TOP)
        return np.round(scales.from_internal(self.scale, seen))

    def _record_day(self, row: int) -> None:
        st = self.state
        S = scales.from_internal(self.scale, st.S)
        S0 = self.cohort.traits["baseline_severity"]
        self.daily[row] = (S.mean(), S.std(ddof=1), st.enrolled.mean(), st.acted.mean(),
                           st.minutes_done.mean(), np.mean(S <= self._response_factor * S0),
                           np.mean(S <= self._remission_at))

    def days_to_habit(self) -> np.ndarray:
        """Per person and level: first day habit reached that share of its own plateau (the highest
        automaticity the person reached, as Lally et al. 2010 fitted each person's asymptote); NaN when
        no habit formed (plateau below HABIT_FORMED)."""
        plateau = self.habit_history.max(axis=0)
        out = np.full((self.n, len(HABIT_LEVELS)), np.nan)
        for k, level in enumerate(HABIT_LEVELS):
            reached = self.habit_history >= level * plateau - 1e-7
            first = reached.argmax(axis=0) + 1.0
            out[:, k] = np.where(plateau >= HABIT_FORMED, first, np.nan)
        return out

    def run(self) -> "AdherenceModel":
        """Run every day of the programme and follow-up."""
        while self.running:
            self.step()
        return self
