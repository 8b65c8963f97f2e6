"""The metric vocabulary's names and arguments: what scenario checks, validation targets and sweep
outcomes may ask for, known on the bottom floor so that inputs can be checked without the analysis.

sim.analysis.metrics defines each metric as a function with exactly these arguments (it refuses to
import otherwise); docs/metrics.md states each definition.
"""

from __future__ import annotations

from types import MappingProxyType

TRAITS = ("reward_sensitivity", "cognitive_control", "baseline_severity", "distress_tolerance", "fitness", "age")

# minutes of exercise a week that meet the physical-activity guideline (WHO 2020: 150 moderate)
GUIDELINE_MINUTES = 150.0

# shares of each person's own habit plateau whose first day is recorded (days to habit)
HABIT_LEVELS = (0.5, 0.8, 0.9, 0.95)

# metric name -> (required arguments, optional arguments), in the order the function takes them
SIGNATURES = MappingProxyType({
    "dropout_rate": (("arm", "week"), ()),
    "dropout_difference": (("arm", "reference", "week"), ()),
    "adherence_rate": (("arm",), ()),
    "mean_weekly_minutes": (("arm", "week"), ("window_weeks",)),
    "meets_guideline_rate": (("arm", "week"), ("window_weeks", "minutes")),
    "severity_change_pct": (("arm", "week"), ("analysis",)),
    "response_rate": (("arm", "week"), ("analysis",)),
    "remission_rate": (("arm", "week"), ("analysis",)),
    "relapse_rate": (("arm", "remitted_at", "week"), ("analysis",)),
    "effect_size": (("arm", "reference", "week"), ("analysis",)),
    "change_sd": (("arm", "week"), ("analysis",)),
    "exercising_rate": (("arm", "week", "sessions_per_week"), ("window_weeks",)),
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
    "change_sd": "SD of change from baseline, scale points", "exercising_rate": "share, 0-1",
})
assert set(METRIC_UNITS) == set(SIGNATURES), "every metric needs its unit"
METRIC_ARGUMENTS = ("arm", "reference", "week", "x", "y", "level", "remitted_at", "minutes", "window_weeks",
                    "subgroup", "sessions_per_week", "analysis")

# Metrics that compare an arm with a reference arm (and so cannot pool arms).
COMPARISONS = ("effect_size", "dropout_difference", "subgroup_effect_size")

# Metrics that read the per-participant weekly panel (`--record participants-weekly`); relapse_rate reads it
# only with analysis "true" (see needs_panel), and is listed so that a bare name errs on the safe side.
NEEDS_PANEL = frozenset({"meets_guideline_rate", "relapse_rate", "odds_ratio_depressed_by_activity",
                         "exercising_rate"})

# How a metric on people's severity treats what the trial cannot see (docs/metrics.md, "Analyses").
ANALYSES = MappingProxyType({
    "true": "true state: the simulated severity of every randomised participant",
    "observed": "assessed, observed cases: the scores of those assessed at that week",
    "locf": "assessed, intention to treat: last observation (at or before the week) carried forward",
    "mmrm": "assessed, intention to treat: mixed model for repeated measures (random intercept per participant)",
})
DEFAULT_ANALYSIS = "locf"  # trials report intention to treat with an imputation
MMRM_METRICS = ("severity_change_pct", "effect_size")  # the metrics a mixed model estimates


def analysis_of(metric: str, given: dict) -> str | None:
    """The analysis a metric call uses (its `analysis`, else the default), None if the metric takes none."""
    if "analysis" not in SIGNATURES[metric][1]:
        return None
    return given.get("analysis") or DEFAULT_ANALYSIS


def needs_panel(metric: str, given: dict) -> bool:
    """Whether this call reads the weekly panel: always for some metrics, with the true state for relapse."""
    if metric == "relapse_rate":
        return analysis_of(metric, given) == "true"
    return metric in NEEDS_PANEL


def pooled_arms(arm: str) -> tuple[str, ...]:
    """The arm names an `arm` argument stands for: one arm, or several joined by '+' ('all' stays itself)."""
    return tuple(a.strip() for a in arm.split("+"))

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
    if "analysis" in given:
        if given["analysis"] not in ANALYSES:
            return f"analysis {given['analysis']!r} is not one of {', '.join(ANALYSES)}"
        if given["analysis"] == "mmrm" and metric not in MMRM_METRICS:
            return f"analysis 'mmrm' is for {' and '.join(MMRM_METRICS)}; {metric} takes true, observed or locf"
    for key in ("arm", "reference"):
        if isinstance(given.get(key), str) and "+" in given[key]:
            names = pooled_arms(given[key])
            if "" in names or "all" in names or len(set(names)) < len(names):
                return f"{key} {given[key]!r}: pool arms as distinct arm names joined by '+', e.g. 'a+b'"
    arm, ref = given.get("arm"), given.get("reference")
    if isinstance(arm, str) and isinstance(ref, str) and ("+" in arm or "+" in ref) and \
            set(pooled_arms(arm)) & set(pooled_arms(ref)):
        return f"arm {arm!r} and reference {ref!r} share an arm; compare different arms"
    if metric == "median_days_to_habit" and "level" in given and given["level"] not in HABIT_LEVELS:
        return f"level {given['level']!r} is not recorded; recorded levels: {', '.join(map(str, HABIT_LEVELS))}"
    return None
