"""The metric vocabulary's names and arguments: what scenario checks, validation targets and sweep
outcomes may ask for, known on the bottom floor so that inputs can be checked without the analysis.

sim.analysis.metrics defines each metric as a function with exactly these arguments (it refuses to
import otherwise); docs/metrics.md states each definition.
"""

from __future__ import annotations

from types import MappingProxyType

TRAITS = ("reward_sensitivity", "cognitive_control", "baseline_severity", "distress_tolerance", "fitness")

# shares of each person's own habit plateau whose first day is recorded (days to habit)
HABIT_LEVELS = (0.5, 0.8, 0.9, 0.95)

# metric name -> (required arguments, optional arguments), in the order the function takes them
SIGNATURES = MappingProxyType({
    "dropout_rate": (("arm", "week"), ()),
    "dropout_difference": (("arm", "reference", "week"), ()),
    "adherence_rate": (("arm",), ()),
    "mean_weekly_minutes": (("arm", "week"), ("window_weeks",)),
    "meets_guideline_rate": (("arm", "week"), ("window_weeks", "minutes")),
    "severity_change_pct": (("arm", "week"), ()),
    "response_rate": (("arm", "week"), ()),
    "remission_rate": (("arm", "week"), ()),
    "relapse_rate": (("arm", "remitted_at", "week"), ()),
    "effect_size": (("arm", "reference", "week"), ()),
    "subgroup_effect_size": (("arm", "reference", "week", "subgroup"), ()),
    "odds_ratio_depressed_by_activity": (("arm", "week"), ("minutes", "window_weeks")),
    "association": (("arm", "x", "y"), ("week",)),
    "median_days_to_habit": (("arm",), ("level",)),
})
METRIC_NAMES = tuple(SIGNATURES)
# what each metric's values are measured in (axis labels)
METRIC_UNITS = MappingProxyType({
    "dropout_rate": "share dropped out, 0-1", "dropout_difference": "difference in share dropped out",
    "adherence_rate": "share of sessions done, 0-1", "mean_weekly_minutes": "minutes/week",
    "meets_guideline_rate": "share, 0-1", "severity_change_pct": "% change from baseline",
    "response_rate": "share, 0-1", "remission_rate": "share, 0-1", "relapse_rate": "share of remitters, 0-1",
    "effect_size": "Hedges g", "subgroup_effect_size": "Hedges g within the subgroup",
    "odds_ratio_depressed_by_activity": "odds ratio", "association": "Spearman rho", "median_days_to_habit": "days",
})
assert set(METRIC_UNITS) == set(SIGNATURES), "every metric needs its unit"
METRIC_ARGUMENTS = ("arm", "reference", "week", "x", "y", "level", "remitted_at", "minutes", "window_weeks",
                    "subgroup")

# Metrics that compare an arm with a reference arm (and so cannot pool arms).
COMPARISONS = ("effect_size", "dropout_difference", "subgroup_effect_size")

# Metrics that read the per-participant weekly panel (`--record participants-weekly`).
NEEDS_PANEL = frozenset({"meets_guideline_rate", "relapse_rate", "odds_ratio_depressed_by_activity"})

# Per-participant quantities that `association` correlates (defined in sim.analysis.metrics).
PER_PARTICIPANT_NAMES = (
    "dropped_out", "adherence", "programme_minutes", "follow_up_minutes", "severity_change_end_programme",
    "severity_change_end", "severity_change_follow_up", "cognitive_control_gain", "reward_sensitivity_gain",
    "self_efficacy_end_programme", "habit_end_programme", *TRAITS,
)


def argument_problem(metric: str, given: dict, optional: tuple[str, ...] = ()) -> str | None:
    """Why `given` are not the arguments `metric` takes (unknown metric, unused or missing ones), else None;
    arguments named in `optional` may be missing."""
    if metric not in SIGNATURES:
        return f"unknown metric {metric!r}; allowed: {', '.join(SIGNATURES)}"
    required, extra_ok = SIGNATURES[metric]
    takes = [*required, *extra_ok]
    if extra := set(given) - set(takes):
        return f"{metric} does not take {', '.join(sorted(extra))}; it takes {', '.join(takes)}"
    missing = [k for k in required if k not in given and k not in optional]
    if missing:
        return f"{metric} needs {', '.join(missing)}"
    for key in ("x", "y"):
        if key in given and given[key] not in PER_PARTICIPANT_NAMES:
            return (f"{key} {given[key]!r} is not a per-participant quantity; allowed: "
                    f"{', '.join(PER_PARTICIPANT_NAMES)}")
    if metric == "median_days_to_habit" and "level" in given and given["level"] not in HABIT_LEVELS:
        return f"level {given['level']!r} is not recorded; recorded levels: {', '.join(map(str, HABIT_LEVELS))}"
    return None
