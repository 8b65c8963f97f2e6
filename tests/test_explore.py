"""The browser explorer: its settings make a scenario `sim run` accepts, its model runs what the runner runs,
bad input is refused with exit code 2, and the app works in a real browser (Debian's chromium, offline).

The browser test skips when no chromium is installed, except with SIM_REQUIRE_BROWSER=1 (as in CI), where
that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sim import cli, parameters, scenario
from sim import explore_model as em
from sim.runs import runner

ROOT = Path(__file__).resolve().parent.parent
SMALL = """\
name: small
seed: 11
replicates: 3
weeks: 6
follow_up_weeks: 3
population: {size: 40}
parameters: {learning.rate: 0.2}
arms:
  usual_care: {}
  exercise:
    prescription: {sessions_per_week: 3, minutes: 40, intensity: 0.5}
    support: {kind: class, level: 0.5}
    follow_up: {reward_cues: {value: 0.2}}
checks:
  - {id: some_dropout, metric: dropout_rate, arm: exercise, week: 6, accept: [0, 1]}
"""
# every kind of control moved away from the file's value
MOVED = {"arm.prescription.minutes": 35.0, "arm.prescription.sessions_per_week": 4, "arm.titration.weeks": 2,
         "arm.support.kind": "partner", "arm.support.level": 0.9, "arm.support.fade_weeks": 2,
         "arm.priming.strength": 0.7, "arm.reward_cues.value": 0.3, "arm.self_management.skill": 0.2,
         "arm.medication": True, "arm.medication.adherence": 0.6, "population.size": 30,
         "population.cognitive_control.mean": 0.35, "population.baseline_severity.mean": 22.5,
         "plasticity.gain": 0.1, "learning.rate": 0.25}


@pytest.fixture
def small(tmp_path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def test_controls_carry_the_declared_ranges(small):
    by_key = {c.key: c for c in em.controls(scenario.load(small))}
    for name in parameters.UNCERTAIN:
        p = parameters.BY_NAME[name]
        assert (by_key[name].low, by_key[name].high) == (p.low, p.high)
    assert (by_key["arm.prescription.minutes"].low, by_key["arm.prescription.minutes"].high) == (5, 180)
    assert (by_key["arm.support.level"].low, by_key["arm.support.level"].high) == (0, 1)
    assert by_key["arm.support.fade_weeks"].high == 6  # a fade must fit in the 6-week programme
    assert (by_key["population.baseline_severity.mean"].low, by_key["population.baseline_severity.mean"].high) == (
        14, 35)
    assert by_key["arm.support.kind"].choices == ("none", "class", "partner")


def test_written_scenario_loads_and_gives_back_the_settings(small, tmp_path):
    model = em.ExplorerModel(small, **MOVED)
    path = em.write_scenario(model.data, tmp_path / "out" / "explored.yaml")
    loaded = scenario.load(path)  # what `sim run` reads
    assert em.initial_settings(loaded, "exercise") == model.settings
    sc, arm = loaded.scenario, loaded.arms["exercise"]
    assert (sc.seed, sc.reference, sc.population.size, sc.checks) == (11, "usual_care", 30, [])
    assert (arm.support.kind, arm.support.level, arm.titration.start_minutes) == ("partner", 0.9, 10)
    assert sc.parameters == {"learning.rate": 0.25, "plasticity.gain": 0.1}
    assert scenario.follow_up_of(sc, "exercise").reward_cues.value == 0.2  # the file's follow-up is kept
    off = em.ExplorerModel(small, **{"arm.prescription.sessions_per_week": 0, "arm.support.kind": "none"})
    gone = scenario.load(em.write_scenario(off.data, tmp_path / "off.yaml")).arms["exercise"]
    assert gone.prescription is None and gone.support is None


@pytest.mark.slow
def test_sim_run_accepts_the_written_scenario(small, tmp_path, capsys):
    model = em.ExplorerModel(small, **{"arm.support.level": 1.0})
    path = em.write_scenario(model.data, tmp_path / "explored.yaml")
    code = cli.main(["run", str(path), "--replicates", "1", "--db", f"sqlite:///{tmp_path / 'r.db'}",
                     "--figures", str(tmp_path / "fig")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "small_explored" in out.out and "exercise" in out.out


def test_explorer_runs_what_the_runner_runs(small, tmp_path):
    """Same settings, same trajectories: the explorer adds no model logic of its own."""
    model = em.ExplorerModel(small, replicate=2, **MOVED)
    while model.running:
        model.step()
    loaded = scenario.load(em.write_scenario(model.data, tmp_path / "explored.yaml"))
    for name, m in model.arms.items():
        again = runner.build_model(loaded, name, 2).run()
        np.testing.assert_array_equal(m.daily, again.daily)
        np.testing.assert_array_equal(m.severity_weekly, again.severity_weekly)


def test_a_lever_moves_its_arm_and_leaves_the_reference_alone(small):
    low = em.ExplorerModel(small, **{"arm.support.level": 0.0})
    high = em.ExplorerModel(small, **{"arm.support.level": 1.0})
    for m in (low, high):
        for _ in range(42):
            m.step()
    ref = [m.arms["usual_care"].daily[:43] for m in (low, high)]  # rows to come are not yet written
    np.testing.assert_array_equal(*ref)  # the reference arm: same people, same random numbers
    sessions = [m.arms["exercise"].sessions_weekly.sum() for m in (low, high)]
    assert sessions[1] > sessions[0]  # full support: more sessions done


def test_agent_view_states_and_ties(small):
    model = em.ExplorerModel(small, **{"arm.support.kind": "partner"})
    arm, ref = model.arms["exercise"], model.arms["usual_care"]
    v = em.agent_view(arm)
    np.testing.assert_array_equal(v["R"], arm.cohort.traits["reward_sensitivity"])  # day 0: R(t) = R0
    assert len(v["partners"]) == 20 and v["classes"] == []  # 40 people, all paired
    assert all(arm.partner[i] == j for i, j in v["partners"])
    for _ in range(28):
        model.step()
    v = em.agent_view(arm)
    counts = np.bincount(v["state"], minlength=len(em.STATES))
    assert counts[em.EXERCISING] > 0 and counts[em.NO_PLAN] == 0
    assert (v["state"][~arm.state.enrolled] == em.DROPPED).all()
    assert not np.array_equal(v["R"], arm.cohort.traits["reward_sensitivity"])  # exercise raised R(t)
    assert (em.agent_view(ref)["state"] == em.NO_PLAN).sum() > 35  # usual care: (almost) nobody has a plan
    classes = em.ExplorerModel(small).arms["exercise"]
    groups = em.agent_view(classes)["classes"]
    assert sorted(i for g in groups for i in g) == list(range(40)) and max(map(len, groups)) == 8


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "not a port number"),
    (["--port", "http"], "not a port number"),
    (["missing.yaml"], "scenario file not found"),
    (["--arm", "nope"], "'nope' is not an arm of small"),
    (["--arm", "usual_care"], "compares two different arms"),
])
def test_explore_refuses_bad_input(small, args, message, capsys):
    args = args if args[0] == "missing.yaml" else [str(small), *args]
    try:
        code = cli.main(["explore", *args])
    except SystemExit as e:  # argparse refuses a malformed option itself, with its usage line
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err.splitlines()[-1] and "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_explore_refuses_a_port_in_use(small):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "sim", "explore", str(small), "--port", str(port)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use); " \
                                 "choose another port"


def _browser() -> str:
    """Path of the chromium to drive; skip (or fail when SIM_REQUIRE_BROWSER=1) when there is none."""
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    problem = None if found else "no chromium on PATH (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
        import solara  # noqa: F401
    except ImportError as e:
        problem = f"{e.name} is not installed (pip install -e '.[test,explore]')"
    if problem:
        if os.environ.get("SIM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SIM_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
    return found


@pytest.fixture
def chromium() -> str:
    return _browser()


@pytest.fixture
def server(chromium, tmp_path):
    """`sim explore` on a free port, as a user starts it (once a browser is known to exist); stopped after the
    test."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "sim", "explore", "--port", str(port)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                pytest.fail(f"sim explore did not start:\n{log.read()}")
            time.sleep(0.5)
    yield url, log
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _rows(page) -> dict[str, list[str]]:
    """The readout table: arm -> today's values."""
    cells = page.locator(".sim-readout tr").all_inner_texts()
    return {r.split("\t")[0].strip(): [c.strip() for c in r.split("\t")[1:]] for r in cells[1:]}


def _image_digest(page, selector: str) -> str:
    """SHA-256 of the image a panel shows (its src is a fresh blob URL at every render, so compare bytes)."""
    return page.locator(selector).evaluate(
        "async img => { const b = await (await fetch(img.src)).arrayBuffer();"
        " const h = new Uint8Array(await crypto.subtle.digest('SHA-256', b));"
        " return Array.from(h, x => x.toString(16).padStart(2, '0')).join(''); }")


def _step_to(page, day: int) -> None:
    while (now := int(re.search(r"Day (\d+)", page.locator(".sim-readout").inner_text())[1])) < day:
        page.get_by_role("button", name="Step").click()
        page.wait_for_function(f"() => !document.querySelector('.sim-readout').innerText.includes('Day {now}')")


def test_explorer_in_a_real_browser(chromium, server, tmp_path):
    """The page renders both plots offline; moving the support level and pressing Reset changes the arm's
    curves and leaves the reference arm's alone; the button writes a scenario file that loads."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    url, log = server
    outside, failed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

        def local_only(route):  # offline: anything not from the explorer's own server is refused and noted
            if route.request.url.startswith(url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", local_only)
        page.goto(url)
        for selector in (".sim-curves img", ".sim-agents img", ".sim-readout table"):
            page.wait_for_selector(selector, timeout=90_000)
        _step_to(page, 28)
        before, curves_before = _rows(page), _image_digest(page, ".sim-curves img")
        agents_before = _image_digest(page, ".sim-agents img")
        assert set(before) == {"exercise", "usual_care"}

        slider = page.get_by_role("slider", name="support level")
        assert slider.get_attribute("aria-valuenow") == "0.5"
        slider.focus()
        slider.press("End")
        assert slider.get_attribute("aria-valuenow") == "1"
        page.get_by_role("button", name="Reset").click()
        page.wait_for_function("() => document.querySelector('.sim-readout').innerText.includes('Day 0')")
        _step_to(page, 28)
        after, curves_after = _rows(page), _image_digest(page, ".sim-curves img")
        assert after["usual_care"] == before["usual_care"]  # the reference: same people, same random numbers
        assert after["exercise"] != before["exercise"]
        assert curves_after != curves_before  # the plotted data changed
        assert _image_digest(page, ".sim-agents img") != agents_before
        assert "support.level = 1" in page.get_by_text("Run shown:").inner_text()

        page.get_by_role("button", name="▶").click()  # play on into the programme's second half for the picture
        page.wait_for_function("() => parseInt(document.querySelector('.sim-readout').innerText.match(/Day (\\d+)/)[1])"
                               " >= 70", timeout=90_000)
        pause = page.get_by_role("button", name="❚❚")
        try:
            pause.click(timeout=5_000)
        except PlaywrightTimeout:  # the run reached its last day meanwhile, and play stopped by itself
            assert not pause.is_enabled()
        page.wait_for_timeout(1500)  # the last frame's figures finish drawing
        (ROOT / "results").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "results" / "explorer.png"))
        target = tmp_path / "from_browser.yaml"
        box = page.get_by_label("scenario file to write")
        box.fill(str(target))
        box.press("Enter")
        page.get_by_role("button", name="Write scenario file").click()
        page.get_by_text("written:").wait_for(timeout=20_000)
        written = scenario.load(target)
        assert written.arms["exercise"].support.level == 1.0

        browser.close()
    log.seek(0)
    assert outside == [], f"requests left the machine: {outside}"
    assert failed == [], f"failed requests: {failed}\nserver log:\n{log.read()}"
