"""The plain-text summary of a scenario's stored results, as printed by `sim run`."""

from __future__ import annotations

import math

from sim.analysis import metrics
from sim.runs.results import ScenarioResults
from sim.scenario import Scenario


def _pct(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.1f}"


ANALYSIS_LABELS = {"true": "true state of every randomised participant",
                   "locf": "assessed, intention to treat, last observation carried forward"}


def arm_table(sc: Scenario, res: ScenarioResults, week: int, label: str, analysis: str = "true") -> str:
    """Per-arm summary at the end of `week` over the stored replicate trials (`analysis` true or locf)."""
    try:
        trials = metrics.trial_metrics(res.participants, res.daily, sc.outcomes, sc.reference, week,
                                       analysis=analysis, assessments=res.assessments, weekly=res.weekly,
                                       programme_weeks=sc.weeks)
    except metrics.MetricError as e:
        return f"{sc.name}: week {week} ({label}; {ANALYSIS_LABELS[analysis]}): not computable: {e}"
    table = metrics.across_replicates(trials, list(sc.arms))
    reps = int(table.replicates.max()) if len(table) else 0
    lines = [f"{sc.name}: week {week} ({label}; {ANALYSIS_LABELS[analysis]}); means over {reps} replicate trials; "
             f"severity on {sc.outcomes.scale}; g against '{sc.reference}' (positive = fewer symptoms)",
             f"{'arm':<24}{'n':>6}{'adher%':>8}{'drop%':>7}{'change':>8}{'chg%':>7}{'resp%':>7}{'remit%':>7}"
             f"{'wk150%':>7}  {'g [95% CI of one trial]':<25}{'g 95% over reps':<17}{'power% [Wilson 95%]':>20}"]
    for _, r in table.iterrows():
        ref = r.arm == sc.reference
        g = "reference" if ref else f"{r.g:5.2f} [{r.g_low:5.2f}, {r.g_high:5.2f}]"
        spread = "" if ref or math.isnan(r["g_trial_p2.5"]) else f"{r['g_trial_p2.5']:5.2f} to {r['g_trial_p97.5']:5.2f}"
        power = "" if ref or not r.power_n else f"{_pct(r.power)} [{_pct(r.power_low)}, {_pct(r.power_high)}]"
        lines.append(f"{r.arm:<24}{r.n:6.0f}{_pct(r.adherence):>8}{_pct(r.dropout):>7}{r.change:8.1f}"
                     f"{r.change_pct:7.1f}{_pct(r.response):>7}{_pct(r.remission):>7}{_pct(r.meets_guideline):>7}"
                     f"  {g:<25}{spread:<17}{power:>20}")
    lines += notes(table, res.weekly.empty)
    return "\n".join(lines)


def notes(table, no_panel: bool) -> list[str]:
    """What the guideline and power columns are, and a warning when power counts fewer than 100 trials."""
    out = ["wk150%: share of programme person-weeks with >= 150 min of exercise (dropouts' weeks count as 0)"
           + (" - needs the weekly panel: run with --record participants-weekly" if no_panel else "")]
    n = table.power_n[table.power_n > 0] if "power_n" in table else []
    if len(n):
        out.append(f"power: share of {int(n.min())} replicate trials with p < 0.05 in the arm's favour, with its "
                   "Wilson 95% interval")
        if n.min() < metrics.FEW_REPLICATES:
            out.append(f"warning: power from only {int(n.min())} replicate trials; its interval is wide (use at "
                       f"least {metrics.FEW_REPLICATES} replicates, --replicates)")
    return out


def checks_table(sc: Scenario, res: ScenarioResults) -> str:
    """The scenario's checks against published findings, each ok or OFF."""
    frames = metrics.Frames.of(res, sc.outcomes, programme_weeks=sc.weeks)
    checks = metrics.evaluate_checks(sc.checks, frames, sc.reference)
    lines = ["plausibility against published findings (mean over replicates [95% of replicates]):"]
    for _, c in checks.iterrows():
        how = f" ({c.analysis})" if c.analysis else ""
        lines.append(f"  {'ok ' if c.passed else 'OFF'} {c.id:<28} {c.metric} {c.arm} week {c.week}{how}: "
                     f"{c['mean']:.3f} [{c['p2.5']:.3f}, {c['p97.5']:.3f}]  accept {c.accept}  ({c.source})")
    return "\n".join(lines)


def summary_text(sc: Scenario, res: ScenarioResults) -> str:
    """Arm tables at the end of the programme and of follow-up, then the checks."""
    if res.participants.empty:
        return f"{sc.name}: no finished runs to summarise"
    parts = []
    for analysis in ("true", "locf"):
        parts.append(arm_table(sc, res, sc.weeks, "end of programme", analysis))
        if sc.follow_up_weeks:
            parts.append(arm_table(sc, res, sc.weeks + sc.follow_up_weeks, "end of follow-up", analysis))
    if sc.checks:
        parts.append(checks_table(sc, res))
    return "\n\n".join(parts)
