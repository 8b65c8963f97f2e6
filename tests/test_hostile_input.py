"""Hostile and huge input (issue 15): every case runs `sim` in a subprocess with a timeout and must end
with exit code 2 (bad input) or 1 (a failed write), one short error line and no traceback, within the
time limit, and leave the results store exactly as it was."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sim import cli
from tests.conftest import TINY

SIM = [sys.executable, "-m", "sim.cli"]
TIMEOUT = 60  # seconds: a hang is a failure, not a stuck suite
MAX_OUTPUT = 3000  # characters of output: a message never prints a whole expanded value
SECRET = "S3cretPassw0rd"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> dict:
    """A store holding the tiny scenario's runs, and a folder to write hostile files into."""
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "tiny.yaml").write_text(TINY)
    url = f"sqlite:///{tmp / 'r.db'}"
    assert cli.main(["run", str(tmp / "tiny.yaml"), "--db", url, "--figures", str(tmp / "figs")]) == 0
    return {"tmp": tmp, "url": url, "db": tmp / "r.db"}


def content(db: Path) -> str:
    """A hash of everything the store holds (its logical content, not its bytes, which a checkpoint moves)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()


def sim(stored: dict, *args, code: int = 2, **kw) -> str:
    """Run `sim args` against the stored fixture; assert the exit code, one short error line, no traceback
    and an unchanged store; return stdout + stderr."""
    before = content(stored["db"])
    args = [a.replace("{db}", stored["url"]) if isinstance(a, str) else str(a) for a in args]
    p = subprocess.run([*SIM, *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=stored["tmp"],
                       stdin=subprocess.DEVNULL, **kw)
    out = p.stdout + p.stderr
    assert p.returncode == code, out[-MAX_OUTPUT:]
    assert "Traceback" not in out and len(out) < MAX_OUTPUT, out[-MAX_OUTPUT:]
    assert sum("error:" in line for line in p.stderr.splitlines()) == 1, p.stderr
    assert content(stored["db"]) == before
    return out


def write(stored: dict, name: str, text: str) -> Path:
    path = stored["tmp"] / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def scenario_with(old: str, new: str) -> str:
    assert old in TINY
    return TINY.replace(old, new, 1)


def bomb(levels: int = 9) -> str:
    """A 'billion laughs' as one flow value: level k holds nine aliases of level k-1."""
    parts = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    parts += [f"&a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]" for k in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


# ------------------------------------------------------------------ scenario and targets files
BOMB_PLACES = {
    "name": ("name: tiny", "name: {bomb}"),
    "seed": ("seed: 7", "seed: {bomb}"),
    "size": ("size: 30", "size: {bomb}"),
    "minutes": ("minutes: 30", "minutes: {bomb}"),
    "description": ("seed: 7", "seed: 7\ndescription: {bomb}"),
    "parameter": ("seed: 7", "seed: 7\nparameters: {intention.bias: {bomb}}"),
    "assign_bound": ("support: {kind: partner}",
                     "support: {kind: partner}\n    assign: [{when: {fitness: {below: {bomb}}}, add: {}}]"),
}


@pytest.mark.parametrize("place", BOMB_PLACES)
def test_alias_bomb_is_refused_at_once(stored, place):
    old, new = BOMB_PLACES[place]
    out = sim(stored, "run", write(stored, f"bomb_{place}.yaml", scenario_with(old, new.replace("{bomb}", bomb()))))
    assert "aliases expand" in out and "100,000" in out


def test_alias_bomb_in_a_targets_file(stored):
    scen = write(stored, "tiny.yaml", TINY)
    targets = write(stored, "targets_bomb.yaml", f"targets:\n  - {{id: t, scenario: {scen.name}, metric: dropout_rate, "
                    f"arm: exercise, week: 4, published: 0.2, accept: [0, 1], finding: {bomb()}}}\n")
    assert "aliases expand" in sim(stored, "validate", "--targets", targets, "--db", "{db}")


@pytest.mark.parametrize("nesting", [
    "[" * 50_000 + "]" * 50_000,
    "[" * 1_500 + "]" * 1_500,
    "{a: " * 5_000 + "1" + "}" * 5_000,
])
def test_deep_nesting_is_refused_before_recursion(stored, nesting):
    out = sim(stored, "run", write(stored, "deep.yaml", scenario_with("seed: 7", f"seed: 7\ndescription: {nesting}")))
    assert "nested deeper than 40 levels" in out


def test_deep_nesting_in_a_targets_file(stored):
    targets = write(stored, "targets_deep.yaml", "targets: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert "nested deeper" in sim(stored, "validate", "--targets", targets)


@pytest.mark.parametrize("seed, fragment", [
    ("9" * 5_000, "an integer of 5,000 digits"),
    (str(2**64), "less than or equal to 18446744073709551615"),
])
def test_huge_seed_is_refused_with_the_range(stored, seed, fragment):
    assert fragment in sim(stored, "run", write(stored, "seed.yaml", scenario_with("seed: 7", f"seed: {seed}")))


def _arms(links: list[tuple[int, int | None]]) -> str:
    rows = "".join(f"  a{i}: {{extends: a{j}}}\n" if j is not None else f"  a{i}: {{}}\n" for i, j in links)
    return TINY.split("arms:")[0] + "arms:\n" + rows


@pytest.mark.parametrize("links, fragments", [
    ([(0, None)] + [(i, i - 1) for i in range(1, 3_000)], ("at most 50 items",)),  # 3,000 arms in a chain
    ([(i, (i + 1) % 3_000) for i in range(3_000)], ("at most 50 items",)),  # a cycle of 3,000 arms
    ([(i, (i + 1) % 12) for i in range(12)], ("cycle of 12", "a0 -> a1 -> a2", "-> a0")),
    ([(0, None)] + [(i, i - 1) for i in range(1, 14)], ("a chain of more than 10 arms",)),
])
def test_extends_chains_and_cycles_are_refused(stored, links, fragments):
    out = sim(stored, "run", write(stored, "arms.yaml", _arms(links)))
    assert all(f in out for f in fragments), out


@pytest.mark.parametrize("old, new, fragment", [
    ("support: {kind: partner}", 'support: {kind: partner}\n    medication: {name: "sert\\ud800"}', "lone surrogate"),
    ("name: tiny", 'name: "ti\\0ny"', "'\\x00'"),
    ("size: 30}", 'size: 30, subgroups: [{name: "a\\ud800", share: 1}]}', "lone surrogate"),
    ("size: 30}", 'size: 30, subgroups: [{name: "$\\\\frac{", share: 1}]}', "should match pattern"),
    ("size: 30}", f"size: 30, subgroups: [{{name: {'g' * 81}, share: 1}}]}}", "at most 80 characters"),
    ("seed: 7", "seed: 7\noutcomes: {scale: '" + "x" * 1_000_000 + "'}", "(1,000,000 characters)"),
    ("seed: 7", "seed: 7\noutcomes: {scale: '$\\frac{'}", "'HAM-D-17'"),
    ("name: tiny", "name: !!binary aGVsbG8=", "tag:yaml.org,2002:binary is not allowed"),
    ("name: tiny", "name: !!python/object:os.system ls", "is not allowed"),
    ("name: tiny", "name: !custom x", "tag !custom is not allowed"),
    ("weeks: 4", "weeks: 1:30", "got '1:30'"),
    ("size: 30", "size: '30'", "got '30'"),
    ("weeks: 4", "weeks: 4.0", "valid integer"),
    ("support: {kind: partner}", "support: {kind: partner}\n    medication: {continue_after: yes}", "got 'yes'"),
    ("name: tiny", "name: &n tiny\nname2: *n", "unknown key"),
    ("name: tiny", "name: tiny\nname: tiny", "duplicate key"),
])
def test_bad_values_and_text_are_refused(stored, old, new, fragment):
    out = sim(stored, "run", write(stored, "bad.yaml", scenario_with(old, new)))
    assert fragment in out, out


def test_merge_keys_work(stored, tmp_path):
    text = TINY.replace("  exercise:\n", "  exercise: &ex\n").replace("support: {kind: partner}\n",
                                                                      "support: {kind: partner}\n  again:\n    <<: *ex\n")
    from sim import scenario

    loaded = scenario.load(write(stored, "merge.yaml", text))
    assert loaded.arms["again"] == loaded.arms["exercise"]


@pytest.mark.parametrize("args", [
    ["run", "/dev/zero"],
    ["validate", "--targets", "/dev/zero"],
    ["report", "--db", "{db}", "--validation", "/dev/zero", "--out", "r.html"],
])
def test_endless_streams_are_refused_unread(stored, args):
    assert "not a regular file" in sim(stored, *args)


def test_a_file_over_the_size_limit_is_refused(stored):
    big = write(stored, "big.yaml", TINY + "# " + "x" * (1024 * 1024) + "\n")
    assert "larger than 1 MiB" in sim(stored, "run", big)


def test_a_fifo_is_refused_without_waiting_for_a_writer(stored):
    fifo = stored["tmp"] / "fifo.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    assert "not a regular file" in sim(stored, "run", fifo)


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("args, fragment", [
    (["report", "--db", "{db}", "--batch", "1" + "0" * 30], "most allowed"),
    (["report", "--db", "{db}", "--sweep", "99999999999"], "most allowed"),
    (["run", "tiny.yaml", "--jobs", "1000000000"], "most allowed for the number of workers"),
    (["run", "tiny.yaml", "--scheduler", "tcp://host:notaport"], "not a scheduler address"),
    (["run", "tiny.yaml", "--scheduler", "tcp://host:70000"], "port from 1 to 65535"),
    (["run", "tiny.yaml", "--db", ""], "--db is empty"),
    (["run", "tiny.yaml", "--db", "sqlite://"], "in-memory"),
    (["run", "tiny.yaml", "--db", "sqlite:///:memory:"], "in-memory"),
    (["report", "--db", "{db}", "--out", "/dev/full"], "not a regular file"),
    (["export", "--db", "sqlite:///no/such/store.db", "--out", "x"], "no results database"),
])
def test_bad_options_are_refused(stored, args, fragment):
    assert fragment in sim(stored, *args)


def test_dev_full_is_never_replaced(stored):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    sim(stored, "report", "--db", "{db}", "--out", "/dev/full")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.parametrize("old, new", [
    ("replicates: 2", "replicates: 100000"),
    ("size: 30}", "size: 200000}\nfollow_up_weeks: 156"),
])
def test_a_huge_batch_needs_yes_and_says_what_it_costs(stored, old, new):
    text = TINY.replace("follow_up_weeks: 2\n", "") if "follow_up" in new else TINY
    path = write(stored, "huge.yaml", text.replace(old, new).replace("weeks: 4", "weeks: 104"))
    out = sim(stored, "run", path, "--db", "{db}")
    assert "agent-days" in out and ("--yes" in out or "available" in out)
    never = stored["tmp"] / "never.db"
    sim(stored, "run", path, "--db", f"sqlite:///{never}")
    assert not never.exists()  # refused before a store is made


# ------------------------------------------------------------------ secrets
@pytest.mark.parametrize("url", [
    f"postgresql+psycopg://sim:{SECRET}@127.0.0.1:1/db",
    f"postgresql+psycopg://sim@127.0.0.1:1/db?password={SECRET}",
    f"postgresql+psycopg://sim:{SECRET}@127.0.0.1:notaport/db",
    f"postgres ql://sim:{SECRET}@@host",
])
def test_a_password_in_the_url_is_never_printed(stored, url):
    out = sim(stored, "report", "--db", url)
    assert SECRET not in out and "***" in out


# ------------------------------------------------------------------ writes that fail
def _fsize_limit(blocks: int):
    def limit():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (blocks * 1024, blocks * 1024))
    return limit


def test_a_failed_report_write_is_exit_1_and_keeps_the_old_report(stored):
    old = stored["tmp"] / "old.html"
    old.write_text("the old report")
    out = sim(stored, "report", "--db", "{db}", "--out", old, code=1, preexec_fn=_fsize_limit(8))
    assert "File too large" in out and old.read_text() == "the old report"


def test_a_figure_that_cannot_be_written_is_reported_and_the_other_scenarios_run(stored):
    figs = stored["tmp"] / "figs2"
    (figs / "tiny_outcomes.png").mkdir(parents=True, exist_ok=True)
    other = write(stored, "tiny_b.yaml", TINY.replace("name: tiny", "name: tiny_b"))
    url = f"sqlite:///{stored['tmp'] / 'own.db'}"
    p = subprocess.run([*SIM, "run", "tiny.yaml", other, "--db", url, "--figures", figs], capture_output=True,
                       text=True, timeout=TIMEOUT, cwd=stored["tmp"])
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "tiny_outcomes.png: is a folder" in p.stderr and "executor" not in p.stderr
    assert (figs / "tiny_b_outcomes.png").is_file()  # the second scenario still ran and drew its figure


def test_a_full_disk_while_storing_is_named_as_such_and_loses_nothing(stored, tmp_path):
    import shutil

    con = sqlite3.connect(stored["db"])
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the main file, so that the copy is whole
    con.close()
    db = Path(shutil.copy(stored["db"], tmp_path / "s.db"))
    con = sqlite3.connect(db)
    done = con.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
    con.close()
    big = write(stored, "big_runs.yaml", TINY.replace("name: tiny", "name: big_runs").replace("size: 30", "size: 3000"))
    limit = (max(db.stat().st_size, 32 * 1024) + 256 * 1024) // 1024  # a write-ahead log of 256 KB fills the disk
    p = subprocess.run([*SIM, "run", big, "--db", f"sqlite:///{db}", "--figures", tmp_path / "f"], capture_output=True,
                       text=True, timeout=TIMEOUT, cwd=stored["tmp"], preexec_fn=_fsize_limit(limit))
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-MAX_OUTPUT:]
    assert "could not write run" in p.stderr and "another process" not in p.stderr
    assert "full" in p.stderr and "executor" not in p.stderr
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0] == done
    con.close()
