"""The sweep report: one self-contained HTML file of a stored sweep (its design, rankings, points, figures).

    from sim.analysis import sweep_report
    from sim.runs import store
    sweep_report.write_report(store.Store(), 3, Path("results/sweep_report.html"))

Everything is read back from the store: the sweep file's text, its points and the base point's scenario
text rebuild the Sweep, so a report can be made long after the files have changed. Figures are embedded
as base64 PNG (as in report.py, whose CSS, tables and writer this reuses). What cannot be computed yet
(unfinished runs, indices) is said in the report, not raised.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from sim.analysis import metrics, plots, report, sweep_plots, sweeps
from sim.runs import provenance, results
from sim.runs import store as st
from sim.runs.sweep import BASE_POINT
from sim.sweep_spec import Sweep

MAX_POINT_ROWS = 200
DESIGN_TEXT = {
    "grid": "A full grid: every combination of the factors' levels is run. Read the response curves (one factor "
            "moving, the others at the level nearest their default) and the surfaces (two factors moving); a "
            "difference between points counts only where it is larger than the points' noise intervals.",
    "morris": "Morris screening: random one-at-a-time trajectories through a grid of levels. For each factor, μ* is "
              "the mean absolute change in the outcome when the factor alone moves across its range (importance), "
              "σ the spread of those changes (interactions or curvature). A factor whose μ* lies below the replicate "
              "noise level cannot be told from noise; rankings among small μ* are not meaningful.",
    "sobol": "Sobol' variance decomposition (Saltelli sampling): S1 is the share of the outcome's variance across "
             "points that a factor explains alone, ST the share it is involved in, interactions included. ST near 0 "
             "means the factor can be fixed anywhere in its range; ST much above S1 means interactions. Intervals are "
             "95% bootstrap intervals; with few samples they are wide and indices can come out slightly negative.",
    "lhs": "A Latin hypercube over the factors' ranges (or distributions), analysed with Borgonovo's δ (how much the "
           "whole distribution of the outcome shifts when a factor is known) and a first-order S1. Read δ as a "
           "ranking; the response curves show the direction of each effect.",
    "uncertainty": "Uncertainty analysis: the factors are drawn from their distributions (a Latin hypercube), and "
                   "each draw is a full replicate set. The table compares the outcome's range at the base values "
                   "(trial sampling alone) with its range over all draws (parameter uncertainty as well): if the "
                   "second is much wider, a conclusion depends on parameters the data do not pin down.",
}
TITLES = {"indices": "Sensitivity indices", "response": "Response curves", "surface": "Response surface",
          "uncertainty": "Uncertainty intervals"}
CAPTIONS = {
    "indices": "Sensitivity index per factor, most influential on top; error bars: 95% bootstrap interval.",
    "response": "Each point's mean over its replicates (dots, with the 95% interval of that mean from replicate "
                "noise), the trend line, and the base scenario at its own values (star).",
    "surface": "Mean of the outcome over the first two factors' levels, other factors at the level nearest their "
               "default; each cell gives the mean and ±1.96 standard errors over replicates.",
    "uncertainty": "Per outcome: 95% of replicate trials at the base values against 95% of draws × trials with "
                   "the parameters drawn from their distributions; dots: means.",
}


class SweepReportError(ValueError):
    """A sweep report that cannot be made (unknown sweep id, unusable output path)."""


@dataclass
class SweepData:
    """A stored sweep with everything its report shows."""

    sw: Sweep
    res: results.SweepResults
    values: pd.DataFrame
    summary: pd.DataFrame
    idx: pd.DataFrame
    row: dict  # the sweeps table row: id, name, sha256, path, text, design, created_at
    notes: list[str] = field(default_factory=list)


def _known(db: st.Store) -> str:
    known = results.sweeps(db)
    if known.empty:
        return "it holds no sweeps yet; run `sim sweep SWEEP.yaml` first"
    return "stored sweeps: " + ", ".join(f"{r.id} ({r.name}, {r.design})" for r in known.itertuples())


def load(db: st.Store, sweep_id: int) -> SweepData:
    """Read a sweep back from the store and analyse it; SweepReportError naming the stored sweeps if absent."""
    with db.engine.connect() as c:
        row = c.execute(sa.select(st.sweeps).where(st.sweeps.c.id == sweep_id)).mappings().first()
    if row is None:
        raise SweepReportError(f"sweep {sweep_id} is not in {db.url}; {_known(db)}")
    sw, res = sweeps.stored(db, sweep_id)
    values = sweeps.outcome_values(sw, res)
    summary = sweeps.point_summary(values)
    expected = len(res.points) * sw.spec.replicates * len(sw.base.scenario.arms)
    notes = _other_code(db, sweep_id, len(res.runs)) if len(res.runs) < expected else []
    idx = pd.DataFrame()
    if len(values):
        try:
            idx = sweeps.indices(sw, res.points, summary)
        except (sweeps.SweepAnalysisError, metrics.MetricError, KeyError, ValueError) as e:
            notes.append(f"Sensitivity indices could not be computed: {e.__class__.__name__}: {e}")
    return SweepData(sw, res, values, summary, idx, dict(row), notes)


def _other_code(db: st.Store, sweep_id: int, current: int) -> list[str]:
    """A note when finished runs of this sweep were made by other model code (and so are not shown)."""
    q = (sa.select(st.runs.c.model_hash, sa.func.count()).join(
        st.sweep_points, st.sweep_points.c.scenario_id == st.runs.c.scenario_id)
        .where(st.sweep_points.c.sweep_id == sweep_id, st.runs.c.status == "done",
               st.runs.c.model_hash != provenance.model_hash()).group_by(st.runs.c.model_hash))
    with db.engine.connect() as c:
        other = c.execute(q).all()
    if not other:
        return []
    return [(f"{sum(n for _, n in other)} finished runs of this sweep were made by other model code "
             f"({', '.join(h for h, _ in other)}) and are not shown; {current} runs match the current code "
             f"({provenance.model_hash()}). Run the sweep again to redo them with this code.")]


def _points(points: pd.DataFrame) -> str:
    n = int((points.point != BASE_POINT).sum())
    return f"{n} points + base" if (points.point == BASE_POINT).any() else f"{n} points"


def footer(sw: Sweep, res: results.SweepResults) -> str:
    """Provenance footer for a sweep's figures."""
    return (f"sweep {sw.name} (id {res.sweep_id}, {sw.spec.design}), base {sw.spec.base}, seed "
            f"{sw.base.scenario.seed}, {_points(res.points)} x {res.runs.replicate.nunique()} replicates, "
            f"sim {provenance.code_version()}, model "
            f"{provenance.model_hash()}, {dt.date.today().isoformat()}")


def _ci(v: float, half: float, digits: int = 3, floor: float = -math.inf) -> str:
    """'v [v - half, v + half]', the lower end no lower than `floor` (mu* cannot be negative)."""
    if pd.isna(v):
        return "–"
    return f"{v:.{digits}g} <small>[{max(floor, v - half):.{digits}g}, {v + half:.{digits}g}]</small>"


def ranking_table(sw: Sweep, idx: pd.DataFrame, outcome: str) -> str:
    """One outcome's factors, most influential first, with their indices, 95% intervals and the noise level."""
    design = sw.spec.design
    d = idx[idx.outcome == outcome].sort_values(sweeps.RANK_BY[design], ascending=False)
    esc, rows = html.escape, []
    if design == "morris":
        noise = float(d.noise_mu_star.iloc[0])
        known = math.isfinite(noise) and noise > 0
        for r in d.itertuples():
            verdict = ("unknown" if not known else "within noise" if r.mu_star < noise
                       else f"{r.mu_star / noise:.1f} × noise")
            rows.append([esc(r.factor), _ci(r.mu_star, r.mu_star_conf, floor=0.0), f"{r.sigma:.3g}", f"{r.mu:+.3g}",
                         verdict])
        level = f"μ* {noise:.3g}" if known else "unknown: one replicate per point"
        head = ["factor", "μ* [95% bootstrap interval]", "σ", "μ (signed)", f"against replicate noise ({level})"]
    elif design == "sobol":
        for r in d.itertuples():
            rows.append([esc(r.factor), _ci(r.ST, r.ST_conf, 2), _ci(r.S1, r.S1_conf, 2)])
        head = ["factor", "ST [95% interval]", "S1 [95% interval]"]
        share = 100 * float(d.noise_share.iloc[0])
        rows.append(["<i>replicate noise</i>", f"{share:.1f}% of the variance across points", ""])
    else:
        for r in d.itertuples():
            rows.append([esc(r.factor), _ci(r.delta, r.delta_conf, 2), _ci(r.S1, r.S1_conf, 2)])
        head = ["factor", "δ [95% interval]", "S1 [95% interval]"]
    return report._html_table(head, rows, "num")


def uncertainty_table(table: pd.DataFrame) -> str:
    """The uncertainty design's table: base-value range against the range with parameter uncertainty."""
    rows = [[html.escape(r.outcome), f"{r.base_mean:.3g} <small>[{r.sampling_low:.3g}, {r.sampling_high:.3g}]</small>",
             f"{r.base_replicates}", f"{r['mean']:.3g} <small>[{r.total_low:.3g}, {r.total_high:.3g}]</small>",
             f"[{r.parameter_low:.3g}, {r.parameter_high:.3g}]", f"{r.draws}",
             "–" if pd.isna(r.same_sign) else f"{100 * r.same_sign:.0f}%"] for _, r in table.iterrows()]
    return report._html_table(["outcome", "at the base values: mean [95% of trials]", "trials",
                               "with parameter uncertainty: mean [95% of draws × trials]",
                               "95% of draws' means (parameters alone)", "draws", "draws with the base sign"],
                              rows, "num")


def _value(sw: Sweep, name: str, v: float) -> str:
    """A point's factor value, with the whole number the scenario ran with when the design drew a fraction."""
    if pd.isna(v):
        return "–"
    if sw.integer.get(name) and round(v) != v:
        return f"{v:.4g} <small>→ {round(v)}</small>"
    return f"{v:.4g}"


def points_table(sw: Sweep, points: pd.DataFrame, summary: pd.DataFrame) -> str:
    """The first MAX_POINT_ROWS points: factor values and each outcome's mean ± standard error."""
    ids = [o.id for o in sw.spec.outcomes]
    mean = summary.pivot(index="point", columns="outcome", values="mean")
    se = summary.pivot(index="point", columns="outcome", values="se")
    rows = []
    for _, p in points.head(MAX_POINT_ROWS + 1).iterrows():
        k = int(p.point)
        cells = ["base" if k == BASE_POINT else str(k)] + [_value(sw, f, p[f]) for f in sw.factor_names]
        for o in ids:
            m = mean.at[k, o] if k in mean.index and o in mean else float("nan")
            s = se.at[k, o] if k in se.index and o in se else float("nan")
            cells.append("–" if pd.isna(m) else f"{m:.3g} ± {s:.2g}" if pd.notna(s) else f"{m:.3g}")
        rows.append(cells)
    head = ["point"] + [html.escape(f) for f in sw.factor_names] + [f"{html.escape(o)}<br><small>mean ± SE</small>"
                                                                    for o in ids]
    more = len(points) - MAX_POINT_ROWS - 1
    tail = f"<p class='meta'>… and {more} more points (export the store for all).</p>" if more > 0 else ""
    return report._html_table(head, rows, "num") + tail


def _figure(key: str, drawn, anchor: str) -> str:
    kind, _, outcome = key.partition("_")
    title = TITLES.get(kind, kind) + (f": {outcome}" if outcome else "")
    body = (f"<p class='missing'>Not shown: {html.escape(drawn)}</p>" if isinstance(drawn, str) else
            f"<img alt='{html.escape(title)}' src='data:image/png;base64,{report._png(drawn)}'>")
    return (f"<figure id='{anchor}'><h4>{html.escape(title)}</h4>{body}"
            f"<figcaption>{html.escape(CAPTIONS.get(kind, ''))}</figcaption></figure>")


def build(sw: Sweep, res: results.SweepResults, values: pd.DataFrame, summary: pd.DataFrame, idx: pd.DataFrame,
          db_url: str, notes: list[str] | tuple = (), generated: dt.datetime | None = None,
          sweep_path: str | None = None) -> str:
    """The sweep report as one self-contained HTML string."""
    generated = generated or dt.datetime.now(dt.UTC)
    esc, spec, base = html.escape, sw.spec, sw.base.scenario
    arms = list(base.arms)
    expected = len(res.points) * spec.replicates * len(arms)
    notes = list(notes)
    if len(res.runs) < expected:
        notes.append(f"{len(res.runs)} of {expected} runs are finished with the current model code: the figures and "
                     "tables use those; run the sweep again to finish it.")
    nav = "".join(f"<li><a href='#{a}'>{t}</a></li>" for a, t in (
        ("design", "design"), ("rankings", "rankings"), ("points", "points"), ("figures", "figures"),
        ("file", "sweep file"), ("provenance", "provenance")))
    body = [f"<h1>Sweep report: {esc(sw.name)} ({esc(spec.design)})</h1>",
            (f"<p class='meta'>Generated {generated:%Y-%m-%d %H:%M} UTC by sim {esc(provenance.code_version())} "
             f"(model hash {provenance.model_hash()}) from <code>{esc(db_url)}</code>; sweep id {res.sweep_id}.</p>"),
            f"<nav><ul>{nav}</ul></nav>"]
    if spec.description:
        body.append(f"<p class='question'>{esc(spec.description.strip())}</p>")
    body.append(f"<section id='design'><h2>Design</h2><p>{esc(DESIGN_TEXT[spec.design])}</p>"
                f"<p class='meta'>Base scenario <code>{esc(spec.base)}</code> (stored as "
                f"<code>{esc(base.name)}</code>, seed {base.seed}; every point keeps it, so replicate r of every point "
                f"draws the same people). {len(res.points) - 1} points + the base point × {spec.replicates} "
                f"replicates × {len(arms)} arms ({esc(', '.join(arms))}) = {expected} runs; "
                f"<b>{len(res.runs)} finished</b>. {base.population.size} participants per arm, {base.weeks} + {base.follow_up_weeks} weeks.</p>")
    body.append(report._html_table(["factor", "range", "base value"], [
        [esc(sweep_plots.factor_label(f)), f"{sw.bounds[f][0]:.4g} to {sw.bounds[f][1]:.4g}", _value(sw, f, sw.default(f))]
        for f in sw.factor_names], "num"))
    body.append(report._html_table(["outcome", "definition"], [
        [esc(o.id), esc(sweep_plots.outcome_label(sw, o.id))] for o in spec.outcomes]))
    if notes:
        body.append("<div class='notes'><b>What is missing or partial</b><ul>"
                    + "".join(f"<li>{report._code(n)}</li>" for n in notes) + "</ul></div>")
    body.append("</section><section id='rankings'><h2>Which factors matter</h2>")
    if spec.design == "uncertainty" and len(values):
        body.append("<h3>Uncertainty</h3>" + uncertainty_table(sweeps.uncertainty(sw, values)))
    if len(idx):
        for o in spec.outcomes:
            if (idx.outcome == o.id).any():
                body.append(f"<h3>{esc(sweep_plots.outcome_label(sw, o.id))}</h3>" + ranking_table(sw, idx, o.id))
    elif spec.design == "grid":
        body.append("<p>A grid has no sensitivity indices: read the response curves and surfaces below.</p>")
    else:
        body.append("<p class='missing'>No sensitivity indices (see what is missing above).</p>")
    body.append(f"</section><section id='points'><h2>Points</h2><p class='meta'>Each outcome's mean over the "
                f"point's replicates ± its standard error (the replicate noise). Point “base” is the base scenario at "
                f"its own values.</p>{points_table(sw, res.points, summary)}</section>")
    body.append("<section id='figures'><h2>Figures</h2>")
    if values.empty:
        body.append("<p class='missing'>No finished runs: nothing to plot yet.</p>")
    else:
        makers = sweep_plots.figure_makers(sw, res, values, summary, idx, footer(sw, res))
        body += [_figure(k, report._draw(make), f"fig-{k}") for k, make in makers.items()]
    body.append(f"</section><section id='file'><h2>Sweep file</h2><pre>{esc(res.text)}</pre></section>")
    items = [("sweep", f"{esc(sw.name)} (id {res.sweep_id}), file <code>{esc(sweep_path or str(sw.path))}</code>"),
             ("code version", esc(provenance.code_version())),
             ("model hash", f"<code>{provenance.model_hash()}</code>"),
             ("results store", f"<code>{esc(db_url)}</code>"), ("design seed", f"{spec.seed}"),
             ("base scenario seed", f"{base.seed}")]
    body.append("<section id='provenance'><h2>Provenance</h2><table class='prov'>"
                + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items) + "</table></section>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>Sweep: {esc(sw.name)}"
            f"</title><style>{report.CSS}</style></head><body><main>\n" + "\n".join(body) + "\n</main></body></html>\n")


def write_report(db: st.Store, sweep_id: int, out_path: Path) -> Path:
    """Write the report of a stored sweep to `out_path`; SweepReportError if the sweep or the path is unusable."""
    out_path = Path(out_path)
    try:
        report.check_writable(out_path)
    except report.ReportError as e:
        raise SweepReportError(str(e)) from None
    d = load(db, sweep_id)
    text = build(d.sw, d.res, d.values, d.summary, d.idx, db.url, d.notes, sweep_path=d.row["path"])
    try:
        return report.write(text, out_path)
    except report.ReportError as e:
        raise SweepReportError(str(e)) from None


def save_figures(db: st.Store, sweep_id: int, folder: Path) -> list[Path]:
    """Every figure of a stored sweep as PNG and SVG in `folder` (<sweep>_<figure>.png/.svg)."""
    d = load(db, sweep_id)
    if d.values.empty:
        return []
    paths = []
    for key, make in sweep_plots.figure_makers(d.sw, d.res, d.values, d.summary, d.idx, footer(d.sw, d.res)).items():
        paths += plots.save(make(), Path(folder) / f"{d.sw.name}_{key}")
    return paths
