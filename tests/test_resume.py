"""Nothing lost, nothing doubled: kill -9 mid-batch and resume; two writers on one SQLite file; Dask."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from sim import scenario
from sim.runs import batch, executors, runner, store

SCENARIO = textwrap.dedent("""\
    name: resume_me
    seed: 5
    replicates: 6
    weeks: 8
    follow_up_weeks: 4
    population: {size: 300}
    arms:
      usual_care: {}
      exercise:
        prescription: {sessions_per_week: 3, minutes: 40, intensity: 0.6}
        support: {kind: partner}
    """)
SIM = [sys.executable, "-m", "sim.cli"]


@pytest.fixture
def scen(tmp_path) -> Path:
    path = tmp_path / "resume_me.yaml"
    path.write_text(SCENARIO)
    return path


def _tables(url: str) -> dict[str, pd.DataFrame]:
    """The stored records keyed by arm and replicate (run ids differ between databases)."""
    eng = sa.create_engine(url)
    key = "r.arm, r.replicate"
    out = {
        "runs": pd.read_sql(f"select {key}, r.seed, r.status from runs r order by {key}", eng),
        "participants": pd.read_sql(
            f"select {key}, p.* from participants p join runs r on r.id = p.run_id order by {key}, p.pid", eng),
        "arm_days": pd.read_sql(
            f"select {key}, d.* from arm_days d join runs r on r.id = d.run_id order by {key}, d.day", eng),
    }
    eng.dispose()
    return {k: v.drop(columns="run_id", errors="ignore") for k, v in out.items()}


def _done(url: str) -> int:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return c.execute(sa.text("select count(*) from runs where status = 'done'")).scalar_one()
    except sa.exc.OperationalError:
        return 0
    finally:
        eng.dispose()


def _sim(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*SIM, *map(str, args)], capture_output=True, text=True, timeout=300, **kw)


def test_kill_9_then_resume_equals_an_uninterrupted_batch(tmp_path):
    # longer than SCENARIO (40 runs of ~0.1 s), so the kill lands mid-batch rather than in the summary
    scen = tmp_path / "resume_me.yaml"
    scen.write_text(SCENARIO.replace("replicates: 6", "replicates: 20").replace("size: 300", "size: 800"))
    total = 40
    whole = f"sqlite:///{tmp_path / 'whole.db'}"
    assert _sim("run", scen, "--db", whole, "--figures", tmp_path).returncode == 0
    cut = f"sqlite:///{tmp_path / 'cut.db'}"
    proc = subprocess.Popen([*SIM, "run", str(scen), "--db", cut, "--figures", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while _done(cut) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before it could be killed; make it longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = _done(cut)
    assert 3 <= stored < total
    again = _sim("run", scen, "--db", cut, "--figures", tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{total - stored} runs now, {stored} already stored" in again.stdout
    a, b = _tables(whole), _tables(cut)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=False)
    assert len(b["runs"]) == total and (b["runs"].status == "done").all()


def test_two_processes_on_one_sqlite_file(scen, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    procs = [subprocess.Popen([*SIM, "run", str(scen), "--db", url, "--figures", str(tmp_path / str(i))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    t = _tables(url)
    assert len(t["runs"]) == 12 and (t["runs"].status == "done").all()
    assert len(t["participants"]) == 12 * 300
    assert not t["participants"].duplicated(["arm", "replicate", "pid"]).any()
    # and no run was computed twice: each process leaves the runs the other has claimed to it
    computed = [int(re.search(r"(\d+) runs now", out).group(1)) for out, _ in outs]
    assert sum(computed) == 12, computed
    whole = f"sqlite:///{tmp_path / 'whole.db'}"
    assert _sim("run", scen, "--db", whole, "--figures", tmp_path).returncode == 0
    pd.testing.assert_frame_equal(_tables(whole)["participants"], t["participants"], check_dtype=False)


def test_dask_batch_survives_a_killed_worker(scen, tmp_path):
    pytest.importorskip("distributed")
    loaded = scenario.load(scen)
    url = f"sqlite:///{tmp_path / 'dask.db'}"
    db = store.Store(url, create=True)
    killed: list[int] = []
    with executors.executor("dask", jobs=2) as ex:
        pids = ex._client.run(os.getpid)  # worker address -> process id

        def kill_one_worker_mid_batch():
            deadline = time.monotonic() + 120
            while _done(url) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            pid = next(iter(pids.values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        killer = threading.Thread(target=kill_one_worker_mid_batch, daemon=True)
        killer.start()
        out = batch.run_batch(loaded, db, ex, replicates=6, executor_name="dask")
        killer.join(timeout=5)
    assert killed, "no worker was killed"
    assert out.failed == 0 and out.total == 12
    t = _tables(url)
    assert len(t["runs"]) == 12 and (t["runs"].status == "done").all()
    assert not t["participants"].duplicated(["arm", "replicate", "pid"]).any()
    whole = f"sqlite:///{tmp_path / 'whole.db'}"
    assert _sim("run", scen, "--db", whole, "--figures", tmp_path).returncode == 0
    pd.testing.assert_frame_equal(_tables(whole)["participants"], t["participants"], check_dtype=False)


def test_in_process_batch_stores_each_stack_before_the_next_starts(scen, tmp_path, monkeypatch):
    loaded = scenario.load(scen)
    url = f"sqlite:///{tmp_path / 'serial.db'}"
    db = store.Store(url, create=True)
    real, sizes = runner.run_pairs, []

    def run_pairs(pairs, panel=False):
        # every run of each earlier stack must already be in the store when the next stack starts
        assert _done(url) == sum(sizes)
        sizes.append(len(pairs))
        if len(sizes) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the third stack
        return real(pairs, panel)

    monkeypatch.setattr(runner, "run_pairs", run_pairs)
    with pytest.raises(KeyboardInterrupt), executors.executor("serial") as ex:
        batch.run_batch(loaded, db, ex, replicates=6, executor_name="serial", stack_runs=4)
    assert sizes == [4, 4, 4] and _done(url) == 8
    monkeypatch.setattr(runner, "run_pairs", real)
    with executors.executor("serial") as ex:
        out = batch.run_batch(loaded, db, ex, replicates=6, executor_name="serial")
    assert (out.total, out.skipped, out.failed) == (12, 8, 0)
    assert _done(url) == 12
