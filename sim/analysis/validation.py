"""Targets files (published findings) and their check against simulated trials: `sim validate`.

A targets file holds `targets:`, a list of published findings, each naming a scenario file
(relative to the targets file), a metric of the vocabulary in sim.metrics with its arguments, the
published value and the band the simulated mean over replicates must fall in. docs/validation.md
documents the format.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import Field, ValidationError

from sim import inputs
from sim.analysis import metrics
from sim.cli_defaults import DEFAULT_TARGETS  # noqa: F401 - re-exported
from sim.runs import provenance
from sim.scenario import (
    MAX_REPLICATES,
    NO_VALUE,
    LoadedScenario,
    MetricCall,
    ScenarioError,
    Strict,
    Text,
    error_from_pydantic,
    first_repeat,
    load,
    metric_call_problem,
    read_yaml,
)
from sim.vocabulary import analysis_of


class Target(MetricCall):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    finding: Text = ""
    source: Text = ""
    scenario: Annotated[str, Field(max_length=4096)]
    published: float | Literal["positive", "negative"]
    replicates: Annotated[int | None, Field(ge=1, le=MAX_REPLICATES)] = None


class TargetsFile(Strict):
    targets: Annotated[list[Target], Field(min_length=1)]


@dataclass
class Targets:
    """A validated targets file with its scenarios loaded."""

    path: Path
    targets: list[Target]
    scenarios: dict[str, LoadedScenario]  # by the target's `scenario` entry


def load_targets(path: str | Path) -> Targets:
    """Read and check a targets file and every scenario it names."""
    path = Path(path)
    _, data = read_yaml(path, "targets file")
    try:
        parsed = TargetsFile.model_validate(data)
    except ValidationError as e:
        raise error_from_pydantic(path, data, e) from None
    if (dup := first_repeat([t.id for t in parsed.targets])) is not None:
        raise ScenarioError(path, "targets", dup, "target ids must be unique")
    scenarios: dict[str, LoadedScenario] = {}
    for i, t in enumerate(parsed.targets):
        if t.scenario not in scenarios:
            if not (path.parent / t.scenario).is_file():
                raise ScenarioError(path, f"targets.{i}.scenario", t.scenario,
                                    f"no scenario file at {path.parent / t.scenario} (paths are relative to the "
                                    "targets file)")
            scenarios[t.scenario] = load(path.parent / t.scenario)
        if problem := metric_call_problem(t, scenarios[t.scenario].scenario):
            key, value, allowed = problem
            raise ScenarioError(path, f"targets.{i}.{key}", value, allowed)
    return Targets(path=path, targets=parsed.targets, scenarios=scenarios)


def replicates_needed(targets: Targets, override: int | None) -> dict[str, int]:
    """Replicates to run per scenario: the override, else the most any of its targets asks for,
    else the scenario's own."""
    need: dict[str, int] = {}
    for t in targets.targets:
        n = override or t.replicates or targets.scenarios[t.scenario].scenario.replicates
        need[t.scenario] = max(need.get(t.scenario, 0), n)
    return need


def evaluate(targets: Targets, frames: dict[str, metrics.Frames]) -> pd.DataFrame:
    """One row per target: published value, simulated mean and 95% interval over replicates, pass/fail, and
    the analysis of the metric (true state or assessed; empty for metrics that take none)."""
    rows = []
    for t in targets.targets:
        try:
            s = metrics.summarise(metrics.compute(t.metric, frames[t.scenario], **t.arguments()))
            note = ""
        except metrics.MetricError as e:
            s, note = {"mean": float("nan"), "p2.5": float("nan"), "p97.5": float("nan"), "replicates": 0}, str(e)
        passed = bool(t.accept[0] <= s["mean"] <= t.accept[1])
        rows.append({"id": t.id, "metric": t.metric, "analysis": analysis_of(t.metric, t.arguments()) or "",
                     "published": t.published, **s,
                     "accept_low": t.accept[0], "accept_high": t.accept[1], "passed": passed,
                     "finding": t.finding, "source": t.source, "scenario": t.scenario, "note": note})
    return pd.DataFrame(rows)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def table_text(result: pd.DataFrame) -> str:
    """The validation table as aligned text for the terminal."""
    head = f"{'target':<30}{'published':>10}  {'simulated mean [95% over replicates]':<40}{'accept':<18}result"
    lines = [head, "-" * len(head)]
    for _, r in result.iterrows():
        sim = f"{_fmt(r['mean'])} [{_fmt(r['p2.5'])}, {_fmt(r['p97.5'])}] ({r.replicates} reps)"
        name = f"{r.id} ({r.analysis})" if r.get("analysis") else r.id
        lines.append(f"{name:<30}{_fmt(r.published):>10}  {sim:<40}{_fmt(r.accept_low) + ' to ' + _fmt(r.accept_high):<18}"
                     f"{'pass' if r.passed else 'FAIL'}{'  ' + r.note if r.note else ''}")
    passed = int(result.passed.sum())
    lines.append(f"\n{passed} of {len(result)} targets pass")
    return "\n".join(lines)


def to_record(result: pd.DataFrame, targets_path: str, db_url: str) -> dict:
    """The validation result with what made it (targets file, code version, model hash, store, date), for
    the report to embed."""
    rows = json.loads(result.to_json(orient="records"))
    return {"targets": str(targets_path), "code_version": provenance.code_version(),
            "model_hash": provenance.model_hash(), "db": db_url,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "rows": rows}


def read_record(path: Path) -> dict | None:
    """A validation record written by `sim validate`, or None when the file does not exist; a ScenarioError
    when it exists but is not such a record."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(inputs.read_text(path, "validation record"))
    except inputs.InputError as e:
        raise ScenarioError(path, "", NO_VALUE, e.allowed) from None
    except (OSError, ValueError, RecursionError) as e:
        raise ScenarioError(path, "", NO_VALUE, f"not a readable `sim validate` record ({e.__class__.__name__}: "
                            f"{e}); run `sim validate` again to rewrite it") from None
    if not (isinstance(data, dict) and isinstance(data.get("rows"), list)):
        raise ScenarioError(path, "", NO_VALUE, "not a `sim validate` record (a JSON object with 'rows'); run "
                            "`sim validate` again to rewrite it")
    return data


def table_markdown(result: pd.DataFrame, header: str) -> str:
    """The validation table as a markdown document."""
    lines = [f"# Validation against published findings\n\n{header}\n",
             "| id | finding | published | simulated mean [95% over replicates] | accept | result |",
             "|---|---|---|---|---|---|"]
    for _, r in result.iterrows():
        how = f"; analysis: {r.analysis}" if r.get("analysis") else ""
        lines.append(f"| {r.id} | {r.finding} ({r.source.split('.')[0]}{how}) | {_fmt(r.published)} | "
                     f"{_fmt(r['mean'])} [{_fmt(r['p2.5'])}, {_fmt(r['p97.5'])}] ({r.replicates} reps) | "
                     f"{_fmt(r.accept_low)} to {_fmt(r.accept_high)} | {'pass' if r.passed else '**FAIL**'} |")
    lines.append(f"\n{int(result.passed.sum())} of {len(result)} targets pass.\n")
    return "\n".join(lines)
