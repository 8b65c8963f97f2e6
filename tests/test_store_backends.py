"""The results store on SQLite and on a real PostgreSQL server: round trip, idempotence, schema guard."""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from sim import cli, scenario
from sim.runs import results, runner, store
from tests import pg

TINY = textwrap.dedent("""\
    name: tiny_store
    seed: 11
    replicates: 2
    weeks: 3
    follow_up_weeks: 1
    population: {size: 25}
    arms:
      usual_care: {}
      exercise:
        prescription: {sessions_per_week: 3, minutes: 30, intensity: 0.5}
        support: {kind: class, class_size: 5}
    """)


def pytest_generate_tests(metafunc):
    if "db_url" in metafunc.fixturenames:
        metafunc.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="module", autouse=True)
def _stop_server():
    yield
    pg.stop_started()


@pytest.fixture
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return pg.fresh_database()


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny_store.yaml"
    path.write_text(TINY)
    return scenario.load(path)


def _count(db: store.Store, table: sa.Table) -> int:
    with db.engine.connect() as c:
        return c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_round_trip_is_exact(db_url, tiny):
    db = store.Store(db_url, create=True)
    sid = db.add_scenario(tiny)
    bid = db.start_batch(sid, 1)
    rec = runner.run_task(tiny, runner.Task("exercise", 1))
    assert db.save_run(store.run_key(tiny.sha256, "exercise", 1, rec.seed), sid, bid, rec, panel=True)
    parts = results.table(db, "participants", scenario="tiny_store").sort_values("pid").reset_index(drop=True)
    for col in ("baseline_severity", "cognitive_control", "adherence", "dropout_day", "severity_end_programme"):
        np.testing.assert_array_equal(parts[col].to_numpy(float), rec.participants[col].to_numpy(float))
    assert parts.augmented.dtype == bool and (parts.subgroup == "all").all()
    days = results.table(db, "arm_days", scenario="tiny_store").sort_values("day")
    np.testing.assert_array_equal(days.severity_mean.to_numpy(), rec.daily.severity_mean.to_numpy())
    weeks = results.table(db, "participant_weeks", scenario="tiny_store")
    assert len(weeks) == 25 * 5
    run = results.runs(db, scenario="tiny_store").iloc[0]
    assert (run.arm, run.replicate, run.seed, run.status) == ("exercise", 1, "11/1", "done")
    assert run.code_version.startswith("0.") and run.host and "numpy" in run.packages


def test_saving_a_run_twice_stores_it_once(db_url, tiny):
    db = store.Store(db_url, create=True)
    sid = db.add_scenario(tiny)
    bid = db.start_batch(sid, 1)
    rec = runner.run_task(tiny, runner.Task("usual_care", 0))
    key = store.run_key(tiny.sha256, "usual_care", 0, rec.seed)
    assert db.save_run(key, sid, bid, rec) is True
    assert db.save_run(key, sid, bid, rec) is False
    assert _count(db, store.runs) == 1 and _count(db, store.participants) == 25
    assert db.add_scenario(tiny) == sid  # same text, same row


def test_a_stack_of_runs_stored_together_is_stored_as_each_run_alone(db_url, tiny, tmp_path):
    todo = [runner.Task(arm, r) for r in range(2) for arm in ("usual_care", "exercise")]
    recs = runner.run_tasks(tiny, todo, panel=True)
    stores = [store.Store(db_url, create=True), store.Store(f"sqlite:///{tmp_path / 'alone.db'}", create=True)]
    for db in stores:
        sid = db.add_scenario(tiny)
        bid = db.start_batch(sid, 2)
        items = [(store.run_key(tiny.sha256, t.arm, t.replicate, rec.seed), sid, bid, rec) for t, rec in zip(todo, recs)]
        if db is stores[0]:
            db.save_run(*items[1])  # stored before, with no panel: the stack adds only its panel
            assert db.save_runs(items, panel=True) == [True] * 4
            assert db.save_runs(items, panel=True) == [False] * 4
        else:
            assert [db.save_run(*it, panel=True) for it in items] == [True] * 4
    for name in results.TABLES:
        together, alone = (results.table(db, name).drop(columns="run_id").sort_values(
            ["arm", "replicate", *({"arm_days": ["day"], "participants": ["pid"]}.get(name, ["pid", "week"]))])
            .reset_index(drop=True) for db in stores)
        pd.testing.assert_frame_equal(together, alone, check_dtype=False)
    assert _count(stores[0], store.runs) == 4 and _count(stores[0], store.assessment_scores) == 4


def test_failed_run_is_retried_and_replaced(db_url, tiny):
    db = store.Store(db_url, create=True)
    sid = db.add_scenario(tiny)
    bid = db.start_batch(sid, 1)
    rec = runner.run_task(tiny, runner.Task("exercise", 0))
    key = store.run_key(tiny.sha256, "exercise", 0, rec.seed)
    db.save_failure(key, sid, bid, "exercise", 0, rec.seed, "RuntimeError: boom")
    assert db.done_keys([key]) == set()
    assert db.save_run(key, sid, bid, rec)
    assert db.done_keys([key]) == {key}
    assert _count(db, store.runs) == 1


def test_cli_run_on_each_backend(db_url, tiny, tmp_path, capsys):
    code = cli.main(["run", tiny.path, "--db", db_url, "--figures", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "4 runs now, 0 already stored" in out.out
    db = store.Store(db_url)
    assert _count(db, store.runs) == 4 and _count(db, store.participants) == 100


def test_database_from_newer_code_is_refused_untouched(db_url, tiny, tmp_path, capsys):
    db = store.Store(db_url, create=True)
    db.add_scenario(tiny)
    with db.engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(store.StoreError, match="newer than this code"):
        store.Store(db_url)
    code = cli.main(["run", tiny.path, "--db", db_url, "--figures", str(tmp_path)])
    assert code == 2 and "9999" in capsys.readouterr().err
    assert _count(db, store.scenarios) == 1 and _count(db, store.runs) == 0


def test_export_writes_every_table(db_url, tiny, tmp_path, capsys):
    assert cli.main(["run", tiny.path, "--db", db_url, "--figures", str(tmp_path), "--replicates", "1",
                     "--record", "participants-weekly"]) == 0
    for fmt in ("csv", "parquet"):
        assert cli.main(["export", "--db", db_url, "--format", fmt, "--out", str(tmp_path / fmt)]) == 0
    import pandas as pd
    parts = pd.read_parquet(tmp_path / "parquet" / "participants.parquet")
    assert len(parts) == 50 and {"scenario", "arm", "replicate", "seed"} <= set(parts.columns)
    assert len(pd.read_csv(tmp_path / "csv" / "participant_weeks.csv")) == 50 * 5
    capsys.readouterr()


def test_unreachable_and_malformed_databases_exit_2(tiny, capsys):
    for url in ("postgresql+psycopg://nobody@127.0.0.1:1/none", "postgresql+nodriver://x@y/z", "::"):
        code = cli.main(["run", tiny.path, "--db", url])
        err = capsys.readouterr().err
        assert code == 2, url
        assert "error:" in err and "Traceback" not in err


def test_scenario_changed_since_an_interrupted_batch(tmp_path, capsys):
    path = tmp_path / "tiny_store.yaml"
    path.write_text(TINY)
    url = f"sqlite:///{tmp_path / 's.db'}"
    db = store.Store(url, create=True)
    db.start_batch(db.add_scenario(scenario.load(path)), 2)  # a batch that never finished
    path.write_text(TINY.replace("size: 25", "size: 26"))
    code = cli.main(["run", str(path), "--db", url, "--figures", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "changed on disk" in err and "--allow-changed" in err
    assert _count(db, store.runs) == 0
    assert cli.main(["run", str(path), "--db", url, "--figures", str(tmp_path), "--allow-changed"]) == 0


def test_migrations_build_exactly_the_declared_schema(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    db = store.Store(db_url, create=True)
    with db.engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), store.metadata) == []


def test_an_older_database_is_upgraded_keeping_its_rows(db_url, tiny):
    import alembic.command
    from alembic.script import ScriptDirectory
    eng = sa.create_engine(db_url)
    with eng.begin() as c:
        alembic.command.upgrade(store._alembic_config(c), "0001")
        c.execute(store.scenarios.insert().values(name="old", sha256="0" * 64, path="old.yaml", text="name: old",
                                                  created_at=sa.func.now()))
    eng.dispose()
    db = store.Store(db_url, create=True)  # migrates to head
    with db.engine.connect() as c:
        head = ScriptDirectory(str(store.MIGRATIONS)).get_current_head()
        assert c.exec_driver_sql("select version_num from alembic_version").scalar_one() == head != "0001"
        assert c.execute(sa.select(store.scenarios.c.name)).scalars().all() == ["old"]
    assert "days_to_habit_95" in {col["name"] for col in sa.inspect(db.engine).get_columns("participants")}


def test_assessments_move_to_one_row_per_run_and_back_exactly(db_url):
    """Migration 0008 packs each run's assessment rows into one row, and reading it back gives the same
    rows; its downgrade restores the old table row for row."""
    import alembic.command
    old = [(0, 0, 21.0), (0, 4, 17.0), (0, 8, 12.0), (1, 0, 30.0), (1, 4, 28.5),  # pid 1 leaves after week 4
           (3, 0, 9.0), (3, 8, 8.0)]  # pid 2 never assessed, pid 3 missed week 4
    eng = sa.create_engine(db_url)
    with eng.begin() as c:
        alembic.command.upgrade(store._alembic_config(c), "0007")
        sid = c.execute(store.scenarios.insert().values(name="old", sha256="0" * 64, path="old.yaml", text="x",
                                                        created_at=sa.func.now())).inserted_primary_key[0]
        for run in (1, 2):
            c.execute(store.runs.insert().values(id=run, key=f"k{run}", scenario_id=sid, arm="a", replicate=run,
                                                 seed=f"1/{run}", status="done"))
            c.execute(sa.text("INSERT INTO assessments (run_id, pid, week, score) VALUES (:r, :p, :w, :s)"),
                      [{"r": run, "p": p, "w": w, "s": s + run} for p, w, s in old])
    eng.dispose()
    db = store.Store(db_url, create=True)
    back = results.table(db, "assessments").sort_values(["replicate", "pid", "week"])
    expected = sorted((run, p, w, s + run) for run in (1, 2) for p, w, s in old)
    assert list(back[["replicate", "pid", "week", "score"]].itertuples(index=False, name=None)) == expected
    assert _count(db, store.assessment_scores) == 2
    with db.engine.begin() as c:
        alembic.command.downgrade(store._alembic_config(c), "0007")
        rows = c.execute(sa.text("SELECT run_id, pid, week, score FROM assessments ORDER BY run_id, pid, week")).all()
    db.engine.dispose()
    assert [tuple(r) for r in rows] == expected


def test_runs_claimed_then_stored_carry_their_provenance_as_sqlalchemy_stores_it(db_url, tiny, monkeypatch):
    from sim.runs import claims, store_write

    db = store.Store(db_url, create=True)
    sid = db.add_scenario(tiny)
    bid = db.start_batch(sid, 2)
    todo = runner.tasks(tiny, 2)
    keys = {(0, t): store.run_key(tiny.sha256, t.arm, t.replicate, t.seed_label(tiny.scenario.seed)) for t in todo}
    held = claims.Claims(db, keys, [sid], [bid], [tiny.scenario.seed])
    assert held.take(list(keys))[0] == list(keys)  # as a batch does: the rows exist, running and claimed
    recs = runner.run_tasks(tiny, todo, panel=False)
    monkeypatch.setattr(store_write, "KEYS_PER_STATEMENT", 3)  # several statements' worth of keys
    with warnings.catch_warnings():  # values reach the driver converted as SQLAlchemy converts them (not by
        warnings.simplefilter("error", DeprecationWarning)  # sqlite3's default datetime adapter, deprecated)
        assert db.save_runs([(keys[(0, t)], sid, bid, rec) for t, rec in zip(todo, recs)]) == [True] * 4
    got = results.runs(db, scenario="tiny_store").sort_values(["replicate", "arm"])
    assert (got.status == "done").all() and got.error.isna().all() and (got.batch_id == bid).all()
    with db.engine.connect() as c:
        rows = c.execute(sa.select(store.runs.c.claimed_by, store.runs.c.lease_until, store.runs.c.started_at,
                                   store.runs.c.finished_at, store.runs.c.wall_seconds, store.runs.c.git_dirty)).all()
        if db.engine.dialect.name == "sqlite":  # the text SQLAlchemy itself writes (as for the batch's start)
            texts = c.exec_driver_sql("SELECT runs.finished_at, batches.started_at FROM runs, batches").all()
            assert all(len(run) == len(batch) == 26 and run[10] == batch[10] == " " for run, batch in texts)
    for claimed_by, lease_until, started, finished, wall, dirty in rows:
        assert claimed_by is None and lease_until is None
        assert abs((finished - started).total_seconds() - wall) < 1e-3 and wall > 0
        assert dirty in (True, False, None)
    assert db.done_keys([*keys.values(), "not-a-run"]) == set(keys.values())
    assert db.done_keys(list(keys.values())[:2]) == set(list(keys.values())[:2])
