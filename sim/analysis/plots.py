"""Figures: functions from result frames to matplotlib Figures, each with a provenance footer.

Every function takes the stored frames (see sim.results) and a footer string naming scenario, seed and
code version, and returns a Figure; `save` writes it as PNG and SVG. A figure that needs data the
runs did not record raises MissingData with a message saying what is missing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
matplotlib.rcParams["text.parse_math"] = False  # labels are drawn as plain text: a '$' in a name is a '$'
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402

from sim import outputs  # noqa: E402
from sim.analysis import metrics  # noqa: E402

PANEL_MISSING = ("needs the per-participant weekly panel, which these runs did not record "
                 "(run with --record participants-weekly)")
PHENOTYPE_COLORS = dict(zip(metrics.PHENOTYPES, ("#d62728", "#ff7f0e", "#9467bd", "#1f77b4")))


class MissingData(ValueError):
    """The frames lack what a figure needs; the message says what."""


def weekly_series(daily: pd.DataFrame) -> pd.DataFrame:
    """Per arm, replicate and week: severity at the week's end and minutes exercised in the week."""
    return metrics.weekly_arm_series(daily)


def _arms(frame: pd.DataFrame, arms: list[str] | None) -> list[str]:
    present = list(frame.arm.unique())
    return [a for a in (arms or present) if a in set(present)]


def _color(arm: str, arms: list[str] | None) -> str:
    """The arm's colour, fixed by its place in the scenario's arm order so every figure agrees."""
    order = list(arms or [])
    return f"C{order.index(arm) % 10}" if arm in order else "0.4"


def _phases(ax, programme_weeks: int, last: float, label: bool = True) -> None:
    """Mark the end of the programme and shade the follow-up."""
    ax.axvline(programme_weeks, color="0.3", ls="--", lw=1)
    if last > programme_weeks:
        ax.axvspan(programme_weeks, last, color="0.93", zorder=0)
    if label:
        ax.text(programme_weeks / 2, 0.98, "programme", transform=ax.get_xaxis_transform(), ha="center",
                va="top", color="0.3", fontsize=9)
        if last > programme_weeks:
            ax.text((programme_weeks + last) / 2, 0.98, "follow-up (support withdrawn)",
                    transform=ax.get_xaxis_transform(), ha="center", va="top", color="0.3", fontsize=9)


def _finish(fig: Figure, footer: str) -> Figure:
    fig.text(0.01, 0.005, footer, fontsize=7, color="0.35", ha="left", va="bottom")
    if fig.get_layout_engine() is None:
        fig.tight_layout(rect=(0, 0.025, 1, 1))
    return fig


def _constrained(figsize: tuple[float, float]) -> Figure:
    """A figure laid out by matplotlib's constrained layout (colorbars included), footer room below."""
    return plt.figure(figsize=figsize, layout=ConstrainedLayoutEngine(rect=(0, 0.03, 1, 0.97), wspace=0.06))


def _message(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.35",
            wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_color("0.8")


def outcome_curves(daily: pd.DataFrame, programme_weeks: int, scale: str, footer: str,
                   arms: list[str] | None = None) -> Figure:
    """Severity and weekly exercise minutes by arm over programme and follow-up."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7.5), sharex=True, height_ratios=[3, 2])
    sev = metrics.weekly_summary(daily, "severity")
    mins = metrics.weekly_summary(daily, "minutes")
    mins = mins[mins.week > 0]
    last = int(sev.week.max())
    for arm in _arms(sev, arms):
        color = _color(arm, arms or list(sev.arm.unique()))
        s = sev[sev.arm == arm]
        ax1.plot(s.week, s["mean"], color=color, label=arm, lw=2)
        ax1.fill_between(s.week, s.low, s.high, color=color, alpha=0.2, lw=0)
        m = mins[mins.arm == arm]
        ax2.plot(m.week, m["mean"], color=color, label=arm, lw=2)
        ax2.fill_between(m.week, m.low, m.high, color=color, alpha=0.2, lw=0)
    for ax in (ax1, ax2):
        _phases(ax, programme_weeks, last, label=ax is ax1)
        ax.grid(alpha=0.3)
    ax2.axhline(metrics.GUIDELINE_MINUTES, color="0.5", ls=":", lw=1, label="150 min/week guideline")
    ax1.set_ylabel(f"severity, {scale} (points)")
    ax1.set_title("Symptom severity by arm (mean; band = 95% of replicate trials)")
    ax2.set_ylabel("exercise (minutes/week)")
    ax2.set_xlabel("week since randomisation")
    ax1.legend(title="arm", loc="lower left")
    ax2.legend(loc="upper right", fontsize="small")
    ax2.set_xlim(0, last)
    return _finish(fig, footer)


def minutes_and_guideline(daily: pd.DataFrame, weekly: pd.DataFrame, programme_weeks: int, footer: str,
                          arms: list[str] | None = None) -> Figure:
    """Weekly exercise minutes by arm and the share of participants meeting 150 min in each week (the
    share needs the weekly panel; without it the lower panel says so)."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7))
    mins = metrics.weekly_summary(daily, "minutes")
    mins = mins[mins.week > 0]
    last = int(mins.week.max()) if len(mins) else programme_weeks
    order = arms or list(mins.arm.unique())
    for arm in _arms(mins, arms):
        m = mins[mins.arm == arm]
        ax1.plot(m.week, m["mean"], color=_color(arm, order), label=arm, lw=2)
        ax1.fill_between(m.week, m.low, m.high, color=_color(arm, order), alpha=0.2, lw=0)
    ax1.axhline(metrics.GUIDELINE_MINUTES, color="0.5", ls=":", lw=1, label="150 min/week guideline")
    ax1.set_ylabel("exercise (minutes/week, arm mean)")
    ax1.set_title("Exercise minutes per week by arm (mean; band = 95% of replicate trials)")
    ax1.set_ylim(0, 1.2 * max(metrics.GUIDELINE_MINUTES, float(mins.high.max()) if len(mins) else 0.0))
    ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    _phases(ax1, programme_weeks, last)
    ax1.grid(alpha=0.3)
    ax1.set_xlim(0, last)
    if weekly.empty:
        _message(ax2, "Share of participants meeting 150 min/week: not available.\nIt " + PANEL_MISSING + ".")
        ax1.set_xlabel("week since randomisation")
    else:
        ax1.tick_params(labelbottom=False)
        share = metrics.guideline_share_by_week(weekly)
        for arm in _arms(share, arms):
            s = share[share.arm == arm]
            ax2.plot(s.week, 100 * s["mean"], color=_color(arm, order), label=arm, lw=2)
            ax2.fill_between(s.week, 100 * s.low, 100 * s.high, color=_color(arm, order), alpha=0.2, lw=0)
        ax2.set_ylabel("participants with >= 150 min\nin that week (%)")
        ax2.set_ylim(0, 100)
        ax2.set_xlabel("week since randomisation")
        ax2.set_title("Share meeting the 150 min/week guideline in each week (all randomised)", fontsize=10)
        _phases(ax2, programme_weeks, last, label=False)
        ax2.grid(alpha=0.3)
        ax2.set_xlim(0, last)
    return _finish(fig, footer)


def dropout_survival(participants: pd.DataFrame, days: int, programme_weeks: int, footer: str,
                     arms: list[str] | None = None) -> Figure:
    """Kaplan-Meier curves of staying enrolled by arm (replicates pooled), with 95% confidence bands."""
    km = metrics.dropout_survival(participants, days)
    reps = participants.groupby("arm").replicate.nunique()
    fig, ax = plt.subplots(figsize=(10, 5))
    order = arms or list(km.arm.unique())
    for arm in _arms(km, arms):
        k = km[km.arm == arm]
        color = _color(arm, order)
        ax.step(k.time, 100 * k.survival, where="post", color=color, lw=2,
                label=f"{arm}\nn = {int(k.n.iloc[0])} ({reps[arm]} replicates pooled),\n"
                      f"{int(k.events.sum())} dropped out")
        ax.fill_between(k.time, 100 * k.low, 100 * k.high, step="post", color=color, alpha=0.2, lw=0)
    _phases(ax, programme_weeks, days / 7)
    ax.set_xlim(0, days / 7)
    low = float(km.low.min()) if len(km) else 0.0
    ax.set_ylim(max(0.0, 100 * low - 5), 100 + max(3.0, (100 - 100 * low) * 0.12))
    ax.set_xlabel("week since randomisation")
    ax.set_ylabel("still enrolled (%)")
    ax.set_title("Dropout: Kaplan-Meier share still enrolled, participants of all replicates pooled\n"
                 "(band = 95% Greenwood CI of the pooled sample; those who never drop out are censored at the end)",
                 fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", labelspacing=1.0)
    ax.grid(alpha=0.3)
    return _finish(fig, footer)


def heterogeneity(participants: pd.DataFrame, reference: str, footer: str, arms: list[str] | None = None,
                  scale: str = "HAM-D-17") -> Figure:
    """For whom each arm works: the effect against the reference at the end of the programme by tertiles
    of reward sensitivity x cognitive control (heatmaps) and of baseline severity."""
    order = arms or list(participants.arm.unique())
    others = [a for a in _arms(participants, arms) if a != reference]
    if reference not in set(participants.arm) or not others:
        raise MissingData(f"Heterogeneity: needs the reference arm '{reference}' and at least one other arm "
                          "with finished runs.")
    grid = metrics.subgroup_effects(participants, reference, ["reward_sensitivity", "cognitive_control"])
    sev = metrics.subgroup_effects(participants, reference, ["baseline_severity"])
    k = len(others)
    if k == 1:  # one heatmap beside the severity panel
        fig = _constrained((11, 5.2))
        gs = fig.add_gridspec(1, 2, width_ratios=[1, 1.25])
        heat_axes, sev_ax = [fig.add_subplot(gs[0, 0])], fig.add_subplot(gs[0, 1])
    else:
        cols = min(k, 3)
        rows = -(-k // cols)
        fig = _constrained((4.1 * cols + 0.8, 3.7 * rows + 3.8))
        gs = fig.add_gridspec(rows + 1, cols, height_ratios=[1] * rows + [0.9])
        heat_axes = [fig.add_subplot(gs[i // cols, i % cols]) for i in range(k)]
        sev_ax = fig.add_subplot(gs[rows, :])
    lim = np.nanmax(np.abs(grid.effect.to_numpy(float))) if grid.effect.notna().any() else 1.0
    lim = lim if lim > 0 else 1.0
    levels = ["low", "mid", "high"]
    for ax, arm in zip(heat_axes, others):
        g = grid[grid.arm == arm]
        mat = np.full((3, 3), np.nan)
        for _, r in g.iterrows():
            mat[levels.index(r.cognitive_control_tertile), levels.index(r.reward_sensitivity_tertile)] = r.effect
        im = ax.imshow(mat, cmap="RdBu", vmin=-lim, vmax=lim, origin="lower")
        for _, r in g.iterrows():
            x, y = levels.index(r.reward_sensitivity_tertile), levels.index(r.cognitive_control_tertile)
            txt = "no data" if np.isnan(r.effect) else f"{r.effect:+.1f}\ng {r.g:.2f}\nn {r.n}"
            dark = not np.isnan(r.effect) and abs(r.effect) > 0.6 * lim
            ax.text(x, y, txt, ha="center", va="center", fontsize=8, color="white" if dark else "black")
        ax.set_xticks(range(3), levels)
        ax.set_yticks(range(3), levels)
        ax.set_xlabel("reward sensitivity (tertile)")
        ax.set_ylabel("cognitive control (tertile)")
        ax.set_title(f"{arm} vs {reference}", fontsize=10, color=_color(arm, order))
        fig.colorbar(im, ax=ax, shrink=0.85, label=f"effect ({scale} points)")
    width = 0.8 / k
    for i, arm in enumerate(others):
        s = sev[sev.arm == arm]
        x = np.arange(len(s)) - 0.4 + width * (i + 0.5)
        sev_ax.errorbar(x, s.effect, yerr=[s.effect - s.effect_low, s.effect_high - s.effect], fmt="o",
                        color=_color(arm, order), capsize=3, label=f"{arm} vs {reference}")
    sev_ax.axhline(0, color="0.4", lw=1)
    sev_ax.set_xticks(range(3), [f"{lv} baseline\nseverity" for lv in levels])
    sev_ax.set_ylabel(f"effect ({scale} points)")
    sev_ax.set_title("by baseline severity tertile (bars = 95% CI)", fontsize=10)
    sev_ax.legend(fontsize="small", loc="best")
    sev_ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Effect at the end of the programme by baseline traits: reference change minus arm change "
                 "(positive = arm better)\ncells: effect in points, Hedges g of end-of-programme severity, n per "
                 "arm; tertiles of all participants, replicates pooled", fontsize=10)
    return _finish(fig, footer)


def dose_response(participants: pd.DataFrame, footer: str, arms: list[str] | None = None,
                  scale: str = "HAM-D-17", follow_up_weeks: int = 0, max_points: int = 3000,
                  seed: int = 0) -> Figure:
    """Per participant: mean weekly minutes (follow-up, or the programme if there is none) against
    change in severity, with the mean in bins of minutes per arm."""
    if follow_up_weeks > 0:
        x_col, xlabel = "minutes_per_week_follow_up", "exercise in follow-up (mean minutes/week)"
        panels = [("severity_end", "baseline_severity", "change from baseline to end of follow-up"),
                  ("severity_end", "severity_end_programme", "change during follow-up")]
    else:
        x_col, xlabel = "minutes_per_week_programme", "exercise in the programme (mean minutes/week)"
        panels = [("severity_end_programme", "baseline_severity", "change from baseline to end of programme")]
    order = arms or list(participants.arm.unique())
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 1, 5), squeeze=False)
    sampled = False
    for ax, (end, start, title) in zip(axes[0], panels):
        for arm in _arms(participants, arms):
            d = participants[participants.arm == arm]
            x, y = d[x_col], d[end] - d[start]
            pick = np.arange(len(d))
            if len(d) > max_points:
                pick, sampled = rng.choice(len(d), max_points, replace=False), True
            color = _color(arm, order)
            ax.scatter(x.iloc[pick], y.iloc[pick], s=5, alpha=0.25, color=color, lw=0)
            b = metrics.binned_means(x, y)
            ax.plot(b.x, b["mean"], "-o", color=color, ms=4, lw=2, label=arm)
            ax.fill_between(b.x, b.low, b.high, color=color, alpha=0.2, lw=0)
        ax.axhline(0, color="0.4", lw=1)
        ax.axvline(metrics.GUIDELINE_MINUTES, color="0.5", ls=":", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{title}\n({scale} points; negative = better)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(title="arm (line = binned mean, 95% CI)", fontsize="small", loc="best")
    note = f"; dots: a random {max_points} participants per arm" if sampled else "; dots = participants"
    fig.suptitle(f"Dose-response: minutes exercised against change in severity (replicates pooled{note})\n"
                 "line = mean in bins of minutes (no exercise, then equal widths; bins under 5 people left out); "
                 "dotted = 150 min/week", fontsize=10)
    return _finish(fig, footer)


def trajectories(weekly: pd.DataFrame, participants: pd.DataFrame, programme_weeks: int, footer: str,
                 arms: list[str] | None = None, scale: str = "HAM-D-17", per_phenotype: int = 6,
                 seed: int = 0) -> Figure:
    """A random sample of individual severity trajectories per arm, coloured by phenotype (median splits of
    baseline reward sensitivity and cognitive control), with each phenotype's mean."""
    if weekly.empty:
        raise MissingData("Individual trajectories: not available; this figure " + PANEL_MISSING + ".")
    keys = ["arm", "replicate", "pid"]
    ph = participants[keys].assign(phenotype=metrics.phenotype(participants))
    w = weekly.merge(ph, on=keys, how="inner")
    shown = _arms(w, arms)
    order = arms or shown
    cols = min(len(shown), 3)
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 1, 3.8 * rows + 0.8), squeeze=False,
                             sharex=True, sharey=True)
    rng = np.random.default_rng(seed)
    last = int(w.week.max())
    for ax, arm in zip(axes.flat, shown):
        a = w[w.arm == arm]
        people = a[keys + ["phenotype"]].drop_duplicates()
        for name in metrics.PHENOTYPES:
            grp = people[people.phenotype == name]
            pick = grp.iloc[rng.permutation(len(grp))[:per_phenotype]]
            for _, r in pick.iterrows():
                t = a[(a.replicate == r.replicate) & (a.pid == r.pid)]
                ax.plot(t.week, t.severity, color=PHENOTYPE_COLORS[name], lw=0.7, alpha=0.55)
            mean = a[a.phenotype == name].groupby("week").severity.mean()
            ax.plot(mean.index, mean.to_numpy(), color=PHENOTYPE_COLORS[name], lw=2.5, label=name)
        _phases(ax, programme_weeks, last, label=False)
        ax.set_title(arm, fontsize=10, color=_color(arm, order))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"severity, {scale} (points)")
    for ax in axes[-1, :]:
        ax.set_xlabel("week since randomisation")
    axes.flat[0].legend(title="phenotype (thick = mean)", fontsize="x-small", title_fontsize="small",
                        loc="upper right")
    fig.suptitle(f"Individual severity trajectories: {per_phenotype} random participants per phenotype and arm\n"
                 "(R = baseline reward sensitivity, C = baseline cognitive control, each split at the median; "
                 "dashed line = end of programme)", fontsize=10)
    return _finish(fig, footer)


def forest(effects: pd.DataFrame, footer: str, title: str = "Effect sizes against each scenario's reference arm"
           ) -> Figure:
    """Forest plot: per row (`label`) and time point (`time`), the mean Hedges g over replicates (dot), the
    95% of replicate trials (thick bar) and the mean 95% CI of one trial (thin bar)."""
    e = effects.dropna(subset=["g"])
    if e.empty:
        raise MissingData("Forest plot: no effect sizes (needs a non-reference arm with finished runs "
                          "alongside the reference arm).")
    labels = list(dict.fromkeys(e.label))
    times = list(dict.fromkeys(e.time))
    height = 2.3 + 0.45 * len(labels) * (1.0 if len(times) == 1 else 1.4)
    fig, ax = plt.subplots(figsize=(10, height))
    off = np.linspace(0.18, -0.18, len(times)) if len(times) > 1 else [0.0]
    for j, t in enumerate(times):
        for _, r in e[e.time == t].iterrows():
            y = len(labels) - 1 - labels.index(r.label) + off[j]
            ax.plot([r.g_low, r.g_high], [y, y], color=f"C{j}", lw=1)
            if r.replicates > 1:
                ax.plot([r["g_trial_p2.5"], r["g_trial_p97.5"]], [y, y], color=f"C{j}", lw=4, alpha=0.6,
                        solid_capstyle="butt")
            ax.plot(r.g, y, "o", color=f"C{j}", ms=6, label=t if r.label == e[e.time == t].label.iloc[0] else None)
            ax.annotate(f"{r.g:.2f} [{r.g_low:.2f}, {r.g_high:.2f}]", (1.01, y), xycoords=("axes fraction", "data"),
                        va="center", fontsize=8, color=f"C{j}")
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(range(len(labels)), labels[::-1])
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel("Hedges g against the reference arm (positive = fewer symptoms)")
    ax.set_title(f"{title}\n(dot = mean over replicates; thick = 95% of replicate trials; thin = mean 95% CI of "
                 "one trial)", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", bbox_to_anchor=(0.45, 0.22 / height), ncol=len(times),
               fontsize="small", frameon=False)
    fig.text(0.01, 0.005, footer, fontsize=7, color="0.35", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.5 / height, 0.84, 1))
    return fig


def save(fig: Figure, path: Path) -> list[Path]:
    """Write the figure as PNG and SVG next to each other; returns the paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.name.removesuffix(".png").removesuffix(".svg")  # names may hold dots: never with_suffix
    out = [path.with_name(stem + ".png"), path.with_name(stem + ".svg")]
    for p in out:
        outputs.check_target(p)  # savefig would write into a pipe or device, or fail on a folder
    fig.savefig(out[0], dpi=130)
    fig.savefig(out[1])
    plt.close(fig)
    return out
