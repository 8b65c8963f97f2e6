"""An arm's design compiled to per-person arrays, and the day's external inputs from them.

Arm components (prescription, titration, support, ...) can differ between people in matched
designs (assignment rules) and change at stage 2 of adaptive designs, so every component
setting is an array with one entry per participant, plus the day it started for that person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.scenario import Components, Stage2, TraitRange

# PATTERN[k, weekday]: sessions spread over the week for k sessions per week (k = 0..7).
PATTERN = np.zeros((8, 7), dtype=bool)
for _k in range(1, 8):
    PATTERN[_k, (np.arange(_k) * 7) // _k] = True

NO_SUPPORT, CLASS, PARTNER = 0, 1, 2
_INF = 10**9
# ArmPlan's per-person settings, in the column order of ArmPlan.matrix() (what the compiled kernel reads)
PLAN_COLUMNS = ("rx_spw", "rx_min", "rx_int", "tit_start_min", "tit_start_int", "tit_days", "tit_from", "sup_kind",
                "sup_level", "sup_days", "sup_fade", "sup_from", "prime", "prime_days", "prime_from", "cue",
                "cue_streak", "cue_days", "cue_fade", "cue_from", "sm_skill", "sm_days", "sm_from", "sm_until",
                "med_on", "med_effect", "med_adh", "med_from", "med_until", "pl_on", "pl_adh", "pl_from", "pl_until",
                "contact_rate", "contact_days", "contact_from")


@dataclass
class DayInputs:
    """What the design provides to each participant on one day (all arrays of length n)."""

    planned: np.ndarray  # bool: a session of the prescription is scheduled today
    prescribed: np.ndarray  # bool: the person has a prescription (a plan, kept in follow-up)
    minutes: np.ndarray
    intensity: np.ndarray
    support: np.ndarray  # arranged external support level 0..1 (before the partner/class shows up)
    priming: np.ndarray
    cue: np.ndarray  # external reward per completed session
    skill_target: np.ndarray  # self-management skill being trained (0 when not in training)
    skill_rate: np.ndarray  # per-day gain toward it
    medication: np.ndarray  # bool: a drug is prescribed today
    med_adherence: np.ndarray
    med_effect: np.ndarray
    placebo: np.ndarray  # bool: a placebo pill is prescribed today
    placebo_adherence: np.ndarray
    contact: np.ndarray  # professional contacts today (may be fractional)
    in_programme: bool  # the day falls in the programme (not follow-up)


class ArmPlan:
    """Per-person component settings of one arm and the day-by-day inputs they give."""

    def __init__(self, arm: Components, assign: list, stage2: Stage2 | None, measured: dict[str, np.ndarray],
                 weeks: int, medication_effect: float, assign_u: np.ndarray | None = None,
                 follow_up: Components | None = None, follow_up_weeks: int = 0):
        n = len(next(iter(measured.values())))
        self.n, self.programme_days, self.stage2 = n, 7 * weeks, stage2
        self.follow_up, self.end_day = follow_up, 7 * (weeks + follow_up_weeks)
        self.default_med_effect = medication_effect
        f = lambda v=0.0: np.full(n, v, dtype=float)  # noqa: E731
        self.rx_spw, self.rx_min, self.rx_int = np.zeros(n, dtype=int), f(), f()
        self.tit_start_min, self.tit_start_int, self.tit_days, self.tit_from = f(np.nan), f(np.nan), f(0), f(0)
        self.sup_kind = np.zeros(n, dtype=int)
        self.sup_level, self.sup_days, self.sup_fade, self.sup_from = f(), f(), f(), f()
        self.class_size = np.full(n, 8, dtype=int)
        self.prime, self.prime_days, self.prime_from = f(), f(), f()
        self.cue, self.cue_streak, self.cue_days, self.cue_fade, self.cue_from = f(), f(), f(), f(), f()
        self.sm_skill, self.sm_days, self.sm_from, self.sm_until = f(), f(1), f(), f()
        self.med_on = np.zeros(n, dtype=bool)
        self.med_effect, self.med_adh, self.med_from, self.med_until = f(), f(), f(), f()
        self.pl_on = np.zeros(n, dtype=bool)
        self.pl_adh, self.pl_from, self.pl_until = f(), f(), f()
        self.contact_rate, self.contact_days, self.contact_from = f(), f(), f()
        self.augmented = np.zeros(n, dtype=bool)
        self.ids, self._next_id = np.zeros(n, dtype=np.int64), 1  # same id: same settings (see table())
        self.apply(arm, np.ones(n, dtype=bool), start_day=0)
        u = np.zeros(n) if assign_u is None else assign_u
        for rule in assign:
            rows = matches(rule.when, measured) & (u < (1.0 if rule.share is None else rule.share))
            self.apply(rule.add, rows, start_day=0)

    def _window(self, weeks: int | None, start_day: int) -> int:
        """Days a component lasts from start_day: its weeks, cut at the end of its phase (programme or
        follow-up)."""
        end = self.programme_days if start_day < self.programme_days else self.end_day
        return min(7 * weeks, end - start_day) if weeks is not None else end - start_day

    def start_follow_up(self) -> None:
        """The day the programme ends: the arm's follow-up components start for everyone."""
        if self.follow_up is not None:
            self.apply(self.follow_up, np.ones(self.n, dtype=bool), start_day=self.programme_days)

    def apply(self, c: Components, rows: np.ndarray, start_day: int) -> None:
        """Give the components set in c to the participants in rows, starting at start_day."""
        if rows.any():  # people who had the same settings and get the same components still share them
            kinds, inverse = np.unique(self.ids[rows], return_inverse=True)
            self.ids[rows] = self._next_id + inverse
            self._next_id += len(kinds)
        if c.prescription is not None:
            p = c.prescription
            self.rx_spw[rows], self.rx_min[rows], self.rx_int[rows] = p.sessions_per_week, p.minutes, p.intensity
        if c.titration is not None:
            t = c.titration
            self.tit_start_min[rows] = t.start_minutes
            self.tit_start_int[rows] = np.nan if t.start_intensity is None else t.start_intensity
            self.tit_days[rows], self.tit_from[rows] = 7 * t.weeks, start_day
        if c.support is not None:
            s = c.support
            self.sup_kind[rows] = CLASS if s.kind == "class" else PARTNER
            self.sup_level[rows], self.sup_fade[rows] = s.level, 7 * s.fade_weeks
            self.sup_days[rows], self.sup_from[rows] = self._window(s.weeks, start_day), start_day
            self.class_size[rows] = s.class_size
        if c.priming is not None:
            self.prime[rows], self.prime_from[rows] = c.priming.strength, start_day
            self.prime_days[rows] = self._window(c.priming.weeks, start_day)
        if c.reward_cues is not None:
            r = c.reward_cues
            self.cue[rows], self.cue_streak[rows], self.cue_fade[rows] = r.value, r.streak_bonus, 7 * r.fade_weeks
            self.cue_days[rows], self.cue_from[rows] = self._window(r.weeks, start_day), start_day
        if c.self_management is not None:
            m = c.self_management
            self.sm_skill[rows], self.sm_days[rows], self.sm_from[rows] = m.skill, 7 * m.weeks, start_day
            self.sm_until[rows] = start_day + self._window(m.weeks, start_day)
        if c.medication is not None:
            m = c.medication
            self.med_on[rows], self.med_adh[rows] = True, m.adherence
            self.med_effect[rows] = self.default_med_effect if m.effect is None else m.effect
            self.med_from[rows] = start_day
            self.med_until[rows] = _INF if m.continue_after or start_day >= self.programme_days else self.programme_days
        if c.placebo is not None:
            m = c.placebo
            self.pl_on[rows], self.pl_adh[rows], self.pl_from[rows] = True, m.adherence, start_day
            self.pl_until[rows] = _INF if m.continue_after or start_day >= self.programme_days else self.programme_days
        if c.contact is not None:
            self.contact_rate[rows], self.contact_from[rows] = c.contact.sessions_per_week, start_day
            self.contact_days[rows] = self._window(c.contact.weeks, start_day)

    def matrix(self) -> np.ndarray:
        """The per-person settings as one (n, len(PLAN_COLUMNS)) float array, a row per person."""
        table, ids = self.table()
        return table[ids]

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct settings as rows of a (k, len(PLAN_COLUMNS)) float array, and each person's row in it
        (an arm has a handful of distinct settings however many people it has)."""
        _, first, ids = np.unique(self.ids, return_index=True, return_inverse=True)
        table = np.column_stack([getattr(self, c)[first] for c in PLAN_COLUMNS]).astype(float, copy=False)
        return table, ids.astype(np.int64)

    def stage2_rows(self, day: int, severity: np.ndarray, baseline: np.ndarray) -> np.ndarray | None:
        """On the stage-2 decision day, the non-responders who get the augmentation; else None."""
        if self.stage2 is None or day != 7 * self.stage2.week:
            return None
        improvement = 1.0 - severity / np.maximum(baseline, 1e-9)
        return improvement < self.stage2.min_improvement

    def inputs(self, day: int, streak: np.ndarray, enrolled: np.ndarray) -> DayInputs:
        """The design's inputs to every participant on this day (0-based).

        Those who left the trial get no study services (support, contact, skills training, study pills);
        each component's window ends with its phase (programme or follow-up).
        """
        in_prog = day < self.programme_days
        planned = PATTERN[self.rx_spw, day % 7]
        frac = np.clip((day - self.tit_from) / np.maximum(self.tit_days, 1), 0.0, 1.0)
        titrating = ~np.isnan(self.tit_start_min)
        minutes = np.where(titrating, self.tit_start_min + (self.rx_min - self.tit_start_min) * frac, self.rx_min)
        start_int = np.where(np.isnan(self.tit_start_int), self.rx_int, self.tit_start_int)
        intensity = np.where(titrating, start_int + (self.rx_int - start_int) * frac, self.rx_int)
        if not in_prog:  # follow-up: each person keeps the full prescription as their own plan
            minutes, intensity = self.rx_min, self.rx_int
        support = self.sup_level * _faded(day, self.sup_from, self.sup_days, self.sup_fade) * enrolled
        priming = self.prime * _active(day, self.prime_from, self.prime_days)
        cue = self.cue * _faded(day, self.cue_from, self.cue_days, self.cue_fade)
        cue = cue * (1.0 + self.cue_streak * np.minimum(streak, 7) / 7.0)
        training = (day >= self.sm_from) & (day < self.sm_until) & enrolled
        med = self.med_on & (day >= self.med_from) & (day < self.med_until) & enrolled
        placebo = self.pl_on & (day >= self.pl_from) & (day < self.pl_until) & enrolled
        contact = self.contact_rate / 7.0 * _active(day, self.contact_from, self.contact_days) * enrolled
        return DayInputs(planned=planned, prescribed=self.rx_spw > 0, minutes=minutes, intensity=intensity, support=support,
                         priming=priming, cue=cue, skill_target=np.where(training, self.sm_skill, 0.0),
                         skill_rate=np.where(training, self.sm_skill / np.maximum(self.sm_days, 1), 0.0),
                         medication=med, med_adherence=self.med_adh, med_effect=self.med_effect,
                         placebo=placebo, placebo_adherence=self.pl_adh, contact=contact, in_programme=in_prog)


def _active(day: int, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    return (day >= start) & (day < start + length)


def _faded(day: int, start: np.ndarray, length: np.ndarray, fade: np.ndarray) -> np.ndarray:
    """1 inside the window, falling linearly to 0 over its last `fade` days."""
    left = start + length - day
    ramp = np.where(fade > 0, np.clip(left / np.maximum(fade, 1), 0.0, 1.0), 1.0)
    return _active(day, start, length) * ramp


def matches(when: dict[str, TraitRange], traits: dict[str, np.ndarray]) -> np.ndarray:
    """Rows whose (measured) baseline traits fall in every range of an assignment rule."""
    rows = np.ones(len(next(iter(traits.values()))), dtype=bool)
    for trait, rng in when.items():
        if rng.below is not None:
            rows &= traits[trait] < rng.below
        if rng.above is not None:
            rows &= traits[trait] > rng.above
    return rows


def form_groups(rows: np.ndarray, kind: np.ndarray, class_size: np.ndarray, partner: np.ndarray, group: np.ndarray,
                next_group: int) -> int:
    """Pair partners and fill classes among `rows`, in row order; returns the next group id.

    Rows are drawn independently, so neighbours are as random a pairing as any; and a class's members
    sit side by side, which lets the compiled update take a large run in blocks of rows (kernel.visit_blocks)."""
    old = partner[rows & (partner >= 0)]
    partner[old[np.isin(partner[old], np.flatnonzero(rows))]] = -1  # re-pairing leaves no one-sided ties
    partner[rows] = -1
    group[rows] = -1
    for k in (PARTNER, CLASS):
        members = np.flatnonzero(rows & (kind == k))
        if k == PARTNER:
            a, b = members[0:len(members) - 1:2], members[1::2]
            partner[a], partner[b] = b, a
        else:
            size = int(class_size[members[0]]) if len(members) else 1
            group[members] = next_group + np.arange(len(members)) // size
            next_group += -(-len(members) // size)
    return next_group
