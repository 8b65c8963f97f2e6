"""Draw a virtual trial population: correlated baseline traits (Gaussian copula), optional subgroups,
each person's responsiveness and natural course, and the traits as a trial would measure them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import special

from sim import scales
from sim.scenario import DEFAULT_TRAITS, TRAITS, Outcomes, Population, trait_bounds

# the parameter that sets each measured trait's reliability (baseline severity: the rater error instead)
RELIABILITY = {"reward_sensitivity": "measurement.reward_reliability",
               "cognitive_control": "measurement.control_reliability",
               "distress_tolerance": "measurement.other_reliability", "fitness": "measurement.other_reliability"}
RESPONSES = ("exercise", "drug", "nonspecific")


@dataclass(frozen=True)
class Cohort:
    """Baseline traits of n people, one array per trait (struct of arrays).

    Severity traits are in the scenario's scale points; `severity0` is the same baseline in internal
    HAM-D-17 points, which is what the model acts on."""

    traits: dict[str, np.ndarray]
    measured: dict[str, np.ndarray]  # each trait as measured at baseline (reliability, rater error)
    subgroup: np.ndarray  # subgroup name per person ("all" without subgroups)
    habit_rate: np.ndarray  # per-repetition habit gain
    course: np.ndarray  # standard-normal deviation of each person's partial natural improvement
    response: dict[str, np.ndarray]  # responsiveness multipliers (median 1) by RESPONSES
    episode_days: np.ndarray  # days until the current episode would end untreated
    assign_u: np.ndarray  # uniform per person: who falls in a random share of an arm
    rater_seed: int  # seed of the assessments' rater errors (the same for every arm)
    severity0: np.ndarray  # baseline severity in internal HAM-D-17 points

    @property
    def n(self) -> int:
        return len(self.subgroup)


def truncnorm_ppf(u: np.ndarray, a: float, b: float, loc: float, scale: float) -> np.ndarray:
    """Quantiles u of a normal(loc, scale) truncated to standardized bounds [a, b] (scipy.stats.truncnorm.ppf
    to ~1e-12, through the normal CDF and its inverse; from the far tail's side when both bounds are above
    the mean, so no precision is lost there)."""
    if a > 0:  # mirror into the lower tail, where the CDF keeps its precision
        return loc - scale * truncnorm_ppf(1.0 - np.asarray(u), -b, -a, 0.0, 1.0)
    pa, pb = special.ndtr(a), special.ndtr(b)
    return loc + scale * special.ndtri(pa + np.asarray(u) * (pb - pa))


def episode_length(u: np.ndarray, values: Mapping[str, float]) -> np.ndarray:
    """Days to the natural end of an episode from uniforms u (Weibull with the given median and shape)."""
    k, median = values["course.episode_shape"], values["course.episode_median_days"]
    scale = median / np.log(2.0) ** (1.0 / k)
    return scale * (-np.log1p(-np.asarray(u))) ** (1.0 / k)


def draw(pop: Population, outcomes: Outcomes, values: Mapping[str, float], rng: np.random.Generator) -> Cohort:
    """Draw pop.size people; each trait is a normal truncated to its bounds, coupled by a Gaussian copula."""
    n = pop.size
    z = rng.multivariate_normal(np.zeros(len(TRAITS)), pop.correlation_matrix(), size=n, method="cholesky")
    u = special.ndtr(z)
    groups = pop.subgroups or [None]
    shares = np.array([g.share for g in pop.subgroups]) if pop.subgroups else np.array([1.0])
    counts = np.floor(shares * n).astype(int)
    counts[np.argsort(-(shares * n - counts))[: n - counts.sum()]] += 1  # largest remainder
    label = rng.permutation(np.repeat(np.arange(len(groups)), counts))
    traits = {t: np.empty(n) for t in TRAITS}
    single = len(groups) == 1  # then whole columns, not masked copies (a million people: seconds of memory traffic)
    spread: dict[str, np.ndarray | float] = {t: 0.0 if single else np.empty(n) for t in TRAITS}
    for g_idx, group in enumerate(groups):
        rows = slice(None) if single else label == g_idx
        for k, trait in enumerate(TRAITS):
            spec = pop.trait_spec(trait, group)
            if trait == "baseline_severity" and spec is DEFAULT_TRAITS[trait]:
                # the default population is written in HAM-D-17 points: the same people on any scale
                spec = DEFAULT_TRAITS[trait]
                a, b = (spec.low - spec.mean) / spec.sd, (spec.high - spec.mean) / spec.sd
                internal = truncnorm_ppf(u[rows, k], a, b, loc=spec.mean, scale=spec.sd)
                traits[trait][rows] = scales.from_internal(outcomes.scale, internal)
                sd = np.std(traits[trait][rows]) if len(internal) > 1 else 0.0
                if single:
                    spread[trait] = sd
                else:
                    spread[trait][rows] = sd
                continue
            low, high = trait_bounds(trait, spec, outcomes.scale_max)
            a, b = (low - spec.mean) / spec.sd, (high - spec.mean) / spec.sd
            traits[trait][rows] = truncnorm_ppf(u[rows, k], a, b, loc=spec.mean, scale=spec.sd)
            if single:
                spread[trait] = spec.sd
            else:
                spread[trait][rows] = spec.sd
    names = np.array([g.name if g else "all" for g in groups], dtype=object)[label]
    rate = values["habit.rate"] * np.exp(values["habit.rate_spread"] * rng.standard_normal(n))
    course = rng.standard_normal(n)
    # responsiveness: correlated lognormal multipliers with median 1
    r = values["response.correlation"]
    corr = np.full((3, 3), r) + (1 - r) * np.eye(3)
    zr = rng.multivariate_normal(np.zeros(3), corr, size=n, method="cholesky")
    response = {name: np.exp(values[f"response.{name}_spread"] * zr[:, i]) for i, name in enumerate(RESPONSES)}
    episode_days = episode_length(rng.random(n), values)
    assign_u = rng.random(n)
    severity0 = scales.to_internal(outcomes.scale, traits["baseline_severity"])
    measured = {}
    noise = rng.standard_normal((n, len(TRAITS)))
    for k, trait in enumerate(TRAITS):
        if trait == "baseline_severity":
            seen = severity0 + values["measurement.rater_sd"] * noise[:, k]
            measured[trait] = scales.from_internal(outcomes.scale, np.clip(seen, 0.0, 52.0))
        elif trait in RELIABILITY:
            rel = values[RELIABILITY[trait]]
            measured[trait] = traits[trait] + spread[trait] * np.sqrt((1 - rel) / rel) * noise[:, k]
        else:
            measured[trait] = traits[trait].copy()
    return Cohort(traits=traits, measured=measured, subgroup=names, habit_rate=np.clip(rate, 1e-4, 0.9),
                  course=course, response=response, episode_days=episode_days, assign_u=assign_u,
                  rater_seed=int(rng.integers(2**62)), severity0=severity0)
