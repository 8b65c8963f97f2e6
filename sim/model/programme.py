"""An arm's design as a table of its distinct settings, each person's row in it, and the day's inputs.

Arm components (prescription, titration, support, ...) can differ between people in matched
designs (assignment rules) and change at stage 2 of adaptive designs. Each component setting, with
the day it started, is a column of `ArmPlan.settings`; each person points to a row (`ArmPlan.ids`).
An arm has a handful of distinct settings however many people it has, so the build writes at most
one integer per person rather than a column of every setting per person (a million people: 8 MB
rather than about 300 MB of memory touched for the first time, which is slow on a sandboxed
machine). A setting per person (`plan.rx_spw`, ...) is read through ids when asked for.
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
# ArmPlan's settings, in the column order of ArmPlan.table() (what the compiled kernel reads)
PLAN_COLUMNS = ("rx_spw", "rx_min", "rx_int", "tit_start_min", "tit_start_int", "tit_days", "tit_from", "sup_kind",
                "sup_level", "sup_days", "sup_fade", "sup_from", "prime", "prime_days", "prime_from", "cue",
                "cue_streak", "cue_days", "cue_fade", "cue_from", "sm_skill", "sm_days", "sm_from", "sm_until",
                "med_on", "med_effect", "med_adh", "med_from", "med_until", "pl_on", "pl_adh", "pl_from", "pl_until",
                "contact_rate", "contact_days", "contact_from")
# the columns of ArmPlan.settings: the kernel's, then what only the forming of classes reads
SETTING_COLUMNS = PLAN_COLUMNS + ("class_size",)
_AT = {name: j for j, name in enumerate(SETTING_COLUMNS)}
_DEFAULT = dict.fromkeys(SETTING_COLUMNS, 0.0) | {"tit_start_min": np.nan, "tit_start_int": np.nan, "sm_days": 1.0,
                                                  "class_size": 8.0}
# the type of a setting per person (the table holds floats, which hold these values exactly)
_DTYPE = dict.fromkeys(SETTING_COLUMNS, np.float64) | {"rx_spw": np.int64, "sup_kind": np.int64,
                                                       "class_size": np.int64, "med_on": np.bool_,
                                                       "pl_on": np.bool_}


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
    """The component settings of one arm, a row per distinct setting and a row id per person, and the
    day-by-day inputs they give. Each setting per person is a read-only property (e.g. `plan.rx_spw`);
    settings change only through `apply`."""

    def __init__(self, arm: Components, assign: list, stage2: Stage2 | None, measured: dict[str, np.ndarray],
                 weeks: int, medication_effect: float, assign_u: np.ndarray | None = None,
                 follow_up: Components | None = None, follow_up_weeks: int = 0):
        n = len(next(iter(measured.values())))
        self.n, self.programme_days, self.stage2 = n, 7 * weeks, stage2
        self.follow_up, self.end_day = follow_up, 7 * (weeks + follow_up_weeks)
        self.default_med_effect = medication_effect
        self.augmented = np.zeros(n, dtype=bool)
        # a row of SETTING_COLUMNS per distinct setting, each person's row, and the people in each row
        self.settings = np.array([[_DEFAULT[c] for c in SETTING_COLUMNS]])
        self.ids = np.zeros(n, dtype=np.int64)
        self._count = np.array([n], dtype=np.int64)
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
        """Give the components set in c to the participants in rows (a boolean mask), starting at start_day."""
        everyone = bool(rows.all())
        old = self.ids if everyone else self.ids[rows]
        among = np.bincount(old, minlength=len(self.settings))
        hit = np.flatnonzero(among)
        # a row whose people are all in rows changes in place (so the build writes no ids); a row only some
        # of whose people are in rows is copied for them, and they move to the copy
        split = hit[among[hit] < self._count[hit]]
        if len(split):
            moved = np.arange(len(self.settings))
            moved[split] = len(self.settings) + np.arange(len(split))
            self.ids[rows] = moved[old]
            self.settings = np.concatenate([self.settings, self.settings[split]])
            self._count[split] -= among[split]
            self._count = np.concatenate([self._count, among[split]])
            hit = moved[hit]
        for name, value in self._values(c, start_day).items():
            self.settings[hit, _AT[name]] = value

    def _values(self, c: Components, start_day: int) -> dict[str, float]:
        """The settings that the components set in c give, starting at start_day."""
        v: dict[str, float] = {}
        if c.prescription is not None:
            p = c.prescription
            v |= {"rx_spw": p.sessions_per_week, "rx_min": p.minutes, "rx_int": p.intensity}
        if c.titration is not None:
            t = c.titration
            v |= {"tit_start_min": t.start_minutes, "tit_days": 7 * t.weeks, "tit_from": start_day,
                  "tit_start_int": np.nan if t.start_intensity is None else t.start_intensity}
        if c.support is not None:
            s = c.support
            v |= {"sup_kind": CLASS if s.kind == "class" else PARTNER, "sup_level": s.level,
                  "sup_fade": 7 * s.fade_weeks, "sup_days": self._window(s.weeks, start_day), "sup_from": start_day,
                  "class_size": s.class_size}
        if c.priming is not None:
            v |= {"prime": c.priming.strength, "prime_from": start_day,
                  "prime_days": self._window(c.priming.weeks, start_day)}
        if c.reward_cues is not None:
            r = c.reward_cues
            v |= {"cue": r.value, "cue_streak": r.streak_bonus, "cue_fade": 7 * r.fade_weeks,
                  "cue_days": self._window(r.weeks, start_day), "cue_from": start_day}
        if c.self_management is not None:
            m = c.self_management
            v |= {"sm_skill": m.skill, "sm_days": 7 * m.weeks, "sm_from": start_day,
                  "sm_until": start_day + self._window(m.weeks, start_day)}
        # pills prescribed in the programme stop with it unless continued; started in follow-up, they run on
        if c.medication is not None:
            m = c.medication
            v |= {"med_on": True, "med_adh": m.adherence, "med_from": start_day,
                  "med_effect": self.default_med_effect if m.effect is None else m.effect,
                  "med_until": _INF if m.continue_after or start_day >= self.programme_days else self.programme_days}
        if c.placebo is not None:
            m = c.placebo
            v |= {"pl_on": True, "pl_adh": m.adherence, "pl_from": start_day,
                  "pl_until": _INF if m.continue_after or start_day >= self.programme_days else self.programme_days}
        if c.contact is not None:
            v |= {"contact_rate": c.contact.sessions_per_week, "contact_from": start_day,
                  "contact_days": self._window(c.contact.weeks, start_day)}
        return v

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """The settings the kernel reads (k rows of PLAN_COLUMNS, floats), and each person's row in them."""
        return np.ascontiguousarray(self.settings[:, :len(PLAN_COLUMNS)]), self.ids

    def matrix(self) -> np.ndarray:
        """The settings per person as one (n, len(PLAN_COLUMNS)) float array, a row per person."""
        table, ids = self.table()
        return table[ids]

    def setting(self, name: str, person: int) -> float:
        """One person's setting `name` (a column of SETTING_COLUMNS)."""
        return self.settings[self.ids[person], _AT[name]]

    def having(self, name: str, *values: float) -> np.ndarray:
        """Per person: whether their setting `name` is one of values (tested once per row of settings)."""
        return np.isin(self.settings[:, _AT[name]], values)[self.ids]

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


def form_groups(rows: np.ndarray, plan: ArmPlan, partner: np.ndarray, group: np.ndarray, next_group: int) -> int:
    """Pair partners and fill classes among `rows`, in row order; returns the next group id.

    Rows are drawn independently, so neighbours are as random a pairing as any; and a class's members
    sit side by side, which lets the compiled update take a large run in blocks of rows (blocks.visit_blocks)."""
    old = partner[rows & (partner >= 0)]
    if len(old):  # re-pairing leaves no one-sided ties
        partner[old[np.isin(partner[old], np.flatnonzero(rows))]] = -1
    partner[rows] = -1
    group[rows] = -1
    for k in (PARTNER, CLASS):
        members = np.flatnonzero(rows & plan.having("sup_kind", k))
        if k == PARTNER:
            a, b = members[0:len(members) - 1:2], members[1::2]
            partner[a], partner[b] = b, a
        else:
            size = int(plan.setting("class_size", members[0])) if len(members) else 1
            group[members] = next_group + np.arange(len(members)) // size
            next_group += -(-len(members) // size)
    return next_group


def _per_person(name: str) -> property:
    j, dtype = _AT[name], _DTYPE[name]

    def get(self: ArmPlan) -> np.ndarray:
        out = self.settings[:, j].astype(dtype)[self.ids]
        out.flags.writeable = False  # a copy: writing to it would change nothing, so it refuses
        return out
    return property(get, doc=f"Each person's {name} (read through ids; change it with apply).")


for _name in SETTING_COLUMNS:  # plan.rx_spw, plan.sup_kind, ...: each setting per person, on demand
    setattr(ArmPlan, _name, _per_person(_name))
