"""Trial planning: power curves over participants per arm, from a sweep of `population.size`.

Power is the share of replicate trials that detect the arm's benefit: Welch p < alpha and g > 0, the
arm compared with the reference group of another replicate (metrics.other_cohort), because the arms of
one replicate are the same simulated people and a paired comparison would overstate power. Each size's
power is a Monte Carlo estimate over replicate trials, reported with its 95% Wilson interval.

    sw = power.power_sweep(loaded, "exercise", "usual_care", [25, 50, 100, 200], replicates=200)
    out = run_sweep(sw, db, executor)
    table = power.power_table(results.sweep_results(db, out.sweep_id), loaded.scenario.outcomes,
                              "exercise", "usual_care", loaded.scenario.weeks, moderator="fitness")
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sim.analysis import metrics
from sim.runs.results import SweepResults
from sim.runs.sweep import BASE_POINT
from sim.scenario import MAX_REPLICATES, TRAITS, LoadedScenario, Outcomes
from sim.sweep_spec import Sweep, SweepFile, check

FACTOR = "population.size"
MAX_SIZE = 200_000  # the scenario's own limit on participants per arm
FEW_REPLICATES = metrics.FEW_REPLICATES  # below this a power estimate's 95% interval is wider than about +-0.1
CI_ALPHA = 0.05  # the Wilson intervals are 95% whatever alpha the trials are tested at


class PowerError(ValueError):
    """A power analysis asked for with inputs it cannot use; the message names the value."""


def power_sweep(loaded: LoadedScenario, arm: str, reference: str, sizes: list[int], replicates: int,
                week: int | None = None) -> Sweep:
    """A grid sweep of the scenario over participants per arm, with the arm's effect size as outcome."""
    s = loaded.scenario
    arms = list(s.arms)
    for role, name in (("arm", arm), ("reference", reference)):
        if name not in arms:
            raise PowerError(f"{role} {name!r} is not an arm of scenario {s.name}; arms: {', '.join(arms)}")
    if arm == reference:
        raise PowerError(f"arm and reference are both {arm!r}: power compares two different arms")
    sizes = list(sizes)
    if not sizes:
        raise PowerError("sizes is empty: give the participants per arm to try, e.g. 25 50 100 200")
    for v in sizes:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 2 <= v <= MAX_SIZE:
            raise PowerError(f"size {v!r} is not a whole number of participants per arm from 2 to {MAX_SIZE:,}")
    if len(set(sizes)) != len(sizes):
        dup = next(v for v in sizes if sizes.count(v) > 1)
        raise PowerError(f"size {dup} is given more than once; each size is one point of the curve")
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) \
            or not 2 <= replicates <= MAX_REPLICATES:
        raise PowerError(f"replicates {replicates!r} must be a whole number from 2 to {MAX_REPLICATES:,} "
                         "(power compares each replicate's arm with another replicate's reference group)")
    week = s.weeks if week is None else week
    last = s.weeks + s.follow_up_weeks
    if isinstance(week, bool) or not isinstance(week, (int, np.integer)) or not 1 <= week <= last:
        raise PowerError(f"week {week!r} is outside the run: give a week from 1 to {last} "
                         f"(the programme ends at week {s.weeks})")
    sizes = [int(v) for v in sorted(sizes)]
    data = {
        "name": f"power-{s.name}-{arm}"[:60],
        "description": f"power of {arm} vs {reference} at week {week} over participants per arm "
                       f"{', '.join(map(str, sizes))}",
        "base": Path(loaded.path).name,
        "design": "grid",
        "replicates": int(replicates),
        "factors": [{"name": FACTOR, "values": sizes}],
        "outcomes": [{"id": "effect_size", "metric": "effect_size", "arm": arm, "reference": reference,
                      "week": int(week)}],
    }
    text = yaml.safe_dump(data, sort_keys=False)
    return check(SweepFile.model_validate(data), Path(loaded.path), text, loaded)


def moderation_needs_panel(loaded: LoadedScenario, week: int) -> bool:
    """Whether a moderation analysis at `week` needs the weekly panel (run the sweep with panel=True)."""
    s = loaded.scenario
    return week not in (s.weeks, s.weeks + s.follow_up_weeks)


def _wilson(k: int, n: int) -> tuple[float, float]:
    return metrics.wilson(k, n, CI_ALPHA)


def _interaction(severity: np.ndarray, treated: np.ndarray, trait: np.ndarray) -> tuple[float, float]:
    """Coefficient (symptom points) and p of treated x high-tertile in OLS severity ~ treated * high_tertile
    over one trial's lowest and highest thirds of the trait, cut within the trial's pooled sample as its
    analysts would (at the 1/3 and 2/3 quantiles, as metrics.tertile does)."""
    import statsmodels.api as sm

    low_cut, high_cut = np.quantile(trait, [1 / 3, 2 / 3])
    keep = (trait <= low_cut) | (trait > high_cut)
    y, tr, hi = severity[keep], treated[keep], (trait[keep] > high_cut).astype(float)
    cells = np.bincount((2 * tr + hi).astype(int), minlength=4)
    if cells.min() == 0 or len(y) < 6:  # an empty cell leaves the interaction without an estimate
        return np.nan, np.nan
    # the design matrix of the formula, built directly: patsy would cost ten times the fit itself
    fit = sm.OLS(y, np.column_stack([np.ones_like(y), tr, hi, tr * hi])).fit()
    return float(fit.params[3]), float(fit.pvalues[3])


def _moderation(parts: pd.DataFrame, weekly: pd.DataFrame, arm: str, reference: str, week: int,
                moderator: str, programme_weeks: int | None, last_week: int) -> pd.DataFrame:
    """Per replicate trial: the arm's participants against another replicate's reference group."""
    sev = metrics.participant_severity(parts, weekly, week, programme_weeks, last_week).to_numpy(float)
    p = pd.DataFrame({"arm": parts.arm.to_numpy(), "replicate": parts.replicate.to_numpy(), "severity": sev,
                      "trait": parts[moderator].to_numpy(float)}).dropna(subset=["severity", "trait"])
    groups = {k: (g.severity.to_numpy(), g.trait.to_numpy()) for k, g in p.groupby(["arm", "replicate"])}
    other = metrics.other_cohort(sorted(r for a, r in groups if a == reference))
    rows = []
    for rep, ref_rep in other.items():
        if (arm, rep) not in groups:
            continue
        (sa, ta), (sr, tr) = groups[(arm, rep)], groups[(reference, ref_rep)]
        treated = np.r_[np.ones(len(sa)), np.zeros(len(sr))]
        coef, pv = _interaction(np.r_[sa, sr], treated, np.r_[ta, tr])
        rows.append({"replicate": rep, "interaction": coef, "p": pv})
    return pd.DataFrame(rows, columns=["replicate", "interaction", "p"])


def power_table(res: SweepResults, outcomes: Outcomes, arm: str, reference: str, week: int,
                alpha: float = 0.05, moderator: str | None = None,
                programme_weeks: int | None = None) -> pd.DataFrame:
    """Per size: power with its Wilson interval, mean g, spread of g between trials (and moderation power).

    Moderation reads each participant's severity at `week`: severity_end_programme when `week` is
    `programme_weeks` (the scenario's weeks), severity_end at the end of the runs, else the weekly panel."""
    if not 0 < alpha < 1:
        raise PowerError(f"alpha {alpha!r} must lie between 0 and 1 (0.05 is usual)")
    if moderator is not None and moderator not in TRAITS:
        raise PowerError(f"moderator {moderator!r} is not a baseline trait; traits: {', '.join(TRAITS)}")
    present = set(res.participants.arm)
    for role, name in (("arm", arm), ("reference", reference)):
        if name not in present:
            raise PowerError(f"{role} {name!r} has no finished runs in sweep {res.name}; "
                             f"arms: {', '.join(sorted(present)) or 'none'}")
    last_day = int(res.daily.day.max())
    if not 1 <= week <= last_day // 7:
        raise PowerError(f"week {week!r} is outside the runs of sweep {res.name}: give a week from 1 to "
                         f"{last_day // 7}")
    if FACTOR not in res.points:
        raise PowerError(f"sweep {res.name} does not vary {FACTOR}; a power curve needs a sweep of sizes")
    sizes = res.points.set_index("point")[FACTOR]
    parts_by = dict(tuple(res.participants.groupby("point")))
    daily_by = dict(tuple(res.daily.groupby("point")))
    weekly_by = dict(tuple(res.weekly.groupby("point"))) if not res.weekly.empty else {}
    rows = []
    for point, parts in parts_by.items():
        if point == BASE_POINT:
            continue
        trials = metrics.trial_metrics(parts, daily_by[point], outcomes, reference, week)
        t = trials[trials.arm == arm]
        n = len(t)
        if n == 0:
            continue
        # a trial whose test could not be computed did not detect the effect: it stays in the denominator
        k = int(((t.p_trial < alpha) & (t.g_trial > 0)).sum())
        lo, hi = _wilson(k, n)
        gt = t.g_trial.dropna()
        row = {"size": round(sizes[point]), "replicates": n, "power": k / n, "power_low": lo,
               "power_high": hi, "g_mean": float(t.g.mean()),
               "g_trial_p2.5": float(gt.quantile(0.025)) if len(gt) else np.nan,
               "g_trial_p97.5": float(gt.quantile(0.975)) if len(gt) else np.nan}
        if moderator is not None:
            last = int(daily_by[point].day.max()) // 7
            m = _moderation(parts, weekly_by.get(point, res.weekly.iloc[0:0]), arm, reference, week, moderator,
                            programme_weeks, last)
            km, nm = int((m.p < alpha).sum()), len(m)  # an inestimable interaction counts as undetected
            mlo, mhi = _wilson(km, nm) if nm else (np.nan, np.nan)
            row |= {"moderation_power": km / nm if nm else np.nan, "moderation_low": mlo, "moderation_high": mhi,
                    "interaction_mean": float(m.interaction.mean()) if nm else np.nan}
        rows.append(row)
    if not rows:
        raise PowerError(f"sweep {res.name} has no finished runs of arm {arm!r} at any size")
    table = pd.DataFrame(rows).sort_values("size", ignore_index=True)
    table.attrs = {"arm": arm, "reference": reference, "week": week, "alpha": alpha, "moderator": moderator}
    return table


def smallest_size(table: pd.DataFrame, target: float = 0.8, column: str = "power") -> int | None:
    """The smallest size whose power reaches `target`, or None if no size tried does."""
    t = table.sort_values("size")
    hit = t[t[column] >= target]
    return int(hit["size"].iloc[0]) if len(hit) else None


def interpolated_size(table: pd.DataFrame, target: float = 0.8, column: str = "power") -> int | None:
    """An estimate of the size reaching `target`: power interpolated linearly in log(size) between the
    first size that reaches it and the size tried before it, rounded up; None when no size reaches it or
    the smallest size tried already does (nothing below it to interpolate from)."""
    t = table.sort_values("size", ignore_index=True)
    first = smallest_size(t, target, column)
    if first is None:
        return None
    i = int(t.index[t["size"] == first][0])
    if i == 0:
        return None
    (s0, p0), (s1, p1) = t.loc[i - 1, ["size", column]], t.loc[i, ["size", column]]
    frac = (target - p0) / (p1 - p0)
    est = math.exp(math.log(s0) + frac * (math.log(s1) - math.log(s0)))
    return math.ceil(est - 1e-9)  # round up (people are whole), but not a float's 100.0000001 to 101


def _replicates_phrase(table: pd.DataFrame) -> str:
    lo, hi = int(table.replicates.min()), int(table.replicates.max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def power_figure(table: pd.DataFrame, target: float, footer: str, title: str):
    """Power against participants per arm (log axis) with 95% Wilson intervals and the target line."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    from sim.analysis.plots import _finish

    t = table.sort_values("size")
    alpha = t.attrs.get("alpha", 0.05)
    fig, ax = plt.subplots(figsize=(8.5, 6.2))
    series = [("power", "power_low", "power_high", "C0", "o",
               f"{t.attrs.get('arm', 'arm')} vs {t.attrs.get('reference', 'reference')}: benefit detected")]
    if "moderation_power" in t:
        trait = str(t.attrs.get("moderator") or "trait").replace("_", " ")
        series.append(("moderation_power", "moderation_low", "moderation_high", "C1", "s",
                       f"moderation detected: arm x {trait} (highest vs lowest third)"))
    # a slight sideways offset keeps the two series' error bars apart on the log axis
    shifts = np.linspace(-0.02, 0.02, len(series)) if len(series) > 1 else [0.0]
    for (col, lo, hi, color, marker, label), shift in zip(series, shifts):
        x = t["size"].to_numpy(float) * 10**shift
        y = t[col].to_numpy(float)
        err = np.vstack([y - t[lo].to_numpy(float), t[hi].to_numpy(float) - y])
        ax.errorbar(x, y, yerr=err, color=color, marker=marker, ms=6, lw=1.8, capsize=4, label=label)
    ax.axhline(target, color="0.3", ls="--", lw=1, label=f"target power {target:.0%}")
    est = interpolated_size(t, target)
    if est is not None:
        ax.axvline(est, color="C0", ls=":", lw=1)
        # above the target and left of the crossing: a rising curve does not pass there
        ax.annotate(f"~{est:,} per arm", (est, target), textcoords="offset points", xytext=(-5, 5), ha="right",
                    va="bottom", color="C0", fontsize=9)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(t["size"].to_numpy(float)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{int(v):,}" for v in t["size"]])
    ax.set_xlim(t["size"].min() / 1.3, t["size"].max() * 1.3)
    ax.set_ylim(-0.02, 1.04)
    ax.set_xlabel("participants per arm")
    ax.set_ylabel(f"power (share of replicate trials with p < {alpha:g})")
    ax.grid(alpha=0.3)
    # below the axes: a power curve can pass through any corner of the plot
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=9, ncol=1, frameon=False)
    reps = _replicates_phrase(t)
    fig.suptitle(title, fontsize=12)
    ax.set_title(f"{reps} replicate trials per size; bars = 95% Wilson interval of the power estimate",
                 fontsize=9, color="0.3", pad=18 if int(t.replicates.min()) < FEW_REPLICATES else 6)
    if int(t.replicates.min()) < FEW_REPLICATES:
        ax.text(0.5, 1.01, f"only {reps} replicate trials per size: Monte Carlo intervals are wide",
                transform=ax.transAxes, ha="center", va="bottom", fontsize=9, color="#b00000", fontweight="bold")
    return _finish(fig, footer)


def power_text(table: pd.DataFrame, target: float, arm: str, reference: str, week: int) -> str:
    """An aligned text table of the power curve with the smallest size reaching the target."""
    t = table.sort_values("size")
    alpha = t.attrs.get("alpha", 0.05)
    mod = "moderation_power" in t
    head = ["per arm", "trials", "power", "95% interval", "mean g", "g, 95% of trials"]
    if mod:
        head += ["moderation", "95% interval", "interaction"]
    rows = []
    for r in t.to_dict("records"):
        row = [f"{r['size']:,}", f"{r['replicates']}", f"{r['power']:.2f}",
               f"{r['power_low']:.2f}-{r['power_high']:.2f}", f"{r['g_mean']:.2f}",
               f"{r['g_trial_p2.5']:.2f} to {r['g_trial_p97.5']:.2f}"]
        if mod:
            row += [f"{r['moderation_power']:.2f}", f"{r['moderation_low']:.2f}-{r['moderation_high']:.2f}",
                    f"{r['interaction_mean']:+.2f} pts"]
        rows.append(row)
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(head)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    lines = [(f"power of {arm} vs {reference} at week {week}: Welch t-test p < {alpha:g} with g > 0, arm against "
              "another replicate's reference group (independent cohorts)"), fmt(head), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows]
    if mod:
        who = str(t.attrs.get("moderator") or "the trait").replace("_", " ")
        lines.append(f"moderation: arm x (highest vs lowest third of {who}) interaction on severity, "
                     f"OLS p < {alpha:g}; interaction in symptom points (negative = the arm helps the highest "
                     "third more)")
    first, est = smallest_size(t, target), interpolated_size(t, target)
    if first is None:
        lines.append(f"none of the sizes tried reaches {target:.0%} power (largest: {int(t['size'].max()):,} per arm, "
                     f"power {float(t.power.iloc[-1]):.2f}); try larger sizes")
    elif est is None:
        lines.append(f"smallest size reaching {target:.0%} power: {first:,} per arm (the smallest size tried; "
                     "fewer may do)")
    else:
        lines.append(f"smallest size reaching {target:.0%} power: {first:,} per arm (interpolated ~{est:,}, "
                     "an estimate between the sizes tried)")
    if int(t.replicates.min()) < FEW_REPLICATES:
        lines.append(f"warning: only {_replicates_phrase(t)} replicate trials per size: Monte Carlo intervals are "
                     f"wide; use at least {FEW_REPLICATES} (1,000 for a planning figure)")
    return "\n".join(lines)
