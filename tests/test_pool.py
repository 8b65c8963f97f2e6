"""Local process pools (issue 13): workers start and warm up as the pool is made, before any batch work, and
a failed warm-up costs time, never runs; batches send guided stacks, short heads first, the last ones single
runs."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from sim import cli, scenario
from sim.runs import batch, runner, store, workers
from tests.conftest import TINY


def _probe(_):
    """What a worker knows: its pid, whether its warm-up ran through, the kernel's loaded signatures."""
    time.sleep(0.2)  # held a while, so that the other worker takes the next probe
    from sim.model import kernel

    return os.getpid(), workers.warm, len(kernel.advance.signatures), len(kernel.days_to_habit.signatures)


def test_workers_start_and_warm_up_when_the_pool_is_made():
    assert not workers.warm  # this process never warms up: a True below comes from the workers' own start
    with runner.executor("processes", 2) as pool:
        pids = {p.pid for p in pool._processes.values()}  # started now, before anything of ours is submitted
        assert len(pids) == 2
        assert runner.ready(pool, timeout=120)
        assert pool.ready_count.value == 2
        got = list(pool.map(_probe, range(4)))
    assert {pid for pid, *_ in got} == pids
    assert all(warm and advance >= 1 and habit >= 1 for _, warm, advance, habit in got)


def test_ready_does_not_wait_on_other_executors():
    with runner.executor("serial") as ex:
        assert runner.ready(ex, timeout=0)


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    return scenario.load(tmp_path / "tiny.yaml")


@pytest.fixture
def forked():
    """Pools of this test fork their workers, as on Linux by default: mesa.batch_run (other tests) sets
    "spawn" for the whole process, and spawned workers would not inherit what the test patched."""
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("fork", force=True)
    yield
    multiprocessing.set_start_method(before, force=True)


def test_a_failing_warm_up_leaves_the_batch_whole(tiny, tmp_path, monkeypatch, forked):
    monkeypatch.setattr(workers, "WARM_UP", {"name": "no seed, weeks or arms"})  # the workers inherit it
    db = store.Store(f"sqlite:///{tmp_path / 'w.db'}", create=True)
    with runner.executor("processes", 2) as pool:
        assert runner.ready(pool, timeout=120)  # a failed warm-up still counts as started
        assert not any(warm for _, warm, *_ in pool.map(_probe, range(2)))
        out = batch.run_batch(tiny, db, pool, replicates=3)
    assert (out.total, out.skipped, out.failed) == (6, 0, 0)
    assert len(db.done_keys([store.run_key(tiny.sha256, t.arm, t.replicate, t.seed_label(tiny.scenario.seed))
                             for t in runner.tasks(tiny, 3)])) == 6
    db.engine.dispose()


def test_sim_run_starts_the_pool_before_it_opens_the_store(tiny, tmp_path, monkeypatch, capsys):
    order, make_pool, open_store = [], runner.executor, store.Store

    def executor(*args, **kwargs):
        order.append("executor")
        return make_pool(*args, **kwargs)

    def opened(*args, **kwargs):
        order.append("store")
        return open_store(*args, **kwargs)

    monkeypatch.setattr(runner, "executor", executor)
    monkeypatch.setattr(store, "Store", opened)
    code = cli.main(["run", tiny.path, "--db", f"sqlite:///{tmp_path / 'o.db'}", "--figures", str(tmp_path / "f")])
    assert code == 0, capsys.readouterr().err
    assert order[:2] == ["executor", "store"]


@pytest.mark.parametrize("n, jobs, runs", [(1, 2, 64), (7, 4, 64), (12, 2, 4), (40, 2, 64), (40, 2, 4),
                                           (300, 3, 64), (1000, 2, 64), (1000, 8, 16)])
def test_guided_stacks_cover_every_task_once_in_order_and_shrink_to_single_runs(n, jobs, runs):
    todo = list(range(n))
    heads = jobs  # as a batch asks: one short stack per worker of a pool
    got = runner.stacks(todo, jobs, runs, heads=heads)
    assert sum(got, []) == todo  # every task once, in order
    sizes = [len(s) for s in got]
    assert 1 <= min(sizes) and max(sizes) <= runs
    rest = sizes[heads:]
    assert all(a >= b for a, b in zip(rest, rest[1:]))  # non-increasing after the heads
    assert all(h <= rest[0] for h in sizes[:heads]) if rest else True
    assert sizes[-1] == 1  # the writer's tail after the last compute is one run


def test_stack_sizes_of_the_bench_batch_of_one_worker_and_of_groups():
    # 40 runs on two workers: two heads, then about what is left / 4 each (the equal split was 2, 2, 8, 8, 10, 10)
    assert [len(s) for s in runner.stacks(list(range(40)), 2, heads=2)] == [2, 2, 9, 7, 5, 4, 3, 2, 2, 1, 1, 1, 1]
    assert [len(s) for s in runner.stacks(list(range(300)), 1)] == [64] * 4 + [44]  # one worker: as before
    todo = [(g, k) for g in range(3) for k in range(15)]  # three structures of 15 runs each, grouped
    got = runner.stacks(todo, 2, 64, heads=2, key=lambda t: t[0])
    assert sum(got, []) == todo
    assert all(len({g for g, _ in s}) == 1 for s in got)  # a stack never mixes structures
