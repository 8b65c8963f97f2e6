"""The daily update fused into one compiled loop over participants (numba, nopython, cached).

The same equations as `dynamics.reference_update`, written once more for the compiler: one pass over
the people, no temporary arrays. tests/test_engine.py holds it equal to the per-agent reference on every
state array, every day, in every mechanism.
"""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import fields

import numpy as np
from numba import njit

from sim.model.dynamics import (
    NO_EFFECT_DAYS,
    SEVERITY_TOP,
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
    Coefficients,
    State,
)
from sim.model.programme import CLASS, DayInputs

_COEF_TYPES: dict[tuple[str, ...], type] = {}
INPUT_FIELDS = ("planned", "prescribed", "minutes", "intensity", "support", "priming", "cue", "skill_target",
                "skill_rate", "medication", "med_adherence", "med_effect", "placebo", "placebo_adherence", "contact")
STATE_FIELDS = tuple(f.name for f in fields(State))


def packed(p: Coefficients) -> tuple:
    """The coefficients as a namedtuple of floats, which compiled code reads by attribute."""
    names = tuple(sorted(k for k, v in vars(p).items() if isinstance(v, float)))
    if names not in _COEF_TYPES:
        _COEF_TYPES[names] = namedtuple("Coef", names)
    return _COEF_TYPES[names](*(getattr(p, k) for k in names))


class Fused:
    """The compiled update bound to one model's state arrays and coefficients (gathered once, not daily)."""

    def __init__(self, s: State, p: Coefficients):
        self.arrays = tuple(getattr(s, f) for f in STATE_FIELDS)
        self.coef, self.own_pattern = packed(p), p.own_pattern

    def update(self, x: DayInputs, social: np.ndarray, kind: np.ndarray, day: int, u: np.ndarray,
               z: np.ndarray) -> None:
        """Advance every participant by one day, in place, in one compiled pass."""
        _kernel(day, bool(x.in_programme), bool(self.own_pattern[day % 7]), self.coef, self.arrays,
                tuple(getattr(x, f) for f in INPUT_FIELDS), social, kind, u, z)


@njit(cache=True)
def _kernel(day, in_programme, own_today, p, st, xs, social, kind, u, z):  # noqa: C901 - one day, as written
    (R0, C0, S0_, D0, F0, habit_rate, natural_, resp_ex, resp_drug, resp_ns, age_gain, S_, P_, V_, E_, H_, F_, D_,
     M_, K_, med_, med_start, X_, pill_days, enrolled_, quit_, own_, streak, misses, attended_last, dropout_day,
     remitted_, below, relapses, episode_start, episode_end, acted_, minutes_done) = st
    (planned_x, prescribed, minutes_x, intensity_x, support_x, priming, cue_x, skill_target, skill_rate, medication,
     med_adherence, med_effect, placebo_x, placebo_adherence, contact) = xs
    for i in range(S_.shape[0]):
        S, P, V, E, H, F, D, M, K = S_[i], P_[i], V_[i], E_[i], H_[i], F_[i], D_[i], M_[i], K_[i]
        S0, quit, own, enrolled = S0_[i], quit_[i], own_[i], enrolled_[i]
        in_class = kind[i] == CLASS
        from_rx = planned_x[i] and not quit
        own_day = own and own_today and not from_rx
        planned = from_rx or own_day
        minutes = minutes_x[i] if from_rx else p.own_minutes
        intensity = intensity_x[i] if from_rx else p.own_intensity
        arranged = support_x[i]
        support = 0.0
        if from_rx:
            if in_class:
                support = arranged * (p.support_class_base + (1 - p.support_class_base) * social[i])
            else:
                support = arranged * social[i]
        R = min(1.0, max(0.0, R0[i] + p.plasticity_reward_sensitization * P))
        C = min(1.0, max(0.0, C0[i] + p.plasticity_control_gain * P + M))
        C_eff = C + (1.0 - C) * support
        load = (minutes / p.effort_reference_minutes) * (intensity / p.effort_reference_intensity)
        discomfort = max(0.0, load / (p.effort_fitness_offset + F) - p.effort_tolerance_window * D)
        logit = (p.intention_bias + p.intention_w_expectancy * V + p.intention_w_efficacy * E
                 + p.intention_w_habit * H + p.intention_w_priming * priming[i] * from_rx
                 - p.intention_w_severity * S / 10.0 - p.intention_w_cost * discomfort)
        deliberate = 1.0 / (1.0 + math.exp(-logit)) * (p.action_control_floor
                                                        + (1.0 - p.action_control_floor) * C_eff)
        p_act = 1.0 - (1.0 - p.action_habit_direct * H) * (1.0 - deliberate)
        acted = planned and u[i, U_ACT] < p_act
        missed = planned and not acted
        if acted:
            lift = p.reward_mood_lift * math.sqrt(min(1.0, minutes / p.effort_reference_minutes))
            social_reward = p.reward_social_value * social[i] if arranged > 0 and from_rx else 0.0
            cue = cue_x[i] if from_rx else 0.0
            reward = R * lift - p.reward_discomfort_weight * discomfort + cue + social_reward
            V += p.learning_rate * (reward - V)
            external = max(support, cue / max(cue + R * lift, 1e-9))
            E += p.efficacy_gain * (1.0 - p.efficacy_attribution * external) * (1.0 - E)
            H += habit_rate[i] * (1.0 - H)
            D += p.effort_tolerance_growth * (1.0 - D)
            streak[i] += 1
            misses[i] = 0
        elif missed:
            H *= 1.0 - p.habit_miss_decay
        else:
            H *= 1.0 - p.habit_idle_decay
        leave = False
        if missed:
            streak[i] = 0
            E = min(1.0, max(0.0, E * (1.0 - min(1.0, p.efficacy_loss
                                                    * (1.0 + p.efficacy_severity_amplifier * S / 10.0)))))
            misses[i] += 1
            hazard = (p.dropout_base * (1.0 + p.dropout_streak * (misses[i] - 1))
                      * (1.0 - E) ** p.dropout_efficacy_power)
            if u[i, U_DROP] < hazard:
                if from_rx:
                    quit = True
                    leave = in_programme and enrolled
                if own_day:
                    own = False
        if planned:
            attended_last[i] = acted
        has_plan = prescribed[i] and not quit
        if not has_plan and not own:
            rate = (p.own_uptake if in_programme else p.own_uptake_follow_up) * E / p.efficacy_initial
            if u[i, U_UPTAKE] < rate:
                own = True
                misses[i] = 0
        dose = load if acted else 0.0
        P = P + p.plasticity_gain * age_gain[i] * dose * (1.0 - P) - p.plasticity_decay * P
        F = F + p.fitness_gain * dose * (1.0 - F) - p.fitness_detraining * (F - F0[i])
        room = max(0.0, 1.0 + p.self_management_compensation * (0.5 - C0[i]) / 0.5)
        if skill_target[i] > 0:
            M = min(max(M, skill_target[i] * room), M + skill_rate[i] * room)
        else:
            M *= 1.0 - p.self_management_retention
        if acted:
            M += p.self_regulation_practice_gain * (1.0 - support) * max(0.0, p.self_regulation_practice_max - M)
        contacts = contact[i] + (arranged if acted and in_class and from_rx else 0.0)
        K += (7.0 * contacts - K) / p.symptoms_contact_memory_days
        on_drug, on_placebo = medication[i], placebo_x[i]
        stop = False
        if on_drug or on_placebo:
            pill_days[i] += 1
            shortfall = min(1.0, max(0.0, (S / S0 - 0.5) / 0.5)) if pill_days[i] > NO_EFFECT_DAYS else 0.0
            stop_h = (p.pill_stop_base * math.exp(-pill_days[i] / p.pill_stop_settle_days)
                      + p.pill_stop_no_benefit * shortfall
                      + (p.pill_stop_side_effects * math.exp(-pill_days[i] / 14.0) if on_drug else 0.0))
            stop = u[i, U_STOP] < stop_h
            leave = leave or (stop and enrolled)
        if leave:
            dropout_day[i] = day
            enrolled, quit = False, True
        drug = on_drug and not stop and u[i, U_PILL] < med_adherence[i]
        placebo = on_placebo and not stop and u[i, U_PILL] < placebo_adherence[i]
        if drug and math.isinf(med_start[i]):
            med_start[i] = day
        med = med_[i]
        if drug and day - med_start[i] >= p.medication_onset_days:
            med += (1.0 - med) / p.medication_build_days
        elif not drug:
            med *= 1.0 - 1.0 / p.medication_washout_days
        X = X_[i]
        X += ((1.0 if drug or placebo else 0.0) - X) / p.placebo_build_days
        happened = u[i, U_EVENT] < p.symptoms_event_rate
        event = p.symptoms_event_size * -math.log1p(-u[i, U_EVENT_SIZE]) if happened else 0.0
        remitted = remitted_[i]
        if remitted and happened:
            risk = (p.episode_relapse_given_event * (1.0 - p.episode_drug_protection * med)
                    * (1.0 - p.episode_exercise_protection * 0.5 * (P + H)))
            if u[i, U_RELAPSE] < risk:
                remitted = False
                below[i] = 0.0
                relapses[i] += 1
                episode_start[i] = day
                episode_end[i] = day + p.episode_scale * (-math.log1p(-u[i, U_EPISODE])) ** (1.0 / p.course_episode_shape)
        if happened:
            H *= 1.0 - p.habit_event_disruption
            if u[i, U_QUIT] < p.habit_event_quit:
                own = False
                if not in_programme and prescribed[i]:
                    quit = True
        natural = natural_[i] * (1.0 - math.exp(-(day - episode_start[i]) / p.symptoms_natural_days))
        contact_b = p.symptoms_contact_benefit * K / (K + p.symptoms_contact_half)
        nonspecific_b = min(0.95, resp_ns[i] * (1.0 - (1.0 - contact_b) * (1.0 - p.placebo_benefit * X)))
        Ph = P ** p.symptoms_plasticity_hill
        exercise_b = min(0.95, resp_ex[i] * p.symptoms_plasticity_benefit
                         * Ph / (Ph + p.symptoms_plasticity_half ** p.symptoms_plasticity_hill))
        efficacy_b = p.symptoms_efficacy_benefit * max(0.0, E - p.efficacy_initial)
        med_b = min(0.95, resp_drug[i] * med_effect[i] * med)
        overlap = p.symptoms_treatment_overlap
        treatment_b = (1 - overlap) * (exercise_b + med_b - exercise_b * med_b) + overlap * max(exercise_b, med_b)
        target = S0 * (1 - natural) * (1 - nonspecific_b) * (1 - efficacy_b) * (1 - treatment_b)
        if remitted or day >= episode_end[i]:
            target = min(target, p.episode_well_fraction * S0)
        noise = p.symptoms_noise_sd * math.sqrt(S / 10.0) * z[i]
        S = min(SEVERITY_TOP, max(0.0, S + (target - S) / p.symptoms_relaxation_days + noise + event))
        below[i] = below[i] + 1.0 if S <= p.episode_remission_level else 0.0
        remitted = remitted or below[i] >= p.episode_confirm_days
        S_[i], P_[i], V_[i], E_[i], H_[i], F_[i], D_[i], M_[i], K_[i] = S, P, V, E, H, F, D, M, K
        med_[i], X_[i] = med, X
        quit_[i], own_[i], enrolled_[i], remitted_[i] = quit, own, enrolled, remitted
        acted_[i] = acted
        minutes_done[i] = minutes if acted else 0.0
