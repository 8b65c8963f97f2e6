"""Figures: functions from result frames to matplotlib Figures, each with a provenance footer."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def weekly_series(daily: pd.DataFrame) -> pd.DataFrame:
    """Per arm, replicate and week: severity at the week's end and minutes exercised in the week."""
    d = daily.assign(week=(daily.day + 6) // 7)  # days 1-7 -> week 1; day 0 -> week 0
    minutes = d.groupby(["arm", "replicate", "week"], sort=False).minutes_mean.sum() * (d.week > 0).groupby(
        [d.arm, d.replicate, d.week], sort=False).any()
    ends = d[d.day % 7 == 0].set_index(["arm", "replicate", "week"]).severity_mean
    return pd.DataFrame({"severity": ends, "minutes": minutes}).reset_index()


def _band(series: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per arm and week: mean over replicates, with 2.5/97.5 percentiles."""
    g = series.groupby(["arm", "week"], sort=False)[column]
    return pd.DataFrame({"mean": g.mean(), "low": g.quantile(0.025), "high": g.quantile(0.975)}).reset_index()


def outcome_curves(daily: pd.DataFrame, programme_weeks: int, scale: str, footer: str,
                   arms: list[str] | None = None) -> Figure:
    """Severity and weekly exercise minutes by arm over programme and follow-up."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7.5), sharex=True, height_ratios=[3, 2])
    weekly = weekly_series(daily)
    sev = _band(weekly, "severity")
    mins = _band(weekly[weekly.week > 0], "minutes")
    last = int(weekly.week.max())
    for i, arm in enumerate(arms or weekly.arm.unique()):
        color = f"C{i}"
        s = sev[sev.arm == arm]
        ax1.plot(s.week, s["mean"], color=color, label=arm, lw=2)
        ax1.fill_between(s.week, s.low, s.high, color=color, alpha=0.2, lw=0)
        m = mins[mins.arm == arm]
        ax2.plot(m.week, m["mean"], color=color, label=arm, lw=2)
        ax2.fill_between(m.week, m.low, m.high, color=color, alpha=0.2, lw=0)
    for ax in (ax1, ax2):
        ax.axvline(programme_weeks, color="0.3", ls="--", lw=1)
        if last > programme_weeks:
            ax.axvspan(programme_weeks, last, color="0.92", zorder=0)
        ax.grid(alpha=0.3)
    ax1.text(programme_weeks / 2, 0.98, "programme", transform=ax1.get_xaxis_transform(), ha="center",
             va="top", color="0.3")
    if last > programme_weeks:
        ax1.text((programme_weeks + last) / 2, 0.98, "follow-up (support withdrawn)",
                 transform=ax1.get_xaxis_transform(), ha="center", va="top", color="0.3")
    ax2.axhline(150, color="0.5", ls=":", lw=1, label="150 min/week guideline")
    ax1.set_ylabel(f"severity, {scale} (points)")
    ax1.set_title("Symptom severity by arm (mean; band = 95% of replicate trials)")
    ax2.set_ylabel("exercise (minutes/week)")
    ax2.set_xlabel("week since randomisation")
    ax1.legend(title="arm", loc="lower left")
    ax2.legend(loc="upper right", fontsize="small")
    ax2.set_xlim(0, last)
    fig.text(0.01, 0.005, footer, fontsize=7, color="0.35", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return fig


def save(fig: Figure, path: Path) -> list[Path]:
    """Write the figure as PNG and SVG next to each other; returns the paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix(".png"), path.with_suffix(".svg")]
    fig.savefig(out[0], dpi=130)
    fig.savefig(out[1])
    plt.close(fig)
    return out
