"""Stores that are read-only, damaged, missing or reached with a password (issue 15): report and export read
a store they cannot write; a damaged one is a clear error; nothing is created by reading; a password never
reaches the store, the report or a message; every text the schema accepts fits SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from sim import cli, scenario
from sim.runs import batch, executors, results, store
from tests import pg
from tests.conftest import TINY

SIM = [sys.executable, "-m", "sim.cli"]
SECRET = "S3cretPassw0rd"


@pytest.fixture(scope="module", autouse=True)
def _stop_server():
    yield
    pg.stop_started()


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A SQLite store file holding the tiny scenario's runs (copied by each test that changes it)."""
    tmp = tmp_path_factory.mktemp("faults")
    (tmp / "tiny.yaml").write_text(TINY)
    db = tmp / "r.db"
    assert cli.main(["run", str(tmp / "tiny.yaml"), "--db", f"sqlite:///{db}", "--figures", str(tmp / "f")]) == 0
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, so that copies are whole
    con.close()
    return db


def copy(stored: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(stored, folder / "s.db"))


def _unprivileged(cmd: list[str]) -> list[str]:
    """The command as a process that file permissions bind (root without its override capabilities)."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot bind this process")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--", *cmd]


def sim(*args, code: int, cwd: Path, unprivileged: bool = False) -> str:
    cmd = [*SIM, *map(str, args)]
    p = subprocess.run(_unprivileged(cmd) if unprivileged else cmd, capture_output=True, text=True, timeout=120,
                       cwd=cwd, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == code, out[-3000:]
    assert "Traceback" not in out
    return out


def dump(db: Path) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_a_read_only_store_is_read_by_report_and_export_and_refused_by_run(stored, tmp_path, read_only):
    db = copy(stored, tmp_path / "ro")
    before = dump(db)
    db.chmod(0o444)
    if read_only == "folder":
        db.parent.chmod(0o555)
    url = f"sqlite:///{db}"
    try:
        assert "report:" in sim("report", "--db", url, "--out", tmp_path / "r.html", code=0, cwd=tmp_path,
                                unprivileged=True)
        assert "runs.csv" in sim("export", "--db", url, "--format", "csv", "--out", tmp_path / "x", code=0,
                                 cwd=tmp_path, unprivileged=True)
        out = sim("run", stored.parent / "tiny.yaml", "--db", url, "--figures",
                  tmp_path / "f", code=2, cwd=tmp_path, unprivileged=True)
        assert "read-only" in out
    finally:
        db.parent.chmod(0o755)
        db.chmod(0o644)
    assert dump(db) == before


@pytest.mark.parametrize("damage, fragment, command", [
    ("DROP TABLE participants", "table(s) participants missing", "report"),
    ("DROP TABLE alembic_version", "no schema revision", "export"),
    ("UPDATE alembic_version SET version_num = '0004'", "records schema revision 0004", "run"),
])
def test_a_damaged_store_is_a_clear_error_and_stays_as_it_was(stored, tmp_path, damage, fragment, command):
    db = copy(stored, tmp_path)
    con = sqlite3.connect(db)
    con.execute(damage)
    con.commit()
    con.close()
    before = dump(db)
    url = f"sqlite:///{db}"
    args = {"report": ["--out", tmp_path / "r.html"], "export": ["--out", tmp_path / "x"],
            "run": [stored.parent / "tiny.yaml", "--figures", tmp_path / "f"]}[command]
    assert fragment in sim(command, "--db", url, *args, code=2, cwd=tmp_path)
    assert dump(db) == before


def test_reading_never_creates_a_store(tmp_path):
    missing = tmp_path / "none" / "s.db"
    with pytest.raises(store.StoreError, match="no results database"):
        results.runs(store.Store(f"sqlite:///{missing}"))
    assert not missing.parent.exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(store.StoreError, match="holds no results"):
        store.Store(f"sqlite:///{empty}")
    assert empty.stat().st_size == 0
    store.Store(f"sqlite:///{empty}", create=True)  # creating is explicit
    assert results.runs(store.Store(f"sqlite:///{empty}")).empty


def test_an_empty_postgresql_database_is_no_store_until_created():
    url = pg.fresh_database()
    with pytest.raises(store.StoreError, match="holds no results"):
        store.Store(url)
    store.Store(url, create=True)
    assert results.runs(store.Store(url)).empty


def _with_password(url: str) -> str:
    u = sa.engine.make_url(url)  # the test server trusts local connections, so any password is accepted
    return u.set(password=SECRET).render_as_string(hide_password=False)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_password_never_reaches_the_store_the_report_or_the_output(tmp_path, backend):
    (tmp_path / "tiny.yaml").write_text(TINY)
    url = pg.fresh_database() if backend == "postgresql" else f"sqlite:///{tmp_path / 'r.db'}"
    shown = _with_password(url) if backend == "postgresql" else url + f"?password={SECRET}"
    out = sim("run", "tiny.yaml", "--db", shown, "--figures", tmp_path / "f", code=0, cwd=tmp_path)
    out += sim("report", "--db", shown, "--out", tmp_path / "r.html", code=0, cwd=tmp_path)
    assert SECRET not in out
    assert SECRET not in (tmp_path / "r.html").read_text()
    with sa.create_engine(url).connect() as c:
        commands = c.execute(sa.text("SELECT command FROM batches")).scalars().all()
    assert commands and all(SECRET not in cmd and "--db" in cmd for cmd in commands)


def test_the_migration_masks_passwords_already_stored(tmp_path):
    import alembic.command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    eng = sa.create_engine(url)
    with eng.begin() as c:
        alembic.command.upgrade(store._alembic_config(c), "0005")
        c.exec_driver_sql("INSERT INTO scenarios (id, name, sha256, path, text, created_at) "
                          "VALUES (1, 'old', 'abc', 'old.yaml', 'name: old', '2026-01-01')")
        c.exec_driver_sql("INSERT INTO batches (scenario_id, replicates, code_version, command, started_at) VALUES "
                          f"(1, 2, 'x', 'sim run old.yaml --db postgresql://u:{SECRET}@h/db', '2026-01-01')")
    eng.dispose()
    store.Store(url)  # a reader migrates a writable store to this code's revision
    with sa.create_engine(url).connect() as c:
        assert c.execute(sa.text("SELECT command FROM batches")).scalar_one() == \
            "sim run old.yaml --db postgresql://u:***@h/db"


LIMITS = textwrap.dedent(f"""\
    name: {"n" * 80}
    seed: {2**64 - 1}
    replicates: 1
    weeks: 2
    population:
      size: 20
      subgroups: [{{name: {"g" * 80}, share: 1}}]
    arms:
      {"a" * 80}: {{}}
    """)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_text_the_schema_accepts_fits_the_store(tmp_path, backend):
    path = tmp_path / "limits.yaml"
    path.write_text(LIMITS)
    loaded = scenario.load(path)
    url = pg.fresh_database() if backend == "postgresql" else f"sqlite:///{tmp_path / 'l.db'}"
    db = store.Store(url, create=True)
    with executors.executor("serial") as ex:
        out = batch.run_batch(loaded, db, ex, 1)
    assert out.failed == 0
    people = results.table(db, "participants")
    assert set(people.subgroup) == {"g" * 80} and set(people.arm) == {"a" * 80}
    for text, fragment in ((LIMITS.replace("n" * 80, "n" * 81), "at most 80"),
                           (LIMITS.replace("g" * 80, "g" * 81), "at most 80"),
                           (LIMITS.replace(f"seed: {2**64 - 1}", f"seed: {2**64}"), "less than or equal")):
        path.write_text(text)
        with pytest.raises(scenario.ScenarioError, match=fragment):
            scenario.load(path)
