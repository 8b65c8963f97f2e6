"""The batch report: one self-contained HTML file of stored results (`sim report`).

    from sim.analysis import report

    from sim.runs import store
    db = store.Store()
    sections = report.select(db, scenarios=["standard_prescription"])   # or batches=[3]; neither = latest
    report.write(report.build(sections, db.url), Path("results/report.html"))

A report covers one or more scenarios; for each, the batch named (or the scenario's latest batch)
fixes the replicates and the model code whose stored runs are shown. Figures are embedded as
base64 PNG, so the file opens in any browser with no server. What the runs lack (pending or failed
runs, an arm with no finished runs, a single replicate, no weekly panel, an arm where everyone
dropped out) is said in the report, not raised.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from sim import outputs, redact
from sim.analysis import metrics, plots
from sim.analysis.report_sections import (  # noqa: F401 - the report API, re-exported
    ReportError,
    Section,
    comma_list,
    missing_notes,
    section,
    select,
    with_reference,
)
from sim.cli_defaults import VALIDATION_OUT as DEFAULT_VALIDATION
from sim.runs import provenance

# ---------------------------------------------------------------- tables

def _num(v, digits: int = 1, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:.{digits}f}" if pct else f"{v:.{digits}f}"


def _spread(row: pd.Series, col: str, digits: int = 1, pct: bool = False, reps: bool = True) -> str:
    """'mean' with the 2.5-97.5 percentiles over replicates in small type."""
    main = _num(row[col], digits, pct)
    lo, hi = row.get(col + "_p2.5"), row.get(col + "_p97.5")
    if not reps or main == "–" or lo is None or row.get("replicates", 1) < 2:
        return html.escape(main)
    return f"{html.escape(main)}<br><small>[{_num(lo, digits, pct)}, {_num(hi, digits, pct)}]</small>"


def _html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A table from already-escaped cell HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def arm_table(s: Section, week: int, completers: bool = False, analysis: str = "true") -> str:
    """Per-arm outcomes at the end of `week` over the replicates (ITT, or completers), of the true state or of
    the trial's assessments (`analysis`: true, observed or locf)."""
    sc, res = s.scenario, s.res
    try:
        trials = metrics.trial_metrics(res.participants, res.daily, sc.outcomes, sc.reference, week,
                                       completers=completers, weekly=res.weekly, programme_weeks=sc.weeks,
                                       analysis=analysis, assessments=res.assessments)
    except metrics.MetricError as e:
        return f"<p class='missing'>Not computable: {html.escape(str(e))}</p>"
    if trials.empty:
        return "<p class='missing'>No finished runs.</p>"
    table = metrics.across_replicates(trials, list(sc.arms))
    if completers:
        kept = trials.groupby("arm").n.mean()
        randomised = trials.groupby("arm").randomised.mean()
    header = ["arm", "replicates", "n" + (" completers / randomised" if completers else ""), "adherence %",
              "dropout %", "severity baseline → end", "change (points)", "change %", "response %", "remission %",
              "averaging ≥150 min/week over the programme %", "Hedges g [95% CI of one trial]", "g: 95% of replicates", "power %"]
    rows = []
    for _, r in table.iterrows():
        ref = r.arm == sc.reference
        n = f"{kept[r.arm]:.0f} / {randomised[r.arm]:.0f}" if completers else f"{r.n:.0f}"
        g = "reference" if ref else f"{_num(r.g, 2)} [{_num(r.g_low, 2)}, {_num(r.g_high, 2)}]"
        spread = "" if ref or r.replicates < 2 else f"{_num(r['g_trial_p2.5'], 2)} to {_num(r['g_trial_p97.5'], 2)}"
        rows.append([f"<b>{html.escape(r.arm)}</b>", f"{r.replicates}", n, _spread(r, "adherence", pct=True),
                     _spread(r, "dropout", pct=True), f"{_num(r.baseline)} → {_num(r.severity)}",
                     _spread(r, "change"), _num(r.change_pct), _spread(r, "response", pct=True),
                     _spread(r, "remission", pct=True), _spread(r, "meets_guideline", pct=True), g, spread,
                     "" if ref else _num(r.power, 0, pct=True)])
    return _html_table(header, rows, "num")


def checks_table(s: Section) -> str:
    """The scenario's checks against published findings."""
    sc, res = s.scenario, s.res
    frames = metrics.Frames.of(res, sc.outcomes, programme_weeks=sc.weeks)
    rows = []
    for c in sc.checks:
        try:
            r = metrics.evaluate_checks([c], frames, sc.reference).iloc[0]
        except (metrics.MetricError, KeyError, ValueError) as e:
            rows.append([html.escape(c.id), html.escape(f"{c.metric} {c.arm} week {c.week}"), "–",
                         f"{c.accept[0]:g} to {c.accept[1]:g}", "<span class='missing'>not computable: "
                         f"{html.escape(str(e))}</span>", html.escape(c.source)])
            continue
        ok = "<span class='ok'>ok</span>" if r.passed else "<span class='off'>OFF</span>"
        if not r.replicates:
            ok = "<span class='missing'>no data</span>"
        how = f" ({r.analysis})" if r.analysis else ""
        rows.append([html.escape(c.id), html.escape(f"{c.metric} {c.arm} week {c.week}{how}"),
                     f"{_num(r['mean'], 3)} <small>[{_num(r['p2.5'], 3)}, {_num(r['p97.5'], 3)}]</small>",
                     html.escape(r.accept), ok, html.escape(c.source)])
    return _html_table(["check", "metric", "simulated [95% of replicates]", "accepted", "", "source"], rows)


def relapse_table(s: Section) -> str:
    """Of those remitted at the end of the programme, the share who relapse by the end of follow-up: on the
    trial's assessments (intention to treat, LOCF) and on the true state (weekly panel)."""
    sc, res = s.scenario, s.res
    if not sc.follow_up_weeks:
        return "<p class='missing'>No follow-up phase in this scenario: relapse after the programme is not defined.</p>"
    frames = metrics.Frames.of(res, sc.outcomes, programme_weeks=sc.weeks)
    last, k = sc.weeks + sc.follow_up_weeks, sc.outcomes.relapse_assessments
    notes, rows = [], []
    analyses = ["locf"]
    if res.weekly.empty:
        notes.append("Relapse needs the per-participant weekly panel, which these runs did not record, for the true "
                     "state (run with <code>--record participants-weekly</code>); the assessed rows are shown.")
    else:
        analyses.append("true")
    cell = lambda v: _spread(pd.Series({"m": v["mean"], "m_p2.5": v["p2.5"], "m_p97.5": v["p97.5"],  # noqa: E731
                                        "replicates": v["replicates"]}), "m", pct=True)
    for how in analyses:
        for arm in [a for a in sc.arms if a in set(res.participants.arm)]:
            try:
                rem = metrics.summarise(metrics.compute("remission_rate", frames, arm=arm, week=sc.weeks, analysis=how))
                rel = metrics.summarise(metrics.compute("relapse_rate", frames, arm=arm, remitted_at=sc.weeks,
                                                        week=last, analysis=how))
            except metrics.MetricError as e:
                notes.append(f"{html.escape(arm)}, {how}: not computable: {html.escape(str(e))}")
                continue
            label = "assessed, ITT (LOCF)" if how == "locf" else "true state"
            rows.append([f"<b>{html.escape(arm)}</b>", label, cell(rem), cell(rel), f"{rel['replicates']}"])
    above = "any assessment" if k == 1 else f"{k} consecutive assessments"
    table = _html_table(["arm", "analysis", f"remitted at week {sc.weeks} %",
                         f"of those, relapsed by week {last} ({above} above {sc.outcomes.remission_at:g}) %",
                         "replicates with remitters"], rows, "num") if rows else ""
    return "".join(f"<p class='missing'>{n}</p>" for n in notes) + table


def runs_table(s: Section) -> str:
    """Expected runs per arm and their status."""
    t = s.status
    rows = []
    for arm, g in t.groupby("arm", sort=False):
        counts = g.status.value_counts()
        rows.append([f"<b>{html.escape(arm)}</b>", f"{len(g)}", f"{counts.get('done', 0)}",
                     f"{counts.get('failed', 0)}", f"{counts.get('not run', 0) + counts.get('running', 0)}"])
    return _html_table(["arm", "expected runs", "done", "failed", "not stored"], rows, "num")


def _when(t) -> str:
    return "–" if t is None or pd.isna(t) else f"{pd.Timestamp(t):%Y-%m-%d %H:%M:%S} UTC"


def provenance_table(s: Section) -> str:
    """Where the numbers came from: scenario, seeds, batches, code, packages, host and timings."""
    runs, b, esc = s.res.runs, s.batch, html.escape
    pk = sorted(set(runs.packages.dropna())) if len(runs) else []
    packages = "; ".join(", ".join(f"{k} {v}" for k, v in json.loads(p).items()) for p in pk) or "–"
    git = sorted({f"{sha}{' (uncommitted changes)' if dirty else ''}" for sha, dirty in
                  zip(runs.git_sha.fillna("unknown"), runs.git_dirty.fillna(False))}) if len(runs) else []
    used = sorted(int(x) for x in runs.batch_id.dropna().unique()) if len(runs) else []
    seeds = sorted(set(runs.seed), key=lambda x: int(x.split("/")[-1]) if x.split("/")[-1].isdigit() else 0)
    wall = runs.wall_seconds.sum() if len(runs) else 0.0
    done = b["finished_at"] is not None and not pd.isna(b["finished_at"])
    batch = f"{b['id']}: {s.replicates} replicates, started {_when(b['started_at'])}, "
    batch += f"finished {_when(b['finished_at'])}" if done else "not finished"
    if b.get("wall_seconds"):
        batch += f", {b['wall_seconds']:.1f} s"
        if b.get("store_seconds") is not None:
            batch += f", {100 * b['store_seconds'] / b['wall_seconds']:.0f}% of it writing to the store"
    every = ", ".join(f"{r.id} ({r.replicates} reps, "
                      f"{'finished' if r.finished_at is not None and not pd.isna(r.finished_at) else 'unfinished'})"
                      for r in s.batches.itertuples())
    per_run = wall / max(len(runs), 1)
    items = [
        ("scenario", f"{esc(s.name)} — file <code>{esc(s.path)}</code>"),
        ("scenario text sha256", f"<code>{s.res.sha256}</code>"),
        ("scenario seed; replicate seeds", f"{s.scenario.seed}; {esc(comma_list(seeds)) or '–'}"),
        ("batch reported", batch),
        ("command", f"<code>{esc(redact.mask(b.get('command') or '–'))}</code> (executor {esc(b.get('executor') or '–')}, "
                    f"record {esc(b.get('record') or 'endpoints only')})"),
        ("batches that stored the runs shown", ", ".join(map(str, used)) or "–"),
        ("all batches of this scenario text", every),
        ("code version of the runs", esc(", ".join(sorted(set(runs.code_version.dropna()))) or "–")),
        ("model hash of the runs", f"<code>{s.model_hash}</code> (current code: <code>{provenance.model_hash()}"
                                   "</code>)"),
        ("git commit", esc(", ".join(git)) or "–"),
        ("packages", esc(packages)),
        ("hosts", esc(", ".join(sorted(set(runs.host.dropna())))) or "–"),
        ("run time", f"{len(runs)} runs, {wall:.1f} s of compute in total ({per_run:.2f} s per run); first started "
                     f"{_when(runs.started_at.min() if len(runs) else None)}, last finished "
                     f"{_when(runs.finished_at.max() if len(runs) else None)}"),
    ]
    return "<table class='prov'>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items) + "</table>"


# ---------------------------------------------------------------- figures

FIGURES: dict[str, tuple[str, str]] = {
    # key: (title, caption)
    "outcomes": ("Severity and exercise over time",
                 "Arm mean severity at each week's end and mean minutes exercised per week; bands: 2.5 to 97.5 "
                 "percentiles of replicate trials. Dashed line: end of the programme; shaded: follow-up."),
    "minutes": ("Weekly minutes and the 150 min/week guideline",
                "Top: mean minutes per participant per week (everyone randomised, dropouts as 0). Bottom: share of "
                "all randomised participants exercising at least 150 minutes in that week (needs the weekly panel)."),
    "dropout": ("Dropout (Kaplan-Meier)",
                "Share still enrolled by week, participants of all replicates pooled per arm; band: 95% Greenwood "
                "log(-log) confidence interval of the pooled sample (narrower than one trial's)."),
    "heterogeneity": ("For whom: effect by baseline traits",
                      "Effect at the end of the programme within tertiles of baseline traits (all replicates pooled): "
                      "mean change in the reference arm minus mean change in the arm, in scale points (positive = arm "
                      "better), with Hedges g and the number of participants per cell."),
    "dose_response": ("Dose-response",
                      "Per participant: mean weekly minutes in follow-up (or the programme, without follow-up) against "
                      "change in severity; line: mean in bins of minutes with a 95% CI."),
    "trajectories": ("Individual trajectories by phenotype",
                     "A random sample of participants' weekly severity, coloured by phenotype (median splits of "
                     "baseline reward sensitivity and cognitive control); thick lines: each phenotype's mean."),
    "forest": ("Effect sizes (forest plot)",
               "Hedges g against the reference arm at the end of the programme and of follow-up: dot = mean over "
               "replicates, thick bar = 95% of replicate trials, thin bar = mean 95% CI of one trial."),
}


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


def _figure_html(key: str, drawn: Figure | str, anchor: str) -> str:
    title, caption = FIGURES[key]
    if isinstance(drawn, str):
        body = f"<p class='missing'>Not shown: {html.escape(drawn)}</p>"
    else:
        body = f"<img alt='{html.escape(title)}' src='data:image/png;base64,{_png(drawn)}'>"
    return (f"<figure id='{anchor}'><h4>{html.escape(title)}</h4>{body}"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


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


# ---------------------------------------------------------------- the HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #fafafa; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5em 2em 4em; background: #fff; }
h1 { font-size: 1.7em; margin-bottom: .2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.6em; color: #333; } h4 { margin: .2em 0 .4em; }
.meta { color: #555; font-size: .92em; } .question { font-style: italic; color: #333; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .86em; }
th, td { border: 1px solid #ddd; padding: .3em .55em; vertical-align: top; }
thead th { background: #f0f2f5; text-align: center; }
table.num td { text-align: right; white-space: nowrap; } table.num td:first-child { text-align: left; }
table.prov th { text-align: left; background: #f6f6f6; width: 16em; font-weight: 600; }
small { color: #666; }
figure { margin: 1.2em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .88em; max-width: 60em; }
.notes { background: #fff7e0; border-left: 4px solid #e0a800; padding: .6em 1em; margin: 1em 0; }
.notes.good { background: #eef8ee; border-color: #4a4; }
.notes ul { margin: .3em 0; padding-left: 1.2em; }
.missing { color: #8a5a00; } .ok { color: #187a18; font-weight: 600; } .off { color: #c00; font-weight: 700; }
pre { background: #f6f8fa; border: 1px solid #e3e3e3; padding: .8em; overflow-x: auto; font-size: .82em; }
nav ul { font-size: .92em; } code { font-size: .92em; }
table.defs th { text-align: left; background: #f6f6f6; }
details summary { cursor: pointer; color: #245; }
"""


def _question(text: str) -> str:
    """The opening comment block of a scenario file (the question it asks)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def _code(text: str) -> str:
    """Escaped text with `backquoted` parts as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _section_html(s: Section, anchor: str) -> str:
    sc, res = s.scenario, s.res
    out = [f"<section id='{anchor}'><h2>{html.escape(s.name)}</h2>"]
    if q := _question(s.res.text):
        out.append(f"<p class='question'>{html.escape(q)}</p>")
    if sc.description:
        out.append(f"<p>{html.escape(sc.description.strip())}</p>")
    out.append(f"<p class='meta'>{len(sc.arms)} arms ({html.escape(', '.join(sc.arms))}; reference "
               f"<b>{html.escape(sc.reference)}</b>) × {s.replicates} replicate trials × {sc.population.size} "
               f"participants per arm; {sc.weeks} weeks of programme + {sc.follow_up_weeks} weeks of follow-up; "
               f"severity on {html.escape(sc.outcomes.scale)} (remission ≤ {sc.outcomes.remission_at:g}, "
               f"response = {100 * sc.outcomes.response_reduction:.0f}% reduction; assessed "
               + (f"every week, 0-{sc.weeks + sc.follow_up_weeks}" if sc.outcomes.assessment_weeks is None else
                  "at weeks " + ", ".join(map(str, sc.outcomes.assessments(sc.weeks + sc.follow_up_weeks))))
               + "). "
               f"Batch {s.batch['id']}.</p>")
    if s.notes:
        out.append(f"<div class='notes' id='{anchor}-missing'><b>What is missing or partial</b><ul>"
                   + "".join(f"<li>{_code(n)}</li>" for n in s.notes) + "</ul></div>")
    else:
        out.append(f"<div class='notes good' id='{anchor}-missing'><b>Complete:</b> every expected run is stored, "
                   "with the weekly panel.</div>")
    out.append(f"<h3 id='{anchor}-runs'>Runs</h3>" + runs_table(s))
    if res.participants.empty:
        out.append("<p class='missing'>No finished runs: nothing to tabulate or plot yet.</p>")
    else:
        out.append(f"<h3 id='{anchor}-tables'>Outcomes by arm</h3>")
        out.append("<p class='meta'>Means over replicate trials, with the 2.5 and 97.5 percentiles over replicates in "
                   "brackets. Intention to treat: every randomised participant counts, dropouts included. g: Hedges g "
                   f"of severity against {html.escape(sc.reference)} (positive = fewer symptoms), paired: the arms of a "
                   "replicate are the same simulated people. g: 95% of replicates and power (share of replicate "
                   "trials with Welch p &lt; 0.05 in favour of the arm) compare the arm with the reference group of "
                   "another replicate, as between two independent groups of a real trial. ≥150 min/week: share averaging at "
                   "least 150 minutes a week over the programme.</p>")
        true_state, locf = "<small> · true state</small>", "<small> · assessed, last observation carried forward</small>"
        out.append("<p class='meta'><b>True state</b>: the simulated severity of every randomised participant, which "
                   "no trial sees. <b>Assessed</b>: what the trial measured (rater error; nobody is assessed after "
                   "leaving the trial), analysed by intention to treat with each participant's last assessment "
                   "carried forward (LOCF; their baseline if nothing later).</p>")
        last = sc.weeks + sc.follow_up_weeks
        for week, when in [(sc.weeks, "End of programme")] + ([(last, "End of follow-up")] if sc.follow_up_weeks else []):
            out.append(f"<h4>{when} (week {week}), intention to treat{true_state}</h4>" + arm_table(s, week))
            out.append(f"<h4>{when} (week {week}), intention to treat{locf}</h4>"
                       + arm_table(s, week, analysis="locf"))
        out.append(f"<h4>End of programme (week {sc.weeks}), completers{true_state}</h4><p class='meta'>Only "
                   "participants who had "
                   "not dropped out by the end of the programme, from per-participant severity; n = completers / "
                   "randomised; the dropout column is the share left out.</p>"
                   + arm_table(s, sc.weeks, completers=True))
        out.append("<h4>Relapse after the programme</h4>" + relapse_table(s))
        if sc.checks:
            out.append("<h4>Checks against published findings</h4>" + checks_table(s))
        out.append(f"<h3 id='{anchor}-figures'>Figures</h3>")
        for key, make in figure_makers(s).items():
            out.append(_figure_html(key, _draw(make), f"{anchor}-fig-{key}"))
    out.append(f"<h3 id='{anchor}-scenario'>Scenario file</h3><p class='meta'>As stored with the runs (from "
               f"<code>{html.escape(s.path)}</code>).</p><pre>{html.escape(s.res.text)}</pre>")
    out.append(f"<h3 id='{anchor}-provenance'>Provenance</h3>" + provenance_table(s))
    out.append("</section>")
    return "\n".join(out)


GLOSSARY = [
    ("adherence", "completed over prescribed programme sessions, summed over the arm (dropouts' missed sessions "
                  "count)"),
    ("dropout", "share who dropped out (stopped for good) by the end of the week"),
    ("change", "arm mean severity at the week minus at baseline (negative = better)"),
    ("response / remission", "severity at most (1 − response reduction) × own baseline / at most the remission "
                             "threshold"),
    ("Hedges g", "(reference mean − arm mean) / pooled SD × small-sample correction, with its 95% CI "
                 "(Hedges & Olkin 1985)"),
    ("95% of replicates", "2.5 and 97.5 percentiles of a trial metric over replicate trials"),
    ("completers", "participants not dropped out by the end of the week reported"),
    ("true state", "the simulated severity of every randomised participant (no rater error, no missing data)"),
    ("assessed, LOCF", "the trial's assessments, intention to treat: each participant's last assessment at or "
                       "before the week carried forward (baseline if none later); docs/metrics.md, Analyses"),
    ("relapse", "of those remitted at a week, a given number of consecutive assessments above the remission "
                "threshold after it (outcomes.relapse_assessments; the true state: weeks of the panel)"),
]


def validation_html(record: dict | None, path: Path | str) -> str:
    """The latest `sim validate` table, saying which model code made it and whether that is this code."""
    out = ["<section id='validation'><h2>Validation against published trials</h2>"]
    if record is None:
        out.append(f"<p class='missing'>No validation result at <code>{html.escape(str(path))}</code>: run "
                   "<code>make validate</code> (or <code>sim validate</code>) to compare the model with published "
                   "trials.</p></section>")
        return "".join(out)
    same = record.get("model_hash") == provenance.model_hash()
    out.append(f"<p class='meta'>From <code>{html.escape(str(path))}</code>: targets "
               f"<code>{html.escape(str(record.get('targets')))}</code>, sim {html.escape(str(record.get('code_version')))}"
               f" (model hash {html.escape(str(record.get('model_hash')))}), {html.escape(str(record.get('date')))}.</p>")
    if not same:
        out.append("<p class='missing'>This validation was made with different model code from the code writing this "
                   "report: rerun <code>make validate</code> before relying on it.</p>")
    rows, passed = [], 0
    for r in record["rows"]:
        num = lambda v: v if isinstance(v, str) else ("–" if v is None else f"{v:.3g}")  # noqa: E731
        ok = bool(r.get("passed"))
        passed += ok
        how = f" <small>({html.escape(str(r['analysis']))})</small>" if r.get("analysis") else ""
        rows.append([html.escape(str(r.get("id"))) + how, html.escape(str(r.get("finding", ""))), num(r.get("published")),
                     f"{num(r.get('mean'))} [{num(r.get('p2.5'))}, {num(r.get('p97.5'))}] ({r.get('replicates')} reps)",
                     f"{num(r.get('accept_low'))} to {num(r.get('accept_high'))}",
                     "pass" if ok else "<span class='missing'>FAIL</span>"])
    out.append(_html_table(["target", "finding", "published", "simulated mean [95% over replicates]", "accept",
                            "result"], rows))
    out.append(f"<p>{passed} of {len(rows)} targets pass.</p></section>")
    return "".join(out)


def build(sections: list[Section], db_url: str, generated: dt.datetime | None = None,
          validation: dict | None = None, validation_path: Path | str = "") -> str:
    """The whole report as one self-contained HTML string (with the validation record when one is given)."""
    generated = generated or dt.datetime.now(dt.UTC)
    names = ", ".join(s.name for s in sections)
    anchors = [f"s{i}-{s.name}" for i, s in enumerate(sections)]
    nav = []
    for s, a in zip(sections, anchors):
        nav.append(f"<li><a href='#{a}'>{html.escape(s.name)}</a>: <a href='#{a}-missing'>what is missing</a>, "
                   f"<a href='#{a}-tables'>tables</a>, <a href='#{a}-figures'>figures</a>, "
                   f"<a href='#{a}-scenario'>scenario</a>, <a href='#{a}-provenance'>provenance</a></li>")
    body = [f"<h1>Virtual trial report: {html.escape(names)}</h1>",
            f"<p class='meta'>Generated {generated:%Y-%m-%d %H:%M} UTC by sim {html.escape(provenance.code_version())} "
            f"(model hash {provenance.model_hash()}) from <code>{html.escape(db_url)}</code>; batches "
            f"{', '.join(str(s.batch['id']) for s in sections)}. Metric definitions: docs/metrics.md.</p>",
            "<nav><ul>" + "".join(nav)
            + ("<li><a href='#across'>across scenarios</a></li>" if len(sections) > 1 else "")
            + "<li><a href='#validation'>validation</a></li><li><a href='#definitions'>definitions</a></li></ul></nav>"]
    if len(sections) > 1:
        drawn = _draw(lambda: plots.forest(_effects(sections, True), _multi_footer(sections)))
        body.append("<section id='across'><h2>Across scenarios</h2>" + _figure_html("forest", drawn, "across-forest")
                    + "</section>")
    body += [_section_html(s, a) for s, a in zip(sections, anchors)]
    body.append(validation_html(validation, validation_path or DEFAULT_VALIDATION))
    body.append("<section id='definitions'><h2>Definitions</h2><table class='defs'>" + "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in GLOSSARY) + "</table></section>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>Report: {html.escape(names)}"
            f"</title><style>{CSS}</style></head><body><main>\n" + "\n".join(body) + "\n</main></body></html>\n")


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
