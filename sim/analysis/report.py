"""The batch report: one self-contained HTML file of stored results (`sim report`).

    from sim.analysis import report

    from sim.runs import store
    db = store.Store()
    sections = report.select(db, scenarios=["standard_prescription"])   # or batches=[3]; neither = latest
    report.write(report.build(sections, db.url), Path("results/report.html"))

A report covers one or more scenarios; for each, the batch named (or the scenario's latest batch)
fixes the replicates and the model code whose stored runs are shown. This module computes what the
report shows (tables as header and cells, figures as base64 PNG, notes) and chooses the sections; the
layout is in the Jinja2 templates of sim/templates/. The file opens in any browser with no server. What
the runs lack (pending or failed runs, an arm with no finished runs, a single replicate, no weekly
panel, an arm where everyone dropped out) is said in the report, not raised.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import math
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from sim import outputs
from sim.analysis import metrics, plots
from sim.analysis.report_sections import (  # noqa: F401 - the report API, re-exported
    ReportError,
    Section,
    comma_list,
    missing_notes,
    provenance_items,
    section,
    select,
    with_reference,
)
from sim.analysis.report_text import FIGURES, GLOSSARY, loto_view, validation_view
from sim.cli_defaults import REPORT_OUT as DEFAULT_OUT  # noqa: F401 - re-exported for the command line
from sim.cli_defaults import VALIDATION_OUT as DEFAULT_VALIDATION
from sim.runs import provenance

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
CSS = (TEMPLATES / "report.css").read_text(encoding="utf-8")  # shared with the sweep report

# ---------------------------------------------------------------- cells and tables (data for the templates)


def _num(v, digits: int = 1, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:.{digits}f}" if pct else f"{v:.{digits}f}"


def cell(text: str, sub: str = "", bold: bool = False, cls: str = "") -> dict:
    """A table cell: text, an optional second line in small type, bold, a CSS class."""
    return {"text": text, "sub": sub, "bold": bold, "cls": cls}


def _spread(row: pd.Series, col: str, digits: int = 1, pct: bool = False) -> dict:
    """'mean' with the 2.5-97.5 percentiles over replicates as the second line."""
    main = _num(row[col], digits, pct)
    lo, hi = row.get(col + "_p2.5"), row.get(col + "_p97.5")
    if main == "–" or lo is None or row.get("replicates", 1) < 2:
        return cell(main)
    return cell(main, f"[{_num(lo, digits, pct)}, {_num(hi, digits, pct)}]")


def _power(r: pd.Series) -> dict:
    if pd.isna(r.get("power")):
        return cell("–")
    return cell(_num(r.power, 0, pct=True), f"[{_num(r.power_low, 0, pct=True)}, {_num(r.power_high, 0, pct=True)}] "
                f"of {int(r.power_n)}", cls="few" if r.power_n < metrics.FEW_REPLICATES else "")


def arm_table(s: Section, week: int, completers: bool = False, analysis: str = "true") -> dict:
    """Per-arm outcomes at the end of `week` over the replicates (ITT, or completers), of the true state or of
    the trial's assessments (`analysis`: true, observed or locf)."""
    sc, res = s.scenario, s.res
    try:
        trials = metrics.trial_metrics(res.participants, res.daily, sc.outcomes, sc.reference, week,
                                       completers=completers, weekly=res.weekly, programme_weeks=sc.weeks,
                                       analysis=analysis, assessments=res.assessments)
    except metrics.MetricError as e:
        return {"missing": f"Not computable: {e}"}
    if trials.empty:
        return {"missing": "No finished runs."}
    table = metrics.across_replicates(trials, list(sc.arms))
    if completers:
        kept, randomised = trials.groupby("arm").n.mean(), trials.groupby("arm").randomised.mean()
    header = ["arm", "replicates", "n" + (" completers / randomised" if completers else ""), "adherence %",
              "dropout %", "severity baseline → end", "change (points)", "change %", "response %", "remission %",
              "weeks with ≥150 min % (programme person-weeks)", "Hedges g [95% CI of one trial]",
              "g: 95% of replicates", "power % [Wilson 95%] of trials"]
    rows = []
    for _, r in table.iterrows():
        ref = r.arm == sc.reference
        n = f"{kept[r.arm]:.0f} / {randomised[r.arm]:.0f}" if completers else f"{r.n:.0f}"
        g = "reference" if ref else f"{_num(r.g, 2)} [{_num(r.g_low, 2)}, {_num(r.g_high, 2)}]"
        spread = "" if ref or r.replicates < 2 else f"{_num(r['g_trial_p2.5'], 2)} to {_num(r['g_trial_p97.5'], 2)}"
        rows.append([cell(r.arm, bold=True), f"{r.replicates}", n, _spread(r, "adherence", pct=True),
                     _spread(r, "dropout", pct=True), f"{_num(r.baseline)} → {_num(r.severity)}",
                     _spread(r, "change"), _num(r.change_pct), _spread(r, "response", pct=True),
                     _spread(r, "remission", pct=True), _spread(r, "meets_guideline", pct=True), g, spread,
                     "" if ref else _power(r)])
    warnings = []
    n = table.power_n[table.power_n > 0]
    if len(n) and n.min() < metrics.FEW_REPLICATES:
        warnings.append(f"Power counts only {int(n.min())} replicate trials: its Wilson interval is wide; run at least "
                        f"{metrics.FEW_REPLICATES} replicates before relying on it.")
    notes = ["Weeks with ≥150 min: needs the per-participant weekly panel (`--record participants-weekly`)."] \
        if res.weekly.empty else []
    return {"header": header, "rows": rows, "cls": "num", "warnings": warnings, "notes": notes}


def checks_table(s: Section) -> dict:
    """The scenario's checks against published findings."""
    sc, res = s.scenario, s.res
    frames = metrics.Frames.of(res, sc.outcomes, programme_weeks=sc.weeks)
    rows = []
    for c in sc.checks:
        try:
            r = metrics.evaluate_checks([c], frames, sc.reference).iloc[0]
        except (metrics.MetricError, KeyError, ValueError) as e:
            rows.append([c.id, f"{c.metric} {c.arm} week {c.week}", "–", f"{c.accept[0]:g} to {c.accept[1]:g}",
                         cell(f"not computable: {e}", cls="missing"), c.source])
            continue
        ok = cell("ok", cls="ok") if r.passed else cell("OFF", cls="off")
        if not r.replicates:
            ok = cell("no data", cls="missing")
        how = f" ({r.analysis})" if r.analysis else ""
        rows.append([c.id, f"{c.metric} {c.arm} week {c.week}{how}",
                     cell(_num(r["mean"], 3), f"[{_num(r['p2.5'], 3)}, {_num(r['p97.5'], 3)}]"), r.accept, ok, c.source])
    return {"header": ["check", "metric", "simulated [95% of replicates]", "accepted", "", "source"], "rows": rows}


def relapse_table(s: Section) -> dict:
    """Of those remitted at the end of the programme, the share who relapse by the end of follow-up (assessed,
    ITT LOCF; and the true state from the weekly panel), with the remitters each rate rests on."""
    sc, res = s.scenario, s.res
    if not sc.follow_up_weeks:
        return {"missing": "No follow-up phase in this scenario: relapse after the programme is not defined."}
    frames = metrics.Frames.of(res, sc.outcomes, programme_weeks=sc.weeks)
    last, k = sc.weeks + sc.follow_up_weeks, sc.outcomes.relapse_assessments
    notes, rows, analyses = [], [], ["locf"]
    if res.weekly.empty:
        notes.append("Relapse needs the per-participant weekly panel, which these runs did not record, for the true "
                     "state (run with `--record participants-weekly`); the assessed rows are shown.")
    else:
        analyses.append("true")
    stat = lambda v: cell(_num(v["mean"], pct=True), f"[{_num(v['p2.5'], pct=True)}, {_num(v['p97.5'], pct=True)}]"  # noqa: E731
                          if v["replicates"] > 1 else "")
    for how in analyses:
        for arm in [a for a in sc.arms if a in set(res.participants.arm)]:
            args = dict(arm=arm, remitted_at=sc.weeks, week=last, analysis=how)
            try:
                rem = metrics.summarise(metrics.compute("remission_rate", frames, arm=arm, week=sc.weeks, analysis=how))
                rel = metrics.summarise(metrics.compute("relapse_rate", frames, **args))
                base = metrics.denominators("relapse_rate", frames, **args)
            except metrics.MetricError as e:
                notes.append(f"{arm}, {how}: not computable: {e}")
                continue
            label = "assessed, ITT (LOCF)" if how == "locf" else "true state"
            rows.append([cell(arm, bold=True), label, stat(rem), stat(rel),
                         cell(f"{base.mean():.1f}", f"{base.min()}–{base.max()}; {int(base.sum())} in all",
                              cls="few" if base.mean() < metrics.FEW_PEOPLE else ""),
                         f"{rel['replicates']} of {len(base)}"])
    above = "any assessment" if k == 1 else f"{k} consecutive assessments"
    header = ["arm", "analysis", f"remitted at week {sc.weeks} %",
              f"of those, relapsed by week {last} ({above} above {sc.outcomes.remission_at:g}) %",
              "remitters per replicate (the denominator): mean, range, total", "replicates with remitters"]
    if not rows:
        return {"missing": " ".join(notes) or "Not computable."}
    return {"header": header, "rows": rows, "cls": "num", "notes_before": notes,
            "notes": [f"Rows with fewer than {metrics.FEW_PEOPLE} remitters per replicate on average rest on few people."]}


def runs_table(s: Section) -> dict:
    """Expected runs per arm and their status."""
    rows = []
    for arm, g in s.status.groupby("arm", sort=False):
        counts = g.status.value_counts()
        rows.append([cell(arm, bold=True), f"{len(g)}", f"{counts.get('done', 0)}", f"{counts.get('failed', 0)}",
                     f"{counts.get('not run', 0) + counts.get('running', 0)}"])
    return {"header": ["arm", "expected runs", "done", "failed", "not stored"], "rows": rows, "cls": "num"}


# ---------------------------------------------------------------- figures

def _effects(sections: list[Section], label_with_scenario: bool) -> pd.DataFrame:
    rows = []
    for s in sections:
        sc, res = s.scenario, s.res
        if res.participants.empty:
            continue
        points = [(sc.weeks, "end of programme")]
        if sc.follow_up_weeks:
            points.append((sc.weeks + sc.follow_up_weeks, "end of follow-up"))
        for week, label in points:
            t = metrics.trial_metrics(res.participants, res.daily, sc.outcomes, sc.reference, week)
            if t.empty:
                continue
            a = metrics.across_replicates(t, list(sc.arms))
            a = a[a.arm != sc.reference].assign(time=label, scenario=s.name)
            a["label"] = (s.name + ": " if label_with_scenario else "") + a.arm + f" vs {sc.reference}"
            rows.append(a)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["g", "label", "time"])


def figure_makers(s: Section) -> dict[str, Callable[[], Figure]]:
    """The section's figures, each as a function that draws it (raising plots.MissingData if it cannot)."""
    sc, res, foot, arms = s.scenario, s.res, s.footer(), list(s.scenario.arms)
    p, d, w = res.participants, res.daily, res.weekly
    return {
        "outcomes": lambda: plots.outcome_curves(d, sc.weeks, sc.outcomes.scale, foot, arms),
        "minutes": lambda: plots.minutes_and_guideline(d, w, sc.weeks, foot, arms),
        "dropout": lambda: plots.dropout_survival(p, sc.days, sc.weeks, foot, arms),
        "heterogeneity": lambda: plots.heterogeneity(p, sc.reference, foot, arms, sc.outcomes.scale),
        "dose_response": lambda: plots.dose_response(p, foot, arms, sc.outcomes.scale, sc.follow_up_weeks),
        "trajectories": lambda: plots.trajectories(w, p, sc.weeks, foot, arms, sc.outcomes.scale),
        "forest": lambda: plots.forest(_effects([s], False), foot, f"Effect sizes against {sc.reference}"),
    }


def _draw(make: Callable[[], Figure]) -> Figure | str:
    """The figure, or a sentence saying why it cannot be drawn."""
    try:
        return make()
    except (plots.MissingData, metrics.MetricError) as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - partial data must give a report that says so, not a crash
        return f"This figure could not be drawn from the stored results ({e.__class__.__name__}: {e})."


def _png(fig: Figure, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plots.plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure(key: str, drawn: Figure | str, anchor: str) -> dict:
    """A figure for the template: title, caption, anchor and the PNG (base64) or why it is missing."""
    title, caption = FIGURES[key]
    return {"anchor": anchor, "title": title, "caption": caption, "png": None if isinstance(drawn, str) else _png(drawn),
            "missing": drawn if isinstance(drawn, str) else ""}


def save_figures(sections: list[Section], folder: Path) -> list[Path]:
    """Every figure of every section as PNG and SVG in `folder` (<scenario>_<figure>.png/.svg)."""
    paths = []
    for s in sections:
        for key, make in figure_makers(s).items():
            drawn = _draw(make)
            if isinstance(drawn, Figure):
                paths += plots.save(drawn, folder / f"{s.name}_{key}")
    if len(sections) > 1:
        drawn = _draw(lambda: plots.forest(_effects(sections, True), _multi_footer(sections)))
        if isinstance(drawn, Figure):
            paths += plots.save(drawn, folder / "scenarios_forest")
    return paths


def _multi_footer(sections: list[Section]) -> str:
    return (f"scenarios {', '.join(s.name for s in sections)}; batches "
            f"{', '.join(str(s.batch['id']) for s in sections)}; sim {provenance.code_version()}, "
            f"{dt.date.today().isoformat()}")


# ---------------------------------------------------------------- what each section shows

def _question(text: str) -> str:
    """The opening comment block of a scenario file (the question it asks)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def section_context(s: Section, anchor: str) -> dict:
    """Everything the section template shows for one scenario."""
    sc, res = s.scenario, s.res
    last = sc.weeks + sc.follow_up_weeks
    assessed = (f"every week, 0-{last}" if sc.outcomes.assessment_weeks is None else
                "at weeks " + ", ".join(map(str, sc.outcomes.assessments(last))))
    out = {"anchor": anchor, "name": s.name, "question": _question(res.text), "description": sc.description.strip(),
           "arms": list(sc.arms), "reference": sc.reference, "replicates": s.replicates, "size": sc.population.size,
           "weeks": sc.weeks, "follow_up_weeks": sc.follow_up_weeks, "scale": sc.outcomes.scale,
           "remission_at": f"{sc.outcomes.remission_at:g}", "response_pct": f"{100 * sc.outcomes.response_reduction:.0f}",
           "assessed": assessed, "batch_id": s.batch["id"], "notes": s.notes, "runs": runs_table(s),
           "empty": res.participants.empty, "path": s.path, "text": res.text, "provenance": provenance_items(s)}
    if out["empty"]:
        return out
    tables = []
    for week, when in [(sc.weeks, "End of programme")] + ([(last, "End of follow-up")] if sc.follow_up_weeks else []):
        title = f"{when} (week {week}), intention to treat"
        tables.append({"title": title, "label": "true state", "table": arm_table(s, week)})
        tables.append({"title": title, "label": "assessed, last observation carried forward",
                       "table": arm_table(s, week, analysis="locf")})
    tables.append({"title": f"End of programme (week {sc.weeks}), completers", "label": "true state",
                   "intro": "Only participants who had not dropped out by the end of the programme, from per-participant "
                            "severity; n = completers / randomised; the dropout column is the share left out.",
                   "table": arm_table(s, sc.weeks, completers=True)})
    seen = False
    for t in tables:  # the power warning once per section, under the first table that has it
        w = t["table"].get("warnings", [])
        t["table"]["warnings"] = [] if seen else w
        seen = seen or bool(w)
    out.update(arm_tables=tables, relapse=relapse_table(s), checks=checks_table(s) if sc.checks else None,
               figures=[figure(k, _draw(make), f"{anchor}-fig-{k}") for k, make in figure_makers(s).items()])
    return out


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=False,
                             undefined=jinja2.StrictUndefined)
    env.filters["code"] = lambda text: jinja2.utils.markupsafe.Markup(_code(str(text)))
    return env


def build(sections: list[Section], db_url: str, generated: dt.datetime | None = None,
          validation: dict | None = None, validation_path: Path | str = "", loto: dict | None = None,
          loto_path: Path | str = "") -> str:
    """The whole report as one self-contained HTML string (with the `sim validate` record and the
    leave-one-trial-out record when given)."""
    generated = generated or dt.datetime.now(dt.UTC)
    across = None
    if len(sections) > 1:
        across = figure("forest", _draw(lambda: plots.forest(_effects(sections, True), _multi_footer(sections))),
                        "across-forest")
    v = validation_view(validation, validation_path or DEFAULT_VALIDATION, provenance.model_hash())
    v["loto"] = loto_view(loto, loto_path, provenance.model_hash()) if loto else None
    return _environment().get_template("report.html.j2").render(
        names=", ".join(s.name for s in sections), generated=f"{generated:%Y-%m-%d %H:%M}",
        code_version=provenance.code_version(), model_hash=provenance.model_hash(), db_url=db_url,
        batches=", ".join(str(s.batch["id"]) for s in sections), across=across,
        sections=[section_context(s, f"s{i}-{s.name}") for i, s in enumerate(sections)], v=v, glossary=GLOSSARY)


# ---------------------------------------------------------------- helpers the sweep report shares

def _html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A table from already-escaped cell HTML (the sweep report's tables)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _code(text: str) -> str:
    """Escaped text with `backquoted` parts as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def check_writable(out: Path) -> None:
    """ReportError unless `out` can be written as a file (its folder is made if missing)."""
    if out.is_dir():
        raise ReportError(f"{out} is a folder; give a file name, e.g. {out / 'report.html'}")
    if (why := outputs.not_regular(out)) is not None:  # never rename over /dev/full or a pipe
        raise ReportError(f"{out} {why}; give the name of a regular file, e.g. results/report.html")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"cannot write {out}: cannot make its folder ({e.strerror or e})") from None
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ReportError(f"cannot write {out}: permission denied")


def write(text: str, out: Path) -> Path:
    """Write the report to `out` (through a temporary file, so a failed write leaves any old report whole);
    a failed write is an OSError naming `out`."""
    check_writable(out)
    return outputs.write_text(out, text)
