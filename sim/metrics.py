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


def hedges_g(arm: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """Hedges g of reference minus arm (positive = arm better) with its 95% CI (Hedges & Olkin)."""
    a, b = np.asarray(arm, float), np.asarray(reference, float)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return (np.nan, np.nan, np.nan)
    pooled = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return (np.nan, np.nan, np.nan)
    g = (b.mean() - a.mean()) / pooled * (1 - 3 / (4 * (na + nb) - 9))
    se = np.sqrt((na + nb) / (na * nb) + g**2 / (2 * (na + nb)))
    return (g, g - 1.96 * se, g + 1.96 * se)


def severity_at(weekly: pd.DataFrame, week: int) -> pd.DataFrame:
    """Per participant: baseline severity and severity at the end of `week`."""
    base = weekly[weekly.week == 0][["arm", "replicate", "pid", "severity"]].rename(columns={"severity": "s0"})
    now = weekly[weekly.week == week][["arm", "replicate", "pid", "severity"]]
    return base.merge(now, on=["arm", "replicate", "pid"])


def trial_metrics(participants: pd.DataFrame, weekly: pd.DataFrame, outcomes: Outcomes, reference: str,
                  week: int) -> pd.DataFrame:
    """One row per arm and replicate trial: dropout, adherence, change, response, remission, g vs reference."""
    sev = severity_at(weekly, week).merge(participants, on=["arm", "replicate", "pid"])
    rows = []
    for (arm, rep), d in sev.groupby(["arm", "replicate"], sort=False):
        ref = sev[(sev.arm == reference) & (sev.replicate == rep)]
        g, lo, hi = hedges_g(d.severity.values, ref.severity.values) if arm != reference else (np.nan,) * 3
        p = stats.ttest_ind(d.severity, ref.severity, equal_var=False).pvalue if arm != reference else np.nan
        planned = d.sessions_planned.sum()
        rows.append({
            "arm": arm, "replicate": rep, "week": week, "n": len(d),
            "dropout": float((d.dropout_day <= 7 * week).mean()),
            "adherence": d.sessions_done.sum() / planned if planned > 0 else np.nan,
            "baseline": d.s0.mean(), "severity": d.severity.mean(),
            "change": d.severity.mean() - d.s0.mean(),
            "change_pct": 100 * (d.severity.mean() / d.s0.mean() - 1),
            "response": float((d.severity <= (1 - outcomes.response_reduction) * d.s0).mean()),
            "remission": float((d.severity <= outcomes.remission_threshold).mean()),
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


def evaluate_checks(checks: list[Check], participants: pd.DataFrame, weekly: pd.DataFrame,
                    outcomes: Outcomes, default_reference: str) -> pd.DataFrame:
    """Each scenario check: the simulated mean over replicates, its 95% interval and pass/fail."""
    rows = []
    for c in checks:
        t = trial_metrics(participants, weekly, outcomes, c.reference or default_reference, c.week)
        v = t[t.arm == c.arm][CHECK_COLUMN[c.metric]].dropna()
        mean = v.mean() if len(v) else np.nan
        rows.append({"id": c.id, "metric": c.metric, "arm": c.arm, "week": c.week, "mean": mean,
                     "p2.5": v.quantile(0.025) if len(v) else np.nan,
                     "p97.5": v.quantile(0.975) if len(v) else np.nan,
                     "accept": f"{c.accept[0]:g} to {c.accept[1]:g}",
                     "passed": bool(c.accept[0] <= mean <= c.accept[1]), "source": c.source})
    return pd.DataFrame(rows)
