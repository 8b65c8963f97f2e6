"""The daily update of many runs fused into one compiled loop (numba, nopython, cached).

`advance` runs days d0..d1-1 of a stack of runs (one run alone is a stack of one): for each day it
works out everyone's partner and class attendance, then for each participant the design's inputs
(programme.ArmPlan.inputs), the random numbers (draws), the update (dynamics.reference_update) and
the records (weekly sums, habit, the arm's daily aggregates). Nothing in a run reads another run's
rows, so a run gives the same numbers alone or stacked. tests/test_engine.py holds it to the
per-agent reference on every state array, every day, in every mechanism.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim.model import draws
from sim.model.draws import (
    U_ACT,
    U_DROP,
    U_EPISODE,
    U_EVENT,
    U_EVENT_SIZE,
    U_NORMAL_A,
    U_NORMAL_B,
    U_PILL,
    U_QUIT,
    U_RELAPSE,
    U_STOP,
    U_UPTAKE,
)
from sim.model.dynamics import NO_EFFECT_DAYS, SEVERITY_TOP, Coefficients
from sim.model.programme import CLASS, PATTERN, PLAN_COLUMNS

(RX_SPW, RX_MIN, RX_INT, TIT_START_MIN, TIT_START_INT, TIT_DAYS, TIT_FROM, SUP_KIND, SUP_LEVEL, SUP_DAYS, SUP_FADE,
 SUP_FROM, PRIME, PRIME_DAYS, PRIME_FROM, CUE, CUE_STREAK, CUE_DAYS, CUE_FADE, CUE_FROM, SM_SKILL, SM_DAYS, SM_FROM,
 SM_UNTIL, MED_ON, MED_EFFECT, MED_ADH, MED_FROM, MED_UNTIL, PL_ON, PL_ADH, PL_FROM, PL_UNTIL, CONTACT_RATE,
 CONTACT_DAYS, CONTACT_FROM) = range(len(PLAN_COLUMNS))
HABIT_STEPS = 65535.0  # a habit history kept as 16-bit integers holds the running maximum in these steps


def coefficient_dtype(p: Coefficients) -> np.dtype:
    """The record type of a run's coefficients (every float attribute, by name)."""
    return np.dtype([(k, np.float64) for k in sorted(k for k, v in vars(p).items() if isinstance(v, float))])


def packed(coefs: list[Coefficients]) -> np.ndarray:
    """The runs' coefficients as a structured array, one record per run, which compiled code reads by name."""
    dtype = coefficient_dtype(coefs[0])
    if any(coefficient_dtype(c) != dtype for c in coefs[1:]):
        raise ValueError("runs stacked together must have the same parameters (by name)")
    return np.array([tuple(getattr(c, k) for k in dtype.names) for c in coefs], dtype=dtype)


@njit(cache=True, inline="always")
def _active(day, start, length):
    return day >= start and day < start + length


@njit(cache=True, inline="always")
def _faded(day, start, length, fade):
    if not _active(day, start, length):
        return 0.0
    if fade > 0:
        return min(1.0, max(0.0, (start + length - day) / max(fade, 1.0)))
    return 1.0


@njit(cache=True)
def _interp(x, xp, fp):
    """np.interp for one value (clipped to the ends), as numpy computes it."""
    if x <= xp[0]:
        return fp[0]
    last = xp.shape[0] - 1
    if x >= xp[last]:
        return fp[last]
    j = np.searchsorted(xp, x, side="right") - 1
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    return slope * (x - xp[j]) + fp[j]


# error_model="numpy": a division needs no zero check of its own (the inputs are validated); FMA contraction,
# reciprocals and signed zeros free: results within a few ulps of the reference (tests/test_engine.py), no
# reassociation (sums keep their order) and no assumptions about NaN or infinity (the update tests both)
@njit(cache=True, error_model="numpy", fastmath={"contract", "arcp", "nsz"})
def advance(d0, d1, offsets, keys, coefs, programme_days, st, plan, plan_id, partner, group, n_groups, s0_scale, xp, fp,  # noqa: C901
            response_factor, remission_at, counts, weekly_sev, weekly_min, weekly_ses, hist, habit_steps, daily,
            rater_keys, assess_col, assessed, visit, cuts, run_cut):
    """Advance runs r (rows offsets[r]..offsets[r+1]) through days d0..d1-1, in place, with their records.

    st: the state as one record array (dynamics.State.records); plan[plan_id[i]]: participant i's design
    settings (programme.PLAN_COLUMNS), from a table of the distinct settings;
    hist: each person's running maximum of habit after each day (float32, or in `habit_steps` 16-bit steps
    when habit_steps > 0; no rows when not kept); weekly_*: the weekly panel (no rows when not kept);
    assessed[:, assess_col[r, w]]: run r's assessment at the end of week w (rater keys: the rater's errors);
    visit, cuts, run_cut: each run's blocks of rows (blocks.visit_blocks). A block goes through all the days before
    the next begins, so its rows stay in the cache; ties never cross blocks, and no one else's row is read."""
    R0, C0, S0_, F0, habit_rate, natural_ = st.R0, st.C0, st.S0, st.F0, st.habit_rate, st.natural
    resp_ex, resp_drug, resp_ns, age_gain = st.resp_ex, st.resp_drug, st.resp_ns, st.age_gain
    S_, P_, V_, E_, H_, F_, D_, M_, K_ = st.S, st.P, st.V, st.E, st.H, st.F, st.D, st.M, st.K
    med_, med_start, X_, pill_days, enrolled_, quit_, own_ = st.med, st.med_start, st.X, st.pill_days, st.enrolled, \
        st.quit, st.own
    streak, misses, attended_last, dropout_day, remitted_ = st.streak, st.misses, st.attended_last, st.dropout_day, \
        st.remitted
    below, relapses, episode_start, episode_end = st.below, st.relapses, st.episode_start, st.episode_end
    acted_, minutes_done = st.acted, st.minutes_done
    planned_count, done_count, minutes_programme, minutes_follow_up, habit_max = counts
    n_all, n_runs = S_.shape[0], offsets.shape[0] - 1
    keep_weekly, keep_habit = weekly_min.shape[0] > 0, hist.shape[0] > 0
    # attendance as partners and classmates see it: [day & 1] today's, [1 - day & 1] tomorrow's
    present, scaled = np.zeros((2, n_all)), np.zeros(n_all)
    class_size, class_present = np.zeros(n_groups), np.zeros((2, n_groups))
    n_days = d1 - d0
    dks = np.empty((n_days, draws.N_USES), dtype=np.uint64)
    # per day: sums of severity, enrolled, acted, minutes, responders, remitters; then rows, mean, sum of squares
    acc = np.empty((n_days, 9))
    person = np.empty(n_all, dtype=np.uint64)
    convert = not (xp.shape[0] == 2 and xp[0] == fp[0] and xp[1] == fp[1])  # HAM-D-17 needs no conversion
    for r in range(n_runs):  # run by run, block by block, day by day
        p = coefs[r]
        k0 = keys[r, 0]
        first, last = offsets[r], offsets[r + 1]
        half_hill = p.symptoms_plasticity_half ** p.symptoms_plasticity_hill
        for i in range(first, last):
            person[i] = draws.person_key(k0, i - first)
        for t in range(n_days):
            for use in range(draws.N_USES):
                dks[t, use] = draws.day_key(keys[r, 1], d0 + t, use)
        acc[:] = 0.0
        # who came to the last session before the first day: my partner's and my classmates' attendance (each
        # later day's is gathered during the day before)
        c0 = d0 & 1
        for i in range(first, last):
            present[c0, i] = 1.0 if attended_last[i] and enrolled_[i] else 0.0
            if group[i] >= 0:
                class_size[group[i]] = class_present[0, group[i]] = class_present[1, group[i]] = 0.0
        for i in range(first, last):
            g = group[i]
            if g >= 0 and plan[plan_id[i], SUP_KIND] == CLASS:
                class_size[g] += 1.0
                class_present[c0, g] += present[c0, i]
        for b in range(run_cut[r], run_cut[r + 1]):
            j0, j1 = cuts[b], cuts[b + 1]
            for day in range(d0, d1):
                t = day - d0
                cur, nxt = day & 1, 1 - (day & 1)
                dk = dks[t]
                week = day // 7
                total, enrolled_n, acted_n, minutes_sum, responders, remitters = acc[t, 0], acc[t, 1], acc[t, 2], \
                    acc[t, 3], acc[t, 4], acc[t, 5]
                in_programme = day < programme_days[r]
                course_today = 1.0 - math.exp(-(day - 0.0) / p.symptoms_natural_days)
                own_today = PATTERN[int(round(p.own_sessions_per_week)), day % 7]
                assess_k = assess_col[r, week + 1] if day % 7 == 6 else -1
                if assess_k >= 0:
                    rater_a = draws.day_key(rater_keys[r, 1], week + 1, U_NORMAL_A)
                    rater_b = draws.day_key(rater_keys[r, 1], week + 1, U_NORMAL_B)
                for j in range(j0, j1):
                    if group[visit[j]] >= 0:
                        class_present[nxt, group[visit[j]]] = 0.0
                for j in range(j0, j1):
                    i = visit[j]
                    pk = person[i]
                    x = plan[plan_id[i]]
                    # the design's inputs today (programme.ArmPlan.inputs)
                    kind = int(x[SUP_KIND])
                    in_class = kind == CLASS
                    social = 0.0
                    if group[i] >= 0 and in_class:
                        g = group[i]
                        social = (class_present[cur, g] - present[cur, i]) / max(class_size[g] - 1.0, 1.0)
                    elif partner[i] >= 0:
                        social = present[cur, partner[i]]
                    S, P, V, E, H, F, D, M, K = S_[i], P_[i], V_[i], E_[i], H_[i], F_[i], D_[i], M_[i], K_[i]
                    S0, quit, own, enrolled = S0_[i], quit_[i], own_[i], enrolled_[i]
                    spw = int(x[RX_SPW])
                    prescribed = spw > 0
                    scheduled = PATTERN[spw, day % 7]  # a session of the prescription (counted even after quitting)
                    from_rx = scheduled and not quit
                    own_day = own and own_today and not from_rx
                    planned = from_rx or own_day
                    if from_rx:
                        minutes, intensity = x[RX_MIN], x[RX_INT]
                        if in_programme and not math.isnan(x[TIT_START_MIN]):
                            frac = min(1.0, max(0.0, (day - x[TIT_FROM]) / max(x[TIT_DAYS], 1.0)))
                            start_int = x[RX_INT] if math.isnan(x[TIT_START_INT]) else x[TIT_START_INT]
                            minutes = x[TIT_START_MIN] + (x[RX_MIN] - x[TIT_START_MIN]) * frac
                            intensity = start_int + (x[RX_INT] - start_int) * frac
                    else:
                        minutes, intensity = p.own_minutes, p.own_intensity
                    arranged = priming = cue = 0.0  # support, priming and cues come with the prescription's sessions
                    if from_rx:
                        arranged = x[SUP_LEVEL] * _faded(day, x[SUP_FROM], x[SUP_DAYS], x[SUP_FADE]) * enrolled
                        priming = x[PRIME] * _active(day, x[PRIME_FROM], x[PRIME_DAYS])
                        cue = x[CUE] * _faded(day, x[CUE_FROM], x[CUE_DAYS], x[CUE_FADE])
                        cue = cue * (1.0 + x[CUE_STREAK] * min(streak[i], 7) / 7.0)
                    training = day >= x[SM_FROM] and day < x[SM_UNTIL] and enrolled
                    on_drug = x[MED_ON] > 0 and day >= x[MED_FROM] and day < x[MED_UNTIL] and enrolled
                    on_placebo = x[PL_ON] > 0 and day >= x[PL_FROM] and day < x[PL_UNTIL] and enrolled
                    contact = x[CONTACT_RATE] / 7.0 * _active(day, x[CONTACT_FROM], x[CONTACT_DAYS]) * enrolled
                    # the day (dynamics.reference_update)
                    support = 0.0
                    if from_rx:
                        if in_class:
                            support = arranged * (p.support_class_base + (1 - p.support_class_base) * social)
                        else:
                            support = arranged * social
                    R = min(1.0, max(0.0, R0[i] + p.plasticity_reward_sensitization * P))
                    C = min(1.0, max(0.0, C0[i] + p.plasticity_control_gain * P + M))
                    C_eff = C + (1.0 - C) * support
                    load = (minutes / p.effort_reference_minutes) * (intensity / p.effort_reference_intensity)
                    discomfort = max(0.0, load / (p.effort_fitness_offset + F) - p.effort_tolerance_window * D)
                    acted = False
                    if planned:
                        logit = (p.intention_bias + p.intention_w_expectancy * V + p.intention_w_efficacy * E
                                 + p.intention_w_habit * H + p.intention_w_priming * priming * from_rx
                                 - p.intention_w_severity * S / 10.0 - p.intention_w_cost * discomfort)
                        deliberate = 1.0 / (1.0 + math.exp(-logit)) * (p.action_control_floor
                                                                        + (1.0 - p.action_control_floor) * C_eff)
                        p_act = 1.0 - (1.0 - p.action_habit_direct * H) * (1.0 - deliberate)
                        acted = draws.unit(pk, dk[U_ACT]) < p_act
                    missed = planned and not acted
                    if acted:
                        lift = p.reward_mood_lift * math.sqrt(min(1.0, minutes / p.effort_reference_minutes))
                        social_reward = p.reward_social_value * social if arranged > 0 and from_rx else 0.0
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
                        if draws.unit(pk, dk[U_DROP]) < hazard:
                            if from_rx:
                                quit = True
                                leave = in_programme and enrolled
                            if own_day:
                                own = False
                    if planned:
                        attended_last[i] = acted
                    if not (prescribed and not quit) and not own:
                        rate = (p.own_uptake if in_programme else p.own_uptake_follow_up) * E / p.efficacy_initial
                        if draws.unit(pk, dk[U_UPTAKE]) < rate:
                            own = True
                            misses[i] = 0
                    dose = load if acted else 0.0
                    P = P + p.plasticity_gain * age_gain[i] * dose * (1.0 - P) - p.plasticity_decay * P
                    F = F + p.fitness_gain * dose * (1.0 - F) - p.fitness_detraining * (F - F0[i])
                    room = max(0.0, 1.0 + p.self_management_compensation * (0.5 - C0[i]) / 0.5)
                    if training and x[SM_SKILL] > 0:
                        M = min(max(M, x[SM_SKILL] * room), M + x[SM_SKILL] / max(x[SM_DAYS], 1.0) * room)
                    else:
                        M *= 1.0 - p.self_management_retention
                    if acted:
                        M += (p.self_regulation_practice_gain * (1.0 - support)
                              * max(0.0, p.self_regulation_practice_max - M))
                    contacts = contact + (arranged if acted and in_class and from_rx else 0.0)
                    K += (7.0 * contacts - K) / p.symptoms_contact_memory_days
                    stop = False
                    if on_drug or on_placebo:
                        pill_days[i] += 1
                        shortfall = min(1.0, max(0.0, (S / S0 - 0.5) / 0.5)) if pill_days[i] > NO_EFFECT_DAYS else 0.0
                        stop_h = (p.pill_stop_base * math.exp(-pill_days[i] / p.pill_stop_settle_days)
                                  + p.pill_stop_no_benefit * shortfall
                                  + (p.pill_stop_side_effects * math.exp(-pill_days[i] / 14.0) if on_drug else 0.0))
                        stop = draws.unit(pk, dk[U_STOP]) < stop_h
                        leave = leave or (stop and enrolled)
                    if leave:
                        dropout_day[i] = day
                        enrolled, quit = False, True
                    drug = placebo = False
                    if (on_drug or on_placebo) and not stop:
                        u_pill = draws.unit(pk, dk[U_PILL])
                        drug = on_drug and u_pill < x[MED_ADH]
                        placebo = on_placebo and u_pill < x[PL_ADH]
                    if drug and math.isinf(med_start[i]):
                        med_start[i] = day
                    med = med_[i]
                    if drug and day - med_start[i] >= p.medication_onset_days:
                        med += (1.0 - med) / p.medication_build_days
                    elif not drug:
                        med *= 1.0 - 1.0 / p.medication_washout_days
                    X = X_[i]
                    X += ((1.0 if drug or placebo else 0.0) - X) / p.placebo_build_days
                    happened = draws.unit(pk, dk[U_EVENT]) < p.symptoms_event_rate
                    event = 0.0
                    remitted = remitted_[i]
                    if happened:
                        event = p.symptoms_event_size * -math.log1p(-draws.unit(pk, dk[U_EVENT_SIZE]))
                        if remitted:
                            risk = (p.episode_relapse_given_event * (1.0 - p.episode_drug_protection * med)
                                    * (1.0 - p.episode_exercise_protection * 0.5 * (P + H)))
                            if draws.unit(pk, dk[U_RELAPSE]) < risk:
                                remitted = False
                                below[i] = 0.0
                                relapses[i] += 1
                                episode_start[i] = day
                                episode_end[i] = day + p.episode_scale * (
                                    -math.log1p(-draws.unit(pk, dk[U_EPISODE]))) ** (1.0 / p.course_episode_shape)
                        H *= 1.0 - p.habit_event_disruption
                        if draws.unit(pk, dk[U_QUIT]) < p.habit_event_quit:
                            own = False
                            if not in_programme and prescribed:
                                quit = True
                    since = episode_start[i]  # the day's factor is shared by everyone still in their first episode
                    course = course_today if since == 0.0 else 1.0 - math.exp(-(day - since) / p.symptoms_natural_days)
                    natural = natural_[i] * course
                    contact_b = p.symptoms_contact_benefit * K / (K + p.symptoms_contact_half)
                    nonspecific_b = min(0.95, resp_ns[i] * (1.0 - (1.0 - contact_b) * (1.0 - p.placebo_benefit * X)))
                    Ph = P ** p.symptoms_plasticity_hill if P > 0.0 else 0.0
                    exercise_b = min(0.95, resp_ex[i] * p.symptoms_plasticity_benefit
                                     * Ph / (Ph + half_hill))
                    efficacy_b = p.symptoms_efficacy_benefit * max(0.0, E - p.efficacy_initial)
                    med_b = min(0.95, resp_drug[i] * x[MED_EFFECT] * med)
                    overlap = p.symptoms_treatment_overlap
                    treatment_b = ((1 - overlap) * (exercise_b + med_b - exercise_b * med_b)
                                   + overlap * max(exercise_b, med_b))
                    target = S0 * (1 - natural) * (1 - nonspecific_b) * (1 - efficacy_b) * (1 - treatment_b)
                    if remitted or day >= episode_end[i]:
                        target = min(target, p.episode_well_fraction * S0)
                    z = draws.normal(pk, dk[U_NORMAL_A], dk[U_NORMAL_B])
                    noise = p.symptoms_noise_sd * math.sqrt(S / 10.0) * z
                    S = min(SEVERITY_TOP, max(0.0, S + (target - S) / p.symptoms_relaxation_days + noise + event))
                    below[i] = below[i] + 1.0 if S <= p.episode_remission_level else 0.0
                    remitted = remitted or below[i] >= p.episode_confirm_days
                    S_[i], P_[i], V_[i], E_[i], H_[i], F_[i], D_[i], M_[i], K_[i] = S, P, V, E, H, F, D, M, K
                    med_[i], X_[i] = med, X
                    quit_[i], own_[i], enrolled_[i], remitted_[i] = quit, own, enrolled, remitted
                    acted_[i] = acted
                    done = minutes if acted else 0.0
                    minutes_done[i] = done
                    # records
                    if in_programme:
                        minutes_programme[i] += done
                        if scheduled:
                            planned_count[i] += 1
                            done_count[i] += acted
                    else:
                        minutes_follow_up[i] += done
                    habit_max[i] = max(habit_max[i], H)
                    if keep_habit:
                        if habit_steps > 0:
                            hist[day, i] = np.uint16(round(habit_max[i] * habit_steps))
                        else:
                            hist[day, i] = habit_max[i]
                    if assess_k >= 0:  # what a rater scores: true severity plus rater error, whole scale points
                        if enrolled:
                            rk = draws.person_key(rater_keys[r, 0], i - first)
                            err = draws.normal(rk, rater_a, rater_b)
                            seen = min(SEVERITY_TOP, max(0.0, S + p.measurement_rater_sd * err))
                            assessed[i, assess_k] = np.rint(_interp(seen, xp, fp))
                        else:
                            assessed[i, assess_k] = np.nan
                    if keep_weekly:
                        weekly_min[i, week] += done
                        weekly_ses[i, week] += acted
                        if day % 7 == 6:
                            weekly_sev[i, week + 1] = S
                    # tomorrow's attendance as partners and classmates see it
                    here = 1.0 if attended_last[i] and enrolled else 0.0
                    present[nxt, i] = here
                    if group[i] >= 0 and in_class:
                        class_present[nxt, group[i]] += here
                    # the arm's aggregates of the day, on the scenario's scale
                    sc = _interp(S, xp, fp) if convert else S
                    scaled[i] = sc
                    total += sc
                    enrolled_n += enrolled
                    acted_n += acted
                    minutes_sum += done
                    responders += sc <= response_factor[r] * s0_scale[i]
                    remitters += sc <= remission_at[r]
                acc[t, 0], acc[t, 1], acc[t, 2], acc[t, 3], acc[t, 4], acc[t, 5] = total, enrolled_n, acted_n, \
                    minutes_sum, responders, remitters
                # the block's severity mean and sum of squared deviations (two passes, as numpy computes them),
                # merged into the day's (Chan, Golub & LeVeque): with one block, exactly numpy's
                nb = j1 - j0
                block_sum = 0.0
                for j in range(j0, j1):
                    block_sum += scaled[visit[j]]
                block_mean = block_sum / nb
                squares = 0.0
                for j in range(j0, j1):
                    squares += (scaled[visit[j]] - block_mean) ** 2
                n_before = acc[t, 6]
                if n_before == 0.0:
                    acc[t, 7], acc[t, 8] = block_mean, squares
                else:
                    delta = block_mean - acc[t, 7]
                    acc[t, 7] += delta * nb / (n_before + nb)
                    acc[t, 8] += squares + delta * delta * n_before * nb / (n_before + nb)
                acc[t, 6] = n_before + nb
        n = last - first
        for t in range(n_days):
            out = daily[r, d0 + t + 1]
            out[0], out[1] = acc[t, 0] / n, math.sqrt(acc[t, 8] / (n - 1)) if n > 1 else math.nan
            out[2], out[3], out[4] = acc[t, 1] / n, acc[t, 2] / n, acc[t, 3] / n
            out[5], out[6] = acc[t, 4] / n, acc[t, 5] / n

@njit(cache=True)
def days_to_habit(hist, levels, formed, habit_max, tol):
    """Per person and level: the first day (1-based) the habit history reached that share of its own plateau
    (its highest value) less `tol`, NaN where the highest habit is below `formed`; no days x people temporaries."""
    days, n = hist.shape
    out = np.full((n, levels.shape[0]), np.nan)
    for i in range(n):
        if habit_max[i] < formed:
            continue
        plateau = 0.0
        for d in range(days):
            plateau = max(plateau, float(hist[d, i]))
        for k in range(levels.shape[0]):
            threshold = levels[k] * plateau - tol
            for d in range(days):
                if hist[d, i] >= threshold:
                    out[i, k] = d + 1.0
                    break
    return out
