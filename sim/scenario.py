"""Scenario files: YAML validated with pydantic into a `Scenario`.

Every error names the file, the field path, the bad value and what is allowed (`ScenarioError`).
The sections live in sim/schema.py (base), sim/components.py (arms) and sim/population_spec.py;
this module adds outcomes, checks, the cross-field rules and loading. docs/scenarios.md documents each key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterator, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)

from sim import parameters, scales
from sim.components import (  # noqa: F401 - the scenario language, re-exported
    COMPONENTS,
    Arm,
    AssignRule,
    Components,
    Contact,
    Medication,
    Placebo,
    Prescription,
    Priming,
    RewardCues,
    SelfManagement,
    Stage2,
    Support,
    Titration,
    TraitRange,
)
from sim.population_spec import (  # noqa: F401
    DEFAULT_TRAITS,
    TRAIT_TOP,
    Correlation,
    Population,
    Subgroup,
    TraitSpec,
    trait_bounds,
)
from sim.schema import (  # noqa: F401
    MAX_ARMS,
    MAX_EXTENDS,
    MAX_NAME,
    MAX_REPLICATES,
    MAX_SEED,
    NO_VALUE,
    FloatPair,
    Fraction,
    Name,
    ScenarioError,
    Strict,
    Text,
    TraitName,
    first_repeat,
    read_yaml,
)
from sim.vocabulary import (  # noqa: F401
    COMPARISONS,
    METRIC_ARGUMENTS,
    METRIC_NAMES,
    TRAITS,
    analysis_of,
    argument_problem,
)


class Outcomes(Strict):
    """What the trial measures and how: the reporting scale, definitions, and the assessment schedule."""
    scale: Literal[tuple(scales.SCALES)] = "HAM-D-17"  # type: ignore[valid-type]
    remission_threshold: Annotated[float | None, Field(ge=0)] = None  # None: the scale's usual cut-off
    response_reduction: Annotated[float, Field(gt=0, le=1)] = 0.5
    assessment_weeks: list[Annotated[int, Field(ge=0)]] | None = None  # None: every week
    relapse_assessments: Annotated[int, Field(ge=1, le=10)] = 1  # consecutive assessments above the threshold

    @property
    def scale_max(self) -> float:
        return scales.scale(self.scale).max

    @property
    def remission_at(self) -> float:
        """The remission threshold in scale points (the scale's usual one unless set)."""
        return scales.scale(self.scale).remission if self.remission_threshold is None else self.remission_threshold

    def assessments(self, last_week: int) -> tuple[int, ...]:
        """The weeks assessed, baseline included, within a run of `last_week` weeks."""
        weeks = range(last_week + 1) if self.assessment_weeks is None else self.assessment_weeks
        return tuple(sorted({0, *(w for w in weeks if w <= last_week)}))

    @model_validator(mode="after")
    def _threshold_on_scale(self) -> "Outcomes":
        top = scales.scale(self.scale).max
        if self.remission_threshold is not None and self.remission_threshold > top:
            raise ValueError(f"remission_threshold {self.remission_threshold:g} is above the top of {self.scale} "
                             f"(0-{top:g})")
        if self.assessment_weeks is not None and first_repeat(self.assessment_weeks) is not None:
            raise ValueError(f"assessment_weeks repeats week {first_repeat(self.assessment_weeks)}")
        return self


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
    sessions_per_week: Annotated[float | None, Field(ge=0, le=7)] = None
    analysis: Literal["true", "observed", "locf", "mmrm"] | None = None

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
    accept: FloatPair

    @model_validator(mode="after")
    def _band(self) -> "MetricCall":
        if self.accept[0] > self.accept[1]:
            raise ValueError(f"accept must be [low, high], got [{self.accept[0]:g}, {self.accept[1]:g}]")
        return self


class Check(MetricCall):
    id: Name
    source: Text = ""
    filled_in: ClassVar[tuple[str, ...]] = ("reference",)


class Scenario(Strict):
    name: Name
    description: Text = ""
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    replicates: Annotated[int, Field(ge=1, le=MAX_REPLICATES)] = 10
    weeks: Annotated[int, Field(ge=1, le=104)]
    follow_up_weeks: Annotated[int, Field(ge=0, le=156)] = 0
    population: Population = Population()
    outcomes: Outcomes = Outcomes()
    arms: Annotated[dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$", max_length=MAX_NAME)], Arm],
                    Field(min_length=1, max_length=MAX_ARMS)]
    reference_arm: str | None = None
    parameters: dict[str, StrictFloat | StrictInt] = {}
    checks: Annotated[list[Check], Field(max_length=200)] = []

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
    if err["type"] in ("int_type", "float_type", "bool_type") and isinstance(value, str):
        msg += (" (this is text: write numbers unquoted, and true or false for yes/no; YAML 1.1 forms such as "
                "1:30, 1_000 or on are text here)")
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
        if arm.follow_up is not None and s.follow_up_weeks == 0:
            raise _Bad(f"arms.{name}.follow_up", NO_VALUE, "starts when the programme ends, so the scenario needs "
                       "follow_up_weeks (above 0)")
    last = s.weeks + s.follow_up_weeks
    for w in s.outcomes.assessment_weeks or []:
        if w > last:
            raise _Bad("outcomes.assessment_weeks", w, f"assessments fall within the run: weeks 0-{last}")
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
        if val is not None and val != "all" and not all(part in s.arms for part in val.split("+")):
            return key, val, (f"not an arm of {s.name}; arms: {arm_names} (or 'all', or names joined by '+', "
                              "to pool them)")
    groups = [g.name for g in s.population.subgroups]
    if call.subgroup is not None and call.subgroup not in groups:
        return "subgroup", call.subgroup, (f"not a subgroup of {s.name}'s population; subgroups: {', '.join(groups)}"
                                           if groups else f"{s.name}'s population has no subgroups")
    last = s.weeks + s.follow_up_weeks
    assessed = s.outcomes.assessments(last)
    analysis = analysis_of(call.metric, call.arguments())
    for key in ("week", "remitted_at"):
        val = getattr(call, key)
        if val is not None and val > last:
            return key, val, f"must be 0-{last} (the weeks {s.name} runs)"
        if val is not None and analysis not in (None, "true") and val not in assessed:
            return key, val, (f"the {analysis} analysis reads assessments, and week {val} is not assessed in {s.name}; "
                              f"assessment weeks: {', '.join(map(str, assessed))} (or analysis: true)")
    if call.metric in COMPARISONS:
        reference = call.reference or default_reference
        for key, val in (("arm", call.arm), ("reference", reference)):
            if val == "all" or (val is not None and "+" in val):
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
        if arm.follow_up is not None:
            yield f"arms.{name}.follow_up", arm.follow_up


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


def follow_up_of(s: Scenario, name: str) -> Components | None:
    """An arm's follow-up components, its own or, through `extends`, the nearest ancestor's."""
    seen: set[str] = set()
    while name is not None and name not in seen:
        seen.add(name)
        if s.arms[name].follow_up is not None:
            return s.arms[name].follow_up
        name = s.arms[name].extends
    return None


def _resolve_extends(s: Scenario) -> dict[str, Components]:
    """Each arm's components with its `extends` chain merged in; iterative, refusing cycles (shown) and chains
    longer than MAX_EXTENDS arms."""
    resolved: dict[str, Components] = {}
    depth: dict[str, int] = {}
    for start in s.arms:
        chain = [start]
        while (parent := s.arms[chain[-1]].extends) is not None and parent not in resolved:
            if parent in chain:
                cycle = chain[chain.index(parent):] + [parent]
                shown = " -> ".join(cycle) if len(cycle) <= 8 else " -> ".join([*cycle[:4], "…", *cycle[-3:]])
                raise _Bad(f"arms.{parent}.extends", s.arms[parent].extends,
                           f"arms extend each other in a cycle of {len(cycle) - 1} ({shown})")
            chain.append(parent)
        for name in reversed(chain):
            if name in resolved:
                continue
            arm = s.arms[name]
            own = Components(**{k: getattr(arm, k) for k in COMPONENTS})
            depth[name] = 1 + (depth[arm.extends] if arm.extends else 0)
            if depth[name] > MAX_EXTENDS:
                raise _Bad(f"arms.{name}.extends", arm.extends, f"a chain of more than {MAX_EXTENDS} arms through "
                           f"extends; at most {MAX_EXTENDS} arms may build on each other")
            resolved[name] = resolved[arm.extends].merged(own) if arm.extends else own
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


def load(path: str | Path) -> LoadedScenario:
    """Read, parse and validate one scenario file."""
    path = Path(path)
    text, data = read_yaml(path, "scenario file")
    scenario, arms = parse(data, path)
    return LoadedScenario(scenario=scenario, path=str(path), text=text,
                          sha256=hashlib.sha256(text.encode()).hexdigest(), arms=arms)
