"""Outcome metrics: pure functions of stored frames (per replicate trial, then across replicates).

Intention to treat throughout: every randomised participant counts, dropouts included. Metrics on
people's severity take an `analysis` (sim.analysis.assessed): the true simulated state, or the trial's
assessments (observed cases, LOCF, MMRM). Effect sizes are signed so that positive means the arm has
lower symptoms than the reference.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
from scipy import stats

from sim.analysis import assessed
from sim.analysis.assessed import (
    Frames,
    MetricError,
    hedges_g,
    hedges_g_from_stats,
    participant_severity,
)
from sim.analysis.series import (  # noqa: F401  (re-exported)
    FEW_PEOPLE,
    PER_HOUR,
    PHENOTYPES,
    binned_means,
    dose_association,
    dropout_survival,
    guideline_share_by_week,
    kaplan_meier,
    phenotype,
    subgroup_effects,
    t_interval,
    tertile,
    weekly_arm_series,
    weekly_summary,
    welch_interval,
)
from sim.analysis.trials import (  # noqa: F401  (re-exported)
    FEW_REPLICATES,
    across_replicates,
    guideline_week_share,
    other_cohort,
    trial_metrics,
    wilson,
)
from sim.scenario import Check
from sim.vocabulary import (  # noqa: F401
    ANALYSES,
    GUIDELINE_MINUTES,
    HABIT_LEVELS,
    METRIC_NAMES,
    NEEDS_PANEL,
    PER_PARTICIPANT_NAMES,
    SIGNATURES,
    TRAITS,
    analysis_of,
    argument_problem,
    needs_panel,
    pooled_arms,
)

# ---------------------------------------------------------------- the metric vocabulary
# Each metric maps stored frames of one scenario to one value per replicate trial. The same
# definitions serve scenario checks, `sim validate` and reports; docs/metrics.md states each one.

_arm = assessed.arm_rows  # one arm, arms joined by '+', or 'all'


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


def _window_mean(f: Frames, arm: str, week: int, window_weeks: int, column: str = "minutes") -> pd.Series:
    """Each participant's mean weekly `column` over the `window_weeks` weeks ending at `week` (panel)."""
    if column not in _panel(f).columns:
        raise MetricError(f"the weekly panel of these runs has no {column!r} column (runs made before it was "
                          "recorded); run them again")
    wide = _weekly_wide(f, arm, column)
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
    avg = _window_mean(f, arm, week, window_weeks)
    return (avg >= minutes).groupby("replicate").mean().astype(float)


def exercising_rate(f: Frames, arm: str, week: int, sessions_per_week: float, window_weeks: int = 4) -> pd.Series:
    """Share averaging at least `sessions_per_week` sessions a week over the `window_weeks` weeks ending at
    `week` (every randomised participant; those who stopped count with the sessions they did)."""
    avg = _window_mean(f, arm, week, window_weeks, "sessions")
    return (avg >= sessions_per_week - 1e-9).groupby("replicate").mean().astype(float)


def _at_day(f: Frames, arm: str, week: int) -> pd.DataFrame:
    d = _arm(f.daily, arm)
    at = d[d.day == 7 * week]
    if at.empty:
        raise MetricError(f"week {week} is outside the run")
    return at


def _true_at(f: Frames, arm: str, week: int) -> pd.DataFrame:
    """Per replicate, from the daily aggregates of the arm(s) (pooled arms weighted by their sizes): n,
    mean and SD (ddof 1) of the true severity, and the shares responding and remitted, on day 7*week."""
    at = _at_day(f, arm, week)
    n = f.participants.groupby(["arm", "replicate"]).size().rename("n")
    d = at.join(n, on=["arm", "replicate"])
    d = d.assign(n=d.n.fillna(0), sum=d.n * d.severity_mean, resp=d.n * d.response_share,
                 rem=d.n * d.remission_share,
                 ss=(d.n - 1) * d.severity_sd.fillna(0) ** 2 + d.n * d.severity_mean ** 2)
    g = d.groupby("replicate")[["n", "sum", "resp", "rem", "ss"]].sum()
    mean = g["sum"] / g.n
    var = (g.ss - g.n * mean ** 2) / (g.n - 1)
    return pd.DataFrame({"n": g.n, "mean": mean, "sd": np.sqrt(var.clip(lower=0)), "response": g.resp / g.n,
                         "remission": g.rem / g.n})


def severity_change_pct(f: Frames, arm: str, week: int, analysis: str | None = None) -> pd.Series:
    """Percent change of the mean severity from baseline to the end of `week` (negative = better): of the
    true state (daily aggregates), of the assessed scores (observed: those assessed at `week`; locf: every
    randomised participant), or of the mixed model's adjusted mean (mmrm)."""
    how = assessed.analysis(analysis)
    if how == "true":
        return 100 * (_true_at(f, arm, week)["mean"] / _true_at(f, arm, 0)["mean"] - 1)
    if how == "mmrm":
        return assessed.mmrm_change_pct(f, arm, week)
    return assessed.change_pct(assessed.people(f, arm, week, how))


def _rate(f: Frames, arm: str, week: int, analysis: str | None, column: str) -> pd.Series:
    how = assessed.analysis(analysis)
    if how == "true":
        return _true_at(f, arm, week)[column]
    if how == "mmrm":
        raise MetricError(f"analysis 'mmrm' estimates means, not a share {column}; use true, observed or locf")
    pp = assessed.people(f, arm, week, how)
    if column == "response":
        hit = pp.score <= (1 - f.outcomes.response_reduction) * pp.baseline
    else:
        hit = pp.score <= f.outcomes.remission_at
    return assessed.per_replicate(hit.astype(float))


def response_rate(f: Frames, arm: str, week: int, analysis: str | None = None) -> pd.Series:
    """Share whose severity fell by at least the scenario's response reduction (default 50%) from their
    baseline (true state, or assessed scores against the assessed baseline)."""
    return _rate(f, arm, week, analysis, "response")


def remission_rate(f: Frames, arm: str, week: int, analysis: str | None = None) -> pd.Series:
    """Share at or below the scenario's remission threshold (outcomes.remission_at)."""
    return _rate(f, arm, week, analysis, "remission")


def relapse_rate(f: Frames, arm: str, remitted_at: int, week: int, analysis: str | None = None) -> pd.Series:
    """Of those remitted at week `remitted_at`, the share who relapse by `week`: outcomes.relapse_assessments
    consecutive assessments above the remission threshold after `remitted_at` (true: weekly true severity
    as the assessments). NaN for a replicate in which nobody remitted."""
    how = assessed.analysis(analysis)
    if how == "mmrm":
        raise MetricError("analysis 'mmrm' estimates means, not a relapse share; use true, observed or locf")
    t = assessed.relapse_table(f, arm, remitted_at, week, how)
    g = t.groupby(level="replicate")
    return (g.relapsed.sum() / g.remitted.sum().replace(0, np.nan)).astype(float)


def change_sd(f: Frames, arm: str, week: int, analysis: str | None = None) -> pd.Series:
    """SD (ddof 1) over participants of severity at `week` minus baseline: true state, or assessed scores."""
    how = assessed.analysis(analysis)
    if how == "mmrm":
        raise MetricError("analysis 'mmrm' estimates means, not the spread of change; use true, observed or locf")
    pp = assessed.people(f, arm, week, how)
    return assessed.per_replicate(pp.score - pp.baseline, lambda x: x.std(ddof=1))


def effect_size(f: Frames, arm: str, reference: str, week: int, analysis: str | None = None) -> pd.Series:
    """Hedges g of severity at `week`, reference minus arm over the pooled SD (positive = arm better): of the
    true state (daily aggregates), of the assessed scores (observed, locf), or the mixed model's contrast
    over the SD of the scores observed at `week` (mmrm)."""
    how = assessed.analysis(analysis)
    if how == "mmrm":
        return assessed.mmrm_effect_size(f, arm, reference, week)
    if how != "true":
        return assessed.effect_sizes(assessed.people(f, arm, week, how), assessed.people(f, reference, week, how))
    a, r = _true_at(f, arm, week), _true_at(f, reference, week)
    return pd.Series({rep: hedges_g_from_stats(a["mean"][rep], a.sd[rep], int(a.n[rep]), r["mean"][rep], r.sd[rep],
                                               int(r.n[rep]))[0]
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
        a, r = g[g.arm.isin(pooled_arms(arm))]._sev.dropna(), g[g.arm.isin(pooled_arms(reference))]._sev.dropna()
        out[rep] = hedges_g(a.to_numpy(), r.to_numpy())[0] if len(a) > 1 and len(r) > 1 else np.nan
    return pd.Series(out, dtype=float)


def odds_ratio_depressed_by_activity(f: Frames, arm: str, week: int, minutes: float = GUIDELINE_MINUTES,
                                     window_weeks: int = 4) -> pd.Series:
    """Odds of not being remitted at `week` for those averaging >= `minutes`/week over the window
    ending at `week`, against the rest (0.5 added to every cell)."""
    active = _window_mean(f, arm, week, window_weeks) >= minutes
    depressed = _weekly_wide(f, arm, "severity")[week] > f.outcomes.remission_at

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


CONDITIONAL = {"relapse_rate": "remitters", "median_days_to_habit": "people who formed the habit"}


def denominators(metric: str, frames: Frames, **args) -> pd.Series | None:
    """For a conditional metric (CONDITIONAL), how many people each replicate's value rests on (the
    remitters of a relapse rate, those who formed a habit); None for other metrics."""
    given = {k: v for k, v in args.items() if v is not None}
    if metric == "relapse_rate":
        how = assessed.analysis(given.get("analysis"))
        t = assessed.relapse_table(frames, given["arm"], given["remitted_at"], given["week"], how)
        return t.groupby(level="replicate").remitted.sum().astype(int)
    if metric == "median_days_to_habit":
        col = f"days_to_habit_{round(100 * given.get('level', 0.95))}"
        d = _arm(frames.participants, given["arm"])
        return d[col].notna().groupby(d.replicate).sum().astype(int) if col in d else None
    return None


def denominator_text(metric: str, counts: pd.Series | None) -> str:
    """'remitters per replicate: mean 61 (44-80)', or '' for a metric that is not conditional."""
    if counts is None or not len(counts):
        return ""
    return (f"{CONDITIONAL[metric]} per replicate: mean {counts.mean():.0f} ({counts.min()}-{counts.max()}); "
            f"{int((counts == 0).sum())} replicates with none")


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
            "replicates": len(v)}


def evaluate_checks(checks: list[Check], frames: Frames, default_reference: str) -> pd.DataFrame:
    """Each scenario check: the simulated mean over replicates, its 95% interval and pass/fail (a check
    without a reference is measured against `default_reference`, the scenario's reference arm), and the
    analysis it used (empty for metrics that take none)."""
    rows = []
    for c in checks:
        args = c.arguments()
        if "reference" in inspect.signature(VOCABULARY[c.metric]).parameters:
            args.setdefault("reference", default_reference)
        s = summarise(compute(c.metric, frames, **args))
        rows.append({"id": c.id, "metric": c.metric, "arm": c.arm, "week": c.week,
                     "analysis": analysis_of(c.metric, args) or "", **s,
                     "accept": f"{c.accept[0]:g} to {c.accept[1]:g}",
                     "passed": bool(c.accept[0] <= s["mean"] <= c.accept[1]), "source": c.source})
    return pd.DataFrame(rows)
