"""Scenario files: YAML validated with pydantic into a `Scenario`.

Every error names the file, the field path, the bad value and what is allowed (`ScenarioError`).
docs/scenarios.md documents each key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterator, Literal, get_args

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sim import parameters
from sim.vocabulary import (  # noqa: F401
    COMPARISONS,
    METRIC_ARGUMENTS,
    METRIC_NAMES,
    TRAITS,
    argument_problem,
)

TraitName = Literal["reward_sensitivity", "cognitive_control", "baseline_severity", "distress_tolerance",
                    "fitness"]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
MAX_REPLICATES = 100_000


def first_repeat(items: list) -> Any | None:
    """The first item that occurs more than once, else None (for names and ids that must be unique)."""
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


class ScenarioError(Exception):
    """A scenario file that cannot be used; the message says where and why."""

    def __init__(self, file: str | Path, field: str, value: Any, allowed: str):
        self.file, self.field, self.value, self.allowed = str(file), field, value, allowed
        where = f"{self.file}: {field}" if field else self.file
        shown = ": " if value is NO_VALUE else f": got {value!r}; "
        super().__init__(f"{where}{shown}{allowed}")


NO_VALUE = object()


def _allows_bool(annotation: Any) -> bool:
    return annotation is bool or bool in get_args(annotation)


class Strict(BaseModel):
    """Base for scenario sections: unknown keys are refused with the list of allowed ones."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if key not in cls.model_fields:
                    raise PydanticCustomError("unknown_key", "unknown key; allowed keys: {allowed}",
                                              {"key": key, "allowed": ", ".join(cls.model_fields)})
                if isinstance(value, bool) and not _allows_bool(cls.model_fields[key].annotation):
                    raise PydanticCustomError("bool_not_number", "expected a number, not true/false",
                                              {"key": key, "value": value})
        return data


# ---------------------------------------------------------------- arm components
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
    name: str = "antidepressant"
    effect: Annotated[float | None, Field(ge=0, le=0.7)] = None
    adherence: Fraction = 0.8
    continue_after: bool = False


class Contact(Strict):
    sessions_per_week: Annotated[float, Field(gt=0, le=7)] = 1.0
    weeks: Annotated[int | None, Field(ge=1, le=104)] = None


COMPONENTS = ("prescription", "titration", "support", "priming", "reward_cues", "self_management",
              "medication", "contact")


class Components(Strict):
    prescription: Prescription | None = None
    titration: Titration | None = None
    support: Support | None = None
    priming: Priming | None = None
    reward_cues: RewardCues | None = None
    self_management: SelfManagement | None = None
    medication: Medication | None = None
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
    when: dict[TraitName, TraitRange]
    add: Components


class Stage2(Strict):
    week: Annotated[int, Field(ge=1, le=104)]
    min_improvement: Annotated[float, Field(ge=0, le=1)] = 0.25
    add: Components


class Arm(Components):
    extends: str | None = None
    assign: list[AssignRule] = []
    stage2: Stage2 | None = None


# ---------------------------------------------------------------- population and outcomes
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
}


def trait_bounds(trait: str, spec: TraitSpec, scale_max: float) -> tuple[float, float]:
    """A spec's bounds; unset ones fall back to the default spec's, then to the trait's scale."""
    default = DEFAULT_TRAITS[trait]
    top = scale_max if trait == "baseline_severity" else 1.0
    low = next((v for v in (spec.low, default.low) if v is not None), 0.0)
    high = next((v for v in (spec.high, default.high) if v is not None), top)
    return max(low, 0.0), min(high, top)


class Correlation(Strict):
    between: tuple[TraitName, TraitName]
    r: Annotated[float, Field(ge=-0.95, le=0.95)]


class Subgroup(Strict):
    name: str
    share: Annotated[float, Field(gt=0, le=1)]
    traits: dict[TraitName, TraitSpec] = {}


class Population(Strict):
    size: Annotated[int, Field(ge=2, le=200_000, description="participants per arm")] = 200
    traits: dict[TraitName, TraitSpec] = {}
    correlations: list[Correlation] = [
        Correlation(between=("baseline_severity", "reward_sensitivity"), r=-0.3),
        Correlation(between=("baseline_severity", "cognitive_control"), r=-0.25),
    ]
    subgroups: list[Subgroup] = []

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


class Outcomes(Strict):
    scale: str = "HAM-D-17"
    scale_max: Annotated[float, Field(gt=0)] = 52
    remission_threshold: Annotated[float, Field(ge=0)] = 7
    response_reduction: Annotated[float, Field(gt=0, le=1)] = 0.5


CHECK_METRICS = ("dropout_rate", "adherence_rate", "effect_size", "severity_change_pct", "response_rate",
                 "remission_rate")


class MetricArgs(Strict):
    """A metric of the vocabulary with its arguments: what scenario checks, validation targets and sweep
    outcomes share."""
    metric: Literal[METRIC_NAMES]  # type: ignore[valid-type]
    arm: str | None = None
    reference: str | None = None
    week: Annotated[int | None, Field(ge=0)] = None
    x: str | None = None
    y: str | None = None
    level: Annotated[float | None, Field(gt=0, le=1)] = None
    remitted_at: Annotated[int | None, Field(ge=0)] = None
    minutes: Annotated[float | None, Field(ge=0)] = None
    window_weeks: Annotated[int | None, Field(ge=1)] = None
    subgroup: str | None = None

    # arguments that may be left out because the caller fills them in (checks: the scenario's reference arm)
    filled_in: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _arguments_fit(self) -> "MetricArgs":
        if problem := argument_problem(self.metric, self.arguments(), optional=self.filled_in):
            raise ValueError(problem)
        return self

    def arguments(self) -> dict:
        """The metric's arguments set here."""
        return {k: getattr(self, k) for k in METRIC_ARGUMENTS if getattr(self, k) is not None}


class MetricCall(MetricArgs):
    """A metric call with an acceptance band (scenario checks and validation targets)."""
    accept: tuple[float, float]

    @model_validator(mode="after")
    def _band(self) -> "MetricCall":
        if self.accept[0] > self.accept[1]:
            raise ValueError(f"accept must be [low, high], got [{self.accept[0]:g}, {self.accept[1]:g}]")
        return self


class Check(MetricCall):
    id: str
    source: str = ""
    filled_in: ClassVar[tuple[str, ...]] = ("reference",)


class Scenario(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=80)]
    description: str = ""
    seed: Annotated[int, Field(ge=0)]
    replicates: Annotated[int, Field(ge=1, le=MAX_REPLICATES)] = 10
    weeks: Annotated[int, Field(ge=1, le=104)]
    follow_up_weeks: Annotated[int, Field(ge=0, le=156)] = 0
    population: Population = Population()
    outcomes: Outcomes = Outcomes()
    arms: Annotated[dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")], Arm], Field(min_length=1)]
    reference_arm: str | None = None
    parameters: dict[str, StrictFloat | StrictInt] = {}
    checks: list[Check] = []

    @property
    def days(self) -> int:
        return 7 * (self.weeks + self.follow_up_weeks)

    @property
    def reference(self) -> str:
        return self.reference_arm or next(iter(self.arms))


class LoadedScenario(BaseModel):
    """A validated scenario with the text and hash of the file it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    scenario: Scenario
    path: str
    text: str
    sha256: str
    arms: dict[str, Components]  # each arm with `extends` resolved


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after", "function-before"))


def error_from_pydantic(file: str | Path, data: Any, exc: ValidationError) -> ScenarioError:
    """The first validation error as a ScenarioError naming the field path and the bad value."""
    err = exc.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return ScenarioError(file, _loc(tuple(err["loc"])), NO_VALUE, "required key is missing")
    ctx = err.get("ctx") or {}
    # point at the key itself when the error is about one key of a mapping
    loc, value = _walk(data, (*err["loc"], ctx["key"]) if "key" in ctx else err["loc"])
    return ScenarioError(file, _loc(loc) or "(top level)", NO_VALUE if err["type"] == "unknown_key" else value, msg)


def _walk(data: Any, loc: tuple) -> tuple[tuple, Any]:
    """Follow a pydantic error location through the data, skipping the parts that are not in it
    (union members, validator tags); returns the path that exists and the value at its end."""
    path = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, (list, tuple)) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            continue
        path.append(part)
    return tuple(path), data


def _semantic_checks(s: Scenario) -> None:
    """Cross-field rules pydantic cannot express per field; raise (field, value, allowed)."""
    arm_names = list(s.arms)
    if s.reference_arm is not None and s.reference_arm not in s.arms:
        raise _Bad("reference_arm", s.reference_arm, f"must be one of the arms: {', '.join(arm_names)}")
    for name, arm in s.arms.items():
        if arm.extends is not None and arm.extends not in s.arms:
            raise _Bad(f"arms.{name}.extends", arm.extends, f"must name another arm: {', '.join(arm_names)}")
        if arm.stage2 is not None and arm.stage2.week > s.weeks:
            raise _Bad(f"arms.{name}.stage2.week", arm.stage2.week, f"must fall in the programme (1-{s.weeks})")
    if (dup := first_repeat([c.id for c in s.checks])) is not None:
        raise _Bad("checks", dup, "check ids must be unique")
    for i, c in enumerate(s.checks):
        if problem := metric_call_problem(c, s, s.reference):
            key, value, allowed = problem
            raise _Bad(f"checks.{i}.{key}", value, allowed)
    for path, comp in _all_components(s):
        for key in ("support", "reward_cues"):
            c = getattr(comp, key)
            window = (c.weeks if c is not None and c.weeks is not None else s.weeks)
            if c is not None and c.fade_weeks > window:
                raise _Bad(f"{path}.{key}.fade_weeks", c.fade_weeks,
                           f"the fade happens within the {key} window of {window} weeks (its 'weeks', else the "
                           f"programme's): must be 0-{window}")
    pop = s.population
    where = [("population.traits", None, pop.traits)] + [
        (f"population.subgroups.{i}.traits", g, g.traits) for i, g in enumerate(pop.subgroups)]
    for path, group, traits in where:
        for trait in TRAITS:
            spec = pop.trait_spec(trait, group)
            low, high = trait_bounds(trait, spec, s.outcomes.scale_max)
            if low >= high:
                raise _Bad(f"{path}.{trait}", {"low": spec.low, "high": spec.high},
                           f"with the defaults and the scale filled in, the bounds are {low:g} to {high:g}: "
                           "low must be below high (set both)")
            if not low <= spec.mean <= high:
                raise _Bad(f"{path}.{trait}.mean", spec.mean, f"must lie within the trait's bounds, {low:g} to "
                           f"{high:g} (set low/high to change them)")
    try:
        parameters.resolve(s.parameters)
    except parameters.ParameterError as e:
        raise _Bad(f"parameters.{e.name}", e.value, e.allowed) from None


def metric_call_problem(call: MetricArgs, s: Scenario, default_reference: str | None = None
                        ) -> tuple[str, Any, str] | None:
    """Why a check's or target's arguments do not fit scenario `s` (the key, its value, what is allowed),
    else None: arms must exist, weeks must fall in the run, and a comparison needs two different arms."""
    arm_names = ", ".join(s.arms)
    for key in ("arm", "reference"):
        val = getattr(call, key)
        if val is not None and val != "all" and val not in s.arms:
            return key, val, f"not an arm of {s.name}; arms: {arm_names} (or 'all' to pool them)"
    groups = [g.name for g in s.population.subgroups]
    if call.subgroup is not None and call.subgroup not in groups:
        return "subgroup", call.subgroup, (f"not a subgroup of {s.name}'s population; subgroups: {', '.join(groups)}"
                                           if groups else f"{s.name}'s population has no subgroups")
    for key in ("week", "remitted_at"):
        val = getattr(call, key)
        if val is not None and val > s.weeks + s.follow_up_weeks:
            return key, val, f"must be 0-{s.weeks + s.follow_up_weeks} (the weeks {s.name} runs)"
    if call.metric in COMPARISONS:
        reference = call.reference or default_reference
        for key, val in (("arm", call.arm), ("reference", reference)):
            if val == "all":
                return key, val, f"{call.metric} compares two arms, so it needs a named arm: {arm_names}"
        if call.arm == reference:
            return "arm", call.arm, f"{call.metric} compares the arm with a different reference arm"
    return None



def _all_components(s: Scenario) -> Iterator[tuple[str, Components]]:
    """Every set of components in the arms, with its field path: the arm's own, assign rules', stage 2's."""
    for name, arm in s.arms.items():
        yield f"arms.{name}", arm
        for i, rule in enumerate(arm.assign):
            yield f"arms.{name}.assign.{i}.add", rule.add
        if arm.stage2 is not None:
            yield f"arms.{name}.stage2.add", arm.stage2.add


class _Bad(Exception):
    def __init__(self, field: str, value: Any, allowed: str):
        self.args_ = (field, value, allowed)


def _sessions_needed(s: Scenario, arms: dict[str, Components]) -> None:
    """Titration, support, priming and cues act on sessions: the arm must prescribe some (and titration
    must build up to it)."""
    for name, arm in arms.items():
        t, p = arm.titration, arm.prescription
        if t is not None and p is not None:
            if t.start_minutes > p.minutes:
                raise _Bad(f"arms.{name}.titration.start_minutes", t.start_minutes,
                           f"titration builds up to the prescription, so it starts at most at its {p.minutes:g} "
                           "minutes")
            if t.start_intensity is not None and t.start_intensity > p.intensity:
                raise _Bad(f"arms.{name}.titration.start_intensity", t.start_intensity,
                           f"titration builds up to the prescription, so it starts at most at its intensity "
                           f"{p.intensity:g}")
        if arm.prescription is not None or any(r.add.prescription for r in s.arms[name].assign):
            continue
        for comp in ("titration", "support", "priming", "reward_cues"):
            if getattr(arm, comp) is not None:
                raise _Bad(f"arms.{name}.{comp}", NO_VALUE, "acts on exercise sessions, so the arm needs a "
                           "prescription (its own, through extends, or from an assign rule)")


def _resolve_extends(s: Scenario) -> dict[str, Components]:
    resolved: dict[str, Components] = {}

    def get(name: str, chain: tuple[str, ...]) -> Components:
        if name in chain:
            raise _Bad(f"arms.{name}.extends", s.arms[name].extends,
                       f"arms extend each other in a cycle ({' -> '.join(chain + (name,))})")
        if name not in resolved:
            arm = s.arms[name]
            own = Components(**{k: getattr(arm, k) for k in COMPONENTS})
            resolved[name] = get(arm.extends, chain + (name,)).merged(own) if arm.extends else own
        return resolved[name]

    for name in s.arms:
        get(name, ())
    return resolved


def parse(data: Any, file: str | Path = "<scenario>") -> tuple[Scenario, dict[str, Components]]:
    """Validate already-parsed YAML data into a Scenario and its resolved arms."""
    if data is None:
        raise ScenarioError(file, "", NO_VALUE, "the file is empty; a scenario needs at least name, seed, weeks "
                            "and arms")
    if not isinstance(data, dict):
        raise ScenarioError(file, "", type(data).__name__, "the file must hold a mapping of keys (name, seed, ...)")
    try:
        s = Scenario.model_validate(data)
    except ValidationError as e:
        raise error_from_pydantic(file, data, e) from None
    try:
        _semantic_checks(s)
        arms = _resolve_extends(s)
        _sessions_needed(s, arms)
    except _Bad as b:
        raise ScenarioError(file, *b.args_) from None
    return s, arms


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses a key repeated in one mapping (plain YAML keeps the last silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first[key].line + 1}); each key may "
                    "appear once in a mapping", key_node.start_mark)
            first[key] = key_node.start_mark
        except TypeError:  # an unhashable key: SafeLoader refuses it itself
            pass
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | Path, what: str = "file") -> tuple[str, Any]:
    """The text of a YAML file and its data; a ScenarioError for a missing, unreadable or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(path, "", NO_VALUE, f"{what} not found") from None
    except IsADirectoryError:
        raise ScenarioError(path, "", NO_VALUE, f"is a folder, not a {what}") from None
    except UnicodeDecodeError as e:
        raise ScenarioError(path, "", NO_VALUE, f"not UTF-8 text (byte {e.start}); save the {what} as UTF-8") from None
    except OSError as e:
        raise ScenarioError(path, "", NO_VALUE, f"cannot read the {what} ({e.strerror or e})") from None
    try:
        return text, yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ScenarioError(path, where, NO_VALUE, f"malformed YAML: {problem}") from None


def load(path: str | Path) -> LoadedScenario:
    """Read, parse and validate one scenario file."""
    path = Path(path)
    text, data = read_yaml(path, "scenario file")
    scenario, arms = parse(data, path)
    return LoadedScenario(scenario=scenario, path=str(path), text=text,
                          sha256=hashlib.sha256(text.encode()).hexdigest(), arms=arms)
