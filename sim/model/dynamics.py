"""The daily equations of the virtuous cycle, vectorized over participants, and a per-person reference.

`daily_update` advances every participant by one day at once; `reference_update` applies the same
equations to one participant with plain floats. Tests hold the two to identical trajectories.
docs/ODD.md (section "Submodels") writes each equation out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from sim.model.programme import CLASS, DayInputs

# Columns of the fixed block of uniforms each participant draws every day (common random numbers).
U_ACT, U_DROP, U_EVENT, U_EVENT_SIZE, U_PILL = range(5)
N_UNIFORMS = 5


@dataclass
class State:
    """Per-participant state arrays (struct of arrays); traits end in 0."""

    R0: np.ndarray
    C0: np.ndarray
    S0: np.ndarray
    D0: np.ndarray
    F0: np.ndarray
    habit_rate: np.ndarray
    natural: np.ndarray  # this person's eventual natural improvement (fraction of S0)
    S: np.ndarray  # severity (scale points)
    P: np.ndarray  # neuroplastic reserve 0..1
    V: np.ndarray  # expected reward of a session
    E: np.ndarray  # self-efficacy 0..1
    H: np.ndarray  # habit strength 0..1
    F: np.ndarray  # fitness 0..1
    D: np.ndarray  # current distress tolerance 0..1
    M: np.ndarray  # trained self-management skill (cognitive control units)
    K: np.ndarray  # recent professional contact (contacts per week, moving average)
    med: np.ndarray  # drug effect level 0..1
    med_start: np.ndarray  # day the drug was first prescribed (inf if never)
    enrolled: np.ndarray  # bool; dropout is absorbing
    streak: np.ndarray  # consecutive completed sessions
    misses: np.ndarray  # consecutive missed planned sessions
    attended_last: np.ndarray  # bool: attended the last planned session
    dropout_day: np.ndarray  # -1 while enrolled
    acted: np.ndarray  # bool: exercised today
    minutes_done: np.ndarray  # minutes exercised today

    @classmethod
    def initial(cls, traits: dict[str, np.ndarray], habit_rate: np.ndarray, course: np.ndarray,
                p: "Coefficients") -> "State":
        """Day-0 state of a cohort."""
        R0, C0, S0 = traits["reward_sensitivity"], traits["cognitive_control"], traits["baseline_severity"]
        D0, F0 = traits["distress_tolerance"], traits["fitness"]
        n, z = len(S0), lambda: np.zeros(len(S0))
        return cls(R0=R0.copy(), C0=C0.copy(), S0=S0.copy(), D0=D0.copy(), F0=F0.copy(),
                   habit_rate=habit_rate.copy(),
                   natural=np.clip(p.symptoms_natural_improvement + p.symptoms_course_spread * course, -0.5, 0.9),
                   S=S0.copy(), P=z(), V=p.learning_initial_expectancy * R0,
                   E=np.full(n, p.efficacy_initial), H=z(), F=F0.copy(), D=D0.copy(), M=z(), K=z(), med=z(),
                   med_start=np.full(n, np.inf), enrolled=np.ones(n, dtype=bool), streak=z(), misses=z(),
                   attended_last=np.ones(n, dtype=bool), dropout_day=np.full(n, -1),
                   acted=np.zeros(n, dtype=bool), minutes_done=z())

    def copy(self) -> "State":
        return State(**{f.name: getattr(self, f.name).copy() for f in fields(self)})


class Coefficients:
    """Parameter values as attributes: 'intention.bias' -> .intention_bias."""

    def __init__(self, values: dict[str, float], scale_max: float):
        for k, v in values.items():
            setattr(self, k.replace(".", "_"), float(v))
        self.scale_max = float(scale_max)


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


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def daily_update(s: State, x: DayInputs, social: np.ndarray, kind: np.ndarray, day: int,
                 u: np.ndarray, z: np.ndarray, p: Coefficients) -> None:
    """Advance every participant by one day, in place."""
    in_class = kind == CLASS
    support = x.support * np.where(in_class, p.support_class_base + (1 - p.support_class_base) * social, social)
    R = np.clip(s.R0 + p.plasticity_reward_sensitization * s.P, 0.0, 1.0)
    C = np.clip(s.C0 + p.plasticity_control_gain * s.P + s.M, 0.0, 1.0)
    C_eff = C + (1.0 - C) * support
    load = (x.minutes / p.effort_reference_minutes) * (x.intensity / p.effort_reference_intensity)
    effort = load / (p.effort_fitness_offset + s.F)
    discomfort = np.maximum(0.0, effort - p.effort_tolerance_window * s.D)
    logit = (p.intention_bias + p.intention_w_expectancy * s.V + p.intention_w_efficacy * s.E
             + p.intention_w_habit * s.H + p.intention_w_priming * x.priming
             - p.intention_w_severity * s.S / 10.0 - p.intention_w_cost * discomfort)
    deliberate = _sigmoid(logit) * (p.action_control_floor + (1.0 - p.action_control_floor) * C_eff)
    p_act = 1.0 - (1.0 - p.action_habit_direct * s.H) * (1.0 - deliberate)
    planned = x.planned & s.enrolled
    acted = planned & (u[:, U_ACT] < p_act)
    missed = planned & ~acted

    # a completed session: reward, prediction-error learning, mastery, habit, exposure
    lift = p.reward_mood_lift * np.sqrt(np.minimum(1.0, x.minutes / p.effort_reference_minutes))
    social_reward = p.reward_social_value * social * (x.support > 0)  # only while support is arranged
    reward = R * lift - p.reward_discomfort_weight * discomfort + x.cue + social_reward
    s.V = np.where(acted, s.V + p.learning_rate * (reward - s.V), s.V)
    s.E = np.where(acted, s.E + p.efficacy_gain * (1.0 - s.E), s.E)
    s.H = np.where(acted, s.H + s.habit_rate * (1.0 - s.H),
                   s.H * (1.0 - np.where(missed, p.habit_miss_decay, p.habit_idle_decay)))
    s.D = np.where(acted, s.D + p.effort_tolerance_growth * (1.0 - s.D), s.D)
    s.streak = np.where(acted, s.streak + 1, np.where(missed, 0, s.streak))

    # a missed planned session: confidence falls (more when severe), habit slips, dropout hazard
    loss = np.minimum(1.0, p.efficacy_loss * (1.0 + p.efficacy_severity_amplifier * s.S / 10.0))
    s.E = np.where(missed, s.E * (1.0 - loss), s.E)
    s.E = np.clip(s.E, 0.0, 1.0)
    s.misses = np.where(acted, 0, np.where(missed, s.misses + 1, s.misses))
    hazard = p.dropout_base * (1.0 + p.dropout_streak * (s.misses - 1)) * (1.0 - s.E)
    drop = missed & (u[:, U_DROP] < hazard)
    s.enrolled = s.enrolled & ~drop
    s.dropout_day = np.where(drop, day, s.dropout_day)
    s.attended_last = np.where(planned, acted, s.attended_last)

    # dose feeds the neuroplastic reserve and fitness; skills and contact accumulate
    dose = np.where(acted, load, 0.0)
    s.P = s.P + p.plasticity_gain * dose * (1.0 - s.P) - p.plasticity_decay * s.P
    s.F = s.F + p.fitness_gain * dose * (1.0 - s.F) - p.fitness_detraining * (s.F - s.F0)
    s.M = np.where(x.skill_target > 0, np.minimum(np.maximum(s.M, x.skill_target), s.M + x.skill_rate),
                   s.M * (1.0 - p.self_management_retention))
    # self-initiated sessions are practice in self-regulation; fully supported ones teach little
    s.M = np.where(acted, s.M + p.self_regulation_practice_gain * (1.0 - support)
                   * np.maximum(0.0, p.self_regulation_practice_max - s.M), s.M)
    contacts = x.contact + (acted & in_class) * x.support
    s.K = s.K + (7.0 * contacts - s.K) / p.symptoms_contact_memory_days
    s.med_start = np.where(x.medication & np.isinf(s.med_start), day, s.med_start)
    taking = x.medication & (u[:, U_PILL] < x.med_adherence)
    working = taking & (day - s.med_start >= p.medication_onset_days)
    s.med = np.where(working, s.med + (1.0 - s.med) / p.medication_build_days,
                     np.where(taking, s.med, s.med * (1.0 - 1.0 / p.medication_washout_days)))

    # symptoms relax toward the target that natural course, contact, exercise and medication set
    natural = s.natural * (1.0 - np.exp(-day / p.symptoms_natural_days))
    contact_b = p.symptoms_contact_benefit * s.K / (s.K + p.symptoms_contact_half)
    Ph = s.P ** p.symptoms_plasticity_hill
    exercise_b = p.symptoms_plasticity_benefit * Ph / (Ph + p.symptoms_plasticity_half ** p.symptoms_plasticity_hill)
    efficacy_b = p.symptoms_efficacy_benefit * np.maximum(0.0, s.E - p.efficacy_initial)
    med_b = x.med_effect * s.med
    overlap = p.symptoms_treatment_overlap  # exercise and drug partly act through the same pathway
    treatment_b = (1 - overlap) * (exercise_b + med_b - exercise_b * med_b) + overlap * np.maximum(exercise_b, med_b)
    target = s.S0 * (1 - natural) * (1 - contact_b) * (1 - efficacy_b) * (1 - treatment_b)
    event = (u[:, U_EVENT] < p.symptoms_event_rate) * p.symptoms_event_size * -np.log1p(-u[:, U_EVENT_SIZE])
    s.S = np.clip(s.S + (target - s.S) / p.symptoms_relaxation_days + p.symptoms_noise_sd * z + event,
                  0.0, p.scale_max)
    s.acted = acted
    s.minutes_done = np.where(acted, x.minutes, 0.0)


def reference_update(s: State, i: int, x: DayInputs, social: float, kind: int, day: int,
                     u: np.ndarray, z: float, p: Coefficients) -> None:
    """The same day for participant i alone, in plain scalar arithmetic (the reference for tests)."""
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    clip = lambda v, lo, hi: min(hi, max(lo, v))  # noqa: E731
    S, P, V, E, H, F, D, M, K = (float(a[i]) for a in (s.S, s.P, s.V, s.E, s.H, s.F, s.D, s.M, s.K))
    minutes, intensity = float(x.minutes[i]), float(x.intensity[i])
    in_class = kind == CLASS
    arranged = float(x.support[i])
    support = arranged * (p.support_class_base + (1 - p.support_class_base) * social if in_class else social)
    R = clip(s.R0[i] + p.plasticity_reward_sensitization * P, 0.0, 1.0)
    C = clip(s.C0[i] + p.plasticity_control_gain * P + M, 0.0, 1.0)
    C_eff = C + (1.0 - C) * support
    load = (minutes / p.effort_reference_minutes) * (intensity / p.effort_reference_intensity)
    discomfort = max(0.0, load / (p.effort_fitness_offset + F) - p.effort_tolerance_window * D)
    logit = (p.intention_bias + p.intention_w_expectancy * V + p.intention_w_efficacy * E
             + p.intention_w_habit * H + p.intention_w_priming * x.priming[i]
             - p.intention_w_severity * S / 10.0 - p.intention_w_cost * discomfort)
    deliberate = sig(logit) * (p.action_control_floor + (1.0 - p.action_control_floor) * C_eff)
    p_act = 1.0 - (1.0 - p.action_habit_direct * H) * (1.0 - deliberate)
    planned = bool(x.planned[i]) and bool(s.enrolled[i])
    acted = planned and u[U_ACT] < p_act
    missed = planned and not acted
    if acted:
        lift = p.reward_mood_lift * math.sqrt(min(1.0, minutes / p.effort_reference_minutes))
        social_reward = p.reward_social_value * social if arranged > 0 else 0.0
        reward = R * lift - p.reward_discomfort_weight * discomfort + x.cue[i] + social_reward
        V += p.learning_rate * (reward - V)
        E += p.efficacy_gain * (1.0 - E)
        H += s.habit_rate[i] * (1.0 - H)
        D += p.effort_tolerance_growth * (1.0 - D)
        s.streak[i] += 1
        s.misses[i] = 0
    elif missed:
        H *= 1.0 - p.habit_miss_decay
    else:
        H *= 1.0 - p.habit_idle_decay
    if missed:
        s.streak[i] = 0
        E = clip(E * (1.0 - min(1.0, p.efficacy_loss * (1.0 + p.efficacy_severity_amplifier * S / 10.0))), 0.0, 1.0)
        s.misses[i] += 1
        if u[U_DROP] < p.dropout_base * (1.0 + p.dropout_streak * (s.misses[i] - 1)) * (1.0 - E):
            s.enrolled[i] = False
            s.dropout_day[i] = day
    if planned:
        s.attended_last[i] = acted
    dose = load if acted else 0.0
    P = P + p.plasticity_gain * dose * (1.0 - P) - p.plasticity_decay * P
    F = F + p.fitness_gain * dose * (1.0 - F) - p.fitness_detraining * (F - s.F0[i])
    if x.skill_target[i] > 0:
        M = min(max(M, x.skill_target[i]), M + x.skill_rate[i])
    else:
        M *= 1.0 - p.self_management_retention
    if acted:
        M += p.self_regulation_practice_gain * (1.0 - support) * max(0.0, p.self_regulation_practice_max - M)
    contacts = x.contact[i] + (arranged if acted and in_class else 0.0)
    K += (7.0 * contacts - K) / p.symptoms_contact_memory_days
    if x.medication[i] and math.isinf(s.med_start[i]):
        s.med_start[i] = day
    taking = bool(x.medication[i]) and u[U_PILL] < x.med_adherence[i]
    if taking and day - s.med_start[i] >= p.medication_onset_days:
        s.med[i] += (1.0 - s.med[i]) / p.medication_build_days
    elif not taking:
        s.med[i] *= 1.0 - 1.0 / p.medication_washout_days
    natural = s.natural[i] * (1.0 - math.exp(-day / p.symptoms_natural_days))
    contact_b = p.symptoms_contact_benefit * K / (K + p.symptoms_contact_half)
    Ph = P ** p.symptoms_plasticity_hill
    exercise_b = p.symptoms_plasticity_benefit * Ph / (Ph + p.symptoms_plasticity_half ** p.symptoms_plasticity_hill)
    efficacy_b = p.symptoms_efficacy_benefit * max(0.0, E - p.efficacy_initial)
    med_b = x.med_effect[i] * s.med[i]
    overlap = p.symptoms_treatment_overlap
    treatment_b = (1 - overlap) * (exercise_b + med_b - exercise_b * med_b) + overlap * max(exercise_b, med_b)
    target = s.S0[i] * (1 - natural) * (1 - contact_b) * (1 - efficacy_b) * (1 - treatment_b)
    event = (p.symptoms_event_size * -math.log1p(-u[U_EVENT_SIZE])) if u[U_EVENT] < p.symptoms_event_rate else 0.0
    S = clip(S + (target - S) / p.symptoms_relaxation_days + p.symptoms_noise_sd * z + event, 0.0, p.scale_max)
    for arr, val in ((s.S, S), (s.P, P), (s.V, V), (s.E, E), (s.H, H), (s.F, F), (s.D, D), (s.M, M), (s.K, K)):
        arr[i] = val
    s.acted[i] = acted
    s.minutes_done[i] = minutes if acted else 0.0
