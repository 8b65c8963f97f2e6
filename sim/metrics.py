"""Outcome metrics: pure functions of stored frames (per replicate trial, then across replicates).

Intention-to-treat throughout: every randomised participant counts, dropouts included. Effect
sizes are signed so that positive means the arm has lower symptoms than the reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from sim.scenario import Check, Outcomes

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
                  week: int) -> pd.DataFrame:
    """One row per arm and replicate trial at the end of `week`: dropout, adherence, change, response,
    remission, share meeting 150 min/week, Hedges g and Welch p against the reference arm."""
    at = daily[daily.day == 7 * week].set_index(["arm", "replicate"])
    base = daily[daily.day == 0].set_index(["arm", "replicate"])
    size = participants.groupby(["arm", "replicate"]).size()
    rows = []
    for (arm, rep), d in participants.groupby(["arm", "replicate"], sort=False):
        if (arm, rep) not in at.index:
            continue
        now, b0, n = at.loc[(arm, rep)], base.loc[(arm, rep)], len(d)
        g = lo = hi = p = np.nan
        if arm != reference and (reference, rep) in at.index:
            ref = at.loc[(reference, rep)]
            n_ref = int(size.get((reference, rep), 0))
            g, lo, hi = hedges_g_from_stats(now.severity_mean, now.severity_sd, n, ref.severity_mean,
                                            ref.severity_sd, n_ref)
            p = stats.ttest_ind_from_stats(now.severity_mean, now.severity_sd, n, ref.severity_mean,
                                           ref.severity_sd, n_ref, equal_var=False).pvalue
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
            "g": g, "g_low": lo, "g_high": hi, "p": p,
        })
    return pd.DataFrame(rows)


def across_replicates(trials: pd.DataFrame, arm_order: list[str] | None = None) -> pd.DataFrame:
    """Per arm: the mean of each trial metric and its 2.5/97.5 percentiles over replicates, and power."""
    out = []
    arms = [a for a in (arm_order or []) if a in set(trials.arm)] or list(trials.arm.unique())
    for arm in arms:
        d = trials[trials.arm == arm]
        row = {"arm": arm, "replicates": len(d), "n": d.n.mean()}
        for col in ("dropout", "adherence", "baseline", "severity", "change", "change_pct", "response",
                    "remission", "meets_guideline", "g", "g_low", "g_high"):
            v = d[col].dropna()
            row[col] = v.mean() if len(v) else np.nan
            row[col + "_p2.5"] = v.quantile(0.025) if len(v) else np.nan
            row[col + "_p97.5"] = v.quantile(0.975) if len(v) else np.nan
        row["power"] = float(((d.p < 0.05) & (d.g > 0)).mean()) if d.p.notna().any() else np.nan
        out.append(row)
    return pd.DataFrame(out)


CHECK_COLUMN = {"dropout_rate": "dropout", "adherence_rate": "adherence", "effect_size": "g",
                "severity_change_pct": "change_pct", "response_rate": "response", "remission_rate": "remission"}


def evaluate_checks(checks: list[Check], participants: pd.DataFrame, daily: pd.DataFrame,
                    outcomes: Outcomes, default_reference: str) -> pd.DataFrame:
    """Each scenario check: the simulated mean over replicates, its 95% interval and pass/fail."""
    rows = []
    for c in checks:
        t = trial_metrics(participants, daily, outcomes, c.reference or default_reference, c.week)
        v = t[t.arm == c.arm][CHECK_COLUMN[c.metric]].dropna()
        mean = v.mean() if len(v) else np.nan
        rows.append({"id": c.id, "metric": c.metric, "arm": c.arm, "week": c.week, "mean": mean,
                     "p2.5": v.quantile(0.025) if len(v) else np.nan,
                     "p97.5": v.quantile(0.975) if len(v) else np.nan,
                     "accept": f"{c.accept[0]:g} to {c.accept[1]:g}",
                     "passed": bool(c.accept[0] <= mean <= c.accept[1]), "source": c.source})
    return pd.DataFrame(rows)
