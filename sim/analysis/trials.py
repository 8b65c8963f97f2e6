"""Trial tables: each arm of each replicate trial as a trial would report it (dropout, adherence,
change, response, remission, Hedges g and p against the reference arm), and their spread over replicate
trials. Re-exported by sim.analysis.metrics; docs/metrics.md defines every column."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from sim.analysis.assessed import (
    Frames,
    MetricError,
    hedges_g,
    hedges_g_from_stats,
    participant_severity,
    people,
)
from sim.scenario import Outcomes
from sim.vocabulary import GUIDELINE_MINUTES

FEW_REPLICATES = 100  # below this a share over replicates (power) has a 95% interval wider than about +-0.1


def wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a binomial share k/n (NaN when n is 0)."""
    if n <= 0:
        return np.nan, np.nan
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def guideline_week_share(weekly: pd.DataFrame | None, programme_weeks: int | None,
                         minutes: float = GUIDELINE_MINUTES) -> pd.Series:
    """Per (arm, replicate), from the weekly panel: the share of programme person-weeks with at least
    `minutes` of exercise (every randomised participant; a dropout's weeks count as 0 minutes). Empty
    without the panel."""
    if weekly is None or weekly.empty or not programme_weeks:
        return pd.Series(dtype=float)
    w = weekly[(weekly.week > 0) & (weekly.week <= programme_weeks)]
    return (w.minutes >= minutes).groupby([w.arm, w.replicate]).mean().astype(float)


def trial_metrics(participants: pd.DataFrame, daily: pd.DataFrame, outcomes: Outcomes, reference: str,
                  week: int, completers: bool = False, weekly: pd.DataFrame | None = None,
                  programme_weeks: int | None = None, analysis: str = "true",
                  assessments: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per arm and replicate trial at the end of `week`: dropout, adherence, change, response,
    remission, the share of programme person-weeks with at least 150 minutes (needs the weekly panel, else
    NaN), Hedges g and Welch p against the reference arm, and `analysis`,
    which says what the severity columns are.

    analysis "true": the simulated severity of every randomised participant (intention to treat, from the
    daily aggregates), or with `completers` only of those still in the trial at the end of `week` (per-
    participant severity from the weekly panel, else the end-of-programme or end-of-run endpoints).
    "observed" or "locf": the trial's `assessments` (observed cases, or every randomised participant with
    the last assessment carried forward; sim.analysis.assessed). Dropout, adherence and minutes are the
    same in every analysis."""
    if analysis not in ("true", "observed", "locf"):
        raise MetricError(f"trial tables take analysis true, observed or locf, not {analysis!r}")
    if completers and analysis != "true":
        raise MetricError("the completers table is of the true state (analysis 'true')")
    if completers or analysis != "true":
        return _person_metrics(participants, daily, outcomes, reference, week, weekly, programme_weeks,
                               analysis, assessments)
    at = daily[daily.day == 7 * week].set_index(["arm", "replicate"])
    base = daily[daily.day == 0].set_index(["arm", "replicate"])
    weeks_met = guideline_week_share(weekly, programme_weeks)
    size = participants.groupby(["arm", "replicate"]).size()
    other = other_cohort(sorted(r for a, r in at.index if a == reference))

    def against(now, n: int, ref_rep) -> tuple[float, float, float, float]:
        if ref_rep is None or (reference, ref_rep) not in at.index:
            return (np.nan,) * 4
        ref, n_ref = at.loc[(reference, ref_rep)], int(size.get((reference, ref_rep), 0))
        g, lo, hi = hedges_g_from_stats(now.severity_mean, now.severity_sd, n, ref.severity_mean,
                                        ref.severity_sd, n_ref)
        p = stats.ttest_ind_from_stats(now.severity_mean, now.severity_sd, n, ref.severity_mean,
                                       ref.severity_sd, n_ref, equal_var=False).pvalue if n_ref >= 2 else np.nan
        return g, lo, hi, p

    rows = []
    for (arm, rep), d in participants.groupby(["arm", "replicate"], sort=False):
        if (arm, rep) not in at.index:
            continue
        now, b0, n = at.loc[(arm, rep)], base.loc[(arm, rep)], len(d)
        g = lo = hi = p = g_trial = p_trial = np.nan
        if arm != reference:
            g, lo, hi, p = against(now, n, rep)
            g_trial, _, _, p_trial = against(now, n, other.get(rep))
        planned = d.sessions_planned.sum()
        rows.append({
            "arm": arm, "replicate": rep, "week": week, "n": n,
            "dropout": float((d.dropout_day <= 7 * week).mean()),
            "adherence": d.sessions_done.sum() / planned if planned > 0 else np.nan,
            "baseline": b0.severity_mean, "severity": now.severity_mean,
            "change": now.severity_mean - b0.severity_mean,
            "change_pct": 100 * (now.severity_mean / b0.severity_mean - 1),
            "response": now.response_share, "remission": now.remission_share,
            "meets_guideline": float(weeks_met.get((arm, rep), np.nan)),
            "g": g, "g_low": lo, "g_high": hi, "p": p, "g_trial": g_trial, "p_trial": p_trial,
            "analysis": "true",
        })
    return pd.DataFrame(rows)


def other_cohort(replicates: list) -> dict:
    """Each replicate's partner for independent-groups comparisons: the next replicate (cyclically).

    The arms of one replicate are the same simulated people (common random numbers), which makes the
    paired g precise but its spread over replicates far narrower than between two real trial groups.
    Comparing an arm with the reference of another replicate (a different cohort) restores the sampling
    variation of a parallel-group trial, for power and the spread of g. Empty with fewer than 2."""
    if len(replicates) < 2:
        return {}
    return {r: replicates[(i + 1) % len(replicates)] for i, r in enumerate(replicates)}


def across_replicates(trials: pd.DataFrame, arm_order: list[str] | None = None) -> pd.DataFrame:
    """Per arm: the mean of each trial metric and its 2.5/97.5 percentiles over replicates, and power (the share
    of replicate trials significant in the arm's favour) with its Wilson 95% interval and the number of
    replicate trials it counts (power_n)."""
    out = []
    arms = [a for a in (arm_order or []) if a in set(trials.arm)] or list(trials.arm.unique())
    for arm in arms:
        d = trials[trials.arm == arm]
        row = {"arm": arm, "replicates": len(d), "n": d.n.mean()}
        for col in ("dropout", "adherence", "baseline", "severity", "change", "change_pct", "response",
                    "remission", "meets_guideline", "g", "g_low", "g_high", "g_trial"):
            v = d[col].dropna() if col in d else pd.Series(dtype=float)
            row[col] = v.mean() if len(v) else np.nan
            row[col + "_p2.5"] = v.quantile(0.025) if len(v) else np.nan
            row[col + "_p97.5"] = v.quantile(0.975) if len(v) else np.nan
        # power and the spread of g between trials: independent cohorts (see other_cohort)
        pt = d.p_trial if "p_trial" in d else pd.Series(np.nan, index=d.index)
        hits, n = int(((pt < 0.05) & (d.g_trial > 0)).sum()), int(pt.notna().sum())
        row["power"] = hits / n if n else np.nan
        row["power_n"] = n
        row["power_low"], row["power_high"] = wilson(hits, n)
        out.append(row)
    return pd.DataFrame(out)


def _person_metrics(participants: pd.DataFrame, daily: pd.DataFrame, outcomes: Outcomes, reference: str,
                    week: int, weekly: pd.DataFrame | None, programme_weeks: int | None, analysis: str,
                    assessments: pd.DataFrame | None) -> pd.DataFrame:
    """trial_metrics from per-participant severity: the completers' true state, or the assessed scores."""
    keys = ["replicate", "arm", "pid"]
    if analysis == "true":  # completers
        last = int(daily.day.max()) // 7 if len(daily) else None
        sev = participant_severity(participants, weekly, week, programme_weeks, last)
        keep = ~(participants.dropout_day <= 7 * week)
        p = participants.assign(_sev=sev, _base=participants.baseline_severity.astype(float), _kept=keep)
        label = "true, completers"
    else:
        f = Frames(participants, daily, weekly if weekly is not None else pd.DataFrame(), outcomes,
                   programme_weeks=programme_weeks, assessments=assessments)
        pp = people(f, "all", week, analysis).rename(columns={"score": "_sev", "baseline": "_base"}).reset_index()
        p = participants.merge(pp, how="left", on=keys)
        p["_kept"] = p._sev.notna()
        label = analysis
    comp = p[p._kept]
    weeks_met = guideline_week_share(weekly, programme_weeks)
    other = other_cohort(sorted(p.replicate[p.arm == reference].unique()))

    def against(s: np.ndarray, ref_rep) -> tuple[float, float, float, float]:
        ref = comp[(comp.arm == reference) & (comp.replicate == ref_rep)]._sev.to_numpy(float)
        if ref_rep is None or len(s) < 2 or len(ref) < 2:
            return (np.nan,) * 4
        g, lo, hi = hedges_g(s, ref)
        pv = stats.ttest_ind(s, ref, equal_var=False).pvalue if (s.std() > 0 or ref.std() > 0) else np.nan
        return g, lo, hi, pv

    rows = []
    for (arm, rep), d_all in p.groupby(["arm", "replicate"], sort=False):
        d = d_all[d_all._kept]
        s, s0 = d._sev.to_numpy(float), d._base.to_numpy(float)
        g = lo = hi = pv = g_trial = p_trial = np.nan
        if arm != reference:
            g, lo, hi, pv = against(s, rep)
            g_trial, _, _, p_trial = against(s, other.get(rep))
        who = d if label == "true, completers" else d_all  # adherence and minutes: completers, or everyone
        planned = who.sessions_planned.sum()
        mean = lambda x: float(np.mean(x)) if len(x) else np.nan
        rows.append({
            "arm": arm, "replicate": rep, "week": week, "n": len(d), "randomised": len(d_all),
            "dropout": float((d_all.dropout_day <= 7 * week).mean()),
            "adherence": who.sessions_done.sum() / planned if planned > 0 else np.nan,
            "baseline": mean(s0), "severity": mean(s), "change": mean(s) - mean(s0),
            "change_pct": 100 * (mean(s) / mean(s0) - 1) if len(s) else np.nan,
            "response": mean(s <= (1 - outcomes.response_reduction) * s0),
            "remission": mean(s <= outcomes.remission_at),
            "meets_guideline": float(weeks_met.get((arm, rep), np.nan)),
            "g": g, "g_low": lo, "g_high": hi, "p": pv, "g_trial": g_trial, "p_trial": p_trial,
            "analysis": label,
        })
    return pd.DataFrame(rows)
