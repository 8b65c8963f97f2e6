"""`sim run` end to end: storage round-trip, resume without doubling, bad input refused with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from sim import cli, scenario
from sim.runs import results, runner, store
from tests.conftest import TINY


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def _counts(url: str) -> dict[str, int]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        out = {t.name: c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
               for t in store.metadata.sorted_tables}
    eng.dispose()
    return out


def _run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(list(map(str, args)))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_stores_summarises_and_plots(tiny, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    code, out, err = _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path / "fig")
    assert code == 0, err
    assert "exercise" in out and "usual_care" in out and "g [95% CI" in out
    assert "some_dropout" in out
    assert (tmp_path / "fig" / "tiny_outcomes.png").stat().st_size > 10_000
    counts = _counts(url)
    assert counts["runs"] == 4  # 2 arms x 2 replicates
    assert counts["participants"] == 4 * 30
    assert counts["participant_weeks"] == 0  # the weekly panel is opt-in
    assert counts["arm_days"] == 4 * 43  # days 0 (baseline) to 42


def test_weekly_panel_on_request(tiny, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    code, _, err = _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path, "--record", "participants-weekly")
    assert code == 0, err
    assert _counts(url)["participant_weeks"] == 4 * 30 * 7  # weeks 0..6


def test_second_run_skips_finished_runs_and_adds_nothing(tiny, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)[0] == 0
    before = _counts(url)
    code, out, _ = _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)
    assert code == 0 and "4 already stored" in out
    after = _counts(url)
    assert after == {**before, "batches": before["batches"] + 1}


def test_more_replicates_runs_only_the_new_ones(tiny, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)[0] == 0
    code, out, _ = _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path, "--replicates", "3")
    assert code == 0 and "2 runs now, 4 already stored" in out
    assert _counts(url)["runs"] == 6


def test_stored_records_round_trip(tiny, tmp_path):
    loaded = scenario.load(tiny)
    db = store.Store(f"sqlite:///{tmp_path / 'r.db'}", create=True)
    sid = db.add_scenario(loaded)
    bid = db.start_batch(sid, 1)
    rec = runner.run_task(loaded, runner.Task("exercise", 0))
    db.save_run(store.run_key(loaded.sha256, "exercise", 0, rec.seed), sid, bid, rec, panel=True)
    back = results.scenario_results(db, loaded.sha256)
    assert back.text == tiny.read_text()
    p = back.participants.sort_values("pid").reset_index(drop=True)
    for col in ("baseline_severity", "adherence", "dropout_day", "severity_end", "sessions_done"):
        np.testing.assert_allclose(p[col].to_numpy(float), rec.participants[col].to_numpy(float), equal_nan=True)
    w = back.weekly.sort_values(["pid", "week"]).reset_index(drop=True)
    np.testing.assert_allclose(w.severity, rec.weekly.severity)
    run = back.runs.iloc[0]
    assert run.status == "done" and run.seed == "7/0" and run.code_version and "mesa" in run.packages


def test_same_seed_same_stored_numbers(tiny, tmp_path, capsys):
    frames = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        assert _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path, "--record", "participants-weekly")[0] == 0
        eng = sa.create_engine(url)
        frames.append(pd.read_sql(
            "select r.arm, r.replicate, r.seed, w.pid, w.week, w.severity, w.minutes from participant_weeks w "
            "join runs r on r.id = w.run_id order by r.arm, r.replicate, w.pid, w.week", eng))
        eng.dispose()
    pd.testing.assert_frame_equal(frames[0], frames[1])


@pytest.mark.parametrize("content, expected", [
    (None, "file not found"),
    ("name: x\nseed: [1\n", "malformed YAML"),
    (TINY.replace("weeks: 4", "weeks: 4\nwekks: 3"), "wekks: unknown key"),
    (TINY.replace("sessions_per_week: 3", "sessions_per_week: 9"), "arms.exercise.prescription.sessions_per_week"),
    (TINY.replace("seed: 7", "seed: seven"), "seed"),
    (TINY.replace("exercise:\n", "exercise:\n    extends: nothing\n"), "arms.exercise.extends"),
])
def test_bad_scenario_exits_2_with_a_clear_message(tmp_path, capsys, content, expected):
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    code, _, err = _run(capsys, "run", path, "--db", f"sqlite:///{tmp_path / 'r.db'}")
    assert code == 2
    assert "bad.yaml" in err and expected in err
    assert "Traceback" not in err


def test_bad_input_leaves_stored_results_alone(tiny, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)[0] == 0
    before = _counts(url)
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("name: tiny", "name: other").replace("size: 30", "size: -1"))
    code, _, err = _run(capsys, "run", tiny, bad, "--db", url)
    assert code == 2 and "population.size" in err
    assert _counts(url) == before


def test_bad_database_url_exits_2(tiny, tmp_path, capsys):
    code, _, err = _run(capsys, "run", tiny, "--db", "notaurl")
    assert code == 2 and "notaurl" in err and "Traceback" not in err
    code, _, err = _run(capsys, "run", tiny, "--db", f"sqlite:///{tmp_path}/no/such/dir/\0.db")
    assert code == 2
    (tmp_path / "afile").write_text("x")
    for url, fragment in (("foo://x/y", "'foo' is not supported"), (f"sqlite:///{tmp_path}/afile/r.db", "is a file"),
                          (f"sqlite:///{tmp_path}", "is a folder")):
        code, _, err = _run(capsys, "run", tiny, "--db", url)
        assert code == 2 and fragment in err and "Traceback" not in err, (url, err)
        assert "sqlite:///" in err or "is a" in err  # says what to give instead
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("option, value, fragment", [
    ("--replicates", "0", "must be 1 or more"),
    ("--replicates", "100000000", "more than 100,000"),
    ("--jobs", "two", "not a whole number"),
    ("--scheduler", "not an address", "expected tcp://host:port"),
    ("--executor", "threads", "invalid choice"),
])
def test_bad_command_line_value_exits_2(tiny, capsys, option, value, fragment):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", str(tiny), option, value])
    assert e.value.code == 2
    assert fragment in capsys.readouterr().err


def test_runs_of_other_model_code_are_not_reused(tiny, tmp_path, capsys, monkeypatch):
    from sim.runs import provenance
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)[0] == 0
    monkeypatch.setattr(provenance, "model_hash", lambda: "changedmodel0000")
    code, out, _ = _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)
    assert code == 0 and "4 runs now, 0 already stored" in out
    assert _counts(url)["runs"] == 8
    assert "means over 2 replicate trials" in out  # the summary uses only this code's runs


def _nothing_stored(url: str) -> bool:
    path = url.removeprefix("sqlite:///")
    return not os.path.exists(path) or _counts(url)["runs"] == 0


def test_a_check_needing_the_weekly_panel_is_refused_before_running(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("week: 4, accept: [0, 1]}",
                                 "week: 4, accept: [0, 1]}\n  - {id: r, metric: relapse_rate, arm: exercise, "
                                 "remitted_at: 4, week: 6, accept: [0, 1]}"))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    code, out, err = _run(capsys, "run", path, "--db", url, "--figures", tmp_path)
    assert code == 2 and "checks.1 (r): relapse_rate needs the per-participant weekly panel" in err
    assert "--record participants-weekly" in err and "Traceback" not in err and _nothing_stored(url)
    code, out, err = _run(capsys, "run", path, "--db", url, "--figures", tmp_path, "--record", "participants-weekly")
    assert code == 0, err


@pytest.mark.parametrize("command", [
    ["run", "TINY", "--figures", "BLOCKED/figs"],
    ["report", "--figures", "BLOCKED/figs"],
    ["export", "--out", "BLOCKED/exp"],
    ["validate", "--targets", "TARGETS", "--out", "BLOCKED/v.md"],
])
def test_unwritable_output_folders_are_refused_before_any_work(tiny, tmp_path, capsys, command):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    targets = tmp_path / "t.yaml"
    targets.write_text(f"targets:\n  - {{id: d, scenario: {tiny.name}, metric: dropout_rate, arm: exercise, "
                       "week: 4, published: 0.2, accept: [0, 1]}\n")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    if command[0] in ("report", "export"):
        assert _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)[0] == 0
    args = [a.replace("BLOCKED", str(blocked)).replace("TARGETS", str(targets)).replace("TINY", str(tiny))
            for a in command]
    before = _counts(url) if os.path.exists(tmp_path / "r.db") else None
    code, out, err = _run(capsys, *args, "--db", url)
    assert code == 2 and "cannot make this folder" in err and "Traceback" not in err
    assert (_counts(url) if before is not None else None) == before and (before is not None or _nothing_stored(url))


def test_export_of_an_unknown_scenario_exits_2(tiny, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)[0] == 0
    code, _, err = _run(capsys, "export", "--db", url, "--out", tmp_path / "exp", "--scenario", "nosuch")
    assert code == 2 and "'nosuch' has no runs" in err and "stored scenarios: tiny" in err
    assert not (tmp_path / "exp").exists()


def test_reading_commands_refuse_a_missing_database_without_creating_it(tmp_path, capsys):
    missing = tmp_path / "mistyped.db"
    for command in (["export", "--out", tmp_path / "exp"], ["report", "--out", tmp_path / "r.html"]):
        code, _, err = _run(capsys, *command, "--db", f"sqlite:///{missing}")
        assert code == 2 and "no results database" in err and str(missing) in err
    assert not missing.exists() and not (tmp_path / "exp").exists()


def test_validate_with_another_targets_file_does_not_replace_the_projects_validation(tiny, tmp_path, capsys,
                                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    targets = tmp_path / "mine.yaml"
    targets.write_text(f"targets:\n  - {{id: d, scenario: {tiny.name}, metric: dropout_rate, arm: exercise, "
                       "week: 4, published: 0.2, accept: [0, 1]}\n")
    code, out, err = _run(capsys, "validate", "--targets", targets, "--db", f"sqlite:///{tmp_path / 'v.db'}")
    assert code == 0, err
    assert (tmp_path / "results" / "validation_mine.md").exists()
    assert (tmp_path / "results" / "validation_mine.json").exists()
    assert not (tmp_path / "results" / "validation.md").exists()


def test_the_weekly_panel_can_be_added_to_runs_stored_without_it(tiny, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)[0] == 0
    before = _counts(url)
    people = results.table(store.Store(url), "participants")
    assert before["participant_weeks"] == 0
    code, out, err = _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path, "--record", "participants-weekly")
    assert code == 0, err
    assert "4 runs now, 0 already stored" in out
    after = _counts(url)
    assert after["runs"] == before["runs"] and after["participants"] == before["participants"]
    assert after["participant_weeks"] == 4 * 30 * 7  # 4 runs x 30 people x weeks 0-6
    pd.testing.assert_frame_equal(results.table(store.Store(url), "participants"), people)
    # the panel agrees with the stored endpoints: the same seed reproduced each run
    w = results.table(store.Store(url), "participant_weeks")
    end = w[w.week == 6].sort_values(["arm", "replicate", "pid"]).severity.to_numpy()
    np.testing.assert_allclose(end, people.sort_values(["arm", "replicate", "pid"]).severity_end.to_numpy())
    code, out, _ = _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path, "--record", "participants-weekly")
    assert "0 runs now, 4 already stored" in out


def test_batch_results_include_runs_reused_from_an_earlier_batch(tiny, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)[0] == 0
    assert _run(capsys, "run", tiny, "--db", url, "--figures", tmp_path)[0] == 0  # batch 2 reuses all 4 runs
    db = store.Store(url)
    assert results.runs(db, batch=2).empty  # batch 2 computed nothing itself
    first, second = results.batch_results(db, 1), results.batch_results(db, 2)
    assert len(second.runs) == 4
    pd.testing.assert_frame_equal(second.participants, first.participants)
    with pytest.raises(KeyError, match="batch 9"):
        results.batch_results(db, 9)


def test_help_imports_no_heavy_library():
    """`sim --help` (and every subcommand's help) is built without numpy, pandas, scipy, matplotlib,
    SQLAlchemy, Mesa or pydantic, so it answers at once."""
    code = ("import sys, sim.cli\n"
            "p = sim.cli.build_parser()\n"
            "heavy = ['numpy', 'pandas', 'scipy', 'matplotlib', 'sqlalchemy', 'mesa', 'pydantic', 'alembic', 'dask']\n"
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported for --help: {out.stdout.strip()}"
    helped = subprocess.run([sys.executable, "-m", "sim.cli", "power", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--moderator" in helped.stdout
    as_module = subprocess.run([sys.executable, "-m", "sim", "--help"], capture_output=True, text=True)
    assert as_module.returncode == 0 and as_module.stdout.startswith("usage: sim")
