"""Draw a virtual trial population: correlated baseline traits (Gaussian copula), optional subgroups."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from sim.scenario import TRAITS, Outcomes, Population, trait_bounds


@dataclass(frozen=True)
class Cohort:
    """Baseline traits of n people, one array per trait (struct of arrays)."""

    traits: dict[str, np.ndarray]
    subgroup: np.ndarray  # subgroup name per person ("all" without subgroups)
    habit_rate: np.ndarray  # per-repetition habit gain
    order: np.ndarray  # random permutation used to form partner pairs and classes
    course: np.ndarray  # standard-normal deviation of each person's natural course

    @property
    def n(self) -> int:
        return len(self.subgroup)


def draw(pop: Population, outcomes: Outcomes, habit_rate: float, habit_spread: float,
         rng: np.random.Generator) -> Cohort:
    """Draw pop.size people; each trait is a normal truncated to its bounds, coupled by a Gaussian copula."""
    n = pop.size
    z = rng.multivariate_normal(np.zeros(len(TRAITS)), pop.correlation_matrix(), size=n, method="cholesky")
    u = stats.norm.cdf(z)
    groups = pop.subgroups or [None]
    shares = np.array([g.share for g in pop.subgroups]) if pop.subgroups else np.array([1.0])
    counts = np.floor(shares * n).astype(int)
    counts[np.argsort(-(shares * n - counts))[: n - counts.sum()]] += 1  # largest remainder
    label = rng.permutation(np.repeat(np.arange(len(groups)), counts))
    traits = {t: np.empty(n) for t in TRAITS}
    for g_idx, group in enumerate(groups):
        rows = label == g_idx
        for k, trait in enumerate(TRAITS):
            spec = pop.trait_spec(trait, group)
            low, high = trait_bounds(trait, spec, outcomes.scale_max)
            a, b = (low - spec.mean) / spec.sd, (high - spec.mean) / spec.sd
            traits[trait][rows] = stats.truncnorm.ppf(u[rows, k], a, b, loc=spec.mean, scale=spec.sd)
    names = np.array([g.name if g else "all" for g in groups], dtype=object)[label]
    rate = habit_rate * np.exp(habit_spread * rng.standard_normal(n))
    return Cohort(traits=traits, subgroup=names, habit_rate=np.clip(rate, 1e-4, 0.9),
                  order=rng.permutation(n), course=rng.standard_normal(n))
