"""Targets files (published findings) and their check against simulated trials: `sim validate`.

A targets file holds `targets:`, a list of published findings, each naming a scenario file
(relative to the targets file), a metric of the vocabulary in sim.metrics with its arguments, the
published value and the band the simulated mean over replicates must fall in. docs/validation.md
documents the format.

Agreement with a target the calibration fitted is *calibration fit* (in-sample); only a target held
out of the calibration (`holdout: true`, or `--hold-out ID`) is *validation* (out-of-sample). The two
are reported apart.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
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
    holdout: bool = False  # left out of the calibration's loss: agreement with it is validation


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


def held_out(targets: Targets, extra=()) -> frozenset[str]:
    """The ids held out of the calibration: those marked `holdout: true` plus `extra` (ScenarioError for an
    id the targets file does not have)."""
    ids = {t.id for t in targets.targets}
    if unknown := sorted(set(extra) - ids):
        raise ScenarioError(targets.path, "--hold-out", unknown[0], f"a target id of this file: {', '.join(sorted(ids))}")
    return frozenset({t.id for t in targets.targets if t.holdout} | set(extra))


def replicates_needed(targets: Targets, override: int | None) -> dict[str, int]:
    """Replicates to run per scenario: the override, else the most any of its targets asks for,
    else the scenario's own."""
    need: dict[str, int] = {}
    for t in targets.targets:
        n = override or t.replicates or targets.scenarios[t.scenario].scenario.replicates
        need[t.scenario] = max(need.get(t.scenario, 0), n)
    return need


def published_percentile(values: pd.Series, published: float | str) -> float:
    """Where the published value falls in the replicate distribution, as a percentile (mid-rank, 0-100); for
    a direction (`positive`/`negative`), the percentage of replicates on the published side of 0."""
    v = values.replace([np.inf, -np.inf], np.nan).dropna().to_numpy(dtype=float)
    if v.size == 0:
        return float("nan")
    if isinstance(published, str):
        return float(100 * np.mean(v > 0 if published == "positive" else v < 0))
    return float(100 * (np.sum(v < published) + 0.5 * np.sum(v == published)) / v.size)


MIN_TESTABLE = 40  # with fewer replicates the two-sided Monte Carlo p, at least 2/(n+1), cannot fall below 0.05


def distribution_p(percentile: float, replicates: int) -> float:
    """Two-sided Monte Carlo p-value of the published value as a draw from the replicate trials:
    2 x (replicates on its far side + 1) / (replicates + 1), from its mid-rank percentile; NaN without one."""
    if not replicates or not np.isfinite(percentile):
        return float("nan")
    below = percentile / 100 * replicates
    return float(min(1.0, 2 * (min(below, replicates - below) + 1) / (replicates + 1)))


def verdict(mean: float, low: float, high: float, published: float | str, percentile: float,
            replicates: int) -> str:
    """'pass', or why not: the mean outside the band, or a published number the replicate trials make
    implausible (two-sided Monte Carlo p < 0.05: a finding the model's trials of that size would rarely
    give; testable with at least MIN_TESTABLE replicates)."""
    if not low <= mean <= high:
        return "mean outside band"
    if not isinstance(published, str) and distribution_p(percentile, replicates) < 0.05:
        return "published outside the replicates, p < 0.05"
    return "pass"


def rejudge(row: dict) -> dict:
    """A stored result row with `passed`, `verdict` and `wide` by the current rule (from its mean, band,
    published value, percentile, replicate count and 95% range)."""
    mean = row.get("mean")
    why = verdict(float("nan") if mean is None else mean, row["accept_low"], row["accept_high"], row["published"],
                  float("nan") if row.get("percentile") is None else row["percentile"], row.get("replicates") or 0)
    lo, hi = row.get("p2.5"), row.get("p97.5")
    wide = lo is not None and hi is not None and hi - lo > row["accept_high"] - row["accept_low"]
    return {**row, "passed": why == "pass", "verdict": why, "wide": wide}


def evaluate(targets: Targets, frames: dict[str, metrics.Frames], hold_out=()) -> pd.DataFrame:
    """One row per target: published value, simulated mean and 95% interval over replicates, where the
    published value falls among the replicates (percentile), whether that spread is wider than the band,
    pass/fail (mean in band and, for numbers, a published value the replicates do not make implausible), whether
    the target was held out of the calibration, and the metric's analysis (empty for metrics without one)."""
    held = held_out(targets, hold_out)
    rows = []
    for t in targets.targets:
        try:
            values = metrics.compute(t.metric, frames[t.scenario], **t.arguments())
            s, note = metrics.summarise(values), ""
            pct = published_percentile(values, t.published)
            base = metrics.denominator_text(t.metric, metrics.denominators(t.metric, frames[t.scenario],
                                                                           **t.arguments()))
        except metrics.MetricError as e:
            s, note = {"mean": float("nan"), "p2.5": float("nan"), "p97.5": float("nan"), "replicates": 0}, str(e)
            pct, base = float("nan"), ""
        why = verdict(s["mean"], *t.accept, t.published, pct, s["replicates"])
        rows.append({"id": t.id, "metric": t.metric, "analysis": analysis_of(t.metric, t.arguments()) or "",
                     "published": t.published, **s, "percentile": pct,
                     "wide": bool(s["p97.5"] - s["p2.5"] > t.accept[1] - t.accept[0]),
                     "accept_low": t.accept[0], "accept_high": t.accept[1], "passed": why == "pass", "verdict": why,
                     "held_out": t.id in held, "denominator": base,
                     "finding": t.finding, "source": t.source, "scenario": t.scenario, "note": note})
    return pd.DataFrame(rows)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


SECTIONS = (("Calibration fit (in-sample: targets the calibration fitted)", False),
            ("Validation (out-of-sample: targets held out of the calibration)", True))
NO_HOLDOUT = ("No target is held out of the calibration: every row is calibration fit, not validation. "
              "docs/validation.md reports leave-one-trial-out validation (make loto).")
WIDE_NOTE = ("spread > band: the replicate trials' 95% range is wider than the accept band, so one trial of "
             "this size would often fall outside it; the target tests the mean only")
RULE_NOTE = ("A target passes when the mean over replicate trials is in the accept band and, for a published "
             "number, the replicate trials do not make it implausible (two-sided Monte Carlo p >= 0.05, testable "
             f"with {MIN_TESTABLE} or more replicates).")


def where(r) -> str:
    """Where the published value falls among the replicate trials, in words for a table cell."""
    if not np.isfinite(r["percentile"]):
        return "-"
    if isinstance(r["published"], str):
        return f"{r['percentile']:.0f}% of reps {'> 0' if r['published'] == 'positive' else '< 0'}"
    return f"percentile {r['percentile']:.1f}".removesuffix(".0")


def result_word(r) -> str:
    """'pass' or 'FAIL (why)', with 'spread > band' when the replicate spread is wider than the band."""
    word = "pass" if r["passed"] else f"FAIL ({r.get('verdict', 'mean outside band')})"
    few = not isinstance(r.get("published"), str) and (r.get("replicates") or 0) < MIN_TESTABLE
    return word + ("; spread > band" if r.get("wide") else "") + (f"; < {MIN_TESTABLE} reps: distribution untested"
                                                                   if few else "")


def _parts(result: pd.DataFrame):
    held = result["held_out"] if "held_out" in result else pd.Series(False, index=result.index)
    return [(title, result[held == flag]) for title, flag in SECTIONS]


def table_text(result: pd.DataFrame) -> str:
    """The table as aligned text for the terminal: calibration fit and validation apart."""
    head = (f"{'target':<38}{'published':>10}  {'simulated mean [95% over replicates]':<40}"
            f"{'published at':<18}{'accept':<18}result")
    lines = []
    for title, part in _parts(result):
        if part.empty:
            continue
        lines += [f"\n{title}", head, "-" * len(head)]
        for _, r in part.iterrows():
            sim = f"{_fmt(r['mean'])} [{_fmt(r['p2.5'])}, {_fmt(r['p97.5'])}] ({r.replicates} reps)"
            name = f"{r.id} ({r.analysis})" if r.get("analysis") else r.id
            band = _fmt(r.accept_low) + " to " + _fmt(r.accept_high)
            lines.append(f"{name:<38}{_fmt(r.published):>10}  {sim:<40}{where(r):<18}{band:<18}"
                         f"{result_word(r)}{'  ' + r.note if r.note else ''}")
            if r.get("denominator"):
                lines.append(f"{'':<40}{r.denominator}")
        lines.append(f"{int(part.passed.sum())} of {len(part)} pass")
    if not bool(result.get("held_out", pd.Series(False)).any()):
        lines.append("\n" + NO_HOLDOUT)
    if bool(result.get("wide", pd.Series(False)).any()):
        lines.append(WIDE_NOTE)
    lines.append(RULE_NOTE)
    lines.append(f"\n{int(result.passed.sum())} of {len(result)} targets pass")
    return "\n".join(lines).lstrip("\n")


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
    """The table as a markdown document: calibration fit and validation apart."""
    lines = [f"# Calibration fit and validation against published findings\n\n{header}\n"]
    for title, part in _parts(result):
        if part.empty:
            continue
        lines += [f"## {title}\n",
                  "| id | finding | published | simulated mean [95% over replicates] | published at | accept | result |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in part.iterrows():
            how = f"; analysis: {r.analysis}" if r.get("analysis") else ""
            word = result_word(r)
            lines.append(f"| {r.id} | {r.finding} ({r.source.split('.')[0]}{how}) | {_fmt(r.published)} | "
                         f"{_fmt(r['mean'])} [{_fmt(r['p2.5'])}, {_fmt(r['p97.5'])}] ({r.replicates} reps)"
                         f"{'; ' + r.denominator if r.get('denominator') else ''} | {where(r)} | "
                         f"{_fmt(r.accept_low)} to {_fmt(r.accept_high)} | "
                         f"{word if r.passed else '**' + word + '**'} |")
        lines.append(f"\n{int(part.passed.sum())} of {len(part)} pass.\n")
    if not bool(result.get("held_out", pd.Series(False)).any()):
        lines.append(NO_HOLDOUT + "\n")
    if bool(result.get("wide", pd.Series(False)).any()):
        lines.append(WIDE_NOTE[0].upper() + WIDE_NOTE[1:] + ".\n")
    lines.append(RULE_NOTE + "\n")
    lines.append(f"{int(result.passed.sum())} of {len(result)} targets pass.\n")
    return "\n".join(lines)
