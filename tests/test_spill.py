"""A local pool's run records come back by file (sim.runs.spill): the same records, the file removed once read,
the pipe where a file cannot be written, and no folder left behind by a pool, or by one whose process died."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from functools import partial

import numpy as np
import pytest

from sim import scenario
from sim.runs import batch, executors, runner, spill
from tests.conftest import TINY


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    return scenario.load(tmp_path / "tiny.yaml")


def _same(a, b) -> None:
    assert (a.scenario, a.arm, a.replicate, a.seed, a.wall_seconds) == (b.scenario, b.arm, b.replicate, b.seed,
                                                                         b.wall_seconds)
    assert list(a.tables) == list(b.tables)
    for name in a.tables:
        assert list(a.tables[name]) == list(b.tables[name])  # columns in their order: the frames' order
        for col, x in a.tables[name].items():
            y = b.tables[name][col]
            assert (x.dtype, x.shape) == (y.dtype, y.shape), (name, col)
            if x.dtype.kind == "f":
                np.testing.assert_array_equal(x, y)  # NaN where NaN
            else:
                assert (x == y).all(), (name, col)


def test_records_read_back_are_those_written_and_the_file_is_removed(tiny, tmp_path):
    recs = runner.run_tasks(tiny, runner.tasks(tiny, 2), panel=True)  # the weekly panel too
    assert any(np.isnan(r.tables["participants"]["dropout_day"]).any() for r in recs)
    out = spill.write(recs, str(tmp_path))
    assert os.path.exists(out.path) and os.path.getsize(out.path) == out.size
    back = spill.read(out)
    assert not os.path.exists(out.path)
    assert len(back) == len(recs)
    for a, b in zip(recs, back):
        _same(a, b)
        assert a.participants.equals(b.participants) and a.assessments.equals(b.assessments)


def test_other_results_and_records_that_cannot_be_written_go_as_they_are(tiny, tmp_path):
    assert spill.spilled(lambda item: [item, 2], str(tmp_path), 1) == [1, 2]
    assert spill.read([1, 2]) == [1, 2]
    work = partial(batch.run_item, panel=False)
    item = ({0: tiny}, [(0, t) for t in runner.tasks(tiny, 1)])
    assert isinstance(spill.spilled(work, str(tmp_path), item), spill.Spilled)
    kept = spill.spilled(work, str(tmp_path / "gone"), item)  # no such folder: through the pipe
    assert isinstance(kept, list) and all(not isinstance(r, spill.Spilled) for r in kept)


def test_a_records_file_cut_short_is_an_error_that_names_it(tiny, tmp_path):
    out = spill.write(runner.run_tasks(tiny, runner.tasks(tiny, 1), panel=False), str(tmp_path))
    with open(out.path, "r+b") as f:
        f.truncate(out.size // 2)
    with pytest.raises(OSError, match="records file holds"):
        spill.read(out)
    assert not os.path.exists(out.path)


def _slow(item):
    time.sleep(0.3)
    return batch.run_item(item, panel=False)


def test_a_pool_s_workers_send_records_by_file_read_by_this_process(tiny, monkeypatch):
    seen, read = [], spill.read

    def recording(result):
        seen.append(type(result))
        return read(result)

    monkeypatch.setattr(spill, "read", recording)
    items = [({0: tiny}, [(0, t)]) for t in runner.tasks(tiny, 4)]
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        # each item held a while (_slow), so that the worker takes some while this process computes its own
        got = [(item, fut.result()) for finished in executors.as_finished(pool, _slow, items) for item, fut in finished]
        folder = pool.spill
        assert os.listdir(folder) == [spill.LOCK]  # every file read is removed
    assert not os.path.exists(folder)  # and the folder with the pool
    assert spill.Spilled in seen  # the worker's stacks came by file
    for item, recs in got:
        for a, b in zip(runner.run_tasks(tiny, [t for _, t in item[1]], panel=False), recs):
            a.wall_seconds = b.wall_seconds
            _same(a, b)


def test_a_folder_is_removed_only_once_no_process_holds_its_lock(tmp_path):
    mine = spill.folder()  # this process's: held, kept
    base = os.path.dirname(mine)
    left = os.path.join(base, f"{spill.PREFIX}1-left")  # its process gone: nobody holds the lock
    os.makedirs(left)
    open(os.path.join(left, spill.LOCK), "w").close()
    with open(os.path.join(left, "1-0.rec"), "wb") as f:
        f.write(b"x" * 100)
    making = os.path.join(base, f"{spill.PREFIX}1-making")  # no lock file yet: being made, unless old
    old = os.path.join(base, f"{spill.PREFIX}1-old")
    for d in (making, old):
        os.makedirs(d)
    os.utime(old, (time.time() - 2 * spill.STALE_SECONDS,) * 2)
    # held by a live process that is not this one (as a pool in another pid namespace sharing /dev/shm would be)
    other = os.path.join(base, f"{spill.PREFIX}1-other")
    os.makedirs(other)
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, os.path.join(other, spill.LOCK)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        fresh = spill.folder()
        assert not os.path.exists(left) and not os.path.exists(old)
        assert all(os.path.isdir(d) for d in (mine, making, other, fresh))
    finally:
        holder.kill()
        holder.wait()
    spill.remove(spill.folder())  # its holder gone, the other folder goes too
    assert not os.path.exists(other)
    for d in (mine, fresh):
        spill.remove(d)
    shutil.rmtree(making)
    assert not os.path.exists(mine)


def test_a_write_that_fails_leaves_no_file_and_the_records_go_through_the_pipe(tmp_path):
    code = """if True:
        import os, resource, signal, sys
        import numpy as np
        from sim.runs import spill
        from sim.runs.records import RunRecords
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file over the limit fails as a full folder would
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
        big = lambda item: [RunRecords("s", "a", 0, "x", {"t": {"a": np.ones(1 << 20)}})]
        out = spill.spilled(big, sys.argv[1], 0)
        print(type(out[0]).__name__, os.listdir(sys.argv[1]))
    """
    got = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert got.stdout.split() == ["RunRecords", "[]"]


def test_an_object_column_of_more_than_texts_goes_through_the_pipe_unchanged(tmp_path):
    from sim.runs.records import RunRecords

    values = np.array([None, 1, 2.5, "\u00e9"], dtype=object)
    recs = [RunRecords("s", "a", 0, "x", {"t": {"v": values, "n": np.arange(4.0)}})]
    out = spill.spilled(lambda item: recs, str(tmp_path), 0)
    assert out is recs and os.listdir(tmp_path) == []


def test_files_of_results_no_one_reads_are_removed(tiny):
    items = [({0: tiny}, [(0, t)]) for t in runner.tasks(tiny, 6)]
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        rounds = executors.as_finished(pool, _slow, items)
        next(rounds)
        rounds.close()  # the caller stops early: the worker finishes what it had taken, unread
        deadline = time.monotonic() + 30
        while os.listdir(pool.spill) != [spill.LOCK] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.listdir(pool.spill) == [spill.LOCK]


def test_a_pool_that_fails_to_start_leaves_no_folder():
    probe = spill.folder()
    base, mine = os.path.dirname(probe), f"{spill.PREFIX}{os.getpid()}-"
    spill.remove(probe)
    before = {d for d in os.listdir(base) if d.startswith(mine)}
    with pytest.raises(ValueError):
        executors._Pool(0)  # no workers: refused by the pool it builds on, after its folder was made
    assert {d for d in os.listdir(base) if d.startswith(mine)} == before
