"""Sweep figures and the sweep report: tiny morris, grid and uncertainty sweeps run once in-process; every
figure is labelled and carries the provenance footer, the surface refuses non-grid designs, the report is
one well-formed self-contained page naming the sweep, outcomes and factors, and an unknown sweep id is
refused with the stored sweeps listed."""

from __future__ import annotations

import copy
import textwrap
from html.parser import HTMLParser

import pandas as pd
import pytest
from matplotlib.figure import Figure

from sim import sweep_spec
from sim.analysis import plots, sweep_plots, sweep_report
from sim.runs import executors, store, sweep

BASE = textwrap.dedent("""\
    name: sweepbase
    seed: 11
    replicates: 2
    weeks: 3
    follow_up_weeks: 1
    population: {size: 30}
    arms:
      usual_care: {}
      exercise:
        prescription: {sessions_per_week: 3, minutes: 30, intensity: 0.5}
        titration: {start_minutes: 10, weeks: 2}
    """)
OUTCOMES = """\
outcomes:
  - {id: g_end, metric: effect_size, arm: exercise, week: 3}
  - {id: dropout_end, metric: dropout_rate, arm: exercise, week: 3}
"""
SWEEPS = {
    "morris": """\
name: tmorris
base: base.yaml
design: morris
samples: 2
replicates: 2
factors:
  - name: plasticity.gain
  - name: dropout.base
    range: [0.0, 0.08]
  - name: arms.exercise.titration.weeks
    range: [1, 3]
""",
    "grid": """\
name: tgrid
base: base.yaml
design: grid
replicates: 2
factors:
  - name: plasticity.gain
    values: [0.02, 0.2]
  - name: arms.exercise.titration.weeks
    values: [1, 3]
""",
    "uncertainty": """\
name: tunc
base: base.yaml
design: uncertainty
samples: 5
replicates: 2
factors:
  - name: plasticity.gain
  - name: dropout.base
    distribution: {kind: triangular, low: 0.0, mode: 0.03, high: 0.08}
""",
}
FACTORS = {"morris": ["plasticity.gain", "dropout.base", "arms.exercise.titration.weeks"],
           "grid": ["plasticity.gain", "arms.exercise.titration.weeks"],
           "uncertainty": ["plasticity.gain", "dropout.base"]}


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Each tiny sweep run once into one store: {design: SweepData}, the store and the sweep ids."""
    tmp = tmp_path_factory.mktemp("sweeps")
    (tmp / "base.yaml").write_text(BASE)
    db = store.Store(f"sqlite:///{tmp}/s.db", create=True)
    ids = {}
    with executors.executor("serial") as ex:
        for design, text in SWEEPS.items():
            (tmp / f"{design}.yaml").write_text(text + OUTCOMES)
            out = sweep.run_sweep(sweep_spec.load_sweep(tmp / f"{design}.yaml"), db, ex)
            assert out.failed == 0
            ids[design] = out.sweep_id
    yield {d: sweep_report.load(db, i) for d, i in ids.items()}, db, ids, tmp
    db.engine.dispose()


def _check_figure(fig: Figure, footer: str) -> None:
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes
    for ax in axes:
        assert ax.get_xlabel() or ax.get_ylabel(), "an unlabelled axis"
    assert any(ax.get_ylabel() for ax in axes) or any(ax.get_yticklabels() for ax in axes)
    assert any(footer in t.get_text() for t in fig.texts), "no provenance footer"


@pytest.mark.parametrize("design", list(SWEEPS))
def test_every_figure_is_labelled_with_footer(stored, design):
    data = stored[0][design]
    footer = sweep_report.footer(data.sw, data.res)
    figs = sweep_plots.figures(data.sw, data.res, data.values, data.summary, data.idx, footer)
    expected = {f"response_{o}" for o in ("g_end", "dropout_end")}
    expected |= {"morris": {"indices_g_end", "indices_dropout_end"}, "grid": {"surface_g_end", "surface_dropout_end"},
                 "uncertainty": {"uncertainty"}}[design]
    assert expected <= set(figs)
    for fig in figs.values():
        _check_figure(fig, footer)
        plots.plt.close(fig)


def test_index_bars_show_intervals_and_noise(stored):
    data = stored[0]["morris"]
    fig = sweep_plots.index_bars(data.sw, data.idx, "g_end", "foot")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("95% bootstrap interval" in t for t in labels)
    assert "replicate noise level (independent points)" in labels
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert all(any(t.startswith(f) for t in ticks) for f in FACTORS["morris"])
    plots.plt.close(fig)
    with pytest.raises(ValueError, match="grid"):
        sweep_plots.index_bars(stored[0]["grid"].sw, pd.DataFrame(), "g_end", "foot")


@pytest.mark.parametrize("design", ["sobol", "lhs"])
def test_index_bars_for_variance_and_delta_indices(stored, design):
    # the drawing only: indices in the shape sweeps.indices gives for these designs
    sw = copy.copy(stored[0]["morris"].sw)
    sw.spec = sw.spec.model_copy(update={"design": design, "samples": 8})
    rows = [{"outcome": "g_end", "factor": f, "S1": 0.1 * k, "S1_conf": 0.05, "ST": 0.2 * k, "ST_conf": 0.05,
             "noise_share": 0.07, "delta": 0.15 * k, "delta_conf": 0.04} for k, f in enumerate(sw.factor_names)]
    fig = sweep_plots.index_bars(sw, pd.DataFrame(rows), "g_end", "foot")
    _check_figure(fig, "foot")
    assert any("95% bootstrap interval" in t for t in [fig.axes[0].get_xlabel()])
    plots.plt.close(fig)


def test_surface_refuses_non_grid_and_names_noise(stored):
    data = stored[0]["morris"]
    with pytest.raises(ValueError, match="grid design"):
        sweep_plots.response_surface(data.sw, data.res.points, data.summary, "g_end", *FACTORS["morris"][:2], "f")
    grid = stored[0]["grid"]
    fig = sweep_plots.response_surface(grid.sw, grid.res.points, grid.summary, "g_end", *FACTORS["grid"], "foot")
    assert "median noise" in fig.axes[0].get_title()
    assert fig.axes[1].get_ylabel().startswith("g_end")  # the colorbar names the outcome
    plots.plt.close(fig)


def test_response_curves_say_what_the_other_factors_do(stored):
    for design, phrase in (("grid", "grid level nearest their default"), ("morris", "vary over their ranges")):
        data = stored[0][design]
        fig = sweep_plots.response_curves(data.sw, data.res.points, data.summary, "g_end", "foot")
        assert phrase in fig._suptitle.get_text()
        assert any("noise" in t.get_text() for t in fig.legends[0].get_texts())
        plots.plt.close(fig)


class Page(HTMLParser):
    """Tags must nest and close; collects image sources and text."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self, text: str):
        super().__init__()
        self.stack, self.errors, self.images, self.text = [], [], [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.parametrize("design", list(SWEEPS))
def test_report_is_one_self_contained_page(stored, design):
    _, db, ids, tmp = stored
    out = sweep_report.write_report(db, ids[design], tmp / f"{design}.html")
    assert [p.name for p in tmp.glob(f"{design}.html*")] == [f"{design}.html"]
    text = out.read_text()
    page = Page(text)
    assert not page.errors and not page.stack
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    body = " ".join(page.text)
    name = SWEEPS[design].split("\n")[0].split(": ")[1]
    for word in [name, "g_end", "dropout_end", *FACTORS[design]]:
        assert word in body
    if design == "uncertainty":
        assert "with parameter uncertainty" in body


def test_save_figures_writes_png_and_svg(stored):
    _, db, ids, tmp = stored
    paths = sweep_report.save_figures(db, ids["grid"], tmp / "figs")
    assert {p.suffix for p in paths} == {".png", ".svg"} and all(p.stat().st_size for p in paths)
    assert (tmp / "figs" / "tgrid_surface_g_end.png").exists()


def test_unknown_sweep_names_the_stored_ones(stored):
    _, db, _, tmp = stored
    with pytest.raises(sweep_report.SweepReportError) as e:
        sweep_report.write_report(db, 999, tmp / "none.html")
    assert issubclass(sweep_report.SweepReportError, ValueError)
    for name in ("tmorris", "tgrid", "tunc"):
        assert name in str(e.value)
    assert not (tmp / "none.html").exists()
