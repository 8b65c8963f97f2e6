"""Arm components of the scenario language: what an arm gives its participants, to whom, and when."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from sim.schema import Fraction, Name, Strict, TraitName


class Prescription(Strict):
    sessions_per_week: Annotated[int, Field(ge=1, le=7)] = 3
    minutes: Annotated[float, Field(ge=5, le=180)] = 50
    intensity: Annotated[float, Field(ge=0.1, le=1.0, description="fraction of heart-rate reserve")] = 0.6
    modality: Literal["aerobic", "resistance", "mixed", "flexibility", "yoga"] = "aerobic"


class Titration(Strict):
    start_minutes: Annotated[float, Field(ge=1, le=60)] = 10
    start_intensity: Annotated[float | None, Field(ge=0.1, le=1.0)] = None
    weeks: Annotated[int, Field(ge=1, le=52)] = 6


class Support(Strict):
    kind: Literal["class", "partner"] = "class"
    level: Fraction = 0.8
    weeks: Annotated[int | None, Field(ge=1, le=104)] = None
    fade_weeks: Annotated[int, Field(ge=0, le=52)] = 0
    class_size: Annotated[int, Field(ge=2, le=50)] = 8


class Priming(Strict):
    strength: Annotated[float, Field(ge=0, le=3)] = 1.0
    weeks: Annotated[int | None, Field(ge=1, le=104)] = None


class RewardCues(Strict):
    value: Annotated[float, Field(ge=0, le=2)] = 0.4
    streak_bonus: Annotated[float, Field(ge=0, le=1)] = 0.5
    weeks: Annotated[int | None, Field(ge=1, le=104)] = None
    fade_weeks: Annotated[int, Field(ge=0, le=52)] = 0


class SelfManagement(Strict):
    weeks: Annotated[int, Field(ge=1, le=52)] = 8
    skill: Annotated[float, Field(ge=0, le=0.6, description="cognitive control gained by the end")] = 0.15


class Medication(Strict):
    name: Name = "antidepressant"
    effect: Annotated[float | None, Field(ge=0, le=0.7)] = None
    adherence: Fraction = 0.8
    continue_after: bool = False


class Placebo(Strict):
    """A pill with no drug in it: its expectancy effect, visits aside (contact is a separate component)."""
    name: Name = "placebo"
    adherence: Fraction = 0.8
    continue_after: bool = False


class Contact(Strict):
    sessions_per_week: Annotated[float, Field(gt=0, le=7)] = 1.0
    weeks: Annotated[int | None, Field(ge=1, le=104)] = None


COMPONENTS = ("prescription", "titration", "support", "priming", "reward_cues", "self_management",
              "medication", "placebo", "contact")


class Components(Strict):
    prescription: Prescription | None = None
    titration: Titration | None = None
    support: Support | None = None
    priming: Priming | None = None
    reward_cues: RewardCues | None = None
    self_management: SelfManagement | None = None
    medication: Medication | None = None
    placebo: Placebo | None = None
    contact: Contact | None = None

    def merged(self, other: "Components") -> "Components":
        """Components of self with those set in other replacing them."""
        return Components(**{k: getattr(other, k) or getattr(self, k) for k in COMPONENTS})


class TraitRange(Strict):
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> "TraitRange":
        if self.below is None and self.above is None:
            raise ValueError("give 'below', 'above' or both")
        if self.below is not None and self.above is not None and self.below <= self.above:
            raise ValueError(f"no value is both below {self.below:g} and above {self.above:g}: 'below' must be "
                             "greater than 'above'")
        return self


class AssignRule(Strict):
    """Components for the participants whose measured baseline traits fall in `when`, or for a random
    `share` of the arm (both: a random share of those who match)."""
    when: dict[TraitName, TraitRange] = {}
    share: Annotated[float | None, Field(gt=0, le=1)] = None
    add: Components

    @model_validator(mode="after")
    def _some_rule(self) -> "AssignRule":
        if not self.when and self.share is None:
            raise ValueError("give 'when' (trait ranges), 'share' (a random share of the arm) or both")
        return self


class Stage2(Strict):
    week: Annotated[int, Field(ge=1, le=104)]
    min_improvement: Annotated[float, Field(ge=0, le=1)] = 0.25
    add: Components


class Arm(Components):
    extends: str | None = None
    assign: list[AssignRule] = []
    stage2: Stage2 | None = None
    follow_up: Components | None = None  # components that start when the programme ends


