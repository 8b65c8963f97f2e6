"""The Makefile's run/report pair: `make run SCENARIO=X` writes results/X.html and leaves the default
report alone; `make report` then reports X; before any run it says to run first."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "sim").exists(),
                                reason="needs make and the project's .venv")


def _make(*args: str) -> subprocess.CompletedProcess:
    # -o: never rebuild the venv from inside a test
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_run_of_another_scenario_writes_its_own_report_and_report_follows_it(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    results, db = tmp_path / "results", f"DB=sqlite:///{tmp_path / 'r.db'}"
    before = _make("report", f"RESULTS={results}", f"DB=sqlite:///{tmp_path / 'none.db'}")
    assert before.returncode != 0 and "run `sim run` first" in before.stderr
    run = _make("run", f"SCENARIO={tmp_path / 'tiny.yaml'}", f"RESULTS={results}", db,
                f"SIM_ARGS=--replicates 2 --jobs 1 --figures {tmp_path / 'fig'}")
    assert run.returncode == 0, run.stderr
    assert (results / "tiny.html").exists() and not (results / "report.html").exists()
    assert (results / ".last_scenario").read_text().strip() == str(tmp_path / "tiny.yaml")
    (results / "tiny.html").unlink()
    report = _make("report", f"RESULTS={results}", db)
    assert report.returncode == 0, report.stderr
    assert "--scenario tiny" in report.stdout and (results / "tiny.html").exists()
    assert not (results / "report.html").exists()
    # asked for explicitly, the default scenario's report keeps its usual name
    dry = _make("-n", "report", f"RESULTS={results}", "SCENARIO=scenarios/standard_prescription.yaml")
    assert f"--out {results}/report.html" in dry.stdout and "--scenario standard_prescription" in dry.stdout
