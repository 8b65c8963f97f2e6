"""Figures of people and subgroups: for whom an arm works (trait tertiles), dose-response (an association
among self-selected exercisers, raw and adjusted for baseline traits) and individual trajectories.
Re-exported by sim.analysis.plots; each figure carries the provenance footer it is given."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sim.analysis import metrics
from sim.analysis.plots import (
    PANEL_MISSING,
    PHENOTYPE_COLORS,
    MissingData,
    _arms,
    _color,
    _constrained,
    _finish,
    _phases,
    plt,
)
from sim.vocabulary import TRAITS

FEW = metrics.FEW_PEOPLE


def heterogeneity(participants: pd.DataFrame, reference: str, footer: str, arms: list[str] | None = None,
                  scale: str = "HAM-D-17") -> Figure:
    """For whom each arm works: the effect against the reference at the end of the programme by tertiles
    of reward sensitivity x cognitive control (heatmaps) and of baseline severity, with n per cell and
    cells of fewer than 10 people marked."""
    order = arms or list(participants.arm.unique())
    others = [a for a in _arms(participants, arms) if a != reference]
    if reference not in set(participants.arm) or not others:
        raise MissingData(f"Heterogeneity: needs the reference arm '{reference}' and at least one other arm "
                          "with finished runs.")
    grid = metrics.subgroup_effects(participants, reference, ["reward_sensitivity", "cognitive_control"])
    sev = metrics.subgroup_effects(participants, reference, ["baseline_severity"])
    k = len(others)
    if k == 1:  # one heatmap beside the severity panel
        fig = _constrained((11, 5.4))
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
            star = "*" if r.few else ""
            txt = "no data" if np.isnan(r.effect) else f"{r.effect:+.1f}\ng {r.g:.2f}\nn {r.n}/{r.n_reference}{star}"
            dark = not np.isnan(r.effect) and abs(r.effect) > 0.6 * lim
            ax.text(x, y, txt, ha="center", va="center", fontsize=8, color="white" if dark else "black")
            if r.few:
                ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch="//", lw=0, color="0.5"))
        ax.set_xticks(range(3), levels)
        ax.set_yticks(range(3), levels)
        ax.set_xlabel("reward sensitivity (tertile)")
        ax.set_ylabel("cognitive control (tertile)")
        ax.set_title(f"{arm} vs {reference}", fontsize=10, color=_color(arm, order))
        fig.colorbar(im, ax=ax, shrink=0.85, label=f"effect ({scale} points)")
    width = 0.8 / k
    for i, arm in enumerate(others):
        s = sev[sev.arm == arm].reset_index(drop=True)
        x = np.arange(len(s)) - 0.4 + width * (i + 0.5)
        color = _color(arm, order)
        sev_ax.errorbar(x, s.effect, yerr=[s.effect - s.effect_low, s.effect_high - s.effect], fmt="none",
                        ecolor=color, capsize=3)
        sev_ax.scatter(x, s.effect, s=36, zorder=3, edgecolors=color,
                       facecolors=[("white" if few else color) for few in s.few], label=f"{arm} vs {reference}")
        for xi, r in zip(x, s.itertuples()):
            sev_ax.annotate(f"n {r.n}/{r.n_reference}{'*' if r.few else ''}", (xi, r.effect_low),
                            textcoords="offset points", xytext=(0, -12), ha="center", fontsize=8, color=color)
    sev_ax.axhline(0, color="0.4", lw=1)
    sev_ax.set_xticks(range(3), [f"{lv} baseline\nseverity" for lv in levels])
    sev_ax.set_xlim(-0.6, 2.6)
    sev_ax.set_ylabel(f"effect ({scale} points)")
    sev_ax.set_title("by baseline severity tertile\n(bars = Welch t 95% CI; n = people, arm/reference)", fontsize=10)
    sev_ax.legend(fontsize="small", loc="best")
    sev_ax.grid(alpha=0.3, axis="y")
    sev_ax.margins(y=0.15)
    fig.suptitle("Effect at the end of the programme by baseline traits: reference change minus arm change "
                 "(positive = arm better)\ncells: effect in points, Hedges g, n arm/reference (replicates pooled); "
                 f"* hatched or hollow: fewer than {FEW} people in a group", fontsize=10)
    return _finish(fig, footer)


def _binned(ax, x: pd.Series, y: pd.Series, color: str, arm: str, row: int) -> None:
    """Binned means with t 95% CIs; bins of fewer than FEW people hollow; the people per bin written along the
    bottom of the panel (one row of numbers per arm)."""
    b = metrics.binned_means(x, y)
    ax.plot(b.x, b["mean"], "-", color=color, lw=2, label=arm)
    ax.fill_between(b.x, b.low, b.high, color=color, alpha=0.2, lw=0)
    ax.scatter(b.x, b["mean"], s=24, zorder=3, edgecolors=color,
               facecolors=[("white" if few else color) for few in b.few])
    for r in b.itertuples():
        ax.text(r.x, 0.02 + 0.075 * row, f"{r.n}", transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=6.5, color=color, rotation=90,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5})


def dose_response(participants: pd.DataFrame, footer: str, arms: list[str] | None = None,
                  scale: str = "HAM-D-17", follow_up_weeks: int = 0, max_points: int = 3000,
                  seed: int = 0) -> Figure:
    """Per participant: mean weekly minutes (follow-up, or the programme if there is none) against change in
    severity, with binned means (t 95% CI, n per bin) per arm, and the slope per 60 min/week raw and adjusted
    for baseline traits (OLS): an association among people who chose how much to exercise, not an effect."""
    if follow_up_weeks > 0:
        x_col, xlabel = "minutes_per_week_follow_up", "exercise in follow-up (mean minutes/week)"
        panels = [("severity_end", "baseline_severity", "change from baseline to end of follow-up"),
                  ("severity_end", "severity_end_programme", "change during follow-up")]
    else:
        x_col, xlabel = "minutes_per_week_programme", "exercise in the programme (mean minutes/week)"
        panels = [("severity_end_programme", "baseline_severity", "change from baseline to end of programme")]
    order = arms or list(participants.arm.unique())
    shown = _arms(participants, arms)
    rng = np.random.default_rng(seed)
    fig = _constrained((5.6 * len(panels) + 1.2, 9.4))
    gs = fig.add_gridspec(2, len(panels), height_ratios=[1.35, 1])
    axes = [fig.add_subplot(gs[0, i]) for i in range(len(panels))]
    sampled, coef_rows = False, []
    for ax, (end, start, title) in zip(axes, panels):
        for i, arm in enumerate(shown):
            d = participants[participants.arm == arm]
            x, y = d[x_col], d[end] - d[start]
            pick = np.arange(len(d))
            if len(d) > max_points:
                pick, sampled = rng.choice(len(d), max_points, replace=False), True
            color = _color(arm, order)
            ax.scatter(x.iloc[pick], y.iloc[pick], s=5, alpha=0.2, color=color, lw=0)
            _binned(ax, x, y, color, arm, i)
        assoc = metrics.dose_association(participants[participants.arm.isin(shown)], x_col, end, start, TRAITS)
        coef_rows += [(title, r) for r in assoc.itertuples()]
        ax.axhline(0, color="0.4", lw=1)
        ax.axvline(metrics.GUIDELINE_MINUTES, color="0.5", ls=":", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{title}\n({scale} points; negative = better)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, _ = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", ls="", mfc="white", mec="0.3", label=f"bin of < {FEW} people"))
    axes[0].legend(handles=handles, title="binned mean, t 95% CI;\nnumbers at the bottom = people per bin",
                   fontsize="x-small", title_fontsize="x-small", loc="upper right")
    _coefficients(fig.add_subplot(gs[1, :]), coef_rows, order, scale)
    note = f"; dots: a random {max_points} participants per arm" if sampled else "; dots = participants"
    fig.suptitle("Dose-response: an ASSOCIATION, not an effect - people chose how much to exercise "
                 f"(replicates pooled{note})\ntop: mean change in bins of minutes (no exercise, then equal widths); "
                 "dotted = 150 min/week. bottom: slope per 60 min/week, raw and adjusted for baseline traits",
                 fontsize=10)
    return _finish(fig, footer)


def _coefficients(ax, rows: list, order: list[str], scale: str) -> None:
    """Raw and trait-adjusted OLS slopes (per 60 min/week) with their 95% CIs, one row per arm and outcome."""
    labels = [f"{r.arm} (n {r.n})\n{title}" for title, r in rows]
    for j, (title, r) in enumerate(rows):
        y = len(rows) - 1 - j
        color = _color(r.arm, order)
        for kind, dy, marker in (("raw", 0.15, "o"), ("adjusted", -0.15, "s")):
            v, lo, hi = getattr(r, kind), getattr(r, f"{kind}_low"), getattr(r, f"{kind}_high")
            if np.isfinite(v):
                ax.errorbar(v, y + dy, xerr=[[v - lo], [hi - v]], fmt=marker, color=color, capsize=3,
                            mfc="white" if kind == "adjusted" else color, ms=6)
    ax.axvline(0, color="0.4", lw=1)
    ax.set_yticks(range(len(rows)), labels[::-1], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"slope ({scale} points per 60 min/week; negative = more exercise, more improvement)")
    ax.set_title("association per 60 min/week: raw (filled) and adjusted for baseline traits (hollow); OLS, HC3 95% CI",
                 fontsize=9)
    ax.legend(handles=[Line2D([], [], marker="o", ls="", color="0.3", label="raw"),
                       Line2D([], [], marker="s", ls="", mfc="white", mec="0.3",
                              label="adjusted for " + ", ".join(t.replace("_", " ") for t in TRAITS))],
              fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False)
    ax.grid(alpha=0.3, axis="x")


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
    axes.flat[0].set_ylim(bottom=0)  # shared: every panel's severity axis starts at 0
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"severity, {scale} (points)")
    for ax in axes[-1, :]:
        ax.set_xlabel("week since randomisation")
    axes.flat[0].legend(title="phenotype (thick = mean)", fontsize="x-small", title_fontsize="small",
                        loc="lower left")
    fig.suptitle(f"Individual severity trajectories: {per_phenotype} random participants per phenotype and arm\n"
                 "(R = baseline reward sensitivity, C = baseline cognitive control, each split at the median; "
                 "dashed line = end of programme)", fontsize=10)
    return _finish(fig, footer)
