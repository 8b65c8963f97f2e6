"""The command line from any folder, every option's help with its default, and `sim export` saying why a
table is empty."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim import cli, cli_defaults, paths
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent


def _options(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ("sim",)):
    """(command, action) for every argument of every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*prefix, name))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(prefix), action


def test_every_option_has_help_with_its_default():
    missing = []
    for command, a in _options(cli.build_parser()):
        name = "/".join(a.option_strings) or a.dest
        if not a.help or a.help == argparse.SUPPRESS:
            missing.append(f"{command} {name}: no help")
        elif a.option_strings and a.nargs != 0 and not a.required and "default" not in a.help:
            missing.append(f"{command} {name}: help does not state the default")
        elif a.option_strings and a.nargs == 0 and a.const is not None and not isinstance(a, argparse._VersionAction) \
                and "default" not in a.help and a.dest != "version":
            missing.append(f"{command} {name}: flag's help does not state what happens without it")
    assert not missing, "\n".join(missing)
    commands = {c for c, _ in _options(cli.build_parser())}
    assert {"sim run", "sim validate", "sim export", "sim report", "sim sweep", "sim power"} <= commands


def test_packaged_paths_do_not_depend_on_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for p in (cli_defaults.DEFAULT_TARGETS, paths.DEFAULT_SCENARIO):
        assert p.is_absolute() and p.is_file()
    assert paths.DEFAULT_TARGETS == ROOT / "scenarios" / "trials" / "targets.yaml"
    assert paths.scenario_path("gradual_titration") == ROOT / "scenarios" / "gradual_titration.yaml"
    assert paths.scenario_path("scenarios/late_life.yaml") == ROOT / "scenarios" / "late_life.yaml"
    (tmp_path / "mine.yaml").write_text(TINY)
    assert paths.scenario_path("mine.yaml") == Path("mine.yaml")  # the user's own file, from here, wins


def test_model_and_sim_work_from_another_folder(tmp_path):
    """AdherenceModel() and `sim run`/`sim report` started in an unrelated folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIM_DB_URL": ""}
    code = ("from sim.model.model import AdherenceModel\n"
            "m = AdherenceModel(); m.step()\n"
            "print(m.loaded.scenario.name, len(m.agents))\n"
            "print(AdherenceModel('gradual_titration').loaded.scenario.name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "standard_prescription" and "gradual_titration" in out.stdout
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(TINY)
    run = subprocess.run([sys.executable, "-m", "sim", "run", "tiny.yaml", "--replicates", "1", "--jobs", "1"],
                         cwd=tmp_path, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "results" / "sim.db").exists()  # outputs go under the folder one works in
    rep = subprocess.run([sys.executable, "-m", "sim", "report", "--scenario", "tiny"], cwd=tmp_path,
                         capture_output=True, text=True, env=env)
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "results" / "report.html").exists()
    helped = subprocess.run([sys.executable, "-m", "sim", "validate", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, env=env)
    assert str(ROOT / "scenarios" / "trials" / "targets.yaml") in helped.stdout


@pytest.fixture(scope="module")
def endpoints_only(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    (d / "tiny.yaml").write_text(TINY)
    url = f"sqlite:///{d / 'r.db'}"
    assert cli.main(["run", str(d / "tiny.yaml"), "--db", url, "--figures", str(d / "fig"), "--replicates", "1",
                     "--jobs", "1"]) == 0
    return d, url


def test_csv_export_says_why_panel_tables_are_empty(endpoints_only, capsys):
    d, url = endpoints_only
    capsys.readouterr()
    assert cli.main(["export", "--db", url, "--format", "csv", "--out", str(d / "csv")]) == 0
    out = capsys.readouterr().out
    assert "weekly" in out and "empty" in out and "--record participants-weekly" in out
    assert (d / "csv").is_dir()
