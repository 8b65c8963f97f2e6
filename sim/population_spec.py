"""Population specs of the scenario language: trait distributions, correlations and subgroups."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from sim.schema import Name, Strict, TraitName, TraitPair, first_repeat
from sim.vocabulary import TRAITS


class TraitSpec(Strict):
    mean: float
    sd: Annotated[float, Field(gt=0)]
    low: float | None = None  # unset: the default spec's bound, else the scale's
    high: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "TraitSpec":
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        return self


DEFAULT_TRAITS = {
    "reward_sensitivity": TraitSpec(mean=0.45, sd=0.18),
    "cognitive_control": TraitSpec(mean=0.5, sd=0.18),
    "baseline_severity": TraitSpec(mean=19.0, sd=4.0, low=14.0, high=35.0),
    "distress_tolerance": TraitSpec(mean=0.5, sd=0.18),
    "fitness": TraitSpec(mean=0.4, sd=0.15),
    "age": TraitSpec(mean=45.0, sd=12.0, low=18.0, high=90.0),
}
TRAIT_TOP = {"baseline_severity": None, "age": 110.0}  # upper scale of a trait (None: the severity scale)


def trait_bounds(trait: str, spec: TraitSpec, scale_max: float) -> tuple[float, float]:
    """A spec's bounds; unset ones fall back to the default spec's, then to the trait's scale."""
    default = DEFAULT_TRAITS[trait]
    top = TRAIT_TOP.get(trait, 1.0) or scale_max
    low = next((v for v in (spec.low, default.low) if v is not None), 0.0)
    high = next((v for v in (spec.high, default.high) if v is not None), top)
    return max(low, 0.0), min(high, top)


class Correlation(Strict):
    between: TraitPair
    r: Annotated[float, Field(ge=-0.95, le=0.95)]


class Subgroup(Strict):
    name: Name
    share: Annotated[float, Field(gt=0, le=1)]
    traits: dict[TraitName, TraitSpec] = {}


class Population(Strict):
    size: Annotated[int, Field(ge=2, le=200_000, description="participants per arm")] = 200
    traits: dict[TraitName, TraitSpec] = {}
    correlations: list[Correlation] = [
        Correlation(between=("baseline_severity", "reward_sensitivity"), r=-0.3),
        Correlation(between=("baseline_severity", "cognitive_control"), r=-0.25),
    ]
    subgroups: Annotated[list[Subgroup], Field(max_length=50)] = []

    @model_validator(mode="after")
    def _shares(self) -> "Population":
        names = [s.name for s in self.subgroups]
        if first_repeat(names) is not None:
            raise ValueError(f"subgroup names must be unique, got {names}")
        total = sum(s.share for s in self.subgroups)
        if self.subgroups and abs(total - 1.0) > 1e-6:
            raise ValueError(f"subgroup shares must sum to 1, they sum to {total:g}")
        return self

    def correlation_matrix(self) -> np.ndarray:
        """The trait correlation matrix (traits in TRAITS order)."""
        corr = np.eye(len(TRAITS))
        for c in self.correlations:
            i, j = TRAITS.index(c.between[0]), TRAITS.index(c.between[1])
            corr[i, j] = corr[j, i] = c.r
        return corr

    @model_validator(mode="after")
    def _positive_definite(self) -> "Population":
        if np.linalg.eigvalsh(self.correlation_matrix()).min() <= 1e-9:
            raise ValueError("the correlations are not jointly possible (the matrix is not positive definite)")
        for i, c in enumerate(self.correlations):
            if c.between[0] == c.between[1]:
                raise ValueError(f"correlation {i} pairs {c.between[0]} with itself")
        return self

    def trait_spec(self, trait: str, subgroup: Subgroup | None = None) -> TraitSpec:
        """The spec of one trait, with a subgroup's override if it has one."""
        if subgroup is not None and trait in subgroup.traits:
            return subgroup.traits[trait]
        return self.traits.get(trait, DEFAULT_TRAITS[trait])

