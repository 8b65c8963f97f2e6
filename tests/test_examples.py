"""The examples/ scripts run as a user would run them: from another folder, to the end, with their outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_everyday_example_runs_from_another_folder(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "everyday.py"), "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "still enrolled" in text and "exercised today" in text  # the AgentSet queries
    assert "batch 1: 4 runs" in text and "usual_care" in text and "exercise" in text
    assert (out / "example.db").exists() and (out / "standard_prescription_outcomes.png").exists()
    assert (out / "standard_prescription_outcomes.png").stat().st_size > 20_000
