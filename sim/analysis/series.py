"""Series, survival and subgroups: pure functions of stored frames that figures and the report draw on
(docs/metrics.md, "Series, survival and subgroups", defines each). Re-exported by sim.analysis.metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from sim.analysis.assessed import MetricError, hedges_g
from sim.vocabulary import GUIDELINE_MINUTES


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


FEW_PEOPLE = 10  # a bin or cell with fewer people than this is marked in tables and figures


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of `values` with its t-distribution confidence interval (NaN limits for fewer than 2 values)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.nan, np.nan, np.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, np.nan, np.nan
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return m, m - half, m + half


def welch_interval(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """mean(y) - mean(x) with its Welch t confidence interval (Welch-Satterthwaite degrees of freedom)."""
    if len(x) < 2 or len(y) < 2:
        d = y.mean() - x.mean() if len(x) and len(y) else np.nan
        return d, np.nan, np.nan
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    d, se = y.mean() - x.mean(), np.sqrt(vx + vy)
    if se == 0:
        return d, d, d
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return d, d - half, d + half


def subgroup_effects(participants: pd.DataFrame, reference: str, by: list[str],
                     endpoint: str = "severity_end_programme") -> pd.DataFrame:
    """Per non-reference arm and cell of baseline-trait tertiles (`by`: one or two traits), replicates
    pooled: mean change from baseline to `endpoint` in arm and reference, effect = reference change minus
    arm change (points; positive = arm better) with a Welch t 95% CI, Hedges g of `endpoint` severity, the
    people in each group and `few` (either group under FEW_PEOPLE)."""
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
            eff, lo, hi = welch_interval(x, y)
            g, g_lo, g_hi = hedges_g(d[endpoint].dropna(), r[endpoint].dropna()) if len(x) > 1 and len(y) > 1 \
                else (np.nan, np.nan, np.nan)
            rows.append({"arm": arm, **dict(zip(keys, cell)), "n": len(x), "n_reference": len(y),
                         "change": x.mean() if len(x) else np.nan, "change_reference": y.mean() if len(y) else np.nan,
                         "effect": eff, "effect_low": lo, "effect_high": hi, "g": g, "g_low": g_lo, "g_high": g_hi,
                         "few": min(len(x), len(y)) < FEW_PEOPLE})
    return pd.DataFrame(rows)


def binned_means(x: pd.Series, y: pd.Series, bins: int = 8, min_n: int = 2) -> pd.DataFrame:
    """Mean of y with its t 95% CI in bins of x: one bin for x == 0, then `bins` equal-width bins of x > 0 up
    to its 99th percentile (the top bin takes the rest); bins under `min_n` people are left out (no interval)
    and bins under FEW_PEOPLE marked `few`. Columns x (mean x in the bin), mean, low, high, n, few."""
    ok = x.notna() & y.notna()
    x, y = x[ok].astype(float), y[ok].astype(float)
    label = pd.Series(-1, index=x.index)
    pos = x > 0
    if pos.any():
        top = float(x[pos].quantile(0.99)) or float(x[pos].max())
        label[pos] = np.minimum((x[pos] / top * bins).astype(int), bins - 1)
    rows = []
    for _, d in pd.DataFrame({"x": x, "y": y, "bin": label}).groupby("bin"):
        if len(d) >= min_n:
            m, lo, hi = t_interval(d.y.to_numpy())
            rows.append({"x": d.x.mean(), "mean": m, "low": lo, "high": hi, "n": len(d), "few": len(d) < FEW_PEOPLE})
    return pd.DataFrame(rows, columns=["x", "mean", "low", "high", "n", "few"])


PER_HOUR = 60.0  # dose-response slopes are per 60 minutes a week


def dose_association(participants: pd.DataFrame, x_col: str, end: str, start: str,
                     covariates: tuple[str, ...]) -> pd.DataFrame:
    """Per arm, replicates pooled: the OLS slope of change in severity (`end` - `start`) on minutes a week
    (`x_col`), per 60 min/week, raw and adjusted for the baseline traits in `covariates` (those that vary),
    each with its 95% CI (HC3 robust standard errors). An association among self-selected exercisers, not
    the effect of exercising more."""
    import statsmodels.api as sm

    rows = []
    for arm, d in participants.groupby("arm", sort=False):
        cov = [c for c in covariates if c in d and d[c].nunique() > 1]
        data = pd.DataFrame({"x": d[x_col] / PER_HOUR, "y": d[end] - d[start], **{c: d[c] for c in cov}}).dropna()
        row = {"arm": arm, "n": len(data), "covariates": ", ".join(cov)}
        for kind, cols in (("raw", ["x"]), ("adjusted", ["x", *cov])):
            if len(data) <= len(cols) + 2 or data.x.nunique() < 2:
                row.update({kind: np.nan, f"{kind}_low": np.nan, f"{kind}_high": np.nan})
                continue
            with np.errstate(divide="ignore", invalid="ignore"):  # HC3 with a point of leverage 1: NaN CI
                fit = sm.OLS(data.y, sm.add_constant(data[cols])).fit(cov_type="HC3")
            lo, hi = fit.conf_int().loc["x"]
            row.update({kind: float(fit.params["x"]), f"{kind}_low": float(lo), f"{kind}_high": float(hi)})
        rows.append(row)
    return pd.DataFrame(rows)
