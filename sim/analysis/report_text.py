"""The report's words and its calibration-fit and validation tables: figure titles and captions, the
glossary, and the views of a `sim validate` record and of a leave-one-trial-out record that the
templates of sim/templates/ lay out."""

from __future__ import annotations

from pathlib import Path

from sim.analysis.validation import (
    NO_HOLDOUT,
    RULE_NOTE,
    SECTIONS,
    WIDE_NOTE,
    rejudge,
    result_word,
    where,
)

FIGURES: dict[str, tuple[str, str]] = {
    # key: (title, caption)
    "outcomes": ("Severity and exercise over time",
                 "Arm mean severity at each week's end (axis from 0) and mean minutes exercised per week; bands: 2.5 "
                 "to 97.5 percentiles of replicate trials. Dashed line: end of the programme; shaded: follow-up. An arm "
                 "that does not exercise (usual care) is the line at 0 min/week."),
    "minutes": ("Weekly minutes and the 150 min/week guideline",
                "Top: mean minutes per participant per week (everyone randomised, dropouts as 0). Bottom: share of "
                "all randomised participants exercising at least 150 minutes in that week (needs the weekly panel)."),
    "dropout": ("Dropout (Kaplan-Meier)",
                "Share still enrolled by week, participants of all replicates pooled per arm; band: 95% Greenwood "
                "log(-log) confidence interval of the pooled sample (narrower than one trial's)."),
    "heterogeneity": ("For whom: effect by baseline traits",
                      "Effect at the end of the programme within tertiles of baseline traits (all replicates pooled): "
                      "mean change in the reference arm minus mean change in the arm, in scale points (positive = arm "
                      "better), with Hedges g, the people in arm and reference per cell and a Welch t 95% CI; cells "
                      "with fewer than 10 people in a group are hatched (heatmap) or hollow (severity panel)."),
    "dose_response": ("Dose-response: an association, not an effect",
                      "Per participant: mean weekly minutes in follow-up (or the programme, without follow-up) against "
                      "change in severity. People chose how much to exercise, so this is an association: those who "
                      "exercise more differ at baseline. Line: mean in bins of minutes with a t 95% CI and the people "
                      "per bin (hollow: fewer than 10). Right: the OLS slope per 60 min/week, raw and adjusted for the "
                      "baseline traits, with HC3 95% CIs."),
    "trajectories": ("Individual trajectories by phenotype",
                     "A random sample of participants' weekly severity (axis from 0), coloured by phenotype (median "
                     "splits of baseline reward sensitivity and cognitive control); thick lines: each phenotype's mean."),
    "forest": ("Effect sizes (forest plot)",
               "Hedges g against the reference arm at the end of the programme and of follow-up: dot = mean over "
               "replicates; thin capped bar = the 95% CI of one trial of this size (mean over replicates); thick bar "
               "= 95% of replicate trials (g between independent cohorts). Both are written out on the right."),
}

GLOSSARY = [
    ("adherence", "completed over prescribed programme sessions, summed over the arm (dropouts' missed sessions "
                  "count)"),
    ("dropout", "share who dropped out (stopped for good) by the end of the week"),
    ("change", "arm mean severity at the week minus at baseline (negative = better)"),
    ("response / remission", "severity at most (1 − response reduction) × own baseline / at most the remission "
                             "threshold"),
    ("weeks with ≥150 min", "share of programme person-weeks in which the participant exercised at least 150 "
                            "minutes (every randomised participant; weeks after dropping out count as 0)"),
    ("Hedges g", "(reference mean − arm mean) / pooled SD × small-sample correction, with its 95% CI "
                 "(Hedges & Olkin 1985)"),
    ("95% of replicates", "2.5 and 97.5 percentiles of a trial metric over replicate trials"),
    ("power", "share of replicate trials with Welch p < 0.05 in the arm's favour, with its Wilson 95% interval and "
              "the number of trials counted (fewer than 100: marked)"),
    ("completers", "participants not dropped out by the end of the week reported"),
    ("true state", "the simulated severity of every randomised participant (no rater error, no missing data)"),
    ("assessed, LOCF", "the trial's assessments, intention to treat: each participant's last assessment at or "
                       "before the week carried forward (baseline if none later); docs/metrics.md, Analyses"),
    ("relapse", "of those remitted at a week (the denominator: remitters per replicate), a given number of "
                "consecutive assessments above the remission threshold after it (outcomes.relapse_assessments)"),
    ("calibration fit", "agreement with a published finding that the calibration fitted (in-sample)"),
    ("validation", "agreement with a published finding the calibration never saw (held out, out-of-sample)"),
    ("published at", "where the published value falls among the replicate trials, as a percentile"),
]


def _num(v) -> str:
    return v if isinstance(v, str) else ("–" if v is None else f"{v:.3g}")


def _row(r: dict) -> list:
    how = f" ({r['analysis']})" if r.get("analysis") else ""
    sim = f"{_num(r.get('mean'))} [{_num(r.get('p2.5'))}, {_num(r.get('p97.5'))}] ({r.get('replicates')} reps)"
    where_ = where({"percentile": r.get("percentile") if r.get("percentile") is not None else float("nan"),
                    "published": r.get("published")})
    word = result_word({"passed": bool(r.get("passed")), "verdict": r.get("verdict", "mean outside band"),
                        "wide": r.get("wide"), "published": r.get("published"), "replicates": r.get("replicates")})
    return [f"{r.get('id')}{how}", str(r.get("finding", "")), _num(r.get("published")),
            {"text": sim, "sub": r.get("denominator") or "", "bold": False, "cls": ""}, where_,
            f"{_num(r.get('accept_low'))} to {_num(r.get('accept_high'))}",
            {"text": word, "sub": "", "bold": False, "cls": "" if r.get("passed") else "missing"}]


HEADER = ["target", "finding", "published", "simulated mean [95% over replicates]", "published at", "accept", "result"]


def validation_view(record: dict | None, path: Path | str, model_hash: str) -> dict:
    """What the report shows of a `sim validate` record: calibration fit and validation apart."""
    if record is None:
        return {"record": False, "path": str(path)}
    rows = record["rows"]
    parts = []
    for (title, flag), key in zip(SECTIONS, ("fit", "holdout")):
        mine = [r for r in rows if bool(r.get("held_out")) == flag]
        parts.append({"key": key, "title": title, "passed": sum(bool(r.get("passed")) for r in mine),
                      "table": {"header": HEADER, "rows": [_row(r) for r in mine]},
                      "empty": NO_HOLDOUT if flag else "No target was used in the calibration."})
    return {"record": True, "path": str(path), "targets": str(record.get("targets")),
            "code_version": str(record.get("code_version")), "model_hash": str(record.get("model_hash")),
            "date": str(record.get("date")), "stale": record.get("model_hash") != model_hash, "parts": parts,
            "wide": WIDE_NOTE.removeprefix("spread > band: ") if any(r.get("wide") for r in rows) else "",
            "passed": sum(bool(r.get("passed")) for r in rows), "total": len(rows), "rule": RULE_NOTE}


def read_loto(path: Path | str) -> dict | None:
    """A leave-one-trial-out record (results/loto.json), or None when there is none; ValueError when the file
    is not such a record."""
    import json

    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable leave-one-trial-out record ({e}); rerun make loto") from None
    if not isinstance(data, dict) or not isinstance(data.get("folds"), list):
        raise ValueError(f"{path}: not a leave-one-trial-out record (a JSON object with 'folds'); rerun make loto")
    return data


def loto_view(record: dict, path: Path | str, model_hash: str) -> dict:
    """What the report shows of a leave-one-trial-out record (sim.analysis.loto): each held-out target."""
    base = {r["id"]: r for r in record.get("defaults", [])}
    rows, passed = [], 0
    for fold in record.get("folds", []):
        for r in (rejudge(r) for r in fold["rows"] if r["held_out"]):
            passed += bool(r["passed"])
            row = _row(r)
            row[1] = f"{fold['trial'].removesuffix('.yaml')} held out; stage {fold['stage']} refitted"
            ins = base.get(r["id"], {}).get("mean")
            rows.append(row + [_num(ins)])
    return {"path": str(path), "code_version": str(record.get("code_version")),
            "stale": record.get("model_hash") != model_hash, "passed": passed,
            "how": f"{record.get('trials')} Optuna trials per refit at {record.get('replicates')} replicates, from the "
                   f"sampler's own draws; {record.get('fixed', '')}",
            "table": {"header": ["target", "fold", "published", "out of sample: mean [95% over replicates]",
                                 "published at", "accept", "result", "in-sample mean (defaults)"], "rows": rows}}
