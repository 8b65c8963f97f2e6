"""Sweeps: files are checked before anything runs, factor values reach the model, points share random
numbers, a sweep round-trips through the store and resumes after kill -9, SALib's rules hold, and Mesa's
batch_run sweeps a parameter by dotted name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mesa
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from sim import cli, sweep_spec
from sim.analysis import sweeps
from sim.model.model import AdherenceModel
from sim.runs import executors, results, store
from sim.runs.sweep import BASE_POINT, run_sweep
from sim.scenario import ScenarioError

BASE = textwrap.dedent("""\
    name: sweepbase
    seed: 11
    replicates: 2
    weeks: 4
    follow_up_weeks: 2
    population: {size: 40}
    parameters: {own.uptake: 0.0, own.uptake_follow_up: 0.0}  # usual care does no exercise at all
    arms:
      usual_care: {}
      exercise:
        prescription: {sessions_per_week: 3, minutes: 40, intensity: 0.6}
        titration: {start_minutes: 10, weeks: 2}
    """)
MORRIS = {
    "name": "tinymorris", "base": "base.yaml", "design": "morris", "samples": 4, "replicates": 3,
    "factors": [{"name": "dropout.base", "range": [0.0, 0.5]},
                {"name": "intention.w_priming"},  # no arm has priming: this factor cannot matter
                {"name": "arms.exercise.titration.weeks", "range": [1, 4]}],
    "outcomes": [{"id": "dropout", "metric": "dropout_rate", "arm": "exercise", "week": 4},
                 {"id": "g_end", "metric": "effect_size", "arm": "exercise", "week": 4}],
}
SIM = [sys.executable, "-m", "sim.cli"]


def write(tmp_path: Path, spec: dict, name: str = "sweep.yaml") -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _count(url: str, table: str) -> int:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return c.execute(sa.text(f"select count(*) from {table}")).scalar_one()
    except sa.exc.OperationalError:
        return 0
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def morris_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("morris")
    sw = sweep_spec.load_sweep(write(tmp, MORRIS))
    db = store.Store(f"sqlite:///{tmp / 's.db'}", create=True)
    with executors.executor("serial") as ex:
        out = run_sweep(sw, db, ex)
    return sw, db, out


def test_morris_screening_sees_what_matters_and_what_cannot(morris_run):
    sw, db, out = morris_run
    assert out.points == 4 * (3 + 1) + 1 and out.runs == out.points * 3 * 2 and out.failed == 0
    stored, res = sweeps.stored(db, out.sweep_id)
    summary = sweeps.point_summary(sweeps.outcome_values(stored, res))
    idx = sweeps.indices(stored, res.points, summary).set_index(["outcome", "factor"])
    # a parameter no arm uses leaves every replicate identical (common random numbers): mu* exactly 0
    assert idx.loc[("dropout", "intention.w_priming"), "mu_star"] == 0
    assert idx.loc[("g_end", "intention.w_priming"), "mu_star"] == 0
    # the dropout hazard must move dropout, upwards, well beyond replicate noise
    row = idx.loc[("dropout", "dropout.base")]
    assert row.mu > 0 and row.mu_star > 3 * row.noise_mu_star
    assert "dropout.base" in sweeps.ranking_text(stored, idx.reset_index()).splitlines()[1]


def test_sweep_round_trips_through_the_store(morris_run):
    sw, db, out = morris_run
    pts = results.sweep_points(db, out.sweep_id)
    design = sweep_spec.design_points(sw)
    assert len(pts) == len(design) + 1 and pts.point.iloc[0] == BASE_POINT
    np.testing.assert_allclose(pts[pts.point >= 0][sw.factor_names].to_numpy(), design.to_numpy())
    # each point's stored scenario carries its factor values (integers rounded where the field needs them)
    eng = db.engine
    with eng.connect() as c:
        for _, row in pts[pts.point >= 0].head(5).iterrows():
            text = c.execute(sa.select(store.scenarios.c.text).where(store.scenarios.c.id == row.scenario_id)).scalar()
            data = yaml.safe_load(text)
            assert data["parameters"]["dropout.base"] == pytest.approx(row["dropout.base"])
            assert data["arms"]["exercise"]["titration"]["weeks"] == round(row["arms.exercise.titration.weeks"])
            assert data["seed"] == 11  # every point keeps the base seed
    res = results.sweep_results(db, out.sweep_id)
    assert set(res.participants.point) == set(pts.point)
    assert len(res.participants) == len(pts) * 2 * 3 * 40
    # a second run of the same sweep stores nothing new
    with executors.executor("serial") as ex:
        again = run_sweep(sw, db, ex)
    assert (again.sweep_id, again.skipped, again.runs) == (out.sweep_id, out.runs, out.runs)


def test_points_share_random_numbers(morris_run):
    sw, db, out = morris_run
    res = results.sweep_results(db, out.sweep_id)
    # the factors touch only the exercise arm, so usual care is the same people and draws at every point
    uc = res.daily[res.daily.arm == "usual_care"].pivot_table(index=["replicate", "day"], columns="point",
                                                              values="severity_mean")
    assert np.allclose(uc.to_numpy(), uc.iloc[:, [0]].to_numpy())
    # and cohorts are the same in both arms of a replicate
    p = res.participants
    a = p[(p.point == 0) & (p.arm == "exercise")].sort_values(["replicate", "pid"])
    b = p[(p.point == 0) & (p.arm == "usual_care")].sort_values(["replicate", "pid"])
    np.testing.assert_array_equal(a.baseline_severity.to_numpy(), b.baseline_severity.to_numpy())


def test_sweep_resumes_after_kill_9(tmp_path):
    spec = {**MORRIS, "name": "killme", "samples": 6, "replicates": 4}
    base = BASE.replace("size: 40", "size: 400")
    path = write(tmp_path, spec)
    (tmp_path / "base.yaml").write_text(base)
    total = (6 * 4 + 1) * 4 * 2
    cut = f"sqlite:///{tmp_path / 'cut.db'}"
    args = ["sweep", str(path), "--db", cut, "--figures", str(tmp_path / "f"), "--out", str(tmp_path / "r.html")]
    proc = subprocess.Popen([*SIM, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while _count(cut, "runs where status = 'done'") < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep finished before it could be killed; make it longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = _count(cut, "runs where status = 'done'")
    assert 5 <= stored < total
    again = subprocess.run([*SIM, *args], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{total - stored} runs now, {stored} already stored" in again.stdout
    whole = f"sqlite:///{tmp_path / 'whole.db'}"
    sw = sweep_spec.load_sweep(path)
    with executors.executor("serial") as ex:
        run_sweep(sw, store.Store(whole, create=True), ex)
    a = results.sweep_results(store.Store(whole), 1).participants.sort_values(["point", "arm", "replicate", "pid"])
    b = results.sweep_results(store.Store(cut), 1).participants.sort_values(["point", "arm", "replicate", "pid"])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert _count(cut, "runs") == total and _count(cut, "sweep_points") == 6 * 4 + 1


@pytest.mark.parametrize("change, field, fragment", [
    ({"design": "sobol", "samples": 6}, "samples", "power of two"),
    ({"design": "sobol", "samples": None}, "samples", "power of two"),
    ({"design": "morris", "levels": 3}, "levels", "even"),
    ({"factors": [{"name": "plasticity.gian"}]}, "factors.0.name", "neither a model parameter"),
    ({"factors": [{"name": "parameters.nope"}]}, "factors.0.name", "unknown parameter"),
    ({"factors": [{"name": "plasticity.gain", "range": [0.2, 0.1]}, {"name": "dropout.base"}]}, "factors.0",
     "low < high"),
    ({"factors": [{"name": "plasticity.gain", "range": [0.1, 0.1]}, {"name": "dropout.base"}]}, "factors.0",
     "low < high"),
    ({"factors": [{"name": "plasticity.gain", "range": [0.0, 0.9]}, {"name": "dropout.base"}]},
     "factors.0.range", "allowed range 0.0 to 0.3"),
    ({"factors": [{"name": "population.size", "range": [1, 50]}, {"name": "dropout.base"}]},
     "factors.0.range", "population.size"),
    ({"factors": [{"name": "population.size"}, {"name": "dropout.base"}]}, "factors.0", "no declared range"),
    ({"factors": [{"name": "seed", "range": [1, 5]}, {"name": "dropout.base"}]}, "factors.0.name", "cannot be a factor"),
    ({"factors": [{"name": "arms.nobody.titration.weeks", "range": [1, 3]}, {"name": "dropout.base"}]},
     "factors.0.name", "arms.ARM"),
    ({"factors": [{"name": "plasticity.gain", "values": [0.1, 0.2]}, {"name": "dropout.base"}]},
     "factors.0.values", "draws from a range"),
    ({"factors": [{"name": "dropout.base"}, {"name": "dropout.base"}]}, "factors", "once"),
    ({"outcomes": [{"id": "x", "metric": "dropout_rate", "arm": "exercise", "week": 40}]}, "outcomes.0.week",
     "must be 0-6"),
    ({"outcomes": [{"id": "x", "metric": "effect_size", "arm": "nobody", "week": 4}]}, "outcomes.0.arm",
     "not an arm"),
    ({"outcomes": [{"id": "x", "metric": "no_such_metric", "arm": "exercise"}]}, "outcomes.0.metric", "Input should be"),
    ({"outcomes": [{"id": "x", "metric": "subgroup_effect_size", "arm": "exercise", "week": 4, "subgroup": "old"}]},
     "outcomes.0.subgroup", "no subgroups"),
    ({"base": "missing.yaml"}, "base", "no scenario file"),
    ({"design": "grid", "samples": 4}, "samples", "leave samples out"),
])
def test_bad_sweep_files_are_refused_before_anything_runs(morris_run, tmp_path, capsys, change, field, fragment):
    spec = {k: v for k, v in {**MORRIS, **change}.items() if v is not None}
    path = write(tmp_path, spec)
    with pytest.raises(ScenarioError) as err:
        sweep_spec.load_sweep(path)
    assert err.value.field.startswith(field) and fragment in str(err.value), str(err.value)
    # through the command line: exit 2, one message naming the file, and the store (with a sweep) untouched
    url = morris_run[1].url
    before = (_count(url, "runs"), _count(url, "sweeps"), _count(url, "scenarios"))
    assert cli.main(["sweep", str(path), "--db", url, "--figures", str(tmp_path / "f")]) == 2
    msg = capsys.readouterr().err
    assert f"error: {path}" in msg and fragment in msg and "Traceback" not in msg
    assert (_count(url, "runs"), _count(url, "sweeps"), _count(url, "scenarios")) == before


def test_sobol_design_has_saltelli_size_and_indices(tmp_path):
    spec = {**MORRIS, "name": "tinysobol", "design": "sobol", "samples": 8, "replicates": 2,
            "factors": MORRIS["factors"][:2]}
    sw = sweep_spec.load_sweep(write(tmp_path, spec))
    assert sweep_spec.design_size(sw) == 8 * (2 + 2) == len(sweep_spec.design_points(sw))
    db = store.Store(f"sqlite:///{tmp_path / 's.db'}", create=True)
    with executors.executor("serial") as ex:
        out = run_sweep(sw, db, ex)
    stored, res = sweeps.stored(db, out.sweep_id)
    summary = sweeps.point_summary(sweeps.outcome_values(stored, res))
    idx = sweeps.indices(stored, res.points, summary).set_index(["outcome", "factor"])
    assert {"S1", "S1_conf", "ST", "ST_conf"} <= set(idx.columns)
    assert idx.loc[("dropout", "intention.w_priming"), "ST"] == 0
    assert idx.loc[("dropout", "dropout.base"), "ST"] > 0.5


def test_grid_values_and_integers(tmp_path):
    spec = {**{k: v for k, v in MORRIS.items() if k != "samples"}, "name": "tinygrid", "design": "grid",
            "replicates": 1, "levels": 3,
            "factors": [{"name": "arms.exercise.titration.weeks", "range": [1, 4]},
                        {"name": "population.size", "values": [20, 30]}]}
    sw = sweep_spec.load_sweep(write(tmp_path, spec))
    pts = sweep_spec.design_points(sw)
    assert sorted(set(pts["arms.exercise.titration.weeks"])) == [1.0, 2.0, 4.0]  # 1, 2.5, 4 rounded
    assert len(pts) == 3 * 2 and sw.integer["population.size"] and sw.integer["arms.exercise.titration.weeks"]
    loaded = sw.point_scenario(pts.iloc[1].to_dict(), "p1")
    assert loaded.scenario.population.size in (20, 30)


def test_uncertainty_from_the_command_line(tmp_path, capsys):
    (tmp_path / "base.yaml").write_text(BASE)
    url = f"sqlite:///{tmp_path / 'u.db'}"
    code = cli.main(["run", str(tmp_path / "base.yaml"), "--parameter-draws", "4", "--replicates", "2",
                     "--executor", "serial", "--db", url, "--figures", str(tmp_path / "f")])
    out = capsys.readouterr().out
    assert code == 0
    assert "with parameter uncertainty" in out and "exercise.g.w4" in out and "exercise.dropout" in out
    sw_rows = results.sweeps(store.Store(url))
    assert list(sw_rows.design) == ["uncertainty"] and sw_rows.points.iloc[0] == 5


def test_export_and_report_of_a_sweep(morris_run, tmp_path, capsys):
    sw, db, out = morris_run
    url = db.url
    assert cli.main(["export", "--sweep", str(out.sweep_id), "--db", url, "--format", "csv", "--out",
                     str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "sweep_points.csv")
    assert {"point", "dropout.base", "dropout.mean", "dropout.se", "g_end.mean"} <= set(table.columns)
    assert len(table) == out.points
    assert cli.main(["export", "--sweep", "99", "--db", url, "--format", "csv", "--out", str(tmp_path)]) == 2
    assert "stored sweeps: 1 (tinymorris, morris)" in capsys.readouterr().err


def test_mesa_batch_run_sweeps_a_parameter_by_dotted_name(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(BASE)
    rows = mesa.batch_run(AdherenceModel, parameters={"scenario": str(path), "arm": "exercise",
                                                      "dropout.base": [0.0, 0.1]},
                          rng=[3], max_steps=28, data_collection_period=-1, number_processes=1,
                          display_progress=False)
    df = pd.DataFrame(rows).set_index("dropout.base")
    assert set(df.index) == {0.0, 0.1}
    assert df.loc[0.0, "enrolled_share"] == 1.0 > df.loc[0.1, "enrolled_share"]
    m = AdherenceModel(str(path), arm="exercise", parameters={"plasticity.gain": 0.2}, rng=1)
    assert m.parameters["plasticity.gain"] == 0.2
    with pytest.raises(ValueError, match="unknown parameter"):
        AdherenceModel(str(path), **{"plasticity.gian": 0.2})
