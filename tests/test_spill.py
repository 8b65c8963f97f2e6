"""A local pool's run records come back by file (sim.runs.spill): the same records, the file removed once read,
the pipe where a file cannot be written, and no folder left behind by a pool, or by one whose process died."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_a_pool_s_workers_send_records_by_file_read_by_this_process(tiny, monkeypatch):
    seen, read = [], spill.read

    def recording(result):
        seen.append(type(result))
        return read(result)

    monkeypatch.setattr(spill, "read", recording)
    items = [({0: tiny}, [(0, t)]) for t in runner.tasks(tiny, 4)]
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        got = [(item, fut.result()) for finished in executors.as_finished(pool, partial(batch.run_item, panel=False),
                                                                          items)
               for item, fut in finished]
        folder = pool.spill
        assert os.listdir(folder) == []  # every file read is removed
    assert not os.path.exists(folder)  # and the folder with the pool
    assert spill.Spilled in seen  # the worker's stacks came by file
    for item, recs in got:
        for a, b in zip(runner.run_tasks(tiny, [t for _, t in item[1]], panel=False), recs):
            a.wall_seconds = b.wall_seconds
            _same(a, b)


def test_a_dead_pool_s_folder_is_removed_when_the_next_pool_is_made(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    mine = spill.folder()  # this process's: alive, kept
    base = os.path.dirname(mine)
    stale = os.path.join(base, f"{spill.PREFIX}{dead}-test")
    os.makedirs(stale)
    with open(os.path.join(stale, "1-0.rec"), "wb") as f:
        f.write(b"x" * 100)
    fresh = spill.folder()
    assert not os.path.exists(stale) and os.path.isdir(mine) and os.path.isdir(fresh)
    for d in (mine, fresh):
        os.rmdir(d)
