"""Sweep figures: sensitivity indices, response curves and surfaces, and uncertainty intervals.

Each function takes a Sweep and the frames of sim.analysis.sweeps (points, point_summary, indices,
uncertainty) plus a provenance footer, and returns a matplotlib Figure finished by plots._finish.
Every figure shows the replicate noise its values must be read against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim import parameters
from sim.analysis import plots, sweeps
from sim.analysis.plots import plt
from sim.runs.results import SweepResults
from sim.runs.sweep import BASE_POINT
from sim.sweep_spec import Sweep
from sim.vocabulary import METRIC_UNITS

Z95 = 1.96
NOISE_LABEL = "95% interval of the replicate mean (noise)"
# units of scenario fields a factor may set, by the path's last part
FIELD_UNITS = {"weeks": "weeks", "follow_up_weeks": "weeks", "minutes": "minutes", "start_minutes": "minutes",
               "size": "participants per arm", "sessions_per_week": "sessions/week",
               "intensity": "fraction of heart-rate reserve", "level": "0-1"}


def factor_label(name: str) -> str:
    """A factor's name with its unit (a parameter's declared unit, or a scenario field's)."""
    p = parameters.BY_NAME.get(name.removeprefix("parameters."))
    unit = p.unit if p is not None else FIELD_UNITS.get(name.split(".")[-1])
    return f"{name} ({unit})" if unit else name


def _outcome(sw: Sweep, outcome: str):
    for o in sw.spec.outcomes:
        if o.id == outcome:
            return o
    raise ValueError(f"outcome {outcome!r} is not one of this sweep's: {', '.join(o.id for o in sw.spec.outcomes)}")


def outcome_label(sw: Sweep, outcome: str, unit: bool = True) -> str:
    """'id: metric, arm, week N (unit)' for an outcome of the sweep."""
    o = _outcome(sw, outcome)
    where = ", ".join(x for x in (o.arm, f"week {o.week}" if o.week is not None else None) if x)
    text = f"{o.id}: {o.metric}" + (f", {where}" if where else "")
    return text + (f" ({METRIC_UNITS[o.metric]})" if unit else "")


def _legend_below(fig: Figure, ax, height: float) -> None:
    """A one-column legend under the axes, with the layout leaving just its height (in inches) free."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: not hasattr(handles[i], "patches"))  # bars first
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="lower left", fontsize="small",
               frameon=False, bbox_to_anchor=(0.02, 0.2 / height))
    need = 0.35 + 0.24 * len(labels)
    fig.set_layout_engine("tight", rect=(0, need / height, 1, 1))


def index_bars(sw: Sweep, idx: pd.DataFrame, outcome: str, footer: str) -> Figure:
    """The design's sensitivity index per factor for one outcome, sorted, with 95% bootstrap intervals."""
    design = sw.spec.design
    d = idx[idx.outcome == outcome] if len(idx) else idx
    if design == "grid" or d.empty:
        raise ValueError(f"no sensitivity indices for outcome {outcome!r} (a grid design has none; its figures are "
                         "response curves and surfaces)")
    d = d.sort_values(sweeps.RANK_BY[design])  # barh draws bottom-up: largest ends on top
    y = np.arange(len(d))
    height = 2.4 + 0.45 * len(d) + 0.24 * (3 if design == "morris" else 2)
    fig, ax = plt.subplots(figsize=(9.5, height))
    label = outcome_label(sw, outcome, unit=False)
    unit = METRIC_UNITS.get(_outcome(sw, outcome).metric, "metric units")
    if design == "morris":
        low = np.minimum(d.mu_star_conf, d.mu_star)  # mu* is a mean of absolute values: never below 0
        ax.barh(y, d.mu_star, xerr=[low, d.mu_star_conf], color="C0", alpha=0.8, capsize=3,
                label="μ* (mean |elementary effect|); bar = 95% bootstrap interval")
        ax.plot(d.sigma, y, "D", color="C3", ms=6,
                label="σ (spread of elementary effects: interaction, non-linearity)")
        noise = float(d.noise_mu_star.iloc[0])
        if np.isfinite(noise):
            ax.axvline(noise, color="0.3", ls="--", lw=1.2, label="replicate noise level (independent points)")
            sub = f"μ* below the dashed line ({noise:.3g}) cannot be told from replicate noise"
        else:
            sub = "replicate noise unknown: one replicate per point"
        ax.set_xlabel(f"change in {outcome} over the factor's full range ({unit})")
        title = f"Morris screening of {label}"
        sub += f"; {sw.spec.samples} trajectories"
    elif design == "sobol":
        h = 0.38
        ax.barh(y + h / 2, d.ST, h, xerr=d.ST_conf, color="C0", capsize=3, label="ST (total, with interactions)")
        ax.barh(y - h / 2, d.S1, h, xerr=d.S1_conf, color="C1", capsize=3, label="S1 (first order, alone)")
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_xlabel("share of the variance of the outcome across points (0-1); bars = 95% bootstrap interval")
        title = f"Sobol' indices of {label}"
        sub = (f"replicate noise is {100 * float(d.noise_share.iloc[0]):.1f}% of the variance across points; "
               f"N = {sw.spec.samples}")
    else:
        h = 0.38
        ax.barh(y + h / 2, d.delta, h, xerr=d.delta_conf, color="C0", capsize=3,
                label="δ (Borgonovo, moment-independent)")
        ax.barh(y - h / 2, d.S1, h, xerr=d.S1_conf, color="C1", capsize=3, label="S1 (first order)")
        ax.set_xlabel("index (0-1); bars = 95% bootstrap interval")
        title = f"Borgonovo δ of {label}"
        sub = f"{sw.spec.samples} Latin-hypercube points; indices from replicate means"
    ax.set_yticks(y, [factor_label(f) for f in d.factor])
    ax.set_ylabel("factor")
    ax.set_ylim(-0.7, len(d) - 0.3)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(f"{title}\n({sub})", fontsize=10)
    _legend_below(fig, ax, height)
    return plots._finish(fig, footer)


def _means(summary: pd.DataFrame, outcome: str) -> pd.DataFrame:
    return summary[summary.outcome == outcome].set_index("point")[["mean", "se"]]


def _levels(points: pd.DataFrame, name: str) -> np.ndarray:
    return np.sort(points.loc[points.point != BASE_POINT, name].unique())


def _nearest(sw: Sweep, points: pd.DataFrame, name: str) -> float:
    """The grid level of a factor nearest its default (the middle level when the default is unknown)."""
    levels = _levels(points, name)
    default = sw.default(name)
    return float(levels[len(levels) // 2] if np.isnan(default) else levels[np.argmin(np.abs(levels - default))])


def _slice(sw: Sweep, points: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    """Grid points with every factor not in `keep` at its level nearest the default."""
    rows = points[points.point != BASE_POINT]
    for name in sw.factor_names:
        if name not in keep:
            rows = rows[np.isclose(rows[name], _nearest(sw, points, name))]
    return rows


def _fixed_note(sw: Sweep, points: pd.DataFrame, keep: list[str]) -> str:
    return ", ".join(f"{n} = {_nearest(sw, points, n):.4g}" for n in sw.factor_names if n not in keep)


def _binned(x: np.ndarray, y: np.ndarray, bins: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Means of y in quantile bins of x (per distinct x when x takes few values)."""
    distinct = np.unique(x)
    if len(distinct) <= bins:
        return distinct, np.array([y[x == v].mean() for v in distinct])
    edges = np.unique(np.quantile(x, np.linspace(0, 1, min(bins, max(2, len(x) // 3)) + 1)))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    keep = [k for k in range(len(edges) - 1) if (which == k).any()]
    return (np.array([x[which == k].mean() for k in keep]), np.array([y[which == k].mean() for k in keep]))


def response_curves(sw: Sweep, points: pd.DataFrame, summary: pd.DataFrame, outcome: str, footer: str) -> Figure:
    """One panel per factor: each point's replicate mean with its noise interval, the trend, and the base point."""
    grid = sw.spec.design == "grid"
    names = sw.factor_names
    m = _means(summary, outcome)
    cols = min(len(names), 3)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols + 0.6, 3.5 * rows + 1.6), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        sel = _slice(sw, points, [name]) if grid else points[points.point != BASE_POINT]
        sel = sel[sel.point.isin(m.index)].sort_values(name)
        x, mean, se = sel[name].to_numpy(float), m.loc[sel.point, "mean"].to_numpy(), m.loc[sel.point, "se"].to_numpy()
        if sw.integer.get(name):
            x = np.round(x)  # the value the point's scenario ran with (designs draw fractions)
        ax.errorbar(x, mean, yerr=Z95 * np.nan_to_num(se), fmt="o", color="C0", ms=4, alpha=0.75, capsize=2,
                    elinewidth=0.8, label=f"point mean; bar = {NOISE_LABEL}")
        if len(x):
            bx, by = _binned(x, mean) if not grid else (np.unique(x), np.array([mean[x == v].mean()
                                                                                 for v in np.unique(x)]))
            ax.plot(bx, by, "-", color="C1", lw=2, label="mean per level" if grid else "mean in quantile bins of x")
        if BASE_POINT in m.index:
            bx0 = float(points.loc[points.point == BASE_POINT, name].iloc[0])
            b = m.loc[BASE_POINT]
            ax.errorbar([bx0], [b["mean"]], yerr=[Z95 * np.nan_to_num(b.se)], fmt="*", color="k", ms=12, capsize=3,
                        label="base scenario (its own values)")
        ax.set_xlabel(factor_label(name))
        ax.grid(alpha=0.3)
        if grid and len(names) > 1:
            ax.set_title("others: " + _fixed_note(sw, points, [name]), fontsize=8)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{outcome} ({METRIC_UNITS.get(_outcome(sw, outcome).metric, 'metric units')})")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize="small", frameon=False,
               bbox_to_anchor=(0.5, 0.2 / fig.get_figheight()))
    how = ("other factors at the grid level nearest their default" if grid
           else "other factors vary over their ranges")
    fig.suptitle(f"Response of {outcome_label(sw, outcome, unit=False)} to each factor\n({how}; replicate means "
                 f"over {sw.spec.replicates} replicates per point)", fontsize=10)
    fig.set_layout_engine("tight", rect=(0, 0.65 / fig.get_figheight(), 1, 1))  # room for the legend below
    return plots._finish(fig, footer)


def response_surface(sw: Sweep, points: pd.DataFrame, summary: pd.DataFrame, outcome: str, fx: str, fy: str,
                     footer: str) -> Figure:
    """Heatmap of an outcome's mean over two factors of a grid, the others at the level nearest their default."""
    if sw.spec.design != "grid":
        raise ValueError(f"a response surface needs a grid design (every combination of levels); sweep {sw.name!r} "
                         f"is {sw.spec.design}: use response_curves or index_bars instead")
    for f in (fx, fy):
        if f not in sw.factor_names:
            raise ValueError(f"{f!r} is not a factor of sweep {sw.name!r}: {', '.join(sw.factor_names)}")
    if fx == fy:
        raise ValueError("a response surface needs two different factors")
    m = _means(summary, outcome)
    sel = _slice(sw, points, [fx, fy])
    xs, ys = _levels(points, fx), _levels(points, fy)
    mean, se = np.full((len(ys), len(xs)), np.nan), np.full((len(ys), len(xs)), np.nan)
    for _, r in sel[sel.point.isin(m.index)].iterrows():
        i, j = int(np.argmin(np.abs(ys - r[fy]))), int(np.argmin(np.abs(xs - r[fx])))
        mean[i, j], se[i, j] = m.loc[r.point, "mean"], m.loc[r.point, "se"]
    fig, ax = plt.subplots(figsize=(max(9.0, 1.5 * len(xs) + 3.5), max(4.5, 0.9 * len(ys) + 3)))
    im = ax.imshow(mean, origin="lower", cmap="viridis", aspect="auto")
    lo, hi = np.nanmin(mean) if np.isfinite(mean).any() else 0, np.nanmax(mean) if np.isfinite(mean).any() else 1
    for i in range(len(ys)):
        for j in range(len(xs)):
            if np.isnan(mean[i, j]):
                ax.text(j, i, "no runs", ha="center", va="center", fontsize=8, color="0.5")
                continue
            dark = hi > lo and (mean[i, j] - lo) / (hi - lo) < 0.55
            noise = f"\n±{Z95 * se[i, j]:.2g}" if np.isfinite(se[i, j]) else ""
            ax.text(j, i, f"{mean[i, j]:.3g}{noise}", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(xs)), [f"{v:.4g}" for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:.4g}" for v in ys])
    ax.set_xlabel(factor_label(fx))
    ax.set_ylabel(factor_label(fy))
    fig.colorbar(im, ax=ax, label=outcome_label(sw, outcome))
    noise = (f"median noise ±{Z95 * float(np.nanmedian(se)):.2g}, the 95% interval of a replicate mean"
             if np.isfinite(se).any() else "median noise unknown: one replicate per point")
    others = _fixed_note(sw, points, [fx, fy])
    ax.set_title(f"{outcome}: replicate mean over {fx} × {fy}; cells: mean ± 1.96 SE\n({noise}"
                 f"{'; others: ' + others if others else ''})", fontsize=9)
    return plots._finish(fig, footer)


def uncertainty_bars(table: pd.DataFrame, footer: str) -> Figure:
    """Per outcome: the 95% range of trials at the base values vs with parameter uncertainty as well."""
    if table.empty:
        raise ValueError("no uncertainty table: the sweep has no outcomes with finished runs")
    fig, axes = plt.subplots(len(table), 1, figsize=(9.5, 1.9 * len(table) + 1.4), squeeze=False)
    for ax, (_, r) in zip(axes[:, 0], table.iterrows()):
        ax.plot([r.sampling_low, r.sampling_high], [1, 1], color="C0", lw=5, solid_capstyle="butt",
                label="trial sampling alone (base values): 95% of replicate trials")
        ax.plot(r.base_mean, 1, "o", color="k", ms=6, label="mean")
        ax.plot([r.total_low, r.total_high], [0, 0], color="C3", lw=5, solid_capstyle="butt",
                label="parameter uncertainty + trial sampling: 95% of draws × trials")
        ax.plot(r["mean"], 0, "o", color="k", ms=6)
        ax.set_yticks([1, 0], [f"base values\n({r.base_replicates} trials)", f"{r.draws} parameter\ndraws"])
        ax.set_ylim(-0.6, 1.6)
        where = ", ".join(str(x) for x in (r.arm, f"week {int(r.week)}" if pd.notna(r.week) else None) if x)
        ax.set_xlabel(f"{r.outcome}: {r.metric}, {where} ({METRIC_UNITS.get(r.metric, 'metric units')})", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
        if pd.notna(r.same_sign):
            ax.text(1.0, 1.02, f"{100 * r.same_sign:.0f}% of draws have the base mean's sign", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=8, color="0.3")
    fig.suptitle("Uncertainty: how much wider the outcome's range gets when the parameters are uncertain", fontsize=10)
    _legend_below(fig, axes[0, 0], fig.get_figheight())
    return plots._finish(fig, footer)


def figure_makers(sw: Sweep, res: SweepResults, values: pd.DataFrame, summary: pd.DataFrame, idx: pd.DataFrame,
                  footer: str) -> dict[str, Callable[[], Figure]]:
    """Every figure that fits the design, each as a function that draws it (keys name the files)."""
    makers: dict[str, Callable[[], Figure]] = {}
    pts, design = res.points, sw.spec.design
    if design == "uncertainty":
        makers["uncertainty"] = lambda: uncertainty_bars(sweeps.uncertainty(sw, values), footer)
    for o in sw.spec.outcomes:
        if len(idx) and (idx.outcome == o.id).any():
            makers[f"indices_{o.id}"] = lambda o=o: index_bars(sw, idx, o.id, footer)
        makers[f"response_{o.id}"] = lambda o=o: response_curves(sw, pts, summary, o.id, footer)
        if design == "grid" and len(sw.factor_names) >= 2:
            fx, fy = sw.factor_names[:2]
            makers[f"surface_{o.id}"] = lambda o=o, fx=fx, fy=fy: response_surface(sw, pts, summary, o.id, fx, fy,
                                                                                 footer)
    return makers


def figures(sw: Sweep, res: SweepResults, values: pd.DataFrame, summary: pd.DataFrame, idx: pd.DataFrame,
            footer: str) -> dict[str, Figure]:
    """Every figure that fits the design, drawn."""
    return {k: make() for k, make in figure_makers(sw, res, values, summary, idx, footer).items()}
