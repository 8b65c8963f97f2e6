"""Outcome metrics: pure functions of stored frames (per replicate trial, then across replicates).

Intention-to-treat throughout: every randomised participant counts, dropouts included. Effect
sizes are signed so that positive means the arm has lower symptoms than the reference.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sim.scenario import Check, Outcomes
from sim.vocabulary import (  # noqa: F401
    HABIT_LEVELS,
    METRIC_NAMES,
    NEEDS_PANEL,
    PER_PARTICIPANT_NAMES,
    SIGNATURES,
    TRAITS,
    argument_problem,
)

GUIDELINE_MINUTES = 150.0


def hedges_g_from_stats(mean_arm: float, sd_arm: float, n_arm: int, mean_ref: float, sd_ref: float,
                        n_ref: int) -> tuple[float, float, float]:
    """Hedges g of reference minus arm (positive = arm better) with its 95% CI (Hedges & Olkin 1985)."""
    if n_arm < 2 or n_ref < 2:
        return (np.nan, np.nan, np.nan)
    pooled = np.sqrt(((n_arm - 1) * sd_arm**2 + (n_ref - 1) * sd_ref**2) / (n_arm + n_ref - 2))
    if not pooled > 0:
        return (np.nan, np.nan, np.nan)
    g = (mean_ref - mean_arm) / pooled * (1 - 3 / (4 * (n_arm + n_ref) - 9))
    se = np.sqrt((n_arm + n_ref) / (n_arm * n_ref) + g**2 / (2 * (n_arm + n_ref)))
    return (g, g - 1.96 * se, g + 1.96 * se)


def hedges_g(arm: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """Hedges g with 95% CI from two samples of severity (positive = arm lower)."""
    a, b = np.asarray(arm, float), np.asarray(reference, float)
    sd = lambda x: x.std(ddof=1) if len(x) > 1 else np.nan  # noqa: E731
    return hedges_g_from_stats(a.mean(), sd(a), len(a), b.mean(), sd(b), len(b))


def trial_metrics(participants: pd.DataFrame, daily: pd.DataFrame, outcomes: Outcomes, reference: str,
                  week: int, completers: bool = False, weekly: pd.DataFrame | None = None,
                  programme_weeks: int | None = None) -> pd.DataFrame:
    """One row per arm and replicate trial at the end of `week`: dropout, adherence, change, response,
    remission, share meeting 150 min/week, Hedges g and Welch p against the reference arm.

    Intention to treat unless `completers`: then only those not dropped out by the end of `week`, from
    per-participant severity (the weekly panel, else the end-of-programme or end-of-run endpoints)."""
    if completers:
        return _completer_metrics(participants, daily, outcomes, reference, week, weekly, programme_weeks)
    at = daily[daily.day == 7 * week].set_index(["arm", "replicate"])
    base = daily[daily.day == 0].set_index(["arm", "replicate"])
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
            "meets_guideline": float((d.minutes_per_week_programme >= GUIDELINE_MINUTES).mean()),
            "g": g, "g_low": lo, "g_high": hi, "p": p, "g_trial": g_trial, "p_trial": p_trial,
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
    """Per arm: the mean of each trial metric and its 2.5/97.5 percentiles over replicates, and power."""
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
        row["power"] = float(((pt < 0.05) & (d.g_trial > 0)).mean()) if pt.notna().any() else np.nan
        out.append(row)
    return pd.DataFrame(out)


def participant_severity(participants: pd.DataFrame, weekly: pd.DataFrame | None, week: int,
                         programme_weeks: int | None = None, last_week: int | None = None) -> pd.Series:
    """Each participant's severity at the end of `week` (aligned to `participants`): from the weekly panel
    when it covers the participant, else severity_end_programme at `programme_weeks` or severity_end at
    `last_week`; MetricError when neither source has that week."""
    out = pd.Series(np.nan, index=participants.index, dtype=float)
    if programme_weeks is not None and week == programme_weeks:
        out = participants.severity_end_programme.astype(float)
    elif last_week is not None and week == last_week:
        out = participants.severity_end.astype(float)
    elif weekly is None or weekly.empty:
        raise MetricError(f"per-participant severity at week {week} needs the weekly panel "
                          "(run with --record participants-weekly); without it only the end of the programme "
                          "and the end of follow-up are stored per participant")
    if weekly is not None and not weekly.empty:
        at = weekly.loc[weekly.week == week, ["arm", "replicate", "pid", "severity"]]
        merged = participants[["arm", "replicate", "pid"]].merge(at, how="left", on=["arm", "replicate", "pid"])
        from_panel = pd.Series(merged.severity.to_numpy(float), index=participants.index)
        out = from_panel.where(from_panel.notna(), out)
    return out


def _completer_metrics(participants: pd.DataFrame, daily: pd.DataFrame, outcomes: Outcomes, reference: str,
                       week: int, weekly: pd.DataFrame | None, programme_weeks: int | None) -> pd.DataFrame:
    """trial_metrics for completers: everything from per-participant severity of those still enrolled."""
    last = int(daily.day.max()) // 7 if len(daily) else None
    sev = participant_severity(participants, weekly, week, programme_weeks, last)
    keep = ~(participants.dropout_day <= 7 * week)
    p = participants.assign(_sev=sev, _kept=keep)
    comp = p[keep]
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
        s, s0 = d._sev.to_numpy(float), d.baseline_severity.to_numpy(float)
        g = lo = hi = pv = g_trial = p_trial = np.nan
        if arm != reference:
            g, lo, hi, pv = against(s, rep)
            g_trial, _, _, p_trial = against(s, other.get(rep))
        planned = d.sessions_planned.sum()
        mean = lambda x: float(np.mean(x)) if len(x) else np.nan  # noqa: E731
        rows.append({
            "arm": arm, "replicate": rep, "week": week, "n": len(d), "randomised": len(d_all),
            "dropout": float((~d_all._kept).mean()),
            "adherence": d.sessions_done.sum() / planned if planned > 0 else np.nan,
            "baseline": mean(s0), "severity": mean(s), "change": mean(s) - mean(s0),
            "change_pct": 100 * (mean(s) / mean(s0) - 1) if len(s) else np.nan,
            "response": mean(s <= (1 - outcomes.response_reduction) * s0),
            "remission": mean(s <= outcomes.remission_threshold),
            "meets_guideline": mean(d.minutes_per_week_programme >= GUIDELINE_MINUTES),
            "g": g, "g_low": lo, "g_high": hi, "p": pv, "g_trial": g_trial, "p_trial": p_trial,
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- series, survival and subgroups
# Pure functions of stored frames that reports and figures draw on (docs/metrics.md defines each).

def weekly_arm_series(daily: pd.DataFrame) -> pd.DataFrame:
    """Per arm, replicate and week: mean severity at the week's end and mean minutes exercised in the week."""
    d = daily.assign(week=(daily.day + 6) // 7)  # days 1-7 -> week 1; day 0 -> week 0
    minutes = d[d.day > 0].groupby(["arm", "replicate", "week"], sort=False).minutes_mean.sum()
    ends = d[d.day % 7 == 0].set_index(["arm", "replicate", "week"]).severity_mean
    out = pd.DataFrame({"severity": ends, "minutes": minutes}).reset_index()
    out.loc[out.week == 0, "minutes"] = 0.0
    return out


def _band(df: pd.DataFrame, column: str, keys: list[str]) -> pd.DataFrame:
    g = df.groupby(keys, sort=False)[column]
    return pd.DataFrame({"mean": g.mean(), "low": g.quantile(0.025), "high": g.quantile(0.975),
                         "replicates": g.count()}).reset_index()


def weekly_summary(daily: pd.DataFrame, column: str = "severity") -> pd.DataFrame:
    """Per arm and week: the mean over replicates of the arm's weekly `column` ('severity' or 'minutes')
    with the 2.5 and 97.5 percentiles over replicates (the 95% interval of replicate trials)."""
    if column not in ("severity", "minutes"):
        raise MetricError(f"column {column!r} is not one of severity, minutes")
    return _band(weekly_arm_series(daily), column, ["arm", "week"])


def guideline_share_by_week(weekly: pd.DataFrame, minutes: float = GUIDELINE_MINUTES) -> pd.DataFrame:
    """Per arm and week (from the weekly panel): share of participants exercising >= `minutes` in that
    week, mean over replicates with the 2.5 and 97.5 percentiles over replicates."""
    if weekly.empty:
        raise MetricError("needs the per-participant weekly panel: run with --record participants-weekly")
    w = weekly[weekly.week > 0]
    share = (w.minutes >= minutes).groupby([w.arm, w.replicate, w.week], sort=False).mean().rename("share")
    return _band(share.reset_index(), "share", ["arm", "week"])


def kaplan_meier(durations, observed, alpha: float = 0.05) -> pd.DataFrame:
    """Kaplan-Meier survival with Greenwood log(-log) confidence limits (as lifelines computes them):
    columns time, at_risk, events, survival, low, high; the first row is time 0."""
    d, e = np.asarray(durations, float), np.asarray(observed, bool)
    times = np.unique(d[e])
    at_risk = len(d) - np.searchsorted(np.sort(d), times, side="left")
    events = np.bincount(np.searchsorted(times, d[e]), minlength=len(times))
    surv = np.cumprod(1.0 - events / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(at_risk > events, events / (at_risk * np.maximum(at_risk - events, 1)), 0.0)
        v = np.cumsum(term) / np.log(surv) ** 2
        z = stats.norm.ppf(1 - alpha / 2)
        inside = (surv > 0) & (surv < 1)
        low = np.where(inside, surv ** np.exp(z * np.sqrt(v)), surv)
        high = np.where(inside, surv ** np.exp(-z * np.sqrt(v)), surv)
    return pd.DataFrame({"time": np.r_[0.0, times], "at_risk": np.r_[len(d), at_risk],
                         "events": np.r_[0, events], "survival": np.r_[1.0, surv],
                         "low": np.r_[1.0, low], "high": np.r_[1.0, high]})


def dropout_survival(participants: pd.DataFrame, days: int) -> pd.DataFrame:
    """Per arm, participants of all replicates pooled: Kaplan-Meier share still enrolled by week (time =
    dropout day / 7; those who never dropped out are censored at the end of the run, day `days`)."""
    out = []
    for arm, d in participants.groupby("arm", sort=False):
        dropped = d.dropout_day.notna().to_numpy()
        t = np.where(dropped, d.dropout_day.to_numpy(float), float(days)) / 7.0
        km = kaplan_meier(t, dropped)
        if km.time.iloc[-1] < days / 7:  # carry the curve to the end of the run
            km = pd.concat([km, km.iloc[[-1]].assign(time=days / 7, events=0,
                                                     at_risk=int((t >= days / 7).sum()))], ignore_index=True)
        out.append(km.assign(arm=arm, n=len(d)))
    cols = ["arm", "n", "time", "at_risk", "events", "survival", "low", "high"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def tertile(values: pd.Series) -> pd.Series:
    """'low', 'mid' or 'high' third of the pooled values (cut at their 1/3 and 2/3 quantiles)."""
    cuts = values.quantile([1 / 3, 2 / 3]).to_numpy()
    labels = np.where(values <= cuts[0], "low", np.where(values <= cuts[1], "mid", "high"))
    return pd.Series(pd.Categorical(labels, ["low", "mid", "high"], ordered=True), index=values.index)


PHENOTYPES = ("low R, low C", "low R, high C", "high R, low C", "high R, high C")


def phenotype(participants: pd.DataFrame) -> pd.Series:
    """Reward sensitivity x cognitive control at baseline, each split at its median over the pooled
    participants: one of PHENOTYPES."""
    r = np.where(participants.reward_sensitivity > participants.reward_sensitivity.median(), "high R", "low R")
    c = np.where(participants.cognitive_control > participants.cognitive_control.median(), "high C", "low C")
    return pd.Series(pd.Categorical(np.char.add(np.char.add(r, ", "), c), PHENOTYPES), index=participants.index)


def subgroup_effects(participants: pd.DataFrame, reference: str, by: list[str],
                     endpoint: str = "severity_end_programme") -> pd.DataFrame:
    """Per non-reference arm and cell of baseline-trait tertiles (`by`: one or two traits), replicates
    pooled: mean change from baseline to `endpoint` in arm and reference, effect = reference change minus
    arm change (points; positive = arm better) with a Welch 95% CI, and Hedges g of `endpoint` severity."""
    p = participants.assign(change=participants[endpoint] - participants.baseline_severity)
    for t in by:
        p[t + "_tertile"] = tertile(p[t])
    keys = [t + "_tertile" for t in by]
    ref = p[p.arm == reference]
    rows = []
    for arm in [a for a in p.arm.unique() if a != reference]:
        a = p[p.arm == arm]
        for cell, d in a.groupby(keys, observed=False):
            cell = cell if isinstance(cell, tuple) else (cell,)
            mask = np.logical_and.reduce([ref[k] == v for k, v in zip(keys, cell)])
            r = ref[mask]
            x, y = d.change.dropna().to_numpy(), r.change.dropna().to_numpy()
            eff = y.mean() - x.mean() if len(x) and len(y) else np.nan
            se = np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y)) if len(x) > 1 and len(y) > 1 else np.nan
            g, g_lo, g_hi = hedges_g(d[endpoint].dropna(), r[endpoint].dropna()) if len(x) > 1 and len(y) > 1 \
                else (np.nan, np.nan, np.nan)
            rows.append({"arm": arm, **dict(zip(keys, cell)), "n": len(x), "n_reference": len(y),
                         "change": x.mean() if len(x) else np.nan, "change_reference": y.mean() if len(y) else np.nan,
                         "effect": eff, "effect_low": eff - 1.96 * se, "effect_high": eff + 1.96 * se,
                         "g": g, "g_low": g_lo, "g_high": g_hi})
    return pd.DataFrame(rows)


def binned_means(x: pd.Series, y: pd.Series, bins: int = 8, min_n: int = 5) -> pd.DataFrame:
    """Mean of y (with a normal 95% CI) in bins of x: one bin for x == 0, then `bins` equal-width bins of
    x > 0 up to its 99th percentile (the top bin takes the rest); bins with fewer than `min_n` people are
    left out. Columns x (mean x in the bin), mean, low, high, n."""
    ok = x.notna() & y.notna()
    x, y = x[ok].astype(float), y[ok].astype(float)
    label = pd.Series(-1, index=x.index)
    pos = x > 0
    if pos.any():
        top = float(x[pos].quantile(0.99)) or float(x[pos].max())
        label[pos] = np.minimum((x[pos] / top * bins).astype(int), bins - 1)
    g = pd.DataFrame({"x": x, "y": y, "bin": label}).groupby("bin")
    out = pd.DataFrame({"x": g.x.mean(), "mean": g.y.mean(), "n": g.y.count(),
                        "se": g.y.std(ddof=1) / np.sqrt(g.y.count())}).reset_index(drop=True)
    out = out[out.n >= min_n].reset_index(drop=True)
    out["low"], out["high"] = out["mean"] - 1.96 * out.se, out["mean"] + 1.96 * out.se
    return out[["x", "mean", "low", "high", "n"]]


# ---------------------------------------------------------------- the metric vocabulary
# Each metric maps stored frames of one scenario to one value per replicate trial. The same
# definitions serve scenario checks, `sim validate` and reports; docs/metrics.md states each one.

class MetricError(ValueError):
    """A metric asked for with arguments it cannot use, or data it needs but the runs lack."""


@dataclass(frozen=True)
class Frames:
    """What metrics read: participants (endpoints), daily arm aggregates, optional weekly panel."""

    participants: pd.DataFrame
    daily: pd.DataFrame
    weekly: pd.DataFrame
    outcomes: Outcomes
    programme_weeks: int | None = None  # lets per-participant metrics use the end-of-programme endpoints


def _arm(df: pd.DataFrame, arm: str) -> pd.DataFrame:
    """Rows of one arm, or of every arm pooled for arm 'all'."""
    if arm == "all":
        return df
    if arm not in set(df.arm):
        raise MetricError(f"arm {arm!r} has no stored results; arms: {', '.join(sorted(set(df.arm)))}")
    return df[df.arm == arm]


def _per_rep(df: pd.DataFrame, fn) -> pd.Series:
    return df.groupby("replicate").apply(fn, include_groups=False).astype(float)


def _panel(f: Frames) -> pd.DataFrame:
    if f.weekly.empty:
        raise MetricError("needs the per-participant weekly panel: run with --record participants-weekly")
    return f.weekly


def _weekly_wide(f: Frames, arm: str, column: str) -> pd.DataFrame:
    """Participants x weeks table of a panel column, indexed by (replicate, arm, pid)."""
    w = _arm(_panel(f), arm)
    return w.pivot_table(index=["replicate", "arm", "pid"], columns="week", values=column)


def _window_minutes(f: Frames, arm: str, week: int, window_weeks: int) -> pd.Series:
    wide = _weekly_wide(f, arm, "minutes")
    cols = [w for w in range(week - window_weeks + 1, week + 1) if w in wide.columns and w > 0]
    if len(cols) != window_weeks:
        raise MetricError(f"window of {window_weeks} weeks ending at week {week} is not inside the run")
    return wide[cols].mean(axis=1)


def dropout_rate(f: Frames, arm: str, week: int) -> pd.Series:
    """Share of participants who dropped out by the end of `week`."""
    return _per_rep(_arm(f.participants, arm), lambda d: (d.dropout_day <= 7 * week).mean())


def dropout_difference(f: Frames, arm: str, reference: str, week: int) -> pd.Series:
    """Dropout rate of the arm minus that of the reference arm."""
    return dropout_rate(f, arm, week) - dropout_rate(f, reference, week)


def adherence_rate(f: Frames, arm: str) -> pd.Series:
    """Completed over prescribed programme sessions, all participants (dropouts' missed sessions count)."""
    return _per_rep(_arm(f.participants, arm), lambda d: d.sessions_done.sum() / d.sessions_planned.sum()
                    if d.sessions_planned.sum() > 0 else np.nan)


def mean_weekly_minutes(f: Frames, arm: str, week: int, window_weeks: int = 1) -> pd.Series:
    """Mean exercise minutes per participant per week over the `window_weeks` weeks ending at `week`."""
    d = _arm(f.daily, arm)
    days = d[(d.day > 7 * (week - window_weeks)) & (d.day <= 7 * week)]
    return days.groupby(["replicate", "arm"]).minutes_mean.sum().groupby("replicate").mean() / window_weeks


def meets_guideline_rate(f: Frames, arm: str, week: int, window_weeks: int = 4,
                         minutes: float = GUIDELINE_MINUTES) -> pd.Series:
    """Share averaging at least `minutes` a week over the `window_weeks` weeks ending at `week`."""
    avg = _window_minutes(f, arm, week, window_weeks)
    return (avg >= minutes).groupby("replicate").mean().astype(float)


def _at_day(f: Frames, arm: str, week: int) -> pd.DataFrame:
    d = _arm(f.daily, arm)
    at = d[d.day == 7 * week]
    if at.empty:
        raise MetricError(f"week {week} is outside the run")
    return at


def severity_change_pct(f: Frames, arm: str, week: int) -> pd.Series:
    """Percent change of the mean severity from baseline to the end of `week` (negative = better)."""
    now = _at_day(f, arm, week).groupby("replicate").severity_mean.mean()
    base = _at_day(f, arm, 0).groupby("replicate").severity_mean.mean()
    return 100 * (now / base - 1)


def response_rate(f: Frames, arm: str, week: int) -> pd.Series:
    """Share whose severity fell by at least the scenario's response reduction (default 50%)."""
    return _at_day(f, arm, week).groupby("replicate").response_share.mean()


def remission_rate(f: Frames, arm: str, week: int) -> pd.Series:
    """Share at or below the scenario's remission threshold (default HAM-D 7)."""
    return _at_day(f, arm, week).groupby("replicate").remission_share.mean()


def relapse_rate(f: Frames, arm: str, remitted_at: int, week: int) -> pd.Series:
    """Of those remitted at week `remitted_at`, the share not remitted at `week`."""
    wide = _weekly_wide(f, arm, "severity")
    thr = f.outcomes.remission_threshold
    remitted = wide[remitted_at] <= thr
    relapsed = (wide[week] > thr) & remitted
    return (relapsed.groupby("replicate").sum() / remitted.groupby("replicate").sum()).astype(float)


def effect_size(f: Frames, arm: str, reference: str, week: int) -> pd.Series:
    """Hedges g of severity at `week`, reference minus arm over the pooled SD (positive = arm better)."""
    a, r = _at_day(f, arm, week).set_index("replicate"), _at_day(f, reference, week).set_index("replicate")
    n = f.participants.groupby(["arm", "replicate"]).size()
    return pd.Series({rep: hedges_g_from_stats(a.severity_mean[rep], a.severity_sd[rep], n[(arm, rep)],
                                               r.severity_mean[rep], r.severity_sd[rep], n[(reference, rep)])[0]
                      for rep in a.index.intersection(r.index)}, dtype=float)


def subgroup_effect_size(f: Frames, arm: str, reference: str, week: int, subgroup: str) -> pd.Series:
    """Hedges g of participants' severity at `week` within one population subgroup, reference minus arm
    (positive = arm better); severity per participant from the weekly panel or the stored endpoints."""
    p = f.participants
    if subgroup not in set(p.subgroup):
        raise MetricError(f"subgroup {subgroup!r} has no participants; subgroups: {', '.join(sorted(set(p.subgroup)))}")
    last = int(f.daily.day.max()) // 7 if len(f.daily) else None
    sev = participant_severity(p, f.weekly, week, f.programme_weeks, last)
    d = p.assign(_sev=sev)[p.subgroup == subgroup]
    out = {}
    for rep, g in d.groupby("replicate"):
        a, r = g[g.arm == arm]._sev.dropna(), g[g.arm == reference]._sev.dropna()
        out[rep] = hedges_g(a.to_numpy(), r.to_numpy())[0] if len(a) > 1 and len(r) > 1 else np.nan
    return pd.Series(out, dtype=float)


def odds_ratio_depressed_by_activity(f: Frames, arm: str, week: int, minutes: float = GUIDELINE_MINUTES,
                                     window_weeks: int = 4) -> pd.Series:
    """Odds of not being remitted at `week` for those averaging >= `minutes`/week over the window
    ending at `week`, against the rest (0.5 added to every cell)."""
    active = _window_minutes(f, arm, week, window_weeks) >= minutes
    depressed = _weekly_wide(f, arm, "severity")[week] > f.outcomes.remission_threshold

    def odds_ratio(idx: pd.Index) -> float:
        act, dep = active.loc[idx], depressed.loc[idx]
        a, b = (act & dep).sum() + 0.5, (act & ~dep).sum() + 0.5
        c, d = (~act & dep).sum() + 0.5, (~act & ~dep).sum() + 0.5
        return (a / b) / (c / d)

    return pd.Series({rep: odds_ratio(g.index) for rep, g in active.groupby("replicate")}, dtype=float)


PER_PARTICIPANT = {
    # name: (definition, function of the participants frame and the week)
    "dropped_out": ("1 if dropped out by the end of `week`", lambda p, w: (p.dropout_day <= 7 * w).astype(float)),
    "adherence": ("completed / prescribed programme sessions", lambda p, w: p.adherence),
    "programme_minutes": ("mean minutes per week in the programme", lambda p, w: p.minutes_per_week_programme),
    "follow_up_minutes": ("mean minutes per week in follow-up", lambda p, w: p.minutes_per_week_follow_up),
    "severity_change_end_programme": ("severity at the end of the programme minus baseline",
                                      lambda p, w: p.severity_end_programme - p.baseline_severity),
    "severity_change_end": ("severity at the end of follow-up minus baseline",
                            lambda p, w: p.severity_end - p.baseline_severity),
    "severity_change_follow_up": ("severity at the end of follow-up minus at the end of the programme (positive = "
                                  "worse after it), among those still enrolled at the end of `week` (give the "
                                  "programme's last week to leave out those who dropped out during it)",
                                  lambda p, w: (p.severity_end - p.severity_end_programme).where(
                                      ~(p.dropout_day <= 7 * w))),
    "cognitive_control_gain": ("cognitive control at the end of the programme minus baseline",
                               lambda p, w: p.cognitive_control_end_programme - p.cognitive_control),
    "reward_sensitivity_gain": ("reward sensitivity at the end of the programme minus baseline",
                                lambda p, w: p.reward_sensitivity_end_programme - p.reward_sensitivity),
    "self_efficacy_end_programme": ("self-efficacy at the end of the programme",
                                    lambda p, w: p.self_efficacy_end_programme),
    "habit_end_programme": ("habit strength at the end of the programme", lambda p, w: p.habit_end_programme),
    **{t: (f"baseline {t.replace('_', ' ')}", (lambda t: lambda p, w: p[t])(t)) for t in TRAITS},
}


def association(f: Frames, arm: str, x: str, y: str, week: int | None = None) -> pd.Series:
    """Spearman rho between two per-participant quantities (see PER_PARTICIPANT)."""
    for name in (x, y):
        if name not in PER_PARTICIPANT:
            raise MetricError(f"unknown per-participant quantity {name!r}; allowed: {', '.join(PER_PARTICIPANT)}")
    wk = week if week is not None else 0

    def rho(d: pd.DataFrame) -> float:
        xs, ys = PER_PARTICIPANT[x][1](d, wk), PER_PARTICIPANT[y][1](d, wk)
        ok = xs.notna() & ys.notna()
        if ok.sum() < 3 or xs[ok].nunique() < 2 or ys[ok].nunique() < 2:
            return np.nan
        return stats.spearmanr(xs[ok], ys[ok]).statistic

    return _per_rep(_arm(f.participants, arm), rho)


def median_days_to_habit(f: Frames, arm: str, level: float = 0.95) -> pd.Series:
    """Median, over participants who formed a habit, of the first day their habit reached `level` of
    their own plateau (the highest automaticity they reached; Lally et al. 2010 fit each person's)."""
    col = f"days_to_habit_{round(100 * level)}"
    if col not in f.participants.columns:
        raise MetricError(f"level {level} is not recorded; recorded levels: {', '.join(map(str, HABIT_LEVELS))}")
    return _per_rep(_arm(f.participants, arm), lambda d: d[col].median())


VOCABULARY = {name: globals()[name] for name in METRIC_NAMES}


def _check_signatures() -> None:
    """Each metric function takes exactly the arguments sim.vocabulary declares (inputs are checked there)."""
    for name, fn in VOCABULARY.items():
        params = inspect.signature(fn).parameters
        required = tuple(k for k, p in params.items() if k != "f" and p.default is inspect.Parameter.empty)
        optional = tuple(k for k, p in params.items() if k != "f" and p.default is not inspect.Parameter.empty)
        if (required, optional) != SIGNATURES[name]:
            raise ImportError(f"metric {name} takes {required} + {optional}, sim.vocabulary says {SIGNATURES[name]}")
    if tuple(PER_PARTICIPANT) != PER_PARTICIPANT_NAMES:
        raise ImportError("PER_PARTICIPANT and sim.vocabulary.PER_PARTICIPANT_NAMES differ")


_check_signatures()


def compute(metric: str, frames: Frames, **args) -> pd.Series:
    """One metric of the vocabulary, one value per replicate; refuses missing or unused arguments."""
    given = {k: v for k, v in args.items() if v is not None}
    if problem := argument_problem(metric, given):
        raise MetricError(problem)
    return VOCABULARY[metric](frames, **given)


def summarise(values: pd.Series) -> dict[str, float]:
    """Mean over replicates with the 2.5 and 97.5 percentiles."""
    v = values.replace([np.inf, -np.inf], np.nan).dropna() if values.dtype.kind == "f" else values.dropna()
    if v.empty:
        return {"mean": np.nan, "p2.5": np.nan, "p97.5": np.nan, "replicates": 0}
    return {"mean": float(v.mean()), "p2.5": float(v.quantile(0.025)), "p97.5": float(v.quantile(0.975)),
            "replicates": int(len(v))}


def evaluate_checks(checks: list[Check], frames: Frames, default_reference: str) -> pd.DataFrame:
    """Each scenario check: the simulated mean over replicates, its 95% interval and pass/fail (a check
    without a reference is measured against `default_reference`, the scenario's reference arm)."""
    rows = []
    for c in checks:
        args = c.arguments()
        if "reference" in inspect.signature(VOCABULARY[c.metric]).parameters:
            args.setdefault("reference", default_reference)
        s = summarise(compute(c.metric, frames, **args))
        rows.append({"id": c.id, "metric": c.metric, "arm": c.arm, "week": c.week, **s,
                     "accept": f"{c.accept[0]:g} to {c.accept[1]:g}",
                     "passed": bool(c.accept[0] <= s["mean"] <= c.accept[1]), "source": c.source})
    return pd.DataFrame(rows)
