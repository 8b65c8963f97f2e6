"""Local process pools (issue 13): workers start and warm up as the pool is made, before any batch work, and
a failed warm-up costs time, never runs; batches send guided stacks, short heads first, the last ones single
runs."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
import weakref

import pandas as pd
import pytest

from sim import cli, scenario
from sim.runs import batch, executors, results, runner, store, workers
from tests.conftest import TINY


def _probe(_):
    """What a lane knows: its pid, whether its warm-up ran through, the kernel's loaded signatures."""
    time.sleep(0.2)  # held a while, so that the other lane takes the next item
    from sim.model import kernel

    return os.getpid(), workers.warm, len(kernel.advance.signatures), len(kernel.days_to_habit.signatures)


def _pid(_) -> int:
    time.sleep(0.1)
    return os.getpid()


def _where(_) -> int:
    return os.getpid()


def _odd_fails(k: int) -> int:
    time.sleep(0.05)
    if k % 2:
        raise ValueError(f"item {k} is odd")
    return os.getpid()


def _logged(path: str) -> None:
    time.sleep(0.1)
    with open(path, "a") as f:
        f.write("x")


def test_workers_start_and_warm_up_when_the_pool_is_made():
    with executors.executor("processes", 3) as pool:
        pids = {p.pid for p in pool._processes.values()}  # started now, before anything of ours is submitted
        assert len(pids) == 2 and os.getpid() not in pids  # three lanes: this process and two workers
        assert executors.ready(pool, timeout=120)
        assert pool.ready_count.value == 2
        got = [f.result() for f in [pool.submit(_probe, k) for k in range(4)]]  # submit: the workers alone
    assert {pid for pid, *_ in got} == pids
    assert all(warm and advance >= 1 and habit >= 1 for _, warm, advance, habit in got)


def test_this_process_warms_up_beside_its_workers():
    from sim.model import kernel

    with executors._Pool(2):
        deadline = time.monotonic() + 120
        while not workers.warm and time.monotonic() < deadline:  # on a thread of its own, while the caller goes on
            time.sleep(0.01)
    assert workers.warm and kernel.advance.signatures


def test_ready_does_not_wait_on_other_executors():
    with executors.executor("serial") as ex:
        assert executors.ready(ex, timeout=0)


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    return scenario.load(tmp_path / "tiny.yaml")


def test_a_failing_warm_up_leaves_the_batch_whole(tiny, tmp_path):
    db = store.Store(f"sqlite:///{tmp_path / 'w.db'}", create=True)
    with executors._Pool(2, warm_up={"name": "no seed, weeks or arms"}) as pool:
        assert executors.ready(pool, timeout=120)  # a failed warm-up still counts as started
        assert not pool.submit(_probe, 0).result()[1]
        out = batch.run_batch(tiny, db, pool, replicates=3)
    assert (out.total, out.skipped, out.failed) == (6, 0, 0)
    assert len(db.done_keys([store.run_key(tiny.sha256, t.arm, t.replicate, t.seed_label(tiny.scenario.seed))
                             for t in runner.tasks(tiny, 3)])) == 6
    db.engine.dispose()


def test_this_process_and_the_workers_share_the_items_each_once():
    interval = sys.getswitchinterval()
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        rounds = list(executors.as_finished(pool, _pid, range(12)))
        worker = {p.pid for p in pool._processes.values()}
    got = [(k, fut.result()) for finished in rounds for k, fut in finished]
    assert sorted(k for k, _ in got) == list(range(12))  # every item once
    assert {pid for _, pid in got} == worker | {os.getpid()}  # both lanes computed some
    assert sys.getswitchinterval() == interval  # lowered while sharing, restored after


def test_this_process_computes_the_first_item_however_fast_the_pool_queues_the_rest(monkeypatch):
    # sent all at once, the pool's queue could hand the first items to the worker before this process took one
    # back, and this process began with a later (with guided stacks, bigger) item than the short head meant for it
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        submit = pool.submit

        def slow_submit(*args, **kwargs):  # time for the pool's thread to queue each item as it is sent
            fut = submit(*args, **kwargs)
            time.sleep(0.02)
            return fut

        monkeypatch.setattr(pool, "submit", slow_submit)
        rounds = list(executors.as_finished(pool, _where, range(6)))
    assert rounds[0][0][0] == 0 and rounds[0][0][1].result() == os.getpid()
    assert sorted(k for finished in rounds for k, _ in finished) == list(range(6))


_BEGAN = None  # the pool's event in the test below (a worker forked with the pool inherits it)


def _saw_a_worker_begin(_) -> tuple[int, bool]:
    return os.getpid(), _BEGAN.is_set()


def test_this_process_computes_its_first_item_once_a_worker_has_begun_one(monkeypatch):
    # begun at once, this process's computing held the interpreter the pool's threads need to hand the worker its
    # first item, and the worker began 1-10 ms later
    global _BEGAN
    monkeypatch.setattr(executors, "HANDOVER_SECONDS", 60.0)  # however loaded the machine, not a time limit here
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        _BEGAN = pool.began
        rounds = list(executors.as_finished(pool, _saw_a_worker_begin, range(6)))
    first, fut = rounds[0][0]
    assert first == 0 and fut.result() == (os.getpid(), True)
    assert sorted(k for finished in rounds for k, _ in finished) == list(range(6))


def test_items_wait_for_no_worker_that_is_not_ready():
    with executors.executor("processes", 2) as pool:  # its worker starts, imports and warms up: a second or so
        got = [(k, fut.result()) for finished in executors.as_finished(pool, _where, range(5)) for k, fut in finished]
        assert not executors.ready(pool, timeout=0)
    assert got == [(k, os.getpid()) for k in range(5)]  # all computed here, in order, none left in the pool's queue


def test_map_keeps_the_order_and_raises_an_items_error():
    with executors.executor("processes", 2) as pool:
        assert list(pool.map(pow, range(9), [2] * 9)) == [k * k for k in range(9)]
        results = pool.map(_odd_fails, range(6))
        assert next(results) in {os.getpid(), *[p.pid for p in pool._processes.values()]}
        with pytest.raises(ValueError, match="item 1 is odd"):
            next(results)


def test_a_failing_item_fails_alone_on_either_lane():
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        got = [(k, fut) for finished in executors.as_finished(pool, _odd_fails, range(10)) for k, fut in finished]
    assert sorted(k for k, _ in got) == list(range(10))
    assert all((fut.exception() is not None) == bool(k % 2) for k, fut in got)


def test_items_not_started_when_the_caller_stops_are_never_run(tmp_path):
    log = tmp_path / "log"
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        for _ in executors.as_finished(pool, _logged, [str(log)] * 40):
            break  # as a batch does when storing fails
    assert len(log.read_text()) < 10  # the first item or two of each lane, not the 40


class _Box:
    """A result that can be watched (weakref) after it is handed over."""

    def __init__(self, k: int):
        self.k = k


def _boxed(k: int) -> _Box:
    time.sleep(0.01)
    return _Box(k)


def test_results_are_freed_once_the_caller_has_them_not_when_the_items_end():
    alive: weakref.WeakSet = weakref.WeakSet()
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        rounds, handed = executors.as_finished(pool, _boxed, range(40)), 0
        for finished in rounds:
            for k, fut in finished:
                alive.add(fut.result())
                handed += 1
            del finished, fut
            if handed >= 30:
                break
        gc.collect()
        assert len(alive) <= 2  # not every result handed over so far, held by the suspended generator
        rounds.close()


def test_a_pool_whose_worker_died_leaves_the_items_to_this_process():
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        for pid in list(pool._processes):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not pool._broken and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not executors.ready(pool, timeout=0)
        got = [(k, fut.result()) for finished in executors.as_finished(pool, _where, range(5)) for k, fut in finished]
    assert got == [(k, os.getpid()) for k in range(5)]


def test_ctrl_c_in_this_process_is_not_held_in_a_future():
    def interrupted(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        executors._Serial().submit(interrupted, 0)


def test_a_batch_on_a_pool_stores_what_a_serial_one_does(tiny, tmp_path):
    tables = {}
    for name, jobs in (("serial", 1), ("pool", 2)):
        db = store.Store(f"sqlite:///{tmp_path / name}.db", create=True)
        with executors.executor("processes", jobs) as ex:
            out = batch.run_batch(tiny, db, ex, replicates=5, stack_runs=2)
        assert (out.total, out.failed) == (10, 0)
        res = results.scenario_results(db, tiny.sha256, 5)
        tables[name] = res.participants.sort_values(["arm", "replicate", "pid"]).reset_index(drop=True)
        db.engine.dispose()
    assert len(tables["pool"]) == 10 * 30
    pd.testing.assert_frame_equal(tables["serial"], tables["pool"])


def test_sim_run_starts_the_pool_before_it_opens_the_store(tiny, tmp_path, monkeypatch, capsys):
    order, make_pool, open_store = [], executors.executor, store.Store

    def executor(*args, **kwargs):
        order.append("executor")
        return make_pool(*args, **kwargs)

    def opened(*args, **kwargs):
        order.append("store")
        return open_store(*args, **kwargs)

    monkeypatch.setattr(executors, "executor", executor)
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


_COMPUTED: list = []  # the items a process computed (each worker has its own copy)


def _noted(k: int) -> int:
    _COMPUTED.append(k)
    return os.getpid()


def test_what_the_caller_does_meanwhile_runs_once_a_worker_has_begun_and_before_this_process_computes(monkeypatch):
    # a batch writes its rows and claims there: on a pool, while the worker computes its first item
    monkeypatch.setattr(executors, "HANDOVER_SECONDS", 60.0)
    seen = []
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        _COMPUTED.clear()
        rounds = list(executors.as_finished(pool, _noted, range(6), lambda: seen.append((pool.began.is_set(),
                                                                                         len(_COMPUTED)))))
        assert sorted(k for finished in rounds for k, _ in finished) == list(range(6))
        assert seen == [(True, 0)] and _COMPUTED
        assert list(executors.as_finished(pool, _noted, [], lambda: seen.append("none"))) == []
        assert seen[1:] == ["none"]  # nothing to compute: still called, once
    _COMPUTED.clear()
    got = [fut.result() for finished in executors.as_finished(executors._Serial(), _noted, range(3),
                                                                lambda: seen.append(len(_COMPUTED)))
           for _, fut in finished]
    assert seen[2:] == [0] and got == [os.getpid()] * 3


def test_items_the_caller_rejects_meanwhile_are_not_computed_or_not_yielded(monkeypatch):
    monkeypatch.setattr(executors, "HANDOVER_SECONDS", 60.0)
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        got = [k for finished in executors.as_finished(pool, _pid, range(10), lambda: lambda n: n % 2 == 0)
               for k, fut in finished if fut.result()]
        assert sorted(got) == [0, 2, 4, 6, 8]
        # all rejected, this process's own first item too: nothing is yielded
        assert list(executors.as_finished(pool, _pid, range(4), lambda: lambda k: False)) == []
    _COMPUTED.clear()
    got = [k for finished in executors.as_finished(executors._Serial(), _noted, range(5), lambda: lambda n: n > 2)
           for k, _ in finished]
    assert got == [3, 4] and _COMPUTED == [3, 4]


def _logged_slowly(item: tuple[str, int]) -> int:
    path, k = item
    with open(path, "a") as f:
        f.write(f"{k}\n")
    time.sleep(0.2)
    return k


def test_items_dropped_after_a_worker_was_handed_them_are_skipped_unless_begun(tmp_path, monkeypatch):
    # the pool's queue hands a worker its next items ahead, and their futures can no longer be cancelled: a
    # batch that lost its runs to another process would compute them all for nothing
    monkeypatch.setattr(executors, "HANDOVER_SECONDS", 60.0)
    log = tmp_path / "computed"
    log.touch()
    items = [(str(log), k) for k in range(8)]
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        assert list(executors.as_finished(pool, _logged_slowly, items, lambda: lambda item: False)) == []
        got = [fut.result() for finished in executors.as_finished(pool, _logged_slowly, items[:3])
               for _, fut in finished]  # the pool goes on as before
    assert log.read_text().split()[:1] == ["1"]  # the one a worker had begun, this process's own not at all
    assert sorted(got) == [0, 1, 2] and len(log.read_text().split()) == 4


def _slow_on_a_worker(item: tuple[int, int]) -> int:
    owner, _ = item
    time.sleep(1.0 if os.getpid() != owner else 0.01)
    return os.getpid()


def test_this_process_holds_its_own_results_while_it_has_items_left_to_take_and_no_longer():
    # a batch stores what it is yielded in one transaction: this process's own single runs, yielded alone, were a
    # transaction each; they now wait for the workers' next results, or until nothing is left to take
    with executors.executor("processes", 2) as pool:
        assert executors.ready(pool, timeout=120)
        t0, rounds = time.monotonic(), []
        for finished in executors.as_finished(pool, _slow_on_a_worker, [(os.getpid(), k) for k in range(8)]):
            rounds.append((time.monotonic() - t0, [(k, fut.result()) for (_, k), fut in finished]))
    assert sorted(k for _, finished in rounds for k, _ in finished) == list(range(8))
    mine = [k for _, finished in rounds for k, pid in finished if pid == os.getpid()]
    assert len(mine) >= 3  # the worker's first item (1 s) took long enough for this process to compute several
    first_at, first = rounds[0]
    assert sorted(k for k, _ in first) == sorted(mine)  # all in one round...
    assert first_at < 0.9  # ...as soon as none was left to take, not held for the worker's first result
