"""People's severity as a trial measures it or as the simulation knows it: the analyses behind the
metrics on response, remission, relapse, change and effect sizes (docs/metrics.md, "Analyses").

- "true": the simulated severity of every randomised participant (no rater, no missing data);
- "observed": the assessed scores of those assessed at the week (dropouts are not assessed);
- "locf": intention to treat, each randomised participant's last assessment at or before the week
  carried forward (their baseline if they had nothing later);
- "mmrm": intention to treat by a mixed model for repeated measures on every assessment made
  (statsmodels MixedLM; a random intercept per participant, i.e. compound-symmetric covariance).

`Frames` (re-exported by sim.analysis.metrics) hold what they read. Everything here is per replicate
trial.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim.scenario import Outcomes
from sim.vocabulary import ANALYSES, DEFAULT_ANALYSIS, pooled_arms

KEYS = ["replicate", "arm", "pid"]
ASSESSMENT_COLUMNS = ["arm", "replicate", "pid", "week", "score"]


class MetricError(ValueError):
    """A metric asked for with arguments it cannot use, or data it needs but the runs lack."""


@dataclass(frozen=True)
class Frames:
    """What metrics read: participants (endpoints), daily arm aggregates, optional weekly panel, and the
    trial's assessments (arm, replicate, pid, week, score; empty for runs that stored none)."""

    participants: pd.DataFrame
    daily: pd.DataFrame
    weekly: pd.DataFrame
    outcomes: Outcomes
    programme_weeks: int | None = None  # lets per-participant metrics use the end-of-programme endpoints
    assessments: pd.DataFrame | None = None
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # wide tables, built once

    def __post_init__(self):
        if self.assessments is None:
            object.__setattr__(self, "assessments", pd.DataFrame(columns=ASSESSMENT_COLUMNS))

    @classmethod
    def of(cls, res, outcomes: Outcomes, programme_weeks: int | None = None) -> Frames:
        """Frames of stored results (sim.runs.results.ScenarioResults, or anything with the same frames)."""
        return cls(res.participants, res.daily, res.weekly, outcomes, programme_weeks=programme_weeks,
                   assessments=res.assessments)


def hedges_g_from_stats(mean_arm: float, sd_arm: float, n_arm: int, mean_ref: float, sd_ref: float,
                        n_ref: int) -> tuple[float, float, float]:
    """Hedges g of reference minus arm (positive = arm better) with its 95% CI (Hedges & Olkin 1985)."""
    if n_arm < 2 or n_ref < 2:
        return (np.nan, np.nan, np.nan)
    pooled = np.sqrt(((n_arm - 1) * sd_arm**2 + (n_ref - 1) * sd_ref**2) / (n_arm + n_ref - 2))
    if not pooled > 0:
        return (np.nan, np.nan, np.nan)
    g = (mean_ref - mean_arm) / pooled * hedges_j(n_arm, n_ref)
    se = np.sqrt((n_arm + n_ref) / (n_arm * n_ref) + g**2 / (2 * (n_arm + n_ref)))
    return (g, g - 1.96 * se, g + 1.96 * se)


def hedges_j(n_arm: int, n_ref: int) -> float:
    """Hedges' small-sample correction of a standardised mean difference."""
    return 1 - 3 / (4 * (n_arm + n_ref) - 9)


def hedges_g(arm: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """Hedges g with 95% CI from two samples of severity (positive = arm lower)."""
    a, b = np.asarray(arm, float), np.asarray(reference, float)
    sd = lambda x: x.std(ddof=1) if len(x) > 1 else np.nan
    return hedges_g_from_stats(a.mean(), sd(a), len(a), b.mean(), sd(b), len(b))


def arm_rows(df: pd.DataFrame, arm: str) -> pd.DataFrame:
    """Rows of one arm, of several arms pooled ('a+b'), or of every arm ('all')."""
    if arm == "all":
        return df
    names = pooled_arms(arm)
    have = set(df.arm)
    if missing := [a for a in names if a not in have]:
        raise MetricError(f"arm {', '.join(map(repr, missing))} has no stored results; arms: "
                          f"{', '.join(sorted(have))} (or 'all', or arms joined by '+')")
    return df[df.arm.isin(names)]


def analysis(value: str | None) -> str:
    """The analysis asked for, else the default (intention to treat, LOCF)."""
    value = value or DEFAULT_ANALYSIS
    if value not in ANALYSES:
        raise MetricError(f"analysis {value!r} is not one of {', '.join(ANALYSES)}")
    return value


def last_week(f) -> int:
    return int(f.daily.day.max()) // 7 if len(f.daily) else 0


def participant_severity(participants: pd.DataFrame, weekly: pd.DataFrame | None, week: int,
                         programme_weeks: int | None = None, last_week: int | None = None) -> pd.Series:
    """Each participant's true severity at the end of `week` (aligned to `participants`): from the weekly
    panel when it covers the participant, else severity_end_programme at `programme_weeks` or severity_end
    at `last_week`; MetricError when neither source has that week."""
    out = pd.Series(np.nan, index=participants.index, dtype=float)
    if programme_weeks is not None and week == programme_weeks:
        out = participants.severity_end_programme.astype(float)
    elif last_week is not None and week == last_week:
        out = participants.severity_end.astype(float)
    elif week == 0:
        out = participants.baseline_severity.astype(float)
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


# ---------------------------------------------------------------- assessed scores

def schedule(f) -> tuple[int, ...]:
    """The assessment weeks of the run (baseline included)."""
    return f.outcomes.assessments(last_week(f))


def require_assessed(f: Frames, *weeks: int, how: str) -> None:
    """MetricError unless every week is an assessment week (and assessments were stored)."""
    if any(w > last_week(f) for w in weeks):
        raise MetricError(f"week {max(weeks)} is outside the run (weeks 0-{last_week(f)})")
    if f.assessments is None or f.assessments.empty:
        raise MetricError(f"the {how} analysis reads the trial's assessments, and these runs stored none (runs "
                          "made before assessments were recorded); run them again, or ask for analysis 'true'")
    sched = schedule(f)
    for w in weeks:
        if w not in sched:
            raise MetricError(f"week {w} is not an assessment week, so the {how} analysis has no scores for it; "
                              f"assessment weeks: {', '.join(map(str, sched))} (outcomes.assessment_weeks), or ask "
                              "for analysis 'true' (the simulated state at any week)")


def assessed_wide(f: Frames, arm: str) -> pd.DataFrame:
    """Every randomised participant of the arm(s) x assessment week: the assessed score, NaN where the
    participant was not assessed. Indexed by (replicate, arm, pid), in the participants' order."""
    if ("assessed", arm) in f.cache:
        return f.cache[("assessed", arm)]
    roster = pd.MultiIndex.from_frame(arm_rows(f.participants, arm)[KEYS])
    a = f.assessments if arm == "all" else f.assessments[f.assessments.arm.isin(pooled_arms(arm))]
    wide = a.set_index([*KEYS, "week"]).score.unstack("week").reindex(roster)
    wide = wide.reindex(columns=list(schedule(f)))
    f.cache[("assessed", arm)] = wide
    return wide


def carried_forward(wide: pd.DataFrame, week: int) -> pd.Series:
    """Each participant's last assessment at or before `week` (NaN only if never assessed)."""
    return wide.loc[:, [w for w in wide.columns if w <= week]].ffill(axis=1)[week]


def people(f: Frames, arm: str, week: int, how: str) -> pd.DataFrame:
    """Per participant counted by the analysis: `baseline` and `score` at `week` (index replicate, arm, pid).

    true: every randomised participant's simulated severity (panel or stored endpoints; baseline the
    simulated baseline); observed: those assessed at `week`, with their assessed baseline; locf: every
    randomised participant with an assessed baseline, the score carried forward."""
    if how == "true":
        p = arm_rows(f.participants, arm)
        last = last_week(f)
        score = participant_severity(p, f.weekly, week, f.programme_weeks, last)
        base = participant_severity(p, f.weekly, 0, f.programme_weeks, last)
        out = pd.DataFrame({"baseline": base.to_numpy(float), "score": score.to_numpy(float)},
                           index=pd.MultiIndex.from_frame(p[KEYS]))
        return out
    if how == "mmrm":
        raise MetricError("analysis 'mmrm' estimates arm means and differences, not per-participant values")
    require_assessed(f, week, how=how)
    wide = assessed_wide(f, arm)
    score = wide[week] if how == "observed" else carried_forward(wide, week)
    out = pd.DataFrame({"baseline": wide[0], "score": score})
    return out.dropna()


def per_replicate(values: pd.Series, fn=np.mean) -> pd.Series:
    """One value per replicate from a per-participant series indexed by (replicate, arm, pid)."""
    return values.groupby(level="replicate").agg(fn).astype(float)


def change_pct(pp: pd.DataFrame) -> pd.Series:
    """100 x (mean score / mean baseline - 1) per replicate, over the same people."""
    g = pp.groupby(level="replicate")
    return (100 * (g.score.mean() / g.baseline.mean() - 1)).astype(float)


def effect_sizes(a: pd.DataFrame, r: pd.DataFrame) -> pd.Series:
    """Hedges g of the score, reference minus arm, per replicate both have."""
    ga, gr = a.groupby(level="replicate").score, r.groupby(level="replicate").score
    reps = sorted(set(ga.groups) & set(gr.groups))
    return pd.Series({rep: hedges_g(ga.get_group(rep).to_numpy(), gr.get_group(rep).to_numpy())[0] for rep in reps},
                     dtype=float)


# ---------------------------------------------------------------- relapse

def relapsed(scores: pd.DataFrame, threshold: float, consecutive: int) -> pd.Series:
    """Whether each row has `consecutive` consecutive values above `threshold` (columns in time order;
    a missing value breaks a run)."""
    run = np.zeros(len(scores))
    hit = np.zeros(len(scores), bool)
    for col in scores.columns:
        above = scores[col].to_numpy(float) > threshold  # NaN compares False
        run = np.where(above, run + 1, 0)
        hit |= run >= consecutive
    return pd.Series(hit, index=scores.index)


def relapse_table(f: Frames, arm: str, remitted_at: int, week: int, how: str) -> pd.DataFrame:
    """Per participant: `remitted` (score <= the remission threshold at `remitted_at`) and `relapsed`
    (`outcomes.relapse_assessments` consecutive assessments above it after `remitted_at`, up to `week`).
    true: the weekly panel stands for weekly assessments of the true state."""
    if week <= remitted_at:
        raise MetricError(f"relapse is counted after remission: week ({week}) must be after remitted_at ({remitted_at})")
    if how == "true":
        if f.weekly.empty:
            raise MetricError("relapse on the true state needs the per-participant weekly panel: run with "
                              "--record participants-weekly (or use analysis 'locf' or 'observed')")
        wide = arm_rows(f.weekly, arm).pivot_table(index=KEYS, columns="week", values="severity")
    else:
        require_assessed(f, remitted_at, week, how=how)
        wide = assessed_wide(f, arm)
        wide = wide.loc[:, [w for w in wide.columns if w <= week]]
        if how == "locf":
            wide = wide.ffill(axis=1)
    thr = f.outcomes.remission_at
    after = [w for w in wide.columns if remitted_at < w <= week]
    remitted = wide[remitted_at] <= thr
    return pd.DataFrame({"remitted": remitted,
                         "relapsed": remitted & relapsed(wide[after], thr, f.outcomes.relapse_assessments)})


# ---------------------------------------------------------------- mixed model for repeated measures

def mmrm_long(f: Frames, arm: str, week: int) -> pd.DataFrame:
    """Long data for the mixed model: every post-baseline assessment up to `week` of the arm(s), with each
    participant's assessed baseline; columns replicate, gid (one per participant and arm), visit, score,
    baseline."""
    wide = assessed_wide(f, arm)
    visits = [w for w in wide.columns if 0 < w <= week]
    long = wide[visits].stack().dropna().rename("score").reset_index()
    long = long.rename(columns={long.columns[3]: "visit"})
    base = wide[0].rename("baseline").reset_index()
    return long.merge(base, on=KEYS).dropna(subset=["baseline"])


def mmrm_fit(long: pd.DataFrame, week: int, centre: float, treated: pd.Series | None = None
             ) -> tuple[float, float]:
    """Fit score ~ visit + visit x baseline (+ visit x arm) with a random intercept per participant (REML)
    and return (adjusted mean at `week` of the untreated group at baseline `centre`, treated minus untreated
    at `week`; NaN without a treatment indicator). NaN when the model cannot be fitted."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    visits = sorted(long.visit.unique())
    if week not in visits or long.gid.nunique() < 3:
        return (np.nan, np.nan)
    v = long.visit.to_numpy()
    base = long.baseline.to_numpy(float) - centre
    onehot = np.column_stack([(v == w).astype(float) for w in visits])
    cols = [onehot, onehot * base[:, None]]
    names = [f"visit{w}" for w in visits] + [f"visit{w}:baseline" for w in visits]
    if treated is not None:
        t = treated.to_numpy(float)
        keep = [i for i, w in enumerate(visits) if 0 < (t * onehot[:, i]).sum() < onehot[:, i].sum()]
        cols.append(onehot[:, keep] * t[:, None])
        names += [f"visit{visits[i]}:arm" for i in keep]
    exog = pd.DataFrame(np.column_stack(cols), columns=names)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = MixedLM(long.score.to_numpy(float), exog, groups=long.gid.to_numpy()).fit(
                reml=True, method=["lbfgs", "powell"])
    except (np.linalg.LinAlgError, ValueError):
        return (np.nan, np.nan)
    params = pd.Series(np.asarray(fit.fe_params), index=names)
    return (float(params[f"visit{week}"]), float(params.get(f"visit{week}:arm", np.nan)))


def mmrm_change_pct(f: Frames, arm: str, week: int) -> pd.Series:
    """Percent change of the model-adjusted mean at `week` from the mean assessed baseline, per replicate."""
    require_assessed(f, week, how="mmrm")
    long = mmrm_long(f, arm, week)
    long["gid"] = long.arm.astype(str) + ":" + long.pid.astype(str)
    base = assessed_wide(f, arm)[0].groupby(level="replicate").mean()
    out = {}
    for rep, d in long.groupby("replicate"):
        mean, _ = mmrm_fit(d, week, base[rep])
        out[rep] = 100 * (mean / base[rep] - 1)
    return pd.Series(out, dtype=float)


def mmrm_effect_size(f: Frames, arm: str, reference: str, week: int) -> pd.Series:
    """Hedges-corrected standardised difference at `week`, reference minus arm, per replicate: the mixed
    model's arm x visit contrast over the pooled within-arm SD of the scores observed at `week`."""
    require_assessed(f, week, how="mmrm")
    a, r = mmrm_long(f, arm, week), mmrm_long(f, reference, week)
    a["treated"], r["treated"] = 1.0, 0.0
    long = pd.concat([a, r], ignore_index=True)
    long["gid"] = long.treated.astype(str) + ":" + long.arm.astype(str) + ":" + long.pid.astype(str)
    wa, wr = assessed_wide(f, arm), assessed_wide(f, reference)
    base = pd.concat([wa[0], wr[0]]).groupby(level="replicate").mean()
    n_a, n_r = wa[0].groupby(level="replicate").size(), wr[0].groupby(level="replicate").size()
    out = {}
    for rep, d in long.groupby("replicate"):
        if rep not in n_r.index or rep not in n_a.index:
            continue
        _, diff = mmrm_fit(d.reset_index(drop=True), week, base[rep], d.treated.reset_index(drop=True))
        sa_, sr = wa[week].xs(rep, level="replicate").dropna(), wr[week].xs(rep, level="replicate").dropna()
        if len(sa_) < 2 or len(sr) < 2:
            out[rep] = np.nan
            continue
        sd = np.sqrt(((len(sa_) - 1) * sa_.var() + (len(sr) - 1) * sr.var()) / (len(sa_) + len(sr) - 2))
        out[rep] = -diff / sd * hedges_j(n_a[rep], n_r[rep]) if sd > 0 else np.nan
    return pd.Series(out, dtype=float)
