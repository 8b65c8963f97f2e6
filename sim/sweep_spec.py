"""Sweep files: a base scenario, a space of factors, a design, replicates and outcomes (docs/sweeps.md).

A factor is a model parameter by dotted name (`plasticity.gain`, or `parameters.plasticity.gain`) or a
dotted path into the scenario (`arms.titration.titration.weeks`, `population.size`). Each point of the
design is the base scenario with the point's values written in, validated like any scenario file, so a
value the model cannot take is refused before anything runs. Every point keeps the base scenario's
seed: replicate r of every point draws the same people and the same daily random numbers (common
random numbers), so differences between points are the factors' effects, not noise.
"""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, ValidationError, model_validator

from sim import inputs, parameters
from sim.scenario import (
    MAX_REPLICATES,
    MAX_SEED,
    NO_VALUE,
    LoadedScenario,
    MetricArgs,
    ScenarioError,
    Strict,
    Text,
    error_from_pydantic,
    first_repeat,
    load,
    metric_call_problem,
    parse,
    read_yaml,
)
from sim.vocabulary import NEEDS_PANEL

DESIGNS = ("grid", "lhs", "sobol", "morris", "uncertainty")
SAMPLED = ("lhs", "sobol", "morris", "uncertainty")  # designs that draw values from ranges
# scenario keys a factor may not set: they identify the run or the sweep sets them itself
FORBIDDEN_ROOTS = ("name", "seed", "replicates", "description", "checks", "reference_arm")


class Distribution(Strict):
    kind: Literal["uniform", "triangular", "normal"]
    low: float | None = None
    high: float | None = None
    mode: float | None = None
    mean: float | None = None
    sd: Annotated[float | None, Field(gt=0)] = None

    @model_validator(mode="after")
    def _complete(self) -> "Distribution":
        need = {"uniform": ("low", "high"), "triangular": ("low", "mode", "high"), "normal": ("mean", "sd")}[self.kind]
        if missing := [k for k in need if getattr(self, k) is None]:
            raise ValueError(f"a {self.kind} distribution needs {', '.join(need)}; missing {', '.join(missing)}")
        if self.kind == "triangular" and not self.low <= self.mode <= self.high:
            raise ValueError(f"mode {self.mode:g} must lie between low {self.low:g} and high {self.high:g}")
        return self


class Factor(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    range: Annotated[tuple[float, float] | None, Field(strict=False)] = None
    values: Annotated[list[float] | None, Field(min_length=1, max_length=1000)] = None
    distribution: Distribution | None = None
    levels: Annotated[int | None, Field(ge=2, le=100)] = None  # grid: evenly spaced values across the range
    integer: bool | None = None  # round drawn values (default: whatever the scenario field takes)

    @model_validator(mode="after")
    def _one_source(self) -> "Factor":
        given = [k for k in ("range", "values", "distribution") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of range, values or distribution, not {' and '.join(given)}")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range must be [low, high] with low < high, got [{self.range[0]:g}, {self.range[1]:g}]")
        return self


class Outcome(MetricArgs):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=80)]
    filled_in = ("reference",)


class SweepFile(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=60)]
    description: Text = ""
    base: Annotated[str, Field(max_length=4096)]
    design: Literal[DESIGNS]  # type: ignore[valid-type]
    samples: Annotated[int | None, Field(ge=1, le=100_000)] = None
    levels: Annotated[int, Field(ge=2, le=100)] = 4
    replicates: Annotated[int, Field(ge=1, le=MAX_REPLICATES)] = 4
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    factors: Annotated[list[Factor], Field(min_length=1, max_length=200)]
    outcomes: Annotated[list[Outcome], Field(min_length=1, max_length=50)]


class Sweep:
    """A validated sweep: its file, its base scenario, its factors with resolved bounds, and its points."""

    def __init__(self, spec: SweepFile, path: Path, text: str, base: LoadedScenario):
        self.spec, self.path, self.text, self.base = spec, path, text, base
        self.sha256 = hashlib.sha256((text + "\0" + base.text).encode()).hexdigest()
        self._data = inputs.load_yaml(base.text, base.path)
        self.kinds = {f.name: _kind(f.name) for f in spec.factors}
        self.bounds: dict[str, tuple[float, float]] = {}
        self.integer: dict[str, bool] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def factor_names(self) -> list[str]:
        return [f.name for f in self.spec.factors]

    @property
    def needs_panel(self) -> bool:
        """Whether any outcome reads the per-participant weekly panel."""
        return any(o.metric in NEEDS_PANEL for o in self.spec.outcomes)

    def default(self, name: str) -> float:
        """The base scenario's value of a factor (the parameter's default if the scenario leaves it)."""
        if self.kinds[name] == "parameter":
            pname = _param_name(name)
            return float((self._data.get("parameters") or {}).get(pname, parameters.DEFAULTS[pname]))
        value = _get(self._data, name.split("."))
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan

    def scenario_data(self, values: dict[str, float], label: str) -> dict:
        """The base scenario's data with these factor values written in, named for this point."""
        data = copy.deepcopy(self._data)
        for name, v in values.items():
            v = int(round(v)) if self.integer.get(name) else float(v)
            if self.kinds[name] == "parameter":
                data.setdefault("parameters", {})
                data["parameters"] = {**(data["parameters"] or {}), _param_name(name): v}
            else:
                _set(data, name.split("."), v)
        data["name"] = f"{self.name}.{label}"[:80]
        return data

    def point_scenario(self, values: dict[str, float], label: str) -> LoadedScenario:
        """A point as a validated scenario (text, hash and resolved arms), ready to run and store."""
        data = self.scenario_data(values, label)
        s, arms = parse(data, f"{self.path} ({label})")
        text = f"# sweep {self.name}, {label}, from {self.base.path}\n" + yaml.safe_dump(data, sort_keys=False)
        return LoadedScenario(scenario=s, path=str(self.path), text=text,
                              sha256=hashlib.sha256(text.encode()).hexdigest(), arms=arms)


def _param_name(name: str) -> str:
    return name.removeprefix("parameters.")


def _kind(name: str) -> str:
    return "parameter" if _param_name(name) in parameters.BY_NAME else "scenario"


def _get(data: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _set(data: dict, path: list[str], value: float) -> None:
    for part in path[:-1]:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    data[path[-1]] = value


class _Bad(Exception):
    def __init__(self, field: str, value: Any, allowed: str):
        self.args_ = (field, value, allowed)


def _check_factor(sw: Sweep, i: int, f: Factor) -> None:
    """Resolve a factor's bounds and integer-ness; refuse names and values the base scenario cannot take."""
    where = f"factors.{i}"
    if f.name.startswith("parameters.") and sw.kinds[f.name] != "parameter":
        raise _Bad(f"{where}.name", f.name, "unknown parameter; see docs/ODD.md for the list")
    if sw.kinds[f.name] == "scenario":
        root = f.name.split(".")[0]
        if root not in _scenario_keys():
            raise _Bad(f"{where}.name", f.name, "neither a model parameter (docs/ODD.md lists them) nor a path into "
                       f"the scenario (it starts with one of {', '.join(_scenario_keys())})")
        if root in FORBIDDEN_ROOTS:
            raise _Bad(f"{where}.name", f.name, f"{root} cannot be a factor (the sweep sets names, seeds and "
                       "replicates itself; every point keeps the base seed for common random numbers)")
        if root == "arms" and (len(f.name.split(".")) < 3 or f.name.split(".")[1] not in sw.base.scenario.arms):
            raise _Bad(f"{where}.name", f.name, f"arms.ARM.COMPONENT[.KEY] with ARM one of the base scenario's arms: "
                       f"{', '.join(sw.base.scenario.arms)}")
    design = sw.spec.design
    if f.range is not None:
        lo, hi = f.range
    elif f.values is not None:
        if design != "grid":
            raise _Bad(f"{where}.values", f.values, f"a {design} design draws from a range; give range (or "
                       "distribution) instead, or use design: grid")
        lo, hi = min(f.values), max(f.values)
    elif f.distribution is not None:
        if design not in ("lhs", "uncertainty"):
            raise _Bad(f"{where}.distribution", f.distribution.kind, "distributions are for the lhs and uncertainty "
                       "designs; give range (or values for a grid)")
        d = f.distribution
        lo, hi = (d.low, d.high) if d.kind != "normal" else _declared(sw, f, where, "normal distribution")
    else:
        lo, hi = _declared(sw, f, where, "range")
    if design == "grid" and f.values is None and (f.levels or sw.spec.levels) < 2:
        raise _Bad(f"{where}.levels", f.levels, "a grid needs at least 2 levels across a range")
    probe = {f.name: lo}
    sw.integer[f.name] = bool(f.integer) if f.integer is not None else _takes_integers(sw, f.name, lo, hi)
    for v in (lo, hi) if f.values is None else f.values:
        probe[f.name] = v
        try:
            sw.point_scenario(probe, "check")
        except ScenarioError as e:
            raise _Bad(f"{where}.{'values' if f.values is not None else 'range'}", v,
                       f"{f.name} cannot take this value: {e.field}: {e.allowed}") from None
    sw.bounds[f.name] = (float(lo), float(hi))


def _declared(sw: Sweep, f: Factor, where: str, what: str) -> tuple[float, float]:
    if sw.kinds[f.name] != "parameter":
        raise _Bad(where, f.name, f"a scenario field has no declared range: give range or values ({what} "
                   "defaults to the declared range of model parameters only)")
    p = parameters.BY_NAME[_param_name(f.name)]
    return p.low, p.high


def _takes_integers(sw: Sweep, name: str, lo: float, hi: float) -> bool:
    """Whether the scenario field only takes whole numbers (a fractional value is refused as such)."""
    if sw.kinds[name] == "parameter":
        return False
    try:
        sw.point_scenario({name: lo + (hi - lo) * 0.37 + 0.01 if hi > lo else lo + 0.5}, "check")
    except ScenarioError as e:
        return "integer" in e.allowed
    return False


def _scenario_keys() -> tuple[str, ...]:
    from sim.scenario import Scenario

    return tuple(Scenario.model_fields)


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file, its base scenario, every factor and outcome; a ScenarioError names the
    file, the field, the value and what is allowed."""
    path = Path(path)
    text, data = read_yaml(path, "sweep file")
    if not isinstance(data, dict):
        raise ScenarioError(path, "", NO_VALUE if data is None else type(data).__name__,
                            "a sweep file holds a mapping: name, base, design, factors, outcomes (docs/sweeps.md)")
    try:
        spec = SweepFile.model_validate(data)
    except ValidationError as e:
        raise error_from_pydantic(path, data, e) from None
    base_path = path.parent / spec.base
    if not base_path.is_file():
        raise ScenarioError(path, "base", spec.base, f"no scenario file at {base_path} (relative to the sweep file)")
    return check(spec, path, text, load(base_path))


def check(spec: SweepFile, path: Path, text: str, base: LoadedScenario) -> Sweep:
    """Validate a parsed sweep against its base scenario (also for sweeps built in memory)."""
    sw = Sweep(spec, path, text, base)
    try:
        if (dup := first_repeat([_param_name(f.name) for f in spec.factors])) is not None:
            raise _Bad("factors", dup, "each factor may appear once")
        if (dup := first_repeat([o.id for o in spec.outcomes])) is not None:
            raise _Bad("outcomes", dup, "outcome ids must be unique")
        for i, f in enumerate(spec.factors):
            _check_factor(sw, i, f)
        _check_design(sw)
        extremes = [(label, sw.point_scenario({n: b[k] for n, b in sw.bounds.items()}, "check").scenario)
                    for k, label in ((0, "lowest"), (1, "highest"))]
        for i, o in enumerate(spec.outcomes):
            for label, point in extremes:
                if problem := metric_call_problem(o, point, point.reference):
                    key, value, allowed = problem
                    raise _Bad(f"outcomes.{i}.{key}", value, f"{allowed} (with every factor at its {label} value)")
    except _Bad as b:
        raise ScenarioError(path, *b.args_) from None
    return sw


def _check_design(sw: Sweep) -> None:
    spec, k = sw.spec, len(sw.spec.factors)
    if spec.design == "sobol":
        n = spec.samples
        if n is None or n < 2 or n & (n - 1):
            raise _Bad("samples", n if n is not None else NO_VALUE, "Sobol' sampling needs N = a power of two (e.g. 64, "
                       "128, 256); the design runs N x (factors + 2) points (Saltelli's scheme as SALib implements it)")
    elif spec.design == "morris":
        if spec.samples is None or spec.samples < 2:
            raise _Bad("samples", spec.samples if spec.samples is not None else NO_VALUE,
                       "Morris needs the number of trajectories (2 or more; 10-20 is usual); it runs trajectories x "
                       "(factors + 1) points")
        if spec.levels % 2:
            raise _Bad("levels", spec.levels, "Morris needs an even number of grid levels (4 is usual)")
        if k < 2:
            raise _Bad("factors", k, "Morris screening compares factors: give at least 2")
    elif spec.design in ("lhs", "uncertainty"):
        if spec.samples is None:
            raise _Bad("samples", NO_VALUE, f"a {spec.design} design needs the number of points to draw")
    elif spec.samples is not None:
        raise _Bad("samples", spec.samples, "a grid runs every combination of levels; leave samples out")
    n = design_size(sw)
    if n * spec.replicates * len(sw.base.scenario.arms) > 2_000_000:
        raise _Bad("design", spec.design, f"{n:,} points x {spec.replicates} replicates x "
                   f"{len(sw.base.scenario.arms)} arms is more than 2,000,000 runs; reduce samples, levels or replicates")


def _grid_values(sw: Sweep, f: Factor) -> list[float]:
    if f.values is not None:
        return sorted(set(f.values))
    lo, hi = sw.bounds[f.name]
    vals = np.linspace(lo, hi, f.levels or sw.spec.levels)
    return sorted(set(np.round(vals).tolist())) if sw.integer[f.name] else vals.tolist()


def design_size(sw: Sweep) -> int:
    """How many points the design has."""
    spec, k = sw.spec, len(sw.spec.factors)
    if spec.design == "grid":
        return math.prod(len(_grid_values(sw, f)) for f in spec.factors)
    if spec.design == "sobol":
        return spec.samples * (k + 2)
    if spec.design == "morris":
        return spec.samples * (k + 1)
    return spec.samples


def problem(sw: Sweep) -> dict:
    """The SALib problem: factor names and bounds (distributions for lhs and uncertainty designs)."""
    bounds, dists = [], []
    for f in sw.spec.factors:
        d = f.distribution
        if d is None or d.kind == "uniform":
            bounds.append(list(sw.bounds[f.name])), dists.append("unif")
        elif d.kind == "triangular":
            span = d.high - d.low
            bounds.append([d.low, d.high, (d.mode - d.low) / span if span else 0.5]), dists.append("triang")
        else:
            lo, hi = sw.bounds[f.name]
            bounds.append([lo, hi, d.mean, d.sd]), dists.append("truncnorm")
    return {"num_vars": len(bounds), "names": sw.factor_names, "bounds": bounds, "dists": dists}


def design_points(sw: Sweep) -> pd.DataFrame:
    """The design's points: one row per point, one column per factor (SALib samplers; a grid is every
    combination of levels). Values are the design's own: integer factors are rounded only when written
    into the point's scenario, since SALib's analysis needs the sample it drew."""
    spec = sw.spec
    if spec.design == "grid":
        grids = np.meshgrid(*[_grid_values(sw, f) for f in spec.factors], indexing="ij")
        x = np.column_stack([g.ravel() for g in grids])
    elif spec.design == "sobol":
        from SALib.sample import sobol

        x = sobol.sample(problem(sw), spec.samples, calc_second_order=False, seed=spec.seed)
    elif spec.design == "morris":
        from SALib.sample import morris

        x = morris.sample(problem(sw), spec.samples, num_levels=spec.levels, seed=spec.seed)
    else:
        from SALib.sample import latin

        x = latin.sample(problem(sw), spec.samples, seed=spec.seed)
    return pd.DataFrame(x, columns=sw.factor_names)
