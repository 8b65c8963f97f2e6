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


def _zero_visible(ax, top: float) -> None:
    """Minutes axis from a little below 0, so an arm at 0 min/week (usual care) shows as a line, not an axis."""
    ax.set_ylim(-0.04 * 1.2 * top, 1.2 * top)
    ax.axhline(0, color="0.75", lw=0.6, zorder=0)


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
    ax1.set_ylim(0, 1.05 * float(sev.high.max()))  # severity from 0, so differences are not exaggerated
    _zero_visible(ax2, max(metrics.GUIDELINE_MINUTES, float(mins.high.max()) if len(mins) else 0.0))
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
    _zero_visible(ax1, max(metrics.GUIDELINE_MINUTES, float(mins.high.max()) if len(mins) else 0.0))
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
        ax2.set_ylim(-3, 100)  # an arm at 0% (usual care) shows as a line, not as the axis
        ax2.axhline(0, color="0.75", lw=0.6, zorder=0)
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


def forest(effects: pd.DataFrame, footer: str, title: str = "Effect sizes against each scenario's reference arm"
           ) -> Figure:
    """Forest plot: per row (`label`) and time point (`time`), the mean Hedges g over replicates (dot), the
    mean 95% CI of one trial (thin bar with caps, above) and the 95% of replicate trials (thick bar, below),
    each named in the legend."""
    from matplotlib.lines import Line2D

    e = effects.dropna(subset=["g"])
    if e.empty:
        raise MissingData("Forest plot: no effect sizes (needs a non-reference arm with finished runs "
                          "alongside the reference arm).")
    labels = list(dict.fromkeys(e.label))
    times = list(dict.fromkeys(e.time))
    height = 2.8 + 0.55 * len(labels) * (1.0 if len(times) == 1 else 1.5)
    fig, ax = plt.subplots(figsize=(10.5, height))
    off = np.linspace(0.2, -0.2, len(times)) if len(times) > 1 else [0.0]
    for j, t in enumerate(times):
        for _, r in e[e.time == t].iterrows():
            y = len(labels) - 1 - labels.index(r.label) + off[j]
            ax.errorbar(r.g, y + 0.06, xerr=[[r.g - r.g_low], [r.g_high - r.g]], fmt="none", ecolor=f"C{j}",
                        elinewidth=1, capsize=3)
            text = f"{r.g:.2f}; one trial [{r.g_low:.2f}, {r.g_high:.2f}]"
            if r.replicates > 1:
                ax.plot([r["g_trial_p2.5"], r["g_trial_p97.5"]], [y - 0.06] * 2, color=f"C{j}", lw=5, alpha=0.45,
                        solid_capstyle="butt")
                text += f"; trials [{r['g_trial_p2.5']:.2f}, {r['g_trial_p97.5']:.2f}]"
            ax.plot(r.g, y, "o", color=f"C{j}", ms=6, zorder=3)
            ax.annotate(text, (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=7.5,
                        color=f"C{j}")
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(range(len(labels)), labels[::-1])
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel("Hedges g against the reference arm (positive = fewer symptoms)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    handles = [Line2D([], [], marker="o", ls="", color=f"C{j}", label=t) for j, t in enumerate(times)]
    handles += [Line2D([], [], color="0.3", lw=1, marker="|", ms=8, label="thin, capped: 95% CI of one trial "
                       "(mean over replicates)"),
                Line2D([], [], color="0.3", lw=5, alpha=0.45, label="thick: 95% of replicate trials "
                       "(g between independent cohorts)")]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.45, 0.3 / height), ncol=2,
               fontsize="small", frameon=False)
    fig.text(0.01, 0.005, footer, fontsize=7, color="0.35", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 1.0 / height, 0.78, 1))
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


from sim.analysis.plots_people import dose_response, heterogeneity, trajectories  # noqa: E402, F401 - re-exported
