"""Processes (issue 15): pool workers exit when their batch is killed; claims keep two batches from computing
the same run, and never outlive the process that made them."""

from __future__ import annotations

import datetime as dt
import glob
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
import sqlalchemy as sa

from sim import scenario
from sim.runs import claims, runner, spill, store
from tests.conftest import TINY

SIM = [sys.executable, "-m", "sim.cli"]
LONG = TINY.replace("name: tiny", "name: long").replace("replicates: 2", "replicates: 60").replace(
    "size: 30", "size: 3000")


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _is_worker(pid: int, batch: int) -> bool:
    """Whether `pid`, a process under the batch `batch`, is a pool worker (not a resource tracker or fork server)."""
    try:
        p = psutil.Process(pid)
        line = " ".join(p.cmdline())
        return "resource_tracker" not in line and not ("forkserver" in line and p.ppid() == batch)
    except psutil.Error:
        return False


def test_pool_workers_exit_when_the_batch_is_killed(tmp_path):
    (tmp_path / "long.yaml").write_text(LONG)
    proc = subprocess.Popen([*SIM, "run", "long.yaml", "--jobs", "2", "--db", f"sqlite:///{tmp_path / 'k.db'}",
                             "--figures", str(tmp_path / "f"), "--yes"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            # forked workers are the batch's children; a fork server's are the server's (Python 3.14's default)
            workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
            if any(_is_worker(pid, proc.pid) for pid in workers):
                break
            time.sleep(0.1)
        assert any(_is_worker(pid, proc.pid) for pid in workers), "the pool never started"
        time.sleep(1.0)  # the workers are busy with runs
        os.kill(proc.pid, signal.SIGKILL)  # the batch alone, as an out-of-memory kill would
        proc.wait()
        deadline = time.monotonic() + 5
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(workers), "pool workers outlived their batch"
        left = glob.glob(os.path.join(spill.base(), f"{spill.PREFIX}{proc.pid}-*"))
        assert left  # the killed batch could not remove its results folder: the next pool does
        # a worker's main thread shows as a zombie while its other threads still hold its files (and the folder's
        # lock) for a moment: a pool made then leaves the folder to the next one
        deadline = time.monotonic() + 5
        spill.remove(spill.folder())
        while any(os.path.exists(d) for d in left) and time.monotonic() < deadline:
            time.sleep(0.1)
            spill.remove(spill.folder())
        assert not any(os.path.exists(d) for d in left)
    finally:
        for pid in _alive(workers):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def held(tmp_path, monkeypatch):
    """A store with the tiny scenario, its batch, and a Claims over its four runs."""
    monkeypatch.setattr(claims, "POLL_SECONDS", 0.05)
    (tmp_path / "tiny.yaml").write_text(TINY)
    loaded = scenario.load(tmp_path / "tiny.yaml")
    db = store.Store(f"sqlite:///{tmp_path / 'c.db'}", create=True)
    sid = db.add_scenario(loaded)
    bid = db.start_batch(sid, 2)
    tasks = runner.tasks(loaded, 2)
    keys = {(0, t): store.run_key(loaded.sha256, t.arm, t.replicate, t.seed_label(7)) for t in tasks}
    c = claims.Claims(db, keys, [sid], [bid], [7])
    yield c, [(0, t) for t in tasks]
    c.release()


def _claim_as(c: claims.Claims, item, holder: str, seconds: float) -> None:
    key = c.keys[item]
    until = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=seconds)
    with c.db.engine.begin() as con:
        con.execute(store.runs.insert().values(key=key, scenario_id=c.scenario_ids[0], batch_id=c.batch_ids[0],
                                               arm=item[1].arm, replicate=item[1].replicate, seed="7/0",
                                               status="running", claimed_by=holder, lease_until=until))


def test_a_run_stored_and_let_go_meanwhile_is_not_claimed_again(held):
    """Another process stored a run and released its claim after this batch looked for stored runs: it is
    left alone, unless this batch needs the weekly panel that run was stored without."""
    c, items = held
    _claim_as(c, items[0], None, 0)
    with c.db.engine.begin() as con:
        con.execute(store.runs.update().where(store.runs.c.key == c.keys[items[0]]).values(status="done",
                                                                                           lease_until=None))
    mine, others = c.take(items)
    assert others == [items[0]] and mine == items[1:]
    c.panel = True
    mine, others = c.take(items)
    assert others == [] and mine == items


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_claims_leave_live_holders_alone_and_take_over_dead_or_expired_ones(held):
    c, items = held
    host = socket.gethostname()
    _claim_as(c, items[0], "elsewhere:1", 60)  # another machine, lease running: theirs
    _claim_as(c, items[1], f"{host}:{_dead_pid()}", 60)  # this machine, process gone: ours at once
    _claim_as(c, items[2], "elsewhere:2", -1)  # lease ran out: ours
    mine, others = c.take(items)
    assert others == [items[0]] and mine == items[1:]
    with c.db.engine.connect() as con:
        holders = dict(con.execute(sa.select(store.runs.c.key, store.runs.c.claimed_by)).all())
    assert holders[c.keys[items[0]]] == "elsewhere:1"
    assert all(holders[c.keys[x]] == claims.owner() for x in items[1:])


def test_waiting_ends_when_the_holder_stores_the_run_or_its_claim_lapses(held):
    c, items = held
    _claim_as(c, items[0], "elsewhere:1", 60)
    _claim_as(c, items[1], "elsewhere:2", 60)

    def other_process():
        time.sleep(0.3)
        with c.db.engine.begin() as con:  # the first is stored; the second's holder stops renewing
            con.execute(store.runs.update().where(store.runs.c.key == c.keys[items[0]]).values(status="done"))
            con.execute(store.runs.update().where(store.runs.c.key == c.keys[items[1]]).values(
                lease_until=dt.datetime(2000, 1, 1)))

    t = threading.Thread(target=other_process)
    t.start()
    left = list(c.wait(items[:2], panel=False))
    t.join()
    assert left == [[items[1]]]  # taken over, for this process to compute
    assert c.done_elsewhere == [1]


def test_looking_sorts_runs_into_stored_held_elsewhere_and_free_and_claims_none(held):
    c, items = held
    _claim_as(c, items[0], None, 0)
    with c.db.engine.begin() as con:
        con.execute(store.runs.update().where(store.runs.c.key == c.keys[items[0]]).values(status="done"))
    _claim_as(c, items[1], "elsewhere:1", 60)  # another machine, lease running
    _claim_as(c, items[2], "elsewhere:2", -1)  # lease ran out
    assert c.look(items) == ([items[0]], [items[1]], items[2:])
    with c.db.engine.connect() as con:
        holders = dict(con.execute(sa.select(store.runs.c.key, store.runs.c.claimed_by)).all())
    assert claims.owner() not in holders.values() and not c.mine


def test_runs_another_process_claims_after_the_batch_looked_are_left_to_it(tmp_path, monkeypatch):
    """The workers begin the first stacks while the batch claims their runs: of the runs claimed elsewhere in
    between, those of a stack with none left to this batch are not computed, the others are computed with their
    stack but not stored; all are waited for until their holder has stored them."""
    from sim.runs import batch, executors

    monkeypatch.setattr(claims, "POLL_SECONDS", 0.05)
    (tmp_path / "tiny.yaml").write_text(TINY)
    loaded = scenario.load(tmp_path / "tiny.yaml")
    db = store.Store(f"sqlite:///{tmp_path / 'c.db'}", create=True)
    sid = db.add_scenario(loaded)
    bid = db.start_batch(sid, 2)  # the other process's batch
    tasks = runner.tasks(loaded, 2)  # in stacks of two, in this order
    key = {t: store.run_key(loaded.sha256, t.arm, t.replicate, t.seed_label(loaded.scenario.seed)) for t in tasks}
    theirs = tasks[:3]
    looked, computing, stored = claims.Claims.look, batch.run_item, []

    def look(self, items):
        out = looked(self, items)
        until = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=60)
        with db.engine.begin() as con:
            con.execute(store.runs.insert(), [
                {"key": key[t], "scenario_id": sid, "batch_id": bid, "arm": t.arm, "replicate": t.replicate,
                 "seed": t.seed_label(7), "status": "running", "claimed_by": "elsewhere:1", "lease_until": until}
                for t in theirs])
        threading.Timer(0.3, stores_them).start()
        return out

    def stores_them():
        with db.engine.begin() as con:
            con.execute(store.runs.update().where(store.runs.c.key.in_([key[t] for t in theirs])).values(
                status="done", claimed_by=None, lease_until=None))

    def run_item(item, panel):
        computed.extend(t for _, t in item[1])
        return computing(item, panel)

    saving, computed = store.Store.save_runs, []

    def save_runs(self, items, panel=False):
        stored.extend(k for k, *_ in items)
        return saving(self, items, panel)

    monkeypatch.setattr(claims.Claims, "look", look)
    monkeypatch.setattr(batch, "run_item", run_item)
    monkeypatch.setattr(store.Store, "save_runs", save_runs)
    out = batch.run_batch(loaded, db, executors._Serial(), 2)
    assert computed == tasks[2:]  # the first stack went elsewhere whole; the second is computed whole
    assert stored == [key[tasks[3]]]
    assert (out.total, out.skipped, out.failed) == (4, 3, 0)
    with db.engine.connect() as con:
        rows = con.execute(sa.select(store.runs.c.status, store.runs.c.claimed_by)).all()
    assert sorted(r.status for r in rows) == ["done"] * 4 and not any(r.claimed_by for r in rows)


def _claimed(db: store.Store) -> list:
    with db.engine.connect() as con:
        return con.execute(sa.select(store.runs.c.key).where(store.runs.c.claimed_by.is_not(None))).scalars().all()


def test_a_batch_leaves_no_claim_behind(tmp_path, monkeypatch):
    """Whether its runs are stored, stored again to add their weekly panel, failed (when run again for it), or not
    stored because storing failed, a batch ends holding no claim (a claim storing cleared is not looked for
    again)."""
    from sim.runs import batch, executors

    (tmp_path / "tiny.yaml").write_text(TINY)
    loaded = scenario.load(tmp_path / "tiny.yaml")
    db = store.Store(f"sqlite:///{tmp_path / 'c.db'}", create=True)
    assert batch.run_batch(loaded, db, executors._Serial(), 2).total == 4 and _claimed(db) == []
    computing = batch.run_item

    def fails(item, panel):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(batch, "run_item", fails)  # each run again for its panel, and each fails
    assert batch.run_batch(loaded, db, executors._Serial(), 2, panel=True).failed == 4
    assert _claimed(db) == []
    monkeypatch.setattr(batch, "run_item", computing)
    assert batch.run_batch(loaded, db, executors._Serial(), 2, panel=True).skipped == 0
    assert _claimed(db) == []
    saving, calls = store.Store.save_runs, []

    def fails_after_one(self, items, panel=False):
        calls.append(len(items))
        if len(calls) > 1:
            raise store.StoreError("the disk is full")
        return saving(self, items, panel)

    monkeypatch.setattr(store.Store, "save_runs", fails_after_one)
    with pytest.raises(store.StoreError):
        batch.run_batch(loaded, db, executors._Serial(), 3)
    assert calls[0] < 2 and _claimed(db) == []  # the runs not stored were claimed, and are released
