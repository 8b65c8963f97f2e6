"""What the browser explorer runs: its controls (with their declared ranges), the scenario they make, and
`ExplorerModel`, a Mesa model that steps one arm and a reference arm of that scenario on the same people.

No equations live here: the controls become an ordinary scenario (validated by sim.scenario), each arm is
built by the runner exactly as `sim run` builds replicate `replicate`, and the agent view reads the model's
state. The Solara page is sim/explore.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mesa
import numpy as np
import yaml

from sim import parameters
from sim.cli_defaults import EXPLORE_SCENARIO
from sim.components import (
    Medication,
    Prescription,
    Priming,
    RewardCues,
    SelfManagement,
    Support,
    Titration,
)
from sim.model.dynamics import current_reward_control
from sim.model.model import AdherenceModel
from sim.model.programme import NO_SUPPORT
from sim.population_spec import DEFAULT_TRAITS, Population, trait_bounds
from sim.runs import records, runner
from sim.scenario import LoadedScenario, follow_up_of, load, parse

DEFAULT_SCENARIO = str(EXPLORE_SCENARIO)
# the population slider stops here: beyond ~1,000 people a day's redraw no longer keeps up with play
EXPLORE_MAX_SIZE = 1000
EXPLORE_TRAITS = ("reward_sensitivity", "cognitive_control", "baseline_severity", "distress_tolerance", "fitness")
TRAIT_LABELS = {"reward_sensitivity": "R0", "cognitive_control": "C0", "baseline_severity": "severity",
                "distress_tolerance": "distress tol.", "fitness": "fitness"}
SUPPORT_KINDS = ("none", "class", "partner")
# agent-view categories, in legend order
STATES = ("exercising", "lapsing", "dropped out or stopped", "no exercise plan")
EXERCISING, LAPSING, DROPPED, NO_PLAN = range(4)


@dataclass(frozen=True)
class Control:
    """One control of the explorer: a setting's key, label, kind and range."""

    key: str
    label: str
    kind: str  # "int", "float", "select" or "bool"
    low: float = 0
    high: float = 1
    step: float = 1
    choices: tuple[str, ...] = ()


def _declared(section: type, field: str) -> tuple[float, float]:
    """The (ge, le) bounds a scenario-schema field declares."""
    low = high = None
    for m in section.model_fields[field].metadata:
        low = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else low
        high = getattr(m, "le", None) if getattr(m, "le", None) is not None else high
    return low, high


def controls(loaded: LoadedScenario) -> list[Control]:
    """Every control, with the range the scenario schema or sim/parameters.py declares for its setting."""
    sc = loaded.scenario
    fade_max = min(_declared(Support, "fade_weeks")[1], sc.weeks)  # a fade happens within the programme
    out = [
        # 0 sessions = no prescription, the arm's exercise components then fall away with it
        Control("arm.prescription.sessions_per_week", "sessions/week (0: none)", "int",
                0, _declared(Prescription, "sessions_per_week")[1]),
        Control("arm.prescription.minutes", "minutes/session", "float", *_declared(Prescription, "minutes"), 5),
        Control("arm.prescription.intensity", "intensity (HRR)", "float",
                *_declared(Prescription, "intensity"), 0.05),
        Control("arm.titration.weeks", "titration weeks (0: none)", "int", 0,
                _declared(Titration, "weeks")[1]),
        Control("arm.support.kind", "support", "select", choices=SUPPORT_KINDS),
        Control("arm.support.level", "support level", "float", *_declared(Support, "level"), 0.05),
        Control("arm.support.fade_weeks", "support fade weeks", "int", 0, fade_max),
        Control("arm.priming.strength", "priming (0: none)", "float", *_declared(Priming, "strength"), 0.1),
        Control("arm.reward_cues.value", "reward cue (0: none)", "float", *_declared(RewardCues, "value"),
                0.05),
        Control("arm.self_management.skill", "self-management (0: none)", "float",
                *_declared(SelfManagement, "skill"), 0.05),
        Control("arm.medication", "medication alongside", "bool"),
        Control("arm.medication.adherence", "medication adherence", "float", *_declared(Medication, "adherence"), 0.05),
        Control("population.size", "people per arm", "int", _declared(Population, "size")[0], EXPLORE_MAX_SIZE),
    ]
    for trait in EXPLORE_TRAITS:
        low, high = trait_bounds(trait, DEFAULT_TRAITS[trait], sc.outcomes.scale_max)
        step = 0.5 if trait == "baseline_severity" else 0.01
        out.append(Control(f"population.{trait}.mean", f"mean {TRAIT_LABELS[trait]}", "float", low, high, step))
    for name in parameters.UNCERTAIN:
        p = parameters.BY_NAME[name]
        out.append(Control(name, name, "float", p.low, p.high, _step(p.low, p.high)))
    return out


def _step(low: float, high: float) -> float:
    """A slider step giving about 100 positions on a round number."""
    return float(10.0 ** np.floor(np.log10((high - low) / 100.0)))


def default_arms(loaded: LoadedScenario, arm: str | None = None, reference: str | None = None) -> tuple[str, str]:
    """The arm to explore and its reference: the scenario's reference arm and the first other arm, unless named;
    ValueError naming the arms when they do not fit."""
    sc = loaded.scenario
    names = list(sc.arms)
    if len(names) < 2:
        raise ValueError(f"{loaded.path}: the explorer compares an arm with a reference arm, and {sc.name} has only "
                         f"one arm ({names[0]})")
    reference = reference or sc.reference
    arm = arm or next(a for a in names if a != reference)
    for option, name in (("--arm", arm), ("--reference", reference)):
        if name not in sc.arms:
            raise ValueError(f"{option} {name!r} is not an arm of {sc.name} ({loaded.path}); arms: {', '.join(names)}")
    if arm == reference:
        raise ValueError(f"--arm and --reference are both {arm!r}; the explorer compares two different arms")
    return arm, reference


def initial_settings(loaded: LoadedScenario, arm: str) -> dict[str, Any]:
    """The controls' values as the scenario file sets them for `arm`."""
    sc, c = loaded.scenario, loaded.arms[arm]
    rx, sup = c.prescription or Prescription(), c.support or Support()
    values = {
        "arm.prescription.sessions_per_week": c.prescription.sessions_per_week if c.prescription else 0,
        "arm.prescription.minutes": rx.minutes, "arm.prescription.intensity": rx.intensity,
        "arm.titration.weeks": c.titration.weeks if c.titration else 0,
        "arm.support.kind": c.support.kind if c.support else "none",
        "arm.support.level": sup.level, "arm.support.fade_weeks": min(sup.fade_weeks, sc.weeks),
        "arm.priming.strength": c.priming.strength if c.priming else 0.0,
        "arm.reward_cues.value": c.reward_cues.value if c.reward_cues else 0.0,
        "arm.self_management.skill": c.self_management.skill if c.self_management else 0.0,
        "arm.medication": c.medication is not None,
        "arm.medication.adherence": (c.medication or Medication()).adherence,
        "population.size": min(sc.population.size, EXPLORE_MAX_SIZE),
    }
    for trait in EXPLORE_TRAITS:
        values[f"population.{trait}.mean"] = sc.population.trait_spec(trait).mean
    resolved = parameters.resolve(sc.parameters)
    values.update({name: resolved[name] for name in parameters.UNCERTAIN})
    return values


def _dump(section) -> dict | None:
    return None if section is None else section.model_dump(mode="json", exclude_none=True)


def _number(value: float) -> float | int:
    """A slider value as YAML should show it (0.30000000000000004 -> 0.3)."""
    return value if isinstance(value, int) else round(float(value), 6)


def _explored_arm(loaded: LoadedScenario, name: str, s: dict[str, Any]) -> dict:
    """The explored arm's components from the controls; the rest of its design (placebo, contact, assignment
    and stage-2 rules, follow-up) as the scenario has it. Written out in full, without `extends`, so that
    turning a component off cannot bring an ancestor's back."""
    sc, base = loaded.scenario, loaded.arms[name]
    arm = {k: v for k, v in (("placebo", _dump(base.placebo)), ("contact", _dump(base.contact))) if v}
    sessions = int(s["arm.prescription.sessions_per_week"])
    if sessions > 0:  # titration, support, priming and cues act on sessions, so they need a prescription
        minutes, intensity = _number(s["arm.prescription.minutes"]), _number(s["arm.prescription.intensity"])
        arm["prescription"] = {**(_dump(base.prescription) or {}), "sessions_per_week": sessions, "minutes": minutes,
                               "intensity": intensity}
        if s["arm.titration.weeks"] > 0:
            t = base.titration or Titration()
            arm["titration"] = {**_dump(t), "weeks": int(s["arm.titration.weeks"]),
                                "start_minutes": min(t.start_minutes, minutes)}  # titration builds up to the dose
            if t.start_intensity is not None:
                arm["titration"]["start_intensity"] = min(t.start_intensity, intensity)
        if s["arm.support.kind"] != "none":
            sup = base.support or Support()
            window = sup.weeks if sup.weeks is not None else sc.weeks
            arm["support"] = {**_dump(sup), "kind": s["arm.support.kind"], "level": _number(s["arm.support.level"]),
                              "fade_weeks": min(int(s["arm.support.fade_weeks"]), window)}
        if s["arm.priming.strength"] > 0:
            arm["priming"] = {**_dump(base.priming or Priming()), "strength": _number(s["arm.priming.strength"])}
        if s["arm.reward_cues.value"] > 0:
            arm["reward_cues"] = {**_dump(base.reward_cues or RewardCues()),
                                  "value": _number(s["arm.reward_cues.value"])}
    if s["arm.self_management.skill"] > 0:
        arm["self_management"] = {**_dump(base.self_management or SelfManagement()),
                                  "skill": _number(s["arm.self_management.skill"])}
    if s["arm.medication"]:
        arm["medication"] = {**_dump(base.medication or Medication()),
                             "adherence": _number(s["arm.medication.adherence"])}
    return arm | _rules(loaded, name)


def _rules(loaded: LoadedScenario, name: str) -> dict:
    """An arm's assignment and stage-2 rules and its follow-up components (through `extends` too)."""
    sc = loaded.scenario
    own = sc.arms[name]
    out = {}
    if own.assign:
        out["assign"] = [r.model_dump(mode="json", exclude_none=True) for r in own.assign]
    if own.stage2 is not None:
        out["stage2"] = _dump(own.stage2)
    if (follow := follow_up_of(sc, name)) is not None:
        out["follow_up"] = _dump(follow)
    return out


def scenario_data(loaded: LoadedScenario, arm: str, reference: str, settings: dict[str, Any]) -> dict:
    """The scenario the settings make, as YAML-ready data: the reference arm as the file has it, the explored
    arm from the controls, the same seed (so the same people and random numbers) and no checks (their bands
    were set for the file's own design)."""
    sc = loaded.scenario
    unknown = set(settings) - {c.key for c in controls(loaded)}
    if unknown:
        raise ValueError(f"unknown explorer settings: {', '.join(sorted(unknown))}")
    s = {**initial_settings(loaded, arm), **settings}
    pop = sc.population.model_dump(mode="json", exclude_none=True)
    pop["size"] = int(s["population.size"])
    traits = pop.setdefault("traits", {})
    for trait in EXPLORE_TRAITS:
        spec = _dump(sc.population.trait_spec(trait))
        traits[trait] = {**spec, "mean": _number(s[f"population.{trait}.mean"])}
    params = dict(sc.parameters)
    for name in parameters.UNCERTAIN:
        if name in params or s[name] != parameters.DEFAULTS[name]:
            params[name] = _number(s[name])
    ref = {**(_dump(loaded.arms[reference]) or {}), **_rules(loaded, reference)}
    data = {
        "name": f"{sc.name}_explored"[:80],
        "description": (f"Written by sim explore from {loaded.path} on {dt.date.today().isoformat()}: arm {arm} as "
                        f"set in the explorer against reference arm {reference}. The original's checks are left out "
                        "(their bands were set for its own design)."),
        "seed": sc.seed, "replicates": sc.replicates, "weeks": sc.weeks, "follow_up_weeks": sc.follow_up_weeks,
        "population": pop, "outcomes": sc.outcomes.model_dump(mode="json", exclude_none=True),
        "arms": {reference: ref, arm: _explored_arm(loaded, arm, s)},
        "reference_arm": reference,
    }
    if params:
        data["parameters"] = params
    return data


def to_yaml(data: dict) -> str:
    """Scenario data as the text of a scenario file."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=110)


def loaded_from(data: dict, path: str = "<explorer>") -> LoadedScenario:
    """Validate scenario data exactly as a scenario file is validated (ScenarioError when it does not fit)."""
    text = to_yaml(data)
    s, arms = parse(yaml.safe_load(text), path)
    return LoadedScenario(scenario=s, path=path, text=text, sha256=hashlib.sha256(text.encode()).hexdigest(),
                          arms=arms)


def write_scenario(data: dict, path: str | Path) -> Path:
    """Write scenario data as a file `sim run` accepts (its parent folder made if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(data), encoding="utf-8")
    return path


class ExplorerModel(mesa.Model):
    """One arm of a scenario as the explorer's controls set it, stepped day by day beside a reference arm.

    Both arms are replicate `replicate` of the same scenario, built by the runner as `sim run` builds them: the
    same people and the same daily random numbers, so a difference between the curves is the lever's effect.
    scenario_file, arm and reference say what to explore; every control is a keyword argument by its key
    (`arm.support.level`, `population.size`, `plasticity.gain`, ...). `scenario` is Mesa's own scenario
    object, which SolaraViz's Reset passes; the explorer's scenario is scenario_file.
    """

    def __init__(self, scenario_file: str | Path = DEFAULT_SCENARIO, arm: str | None = None,
                 reference: str | None = None, replicate: int = 0, scenario=None, **settings: Any):
        base = load(scenario_file)
        self.arm_name, self.reference_name = default_arms(base, arm, reference)
        self.settings = {**initial_settings(base, self.arm_name), **settings}
        self.data = scenario_data(base, self.arm_name, self.reference_name, self.settings)
        self.loaded = loaded_from(self.data)
        super().__init__(rng=self.loaded.scenario.seed)  # draws nothing itself: each arm has its own streams
        self.source, self.replicate = str(scenario_file), int(replicate)
        self.arms = {name: runner.build_model(self.loaded, name, self.replicate)
                     for name in (self.arm_name, self.reference_name)}

    @property
    def day(self) -> int:
        """Days simulated so far."""
        return self.arms[self.arm_name].steps

    def step(self) -> None:
        """One day in both arms."""
        for m in self.arms.values():
            m.step()
        self.running = all(m.running for m in self.arms.values())


def curves(model: AdherenceModel) -> dict[str, np.ndarray]:
    """An arm's curves from day 0 to today: severity (scale points), share enrolled and share exercising (on
    a day, mean over the last 7 days) and exercise minutes over the last 7 days, per participant."""
    d = model.daily[: model.steps + 1]
    col = {c: d[:, k] for k, c in enumerate(records.DAILY_COLUMNS)}
    window = lambda x: np.convolve(x, np.ones(7))[: len(x)]  # noqa: E731 - sum over the last 7 days
    days = np.arange(len(d))
    return {"week": days / 7.0, "severity": col["severity_mean"], "enrolled": col["enrolled_share"],
            "exercising": window(np.r_[0.0, col["exercising_share"][1:]]) / np.minimum(np.maximum(days, 1), 7),
            "minutes": window(np.r_[0.0, col["minutes_mean"][1:]])}


def agent_view(model: AdherenceModel) -> dict[str, Any]:
    """Each participant's current R(t), C(t), state (index into STATES) and remission, and the ties of
    support arranged for the coming day: partner pairs and class groups (lists of rows)."""
    st = model.state
    R, C = current_reward_control(st, model.coef)
    dropped = ~st.enrolled | (st.quit & ~st.own)
    state = np.full(model.n, NO_PLAN)
    state[st.streak > 0] = EXERCISING
    state[st.misses > 0] = LAPSING
    state[dropped] = DROPPED
    supported = model.plan.inputs(min(model.steps, model.days - 1), st.streak, st.enrolled).support > 0
    partners = [(i, j) for i, j in enumerate(model.partner) if i < j and (supported[i] or supported[j])]
    kind_ok = model.plan.sup_kind > NO_SUPPORT
    groups: dict[int, list[int]] = {}
    for i in np.flatnonzero((model.group >= 0) & kind_ok & supported):
        groups.setdefault(int(model.group[i]), []).append(int(i))
    return {"R": R, "C": C, "state": state, "remitted": st.remitted.copy(), "partners": partners,
            "classes": [g for g in groups.values() if len(g) > 1]}
