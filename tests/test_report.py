"""`sim report`: one self-contained HTML file with sections, tables, embedded figures and provenance;
partial data (pending or failed runs, an arm with no runs or all dropped out, one replicate, no panel)
gives a report that says what is missing; bad input exits 2. Also the completers analysis."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from sim import cli
from sim.analysis import metrics, report
from sim.runs import provenance, results, store
from tests.conftest import TINY

OTHER = TINY.replace("name: tiny", "name: other").replace("seed: 7", "seed: 8")


class Parsed(HTMLParser):
    """Section ids, tables, images, headings and text of an HTML page (stdlib parser only)."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.tables, self.images, self.external, self.text = set(), 0, [], [], []
        self.headings: list[str] = []
        self._in_heading = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self.tables += 1
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("script", "link") or (tag == "img" and not a.get("src", "").startswith("data:")):
            self.external.append(tag)
        self._in_heading = tag in ("h1", "h2", "h3", "h4")

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3", "h4"):
            self._in_heading = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_heading:
            self.headings.append(data.strip())

    @property
    def all_text(self) -> str:
        return " ".join(self.text)


def _run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(list(map(str, args)))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store with the tiny scenario (weekly panel) and another scenario, one batch each."""
    d = tmp_path_factory.mktemp("store")
    (d / "tiny.yaml").write_text(TINY)
    (d / "other.yaml").write_text(OTHER)
    url = f"sqlite:///{d / 'r.db'}"
    for name in ("tiny", "other"):
        assert cli.main(["run", str(d / f"{name}.yaml"), "--db", url, "--figures", str(d / "fig"),
                         "--record", "participants-weekly", "--jobs", "1"]) == 0
    return url


def _report(capsys, url: str, out, *args) -> tuple[int, Parsed | None, str, str]:
    code, so, se = _run(capsys, "report", "--db", url, "--out", out, *args)
    return code, (Parsed(out.read_text()) if code == 0 else None), so, se


def test_report_is_one_self_contained_file_with_sections_tables_figures_provenance(stored, tmp_path, capsys):
    out = tmp_path / "sub" / "report.html"
    code, page, so, se = _report(capsys, stored, out, "--scenario", "tiny")
    assert code == 0, se
    assert str(out) in so
    assert not page.external  # no scripts, stylesheets or images from elsewhere
    a = "s0-tiny"
    for part in ("", "-missing", "-runs", "-tables", "-figures", "-scenario", "-provenance"):
        assert a + part in page.ids
    assert "definitions" in page.ids
    # the figures, each an embedded PNG
    figs = [i for i in page.ids if i.startswith(f"{a}-fig-")]
    assert {f"{a}-fig-{k}" for k in report.FIGURES} == set(figs)
    assert len(page.images) == len(report.FIGURES)
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.all_text
    assert "could not be drawn" not in text and "Not shown" not in text
    # tables: runs, ITT at end of programme and follow-up, completers, relapse, checks, provenance, definitions
    assert page.tables >= 8
    for heading in ("End of programme (week 4), intention to treat", "End of follow-up (week 6), intention to treat",
                    "End of programme (week 4), completers", "Relapse after the programme",
                    "Checks against published findings"):
        assert heading in page.headings
    assert "some_dropout" in text and "Hedges g" in text
    # the scenario file's text, and provenance
    assert "# Question: a tiny trial for tests" in text and "support: {kind: partner}" in text
    runs = results.runs(store.Store(stored), "tiny")
    for expected in (runs.code_version.iloc[0], runs.model_hash.iloc[0], runs.git_sha.iloc[0], "7/0", "7/1",
                     "numpy", "mesa", f"{runs.batch_id.iloc[0]}", "s of compute"):
        assert expected in text, expected
    assert "Complete:" in text


def test_default_is_the_latest_batch_and_several_scenarios_get_a_forest_across(stored, tmp_path, capsys):
    code, page, _, se = _report(capsys, stored, tmp_path / "r.html")
    assert code == 0, se
    assert "s0-other" in page.ids and "s0-tiny" not in page.ids  # 'other' ran last
    code, page, _, se = _report(capsys, stored, tmp_path / "r2.html", "--scenario", "tiny", "--batch", "2")
    assert code == 0, se
    assert {"s0-other", "s1-tiny", "across", "across-forest"} <= page.ids  # batches first, then scenarios
    assert len(page.images) == 2 * len(report.FIGURES) + 1


def test_figures_folder_gets_png_and_svg(stored, tmp_path, capsys):
    code, so, se = _run(capsys, "report", "--db", stored, "--scenario", "tiny", "--figures", tmp_path / "figs")
    assert code == 0, se
    names = {p.name for p in (tmp_path / "figs").iterdir()}
    for key in report.FIGURES:
        assert {f"tiny_{key}.png", f"tiny_{key}.svg"} <= names
    assert not (tmp_path / "report.html").exists()  # only figures were asked for


@pytest.mark.parametrize("args, message", [
    (("--batch", "99"), "batch 99 is not in"),
    (("--scenario", "nosuch"), "scenario 'nosuch' has no batch"),
])
def test_unknown_batch_or_scenario_exits_2(stored, tmp_path, capsys, args, message):
    code, _, _, se = _report(capsys, stored, tmp_path / "r.html", *args)
    assert code == 2 and message in se and "tiny" in se and "Traceback" not in se
    assert not (tmp_path / "r.html").exists()


def test_unwritable_out_path_exits_2(stored, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for bad in (tmp_path, tmp_path / "afile" / "report.html"):
        code, _, _, se = _report(capsys, stored, bad, "--scenario", "tiny")
        assert code == 2 and str(bad) in se and "Traceback" not in se
    assert (tmp_path / "afile").read_text() == "x"


def test_empty_store_exits_2(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    store.Store(url, create=True)
    code, _, _, se = _report(capsys, url, tmp_path / "r.html")
    assert code == 2 and "no batches" in se


def test_missing_store_file_is_refused_not_created(tmp_path, capsys):
    missing = tmp_path / "mistyped.db"
    code, _, _, se = _report(capsys, f"sqlite:///{missing}", tmp_path / "r.html")
    assert code == 2 and "no results database" in se and str(missing) in se
    assert not missing.exists()


def test_validation_record_that_is_missing_or_corrupt_exits_2(stored, tmp_path, capsys):
    corrupt = tmp_path / "v.json"
    corrupt.write_text("{not json")
    for path, message in ((tmp_path / "nosuch.json", "no such file"), (corrupt, "not a readable")):
        code, _, _, se = _report(capsys, stored, tmp_path / "r.html", "--validation", path)
        assert code == 2 and message in se and str(path) in se and "Traceback" not in se
    assert not (tmp_path / "r.html").exists()


def test_run_key_of_another_model_hash_differs_from_this_codes():
    assert store.run_key("abc", "arm", 3, "7/3", provenance.model_hash()) == store.run_key("abc", "arm", 3, "7/3")
    assert store.run_key("abc", "arm", 3, "7/3", "0" * 16) != store.run_key("abc", "arm", 3, "7/3")


# ---------------------------------------------------------------- partial data

@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_no_panel_and_one_replicate_are_said_not_crashed(tiny_file, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _run(capsys, "run", tiny_file, "--db", url, "--figures", tmp_path, "--replicates", "1")[0] == 0
    code, page, _, se = _report(capsys, url, tmp_path / "r.html")
    assert code == 0, se
    text = page.all_text
    assert "No per-participant weekly panel" in text and "Only one replicate" in text
    assert "Individual trajectories: not available" in text  # the figure's place says why
    assert "Relapse needs the per-participant weekly panel" in text
    assert "could not be drawn" not in text
    assert len(page.images) == len(report.FIGURES) - 1


def test_pending_and_failed_runs_of_an_unfinished_batch(tiny_file, tmp_path, capsys):
    from sim.scenario import load
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _run(capsys, "run", tiny_file, "--db", url, "--figures", tmp_path, "--record", "participants-weekly")[0] == 0
    db = store.Store(url)
    loaded = load(tiny_file)
    sid = db.add_scenario(loaded)
    bid = db.start_batch(sid, 3, command="sim run tiny.yaml --replicates 3")  # started, never finished
    db.save_failure(store.run_key(loaded.sha256, "exercise", 2, "7/2"), sid, bid, "exercise", 2, "7/2",
                    "RuntimeError: the worker died")
    code, page, _, se = _report(capsys, url, tmp_path / "r.html")
    assert code == 0, se
    text = page.all_text
    assert f"Batch {bid}" in text and "has not finished" in text
    assert "4 of 6 runs" in text
    assert "Arm exercise: 1 run(s) failed (replicates 2); error: RuntimeError: the worker died" in text
    assert "Arm usual_care: 1 run(s) not stored" in text
    assert len(page.images) == len(report.FIGURES)  # the stored runs are still shown


def test_an_arm_without_finished_runs(tiny_file, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _run(capsys, "run", tiny_file, "--db", url, "--figures", tmp_path, "--record", "participants-weekly")[0] == 0
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.execute(sa.update(store.runs).where(store.runs.c.arm == "exercise").values(status="failed", error="boom"))
    eng.dispose()
    code, page, _, se = _report(capsys, url, tmp_path / "r.html")
    assert code == 0, se
    text = page.all_text
    assert "Arm exercise has no finished runs" in text and "2 run(s) failed" in text
    assert "Heterogeneity: needs the reference arm" in text
    assert "could not be drawn" not in text


def test_an_arm_where_everyone_dropped_out(stored, tmp_path):
    db = store.Store(stored)
    sections = report.select(db, scenarios=["tiny"])
    s = sections[0]
    p = s.res.participants
    p.loc[p.arm == "exercise", "dropout_day"] = 3.0
    s.notes = report.missing_notes(s)
    page = Parsed(report.build(sections, db.url))
    text = page.all_text
    assert "In arm exercise every participant had dropped out by the end of the programme" in text
    assert "0 / 30" in text  # completers / randomised
    assert "could not be drawn" not in text
    assert len(page.images) == len(report.FIGURES)


def test_write_is_atomic_and_refuses_a_folder(tmp_path):
    out = tmp_path / "r.html"
    report.write("<html>one</html>", out)
    report.write("<html>two</html>", out)
    assert out.read_text() == "<html>two</html>" and [p.name for p in tmp_path.iterdir()] == ["r.html"]
    with pytest.raises(report.ReportError, match="is a folder"):
        report.write("x", tmp_path)


# ---------------------------------------------------------------- completers

@pytest.fixture(scope="module")
def frames(stored):
    res = results.scenario_results(store.Store(stored), results.runs(store.Store(stored), "tiny").scenario_sha256[0])
    import yaml

    from sim.scenario import parse
    sc, _ = parse(yaml.safe_load(res.text))
    return sc, res


def test_completers_without_dropouts_equal_intention_to_treat(frames):
    sc, res = frames
    nobody = res.participants.assign(dropout_day=np.nan)
    for week in (sc.weeks, sc.weeks + sc.follow_up_weeks, 2):
        itt = metrics.trial_metrics(nobody, res.daily, sc.outcomes, sc.reference, week)
        comp = metrics.trial_metrics(nobody, res.daily, sc.outcomes, sc.reference, week, completers=True,
                                     weekly=res.weekly, programme_weeks=sc.weeks)
        cols = ["severity", "baseline", "change", "response", "remission", "g", "g_low", "g_high", "p", "n"]
        pd.testing.assert_frame_equal(itt[cols].reset_index(drop=True), comp[cols].reset_index(drop=True),
                                      check_dtype=False, rtol=1e-9)


def test_completers_leave_out_dropouts(frames):
    sc, res = frames
    p = res.participants
    comp = metrics.trial_metrics(p, res.daily, sc.outcomes, sc.reference, sc.weeks, completers=True,
                                 programme_weeks=sc.weeks)
    kept = (~(p.dropout_day <= 7 * sc.weeks)).groupby([p.arm, p.replicate]).sum()
    assert comp.set_index(["arm", "replicate"]).n.to_dict() == kept.to_dict()
    assert (comp.randomised == 30).all()
    mine = p[(p.arm == "exercise") & (p.replicate == 0) & ~(p.dropout_day <= 7 * sc.weeks)]
    row = comp[(comp.arm == "exercise") & (comp.replicate == 0)].iloc[0]
    assert row.severity == pytest.approx(mine.severity_end_programme.mean())


def test_completers_at_a_week_without_panel_is_refused(frames):
    sc, res = frames
    with pytest.raises(metrics.MetricError, match="weekly panel"):
        metrics.trial_metrics(res.participants, res.daily, sc.outcomes, sc.reference, 2, completers=True,
                              programme_weeks=sc.weeks)


def _validation_record(model_hash: str) -> dict:
    return {"targets": "t.yaml", "code_version": "0.1.0", "model_hash": model_hash, "db": "sqlite://",
            "date": "2026-11-22T00:00:00+00:00",
            "rows": [{"id": "dropout_some", "finding": "some drop out", "published": 0.2, "mean": 0.18,
                      "p2.5": 0.1, "p97.5": 0.3, "replicates": 5, "accept_low": 0.1, "accept_high": 0.3,
                      "passed": True},
                     {"id": "too_good", "finding": "x", "published": "positive", "mean": None, "p2.5": None,
                      "p97.5": None, "replicates": 0, "accept_low": 0.05, "accept_high": 1.0, "passed": False}]}


@pytest.mark.parametrize("hash_, stale", [(None, False), ("0" * 16, True)])
def test_report_embeds_the_validation_table_and_flags_other_model_code(stored, tmp_path, capsys, hash_, stale):
    import json

    v = tmp_path / "validation.json"
    v.write_text(json.dumps(_validation_record(hash_ or provenance.model_hash())))
    code, page, _, se = _report(capsys, stored, tmp_path / "r.html", "--scenario", "tiny", "--validation", v)
    assert code == 0, se
    text = page.all_text
    assert "validation" in page.ids and "Calibration fit and validation against published trials" in page.headings
    assert "dropout_some" in text and "1 of 2 targets pass" in text and "FAIL" in text
    assert ("different model code" in text) is stale
    # nothing held out: every row is calibration fit, and the report says so
    assert "Calibration fit (in-sample: targets the calibration fitted)" in page.headings and "every row is calibration fit, not validation" in text


def test_report_shows_held_out_targets_as_validation_and_the_leave_one_trial_out_record(stored, tmp_path, capsys):
    import json

    rec = _validation_record(provenance.model_hash())
    rec["rows"][0].update(held_out=True, percentile=40.0, wide=True, verdict="pass")
    rec["rows"][1].update(held_out=False, verdict="mean outside band")
    v = tmp_path / "validation.json"
    v.write_text(json.dumps(rec))
    loto = tmp_path / "loto.json"
    row = {"id": "dropout_some", "published": 0.2, "mean": 0.25, "p2.5": 0.1, "p97.5": 0.4, "percentile": 30.0,
           "accept_low": 0.1, "accept_high": 0.3, "passed": True, "verdict": "pass", "replicates": 40,
           "held_out": True}
    loto.write_text(json.dumps({"trials": 60, "replicates": 8, "model_hash": provenance.model_hash(),
                                "code_version": "x", "fixed": "other stages fixed",
                                "defaults": [dict(row, mean=0.19)],
                                "folds": [{"trial": "t.yaml", "stage": "exercise", "rows": [row]}]}))
    code, page, _, se = _report(capsys, stored, tmp_path / "r.html", "--scenario", "tiny", "--validation", v,
                                "--loto", loto)
    assert code == 0, se
    fit, _, rest = page.all_text.partition("Validation (out-of-sample")
    assert "too_good" in fit and "dropout_some" not in fit.split("Calibration fit (in-sample")[-1]
    assert "dropout_some" in rest and "percentile 40" in rest and "spread > band" in rest
    assert "Validation: leave-one-trial-out" in page.headings and "validation-loto" in page.ids
    assert "1 of 1 held-out targets pass out of sample" in page.all_text and "t held out" in page.all_text


def test_report_tables_show_power_intervals_guideline_weeks_and_relapse_denominators(stored, tmp_path, capsys):
    code, page, _, se = _report(capsys, stored, tmp_path / "r.html", "--scenario", "tiny")
    assert code == 0, se
    text = page.all_text
    assert "power % [Wilson 95%] of trials" in text and "of 2" in text  # 2 replicate trials counted
    assert "Power counts only 2 replicate trials" in text
    assert "weeks with ≥150 min % (programme person-weeks)" in text
    assert "remitters per replicate (the denominator)" in text and "in all" in text
    assert "an association, not an effect" in " ".join(page.headings)


def test_report_without_validation_says_how_to_get_it(stored, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(report, "DEFAULT_VALIDATION", tmp_path / "absent.json")  # no `sim validate` yet
    code, page, _, se = _report(capsys, stored, tmp_path / "r.html", "--scenario", "tiny")
    assert code == 0, se
    assert "No calibration-fit result" in page.all_text and "make validate" in page.all_text


def test_any_arm_can_be_the_reference(stored, tmp_path, capsys):
    code, page, _, se = _report(capsys, stored, tmp_path / "r.html", "--scenario", "tiny", "--reference", "exercise")
    assert code == 0, se
    assert "usual_care, exercise; reference <b>exercise</b>)" in (tmp_path / "r.html").read_text()
    sections = report.with_reference(report.select(store.Store(stored), scenarios=["tiny"]), "exercise")
    s = sections[0]
    g_flipped = metrics.trial_metrics(s.res.participants, s.res.daily, s.scenario.outcomes, "exercise", 4)
    g_usual = metrics.trial_metrics(s.res.participants, s.res.daily, s.scenario.outcomes, "usual_care", 4)
    a = g_flipped[g_flipped.arm == "usual_care"].sort_values("replicate").g.to_numpy()
    b = g_usual[g_usual.arm == "exercise"].sort_values("replicate").g.to_numpy()
    np.testing.assert_allclose(a, -b)  # Hedges g is antisymmetric in the two arms


def test_a_reference_that_is_not_an_arm_exits_2(stored, tmp_path, capsys):
    code, _, _, se = _report(capsys, stored, tmp_path / "r.html", "--scenario", "tiny", "--reference", "placebo")
    assert code == 2 and "'placebo' is not an arm of scenario 'tiny'" in se and "usual_care, exercise" in se
    assert "Traceback" not in se and not (tmp_path / "r.html").exists()
