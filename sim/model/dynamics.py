"""The daily equations of the virtuous cycle for one participant (the reference), and the state they act on.

`reference_update` applies the equations to one participant with plain floats; the compiled kernel
(sim/model/kernel.py) applies the same equations to every participant of many runs at once, and tests
hold the two to identical trajectories.
docs/ODD.md (section "Submodels") writes each equation out. Severity is in internal HAM-D-17 points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from types import SimpleNamespace

import numpy as np

from sim.model.draws import (  # noqa: F401 - the uses of a participant's daily uniforms, re-exported
    N_UNIFORMS,
    U_ACT,
    U_DROP,
    U_EPISODE,
    U_EVENT,
    U_EVENT_SIZE,
    U_PILL,
    U_QUIT,
    U_RELAPSE,
    U_STOP,
    U_UPTAKE,
)
from sim.model.programme import CLASS, PATTERN, DayInputs

SEVERITY_TOP = 52.0  # the internal scale's maximum (HAM-D-17)
NO_EFFECT_DAYS = 28  # a pill is judged on its effect only after four weeks
PACK_ROWS = 4096  # records packed per block (4096 x ~300 bytes stays in a core's cache)


@dataclass
class State:
    """Per-participant state arrays (struct of arrays); traits end in 0."""

    R0: np.ndarray
    C0: np.ndarray
    S0: np.ndarray  # baseline severity (internal HAM-D-17 points)
    D0: np.ndarray
    F0: np.ndarray
    habit_rate: np.ndarray
    natural: np.ndarray  # this person's partial natural improvement within an episode (fraction of S0)
    resp_ex: np.ndarray  # responsiveness to exercise, drug, non-specific factors (multipliers)
    resp_drug: np.ndarray
    resp_ns: np.ndarray
    age_gain: np.ndarray  # neuroplastic gain multiplier for age
    S: np.ndarray  # severity
    P: np.ndarray  # neuroplastic reserve 0..1
    V: np.ndarray  # expected reward of a session
    E: np.ndarray  # self-efficacy 0..1
    H: np.ndarray  # habit strength 0..1
    F: np.ndarray  # fitness 0..1
    D: np.ndarray  # current distress tolerance 0..1
    M: np.ndarray  # trained self-management skill (cognitive control units)
    K: np.ndarray  # recent professional contact (contacts per week, moving average)
    med: np.ndarray  # drug effect level 0..1
    med_start: np.ndarray  # day the drug was first taken (inf if never)
    X: np.ndarray  # expectancy from taking a pill 0..1
    pill_days: np.ndarray  # days a study pill has been prescribed
    enrolled: np.ndarray  # bool: still in the trial (leaving is absorbing)
    quit: np.ndarray  # bool: gave up the prescribed exercise plan
    own: np.ndarray  # bool: follows an exercise plan of their own
    streak: np.ndarray  # consecutive completed sessions
    misses: np.ndarray  # consecutive missed planned sessions
    attended_last: np.ndarray  # bool: attended the last planned session
    dropout_day: np.ndarray  # day the person left the trial; -1 while in it
    remitted: np.ndarray  # bool: in remission (a state with memory)
    below: np.ndarray  # consecutive days at or below the remission level
    relapses: np.ndarray  # new episodes begun after a remission
    episode_start: np.ndarray  # day the current episode began (0 = baseline)
    episode_end: np.ndarray  # day the current episode would end untreated
    acted: np.ndarray  # bool: exercised today
    minutes_done: np.ndarray  # minutes exercised today

    @classmethod
    def initial(cls, cohort, p: "Coefficients") -> "State":
        """Day-0 state of a cohort (a population.Cohort)."""
        t = cohort.traits
        R0, C0, S0 = t["reward_sensitivity"], t["cognitive_control"], cohort.severity0
        # scalars fill a whole field; arrays are copied into the record array (no copy of their own first)
        return cls.packed(
            R0=R0, C0=C0, S0=S0, D0=t["distress_tolerance"], F0=t["fitness"], habit_rate=cohort.habit_rate,
            natural=np.clip(p.symptoms_natural_improvement + p.symptoms_course_spread * cohort.course, -0.5, 0.9),
            resp_ex=cohort.response["exercise"], resp_drug=cohort.response["drug"],
            resp_ns=cohort.response["nonspecific"],
            age_gain=np.exp(-p.age_plasticity_decline * (t["age"] - 45.0) / 10.0),
            S=S0, P=0.0, V=p.learning_initial_expectancy * R0, E=p.efficacy_initial, H=0.0, F=t["fitness"],
            D=t["distress_tolerance"], M=0.0, K=0.0, med=0.0, med_start=np.inf, X=0.0, pill_days=0.0,
            enrolled=True, quit=False, own=False, streak=0.0, misses=0.0, attended_last=True, dropout_day=-1,
            remitted=False, below=0.0, relapses=0.0, episode_start=0.0, episode_end=cohort.episode_days,
            acted=False, minutes_done=0.0)

    @classmethod
    def packed(cls, **arrays: np.ndarray) -> "State":
        """A state whose arrays are the fields of one record array (`.records`), a participant's state
        side by side in memory, which is what the compiled update reads fastest at scale."""
        kinds = {k: np.asarray(v).dtype for k, v in arrays.items()}
        kinds = {k: np.dtype(np.int64) if d.kind == "i" else d for k, d in kinds.items()}
        n = len(arrays["S"])
        records = np.empty(n, dtype=np.dtype(list(kinds.items()), align=True))
        # row block by row block, each block written while it is in the cache: field by field over the whole
        # array would pass over every record once per field (a million people: 38 passes over 300 MB)
        for a in range(0, n, PACK_ROWS):
            block = records[a:a + PACK_ROWS]
            for k, v in arrays.items():
                block[k] = v[a:a + PACK_ROWS] if np.ndim(v) else v
        return cls.over(records)

    @classmethod
    def over(cls, records: np.ndarray) -> "State":
        """The state whose arrays are views onto the fields of `records`."""
        state = cls(**{f.name: records[f.name] for f in fields(cls)})
        state.records = records
        return state

    def snapshot(self) -> "Snapshot":
        """The state as it is now, for what records and analyses read later: the dynamic fields in SNAPSHOT
        copied, the (never changing) traits shared."""
        return Snapshot(**{f: getattr(self, f) for f in TRAIT_FIELDS},
                        **{f: getattr(self, f).copy() for f in SNAPSHOT})

    def copy(self) -> "State":
        """A snapshot: each array copied."""
        return State(**{f.name: getattr(self, f.name).copy() for f in fields(self)})


TRAIT_FIELDS = ("R0", "C0", "S0", "D0", "F0", "habit_rate", "natural", "resp_ex", "resp_drug", "resp_ns", "age_gain")
SNAPSHOT = ("S", "P", "V", "E", "H", "F", "D", "M", "K", "med", "X", "enrolled", "quit", "own", "remitted", "relapses")


class Snapshot(SimpleNamespace):
    """Selected state arrays at one moment (`State.snapshot`): the traits and the fields in SNAPSHOT."""


class Coefficients:
    """Parameter values as attributes: 'intention.bias' -> .intention_bias."""

    def __init__(self, values: dict[str, float]):
        for k, v in values.items():
            setattr(self, k.replace(".", "_"), float(v))
        k = self.course_episode_shape
        self.episode_scale = self.course_episode_median_days / math.log(2.0) ** (1.0 / k)
        self.own_pattern = PATTERN[int(round(self.own_sessions_per_week))]


def social_factor(state: State, kind: np.ndarray, partner: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Whether my partner showed up (0/1), or the share of my classmates who did, at the last session."""
    present = (state.attended_last & state.enrolled).astype(float)
    out = np.zeros(len(present))
    has_partner = partner >= 0
    out[has_partner] = present[partner[has_partner]]
    in_class = (group >= 0) & (kind == CLASS)
    if in_class.any():
        g = group[in_class]
        size = np.bincount(g)
        total = np.bincount(g, weights=present[in_class])
        others = np.maximum(size[g] - 1, 1)
        out[in_class] = (total[g] - present[in_class]) / others
    return out


def current_reward_control(s: State, p: Coefficients) -> tuple[np.ndarray, np.ndarray]:
    """Current reward sensitivity R(t) and cognitive control C(t): the traits plus what the neuroplastic
    reserve and trained self-management add."""
    R = np.clip(s.R0 + p.plasticity_reward_sensitization * s.P, 0.0, 1.0)
    C = np.clip(s.C0 + p.plasticity_control_gain * s.P + s.M, 0.0, 1.0)
    return R, C


def reference_update(s: State, i: int, x: DayInputs, social: float, kind: int, day: int,
                     u: np.ndarray, z: float, p: Coefficients) -> None:
    """The same day for participant i alone, in plain scalar arithmetic (the reference for tests)."""
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    clip = lambda v, lo, hi: min(hi, max(lo, v))  # noqa: E731
    S, P, V, E, H, F, D, M, K = (float(a[i]) for a in (s.S, s.P, s.V, s.E, s.H, s.F, s.D, s.M, s.K))
    S0, quit, own, enrolled = float(s.S0[i]), bool(s.quit[i]), bool(s.own[i]), bool(s.enrolled[i])
    in_class = kind == CLASS
    from_rx = bool(x.planned[i]) and not quit
    own_day = own and bool(p.own_pattern[day % 7]) and not from_rx
    planned = from_rx or own_day
    minutes = float(x.minutes[i]) if from_rx else p.own_minutes
    intensity = float(x.intensity[i]) if from_rx else p.own_intensity
    arranged = float(x.support[i])
    support = 0.0
    if from_rx:
        support = arranged * (p.support_class_base + (1 - p.support_class_base) * social if in_class else social)
    R = clip(s.R0[i] + p.plasticity_reward_sensitization * P, 0.0, 1.0)
    C = clip(s.C0[i] + p.plasticity_control_gain * P + M, 0.0, 1.0)
    C_eff = C + (1.0 - C) * support
    load = (minutes / p.effort_reference_minutes) * (intensity / p.effort_reference_intensity)
    discomfort = max(0.0, load / (p.effort_fitness_offset + F) - p.effort_tolerance_window * D)
    logit = (p.intention_bias + p.intention_w_expectancy * V + p.intention_w_efficacy * E
             + p.intention_w_habit * H + p.intention_w_priming * x.priming[i] * from_rx
             - p.intention_w_severity * S / 10.0 - p.intention_w_cost * discomfort)
    deliberate = sig(logit) * (p.action_control_floor + (1.0 - p.action_control_floor) * C_eff)
    p_act = 1.0 - (1.0 - p.action_habit_direct * H) * (1.0 - deliberate)
    acted = planned and u[U_ACT] < p_act
    missed = planned and not acted
    if acted:
        lift = p.reward_mood_lift * math.sqrt(min(1.0, minutes / p.effort_reference_minutes))
        social_reward = p.reward_social_value * social if arranged > 0 and from_rx else 0.0
        reward = R * lift - p.reward_discomfort_weight * discomfort + (x.cue[i] if from_rx else 0.0) + social_reward
        V += p.learning_rate * (reward - V)
        cue = float(x.cue[i]) if from_rx else 0.0
        external = max(support, cue / max(cue + R * lift, 1e-9))
        E += p.efficacy_gain * (1.0 - p.efficacy_attribution * external) * (1.0 - E)
        H += s.habit_rate[i] * (1.0 - H)
        D += p.effort_tolerance_growth * (1.0 - D)
        s.streak[i] += 1
        s.misses[i] = 0
    elif missed:
        H *= 1.0 - p.habit_miss_decay
    else:
        H *= 1.0 - p.habit_idle_decay
    leave = False
    if missed:
        s.streak[i] = 0
        E = clip(E * (1.0 - min(1.0, p.efficacy_loss * (1.0 + p.efficacy_severity_amplifier * S / 10.0))), 0.0, 1.0)
        s.misses[i] += 1
        hazard = p.dropout_base * (1.0 + p.dropout_streak * (s.misses[i] - 1)) * (1.0 - E) ** p.dropout_efficacy_power
        if u[U_DROP] < hazard:
            if from_rx:
                quit = True
                leave = bool(x.in_programme) and enrolled
            if own_day:
                own = False
    if planned:
        s.attended_last[i] = acted
    has_plan = bool(x.prescribed[i]) and not quit
    if not has_plan and not own:
        rate = (p.own_uptake if x.in_programme else p.own_uptake_follow_up) * E / p.efficacy_initial
        if u[U_UPTAKE] < rate:
            own = True
            s.misses[i] = 0
    dose = load if acted else 0.0
    P = P + p.plasticity_gain * s.age_gain[i] * dose * (1.0 - P) - p.plasticity_decay * P
    F = F + p.fitness_gain * dose * (1.0 - F) - p.fitness_detraining * (F - s.F0[i])
    room = max(0.0, 1.0 + p.self_management_compensation * (0.5 - s.C0[i]) / 0.5)
    if x.skill_target[i] > 0:
        M = min(max(M, x.skill_target[i] * room), M + x.skill_rate[i] * room)
    else:
        M *= 1.0 - p.self_management_retention
    if acted:
        M += p.self_regulation_practice_gain * (1.0 - support) * max(0.0, p.self_regulation_practice_max - M)
    contacts = x.contact[i] + (arranged if acted and in_class and from_rx else 0.0)
    K += (7.0 * contacts - K) / p.symptoms_contact_memory_days
    on_drug, on_placebo = bool(x.medication[i]), bool(x.placebo[i])
    stop = False
    if on_drug or on_placebo:
        s.pill_days[i] += 1
        shortfall = clip((S / S0 - 0.5) / 0.5, 0.0, 1.0) if s.pill_days[i] > NO_EFFECT_DAYS else 0.0
        stop_h = (p.pill_stop_base * math.exp(-s.pill_days[i] / p.pill_stop_settle_days)
                  + p.pill_stop_no_benefit * shortfall
                  + (p.pill_stop_side_effects * math.exp(-s.pill_days[i] / 14.0) if on_drug else 0.0))
        stop = u[U_STOP] < stop_h
        leave = leave or (stop and enrolled)
    if leave:
        s.dropout_day[i] = day
        enrolled, quit = False, True
    drug = on_drug and not stop and u[U_PILL] < x.med_adherence[i]
    placebo = on_placebo and not stop and u[U_PILL] < x.placebo_adherence[i]
    if drug and math.isinf(s.med_start[i]):
        s.med_start[i] = day
    med = float(s.med[i])
    if drug and day - s.med_start[i] >= p.medication_onset_days:
        med += (1.0 - med) / p.medication_build_days
    elif not drug:
        med *= 1.0 - 1.0 / p.medication_washout_days
    X = float(s.X[i])
    X += ((1.0 if drug or placebo else 0.0) - X) / p.placebo_build_days
    happened = u[U_EVENT] < p.symptoms_event_rate
    event = p.symptoms_event_size * -math.log1p(-u[U_EVENT_SIZE]) if happened else 0.0
    remitted = bool(s.remitted[i])
    if remitted and happened:
        risk = (p.episode_relapse_given_event * (1.0 - p.episode_drug_protection * med)
                * (1.0 - p.episode_exercise_protection * 0.5 * (P + H)))
        if u[U_RELAPSE] < risk:
            remitted = False
            s.below[i] = 0.0
            s.relapses[i] += 1
            s.episode_start[i] = day
            s.episode_end[i] = day + p.episode_scale * (-math.log1p(-u[U_EPISODE])) ** (1.0 / p.course_episode_shape)
    if happened:
        H *= 1.0 - p.habit_event_disruption
        if u[U_QUIT] < p.habit_event_quit:
            own = False
            if not x.in_programme and x.prescribed[i]:
                quit = True
    natural = s.natural[i] * (1.0 - math.exp(-(day - s.episode_start[i]) / p.symptoms_natural_days))
    contact_b = p.symptoms_contact_benefit * K / (K + p.symptoms_contact_half)
    nonspecific_b = min(0.95, s.resp_ns[i] * (1.0 - (1.0 - contact_b) * (1.0 - p.placebo_benefit * X)))
    Ph = P ** p.symptoms_plasticity_hill
    exercise_b = min(0.95, s.resp_ex[i] * p.symptoms_plasticity_benefit
                     * Ph / (Ph + p.symptoms_plasticity_half ** p.symptoms_plasticity_hill))
    efficacy_b = p.symptoms_efficacy_benefit * max(0.0, E - p.efficacy_initial)
    med_b = min(0.95, s.resp_drug[i] * x.med_effect[i] * med)
    overlap = p.symptoms_treatment_overlap
    treatment_b = (1 - overlap) * (exercise_b + med_b - exercise_b * med_b) + overlap * max(exercise_b, med_b)
    target = S0 * (1 - natural) * (1 - nonspecific_b) * (1 - efficacy_b) * (1 - treatment_b)
    if remitted or day >= s.episode_end[i]:
        target = min(target, p.episode_well_fraction * S0)
    noise = p.symptoms_noise_sd * math.sqrt(S / 10.0) * z
    S = clip(S + (target - S) / p.symptoms_relaxation_days + noise + event, 0.0, SEVERITY_TOP)
    s.below[i] = s.below[i] + 1.0 if S <= p.episode_remission_level else 0.0
    remitted = remitted or s.below[i] >= p.episode_confirm_days
    for arr, val in ((s.S, S), (s.P, P), (s.V, V), (s.E, E), (s.H, H), (s.F, F), (s.D, D), (s.M, M), (s.K, K),
                     (s.med, med), (s.X, X)):
        arr[i] = val
    s.quit[i], s.own[i], s.enrolled[i], s.remitted[i] = quit, own, enrolled, remitted
    s.acted[i] = acted
    s.minutes_done[i] = minutes if acted else 0.0
