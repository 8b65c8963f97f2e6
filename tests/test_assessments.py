"""The measurement layer: assessed scores, the analyses of missing data (observed, LOCF, MMRM), relapse
over assessments, change SD, exercising rate, pooled arms, and the assessments' storage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from sim import scenario
from sim.analysis import metrics
from sim.runs import results, runner, store
from tests.conftest import TINY

NAN = np.nan


def outcomes(**kw) -> scenario.Outcomes:
    return scenario.Outcomes(**kw)


def frames(scores: dict, weeks: list[int], arm: str = "a", replicate: int = 0, last_week: int | None = None,
           weekly: pd.DataFrame | None = None, **outcome_args) -> metrics.Frames:
    """Frames for participants whose assessed scores are given as {pid: [score per week in `weeks`]}
    (NaN = not assessed); the run lasts `last_week` weeks (default the last of `weeks`)."""
    last = last_week or max(weeks)
    p, a = [], []
    for pid, row in scores.items():
        p.append({"arm": arm, "replicate": replicate, "pid": pid, "baseline_severity": row[0]})
        a += [{"arm": arm, "replicate": replicate, "pid": pid, "week": w, "score": s}
              for w, s in zip(weeks, row) if not np.isnan(s)]
    daily = pd.DataFrame({"arm": arm, "replicate": replicate, "day": np.arange(7 * last + 1)})
    return metrics.Frames(pd.DataFrame(p), daily, weekly if weekly is not None else pd.DataFrame(),
                          outcomes(assessment_weeks=[w for w in weeks if w], **outcome_args),
                          assessments=pd.DataFrame(a))


def join(*fs: metrics.Frames) -> metrics.Frames:
    cat = lambda name: pd.concat([getattr(f, name) for f in fs], ignore_index=True)  # noqa: E731
    return metrics.Frames(cat("participants"), cat("daily"), cat("weekly"), fs[0].outcomes,
                          assessments=cat("assessments"))


# baseline, week 2, week 4: pid 1 left after week 2, pid 2 after baseline
FOUR = {0: [20, 12, 8], 1: [18, 10, NAN], 2: [24, NAN, NAN], 3: [16, 6, 5]}


def one(series: pd.Series) -> float:
    assert len(series) == 1
    return float(series.iloc[0])


def test_locf_carries_each_persons_last_assessment_forward():
    f = frames(FOUR, [0, 2, 4])
    # week 4 carried forward: 8, 10, 24, 5 against baselines 20, 18, 24, 16
    assert one(metrics.compute("response_rate", f, arm="a", week=4, analysis="locf")) == pytest.approx(2 / 4)
    assert one(metrics.compute("remission_rate", f, arm="a", week=4, analysis="locf")) == pytest.approx(1 / 4)
    assert one(metrics.compute("severity_change_pct", f, arm="a", week=4, analysis="locf")) == \
        pytest.approx(100 * ((8 + 10 + 24 + 5) / (20 + 18 + 24 + 16) - 1))
    # locf is the default analysis of these metrics
    assert one(metrics.compute("response_rate", f, arm="a", week=4)) == pytest.approx(2 / 4)


def test_observed_cases_leave_out_those_not_assessed():
    f = frames(FOUR, [0, 2, 4])
    # only pids 0 and 3 were assessed at week 4: both responded, one (5 <= 7) remitted
    assert one(metrics.compute("response_rate", f, arm="a", week=4, analysis="observed")) == pytest.approx(1.0)
    assert one(metrics.compute("remission_rate", f, arm="a", week=4, analysis="observed")) == pytest.approx(0.5)
    assert one(metrics.compute("severity_change_pct", f, arm="a", week=4, analysis="observed")) == \
        pytest.approx(100 * ((8 + 5) / (20 + 16) - 1))
    # at week 2 pid 1 is still there
    assert one(metrics.compute("remission_rate", f, arm="a", week=2, analysis="observed")) == pytest.approx(1 / 3)


def test_change_sd_by_hand():
    f = frames(FOUR, [0, 2, 4])
    assert one(metrics.compute("change_sd", f, arm="a", week=4, analysis="locf")) == \
        pytest.approx(np.std([-12, -8, 0, -11], ddof=1))
    assert one(metrics.compute("change_sd", f, arm="a", week=4, analysis="observed")) == \
        pytest.approx(np.std([-12, -11], ddof=1))


def test_remission_uses_the_scales_threshold_unless_set():
    f = frames(FOUR, [0, 2, 4], remission_threshold=10)
    assert one(metrics.compute("remission_rate", f, arm="a", week=4, analysis="locf")) == pytest.approx(3 / 4)
    madrs = frames(FOUR, [0, 2, 4], scale="MADRS")  # MADRS remission <= 10
    assert one(metrics.compute("remission_rate", madrs, arm="a", week=4, analysis="locf")) == pytest.approx(3 / 4)


def test_a_week_without_assessments_is_refused_naming_the_schedule():
    f = frames(FOUR, [0, 2, 4])
    with pytest.raises(metrics.MetricError, match=r"week 3 is not an assessment week.*0, 2, 4"):
        metrics.compute("remission_rate", f, arm="a", week=3, analysis="locf")
    with pytest.raises(metrics.MetricError, match="not an assessment week"):
        metrics.compute("severity_change_pct", f, arm="a", week=3, analysis="mmrm")
    with pytest.raises(metrics.MetricError, match="'mmrm' is for"):
        metrics.compute("remission_rate", f, arm="a", week=4, analysis="mmrm")


# remitted at week 4; assessments at 6, 8, 10 (NaN: left the trial)
RELAPSE = {
    0: [20, 5, 9, 6, 9],        # above twice, never twice running
    1: [22, 6, 9, 10, 5],       # above twice running
    2: [25, 12, 13, 14, 15],    # not remitted at week 4: not in the denominator
    3: [18, 3, 4, NAN, NAN],    # stayed well, then left
    4: [19, 7, 8, NAN, NAN],    # above once, then left
}


@pytest.mark.parametrize("k, observed, locf", [(1, 3 / 4, 3 / 4), (2, 1 / 4, 2 / 4)])
def test_relapse_needs_the_given_number_of_consecutive_assessments(k, observed, locf):
    f = frames(RELAPSE, [0, 4, 6, 8, 10], relapse_assessments=k)
    got = lambda how: one(metrics.compute("relapse_rate", f, arm="a", remitted_at=4, week=10, analysis=how))  # noqa: E731
    assert got("observed") == pytest.approx(observed)
    # LOCF carries pid 4's 8 forward to weeks 8 and 10: two running above 7
    assert got("locf") == pytest.approx(locf)


def test_relapse_on_the_true_state_reads_every_week_of_the_panel():
    sev = {0: [20, 5, 9, 6, 9], 1: [22, 6, 9, 10, 5]}  # weeks 0..4
    weekly = pd.DataFrame([{"arm": "a", "replicate": 0, "pid": pid, "week": w, "severity": s}
                           for pid, row in sev.items() for w, s in enumerate(row)])
    for k, want in ((1, 1.0), (2, 0.5)):
        f = frames({0: [20], 1: [22]}, [0], last_week=4, weekly=weekly, relapse_assessments=k)
        assert one(metrics.compute("relapse_rate", f, arm="a", remitted_at=1, week=4, analysis="true")) == want


def test_exercising_rate_by_hand():
    # sessions in weeks 1..4 of three people, in two replicates
    sessions = {0: {0: [0, 3, 3, 3], 1: [3, 3, 2, 1], 2: [3, 0, 1, 3]}, 1: {0: [0, 0, 0, 0], 1: [2, 2, 2, 2],
                                                                        2: [3, 3, 3, 3]}}
    weekly = pd.DataFrame([{"arm": "a", "replicate": r, "pid": pid, "week": w + 1, "sessions": s, "minutes": 30.0 * s}
                           for r, people in sessions.items() for pid, row in people.items()
                           for w, s in enumerate(row)])
    f = metrics.Frames(pd.DataFrame({"arm": "a", "replicate": [0, 0, 0, 1, 1, 1], "pid": [0, 1, 2] * 2}),
                       pd.DataFrame(), weekly, outcomes())
    # weeks 3-4: means 3, 1.5, 2 | 0, 2, 3
    v = metrics.compute("exercising_rate", f, arm="a", week=4, sessions_per_week=2, window_weeks=2)
    assert v.to_dict() == pytest.approx({0: 2 / 3, 1: 2 / 3})
    v = metrics.compute("exercising_rate", f, arm="a", week=4, sessions_per_week=2.25, window_weeks=4)
    assert v.to_dict() == pytest.approx({0: 2 / 3, 1: 1 / 3})  # means 2.25, 2.25, 1.75 | 0, 2, 3
    with pytest.raises(metrics.MetricError, match="not inside the run"):
        metrics.compute("exercising_rate", f, arm="a", week=4, sessions_per_week=2, window_weeks=5)


def test_pooled_arms():
    a = frames({0: [20, 8], 1: [18, 12]}, [0, 4], arm="a")
    b = frames({0: [20, 20], 1: [16, 4]}, [0, 4], arm="b")
    c = frames({0: [30, 3], 1: [26, 5]}, [0, 4], arm="c")
    f = join(a, b, c)
    # responders (score <= half their baseline): a: 1 of 2, b: 1 of 2, c: 2 of 2
    assert one(metrics.compute("response_rate", f, arm="a+b", week=4)) == pytest.approx(2 / 4)
    assert one(metrics.compute("response_rate", f, arm="a+c", week=4)) == pytest.approx(3 / 4)
    assert one(metrics.compute("response_rate", f, arm="all", week=4)) == pytest.approx(4 / 6)
    g = metrics.compute("effect_size", f, arm="a+b", reference="c", week=4, analysis="locf")
    assert one(g) == pytest.approx(metrics.hedges_g(np.array([8, 12, 20, 4.0]), np.array([3, 5.0]))[0])
    assert one(g) < 0  # the pooled arms have more symptoms than c
    with pytest.raises(metrics.MetricError, match="'zz' has no stored results"):
        metrics.compute("response_rate", f, arm="a+zz", week=4)
    with pytest.raises(metrics.MetricError, match="share an arm"):
        metrics.compute("effect_size", f, arm="a+b", reference="b", week=4)


def test_pooled_arms_on_the_daily_aggregates_pool_means_and_spread():
    rows = []
    for arm, mean, sd in (("a", 10.0, 2.0), ("b", 14.0, 2.0), ("c", 16.0, 2.0)):
        rows.append({"arm": arm, "replicate": 0, "day": 28, "severity_mean": mean, "severity_sd": sd,
                     "response_share": 0.5 if arm == "a" else 0.0, "remission_share": 0.0})
    daily = pd.DataFrame(rows)
    parts = pd.DataFrame({"arm": np.repeat(["a", "b", "c"], 4), "replicate": 0, "pid": np.tile(range(4), 3)})
    f = metrics.Frames(parts, daily, pd.DataFrame(), outcomes())
    pooled_sd = np.sqrt((3 * 4 + 3 * 4 + 4 * 4 + 4 * 4) / 7)  # a+b: mean 12, SD of the 8 together
    want = metrics.hedges_g_from_stats(12.0, pooled_sd, 8, 16.0, 2.0, 4)[0]
    assert one(metrics.compute("effect_size", f, arm="a+b", reference="c", week=4, analysis="true")) == \
        pytest.approx(want)
    assert one(metrics.compute("response_rate", f, arm="a+b", week=4, analysis="true")) == pytest.approx(0.25)


def _trial(n: int, seed: int, effect: float, drop_above: float | None = None) -> metrics.Frames:
    """Two arms of n with assessments at 0, 2, 4: the arm improves `effect` points more by week 4;
    with `drop_above`, those scoring above it at week 2 are not assessed at week 4 (missing at random)."""
    rng = np.random.default_rng(seed)
    fs = []
    for arm, extra in (("ctl", 0.0), ("ex", effect)):
        base = rng.normal(20, 4, n)
        person = rng.normal(0, 3, n)
        w2 = base - 3 - extra / 2 + person + rng.normal(0, 2, n)
        w4 = base - 6 - extra + person + rng.normal(0, 2, n)
        if drop_above is not None:
            w4 = np.where(w2 > drop_above, NAN, w4)
        fs.append(frames({i: [base[i], w2[i], w4[i]] for i in range(n)}, [0, 2, 4], arm=arm))
    return join(*fs)


def test_mmrm_on_complete_data_matches_the_observed_difference():
    f = _trial(60, 1, effect=3.0)
    g_mmrm = one(metrics.compute("effect_size", f, arm="ex", reference="ctl", week=4, analysis="mmrm"))
    g_obs = one(metrics.compute("effect_size", f, arm="ex", reference="ctl", week=4, analysis="observed"))
    assert g_mmrm > 0.3 and g_obs > 0.3
    # baseline-adjusted, so not identical, but the same estimand on complete data
    assert g_mmrm == pytest.approx(g_obs, abs=0.25)
    pct = one(metrics.compute("severity_change_pct", f, arm="ex", week=4, analysis="mmrm"))
    assert pct == pytest.approx(one(metrics.compute("severity_change_pct", f, arm="ex", week=4, analysis="observed")),
                                abs=3.0)


def test_mmrm_recovers_the_mean_that_observed_cases_bias_when_dropout_depends_on_scores():
    # those doing worse at week 2 are missing at week 4: observed cases look better than the truth
    full, mar = _trial(400, 2, effect=0.0), _trial(400, 2, effect=0.0, drop_above=18.0)
    truth = one(metrics.compute("severity_change_pct", full, arm="ex", week=4, analysis="observed"))
    observed = one(metrics.compute("severity_change_pct", mar, arm="ex", week=4, analysis="observed"))
    mmrm = one(metrics.compute("severity_change_pct", mar, arm="ex", week=4, analysis="mmrm"))
    assert observed < truth - 3  # biased towards improvement
    assert abs(mmrm - truth) < abs(observed - truth) / 3


def test_trial_table_says_which_analysis_it_is():
    f = join(frames(FOUR, [0, 2, 4], arm="a"), frames(FOUR, [0, 2, 4], arm="b"))
    p = f.participants.assign(dropout_day=[NAN, 20, 5, NAN] * 2, sessions_planned=10, sessions_done=5,
                              minutes_per_week_programme=100.0)
    t = metrics.trial_metrics(p, f.daily, f.outcomes, "a", 4, analysis="locf", assessments=f.assessments)
    assert set(t.analysis) == {"locf"} and t.response.tolist() == pytest.approx([0.5, 0.5])
    assert t.dropout.tolist() == pytest.approx([0.5, 0.5])
    t = metrics.trial_metrics(p, f.daily, f.outcomes, "a", 4, analysis="observed", assessments=f.assessments)
    assert t.n.tolist() == [2, 2] and t.randomised.tolist() == [4, 4]


def test_checks_table_names_the_analysis():
    f = frames(FOUR, [0, 2, 4])
    checks = [scenario.Check(id="r", metric="response_rate", arm="a", week=4, accept=(0, 1)),
              scenario.Check(id="o", metric="response_rate", arm="a", week=4, analysis="observed", accept=(0, 1))]
    assert metrics.evaluate_checks(checks, f, "a").analysis.tolist() == ["locf", "observed"]


# ---------------------------------------------------------------- records and the store

@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY + "outcomes: {assessment_weeks: [2, 4, 6]}\n")
    return scenario.load(path)


def test_a_run_records_assessments_sessions_and_measured_traits(tiny):
    rec = runner.run_task(tiny, runner.Task("exercise", 0))
    a = rec.assessments
    assert set(a.week) <= {0, 2, 4, 6} and (a.week == 0).sum() == 30 and a.score.notna().all()
    assert (a.score == a.score.round()).all()
    p = rec.participants
    for week in (2, 4, 6):  # nobody is assessed after leaving the trial; everyone still in it is
        gone = set(p.pid[p.dropout_day <= 7 * week])
        assert gone.isdisjoint(a.pid[a.week == week]) and len(a[a.week == week]) == len(p) - len(gone)
    programme = rec.weekly[(rec.weekly.week >= 1) & (rec.weekly.week <= 4)].groupby("pid").sessions.sum()
    assert (programme >= p.sessions_done).all() and programme.sum() > 0
    for t in scenario.TRAITS:
        assert f"measured_{t}" in rec.participants and t in rec.participants


def test_assessments_round_trip_through_the_store(tiny, tmp_path):
    db = store.Store(f"sqlite:///{tmp_path / 'r.db'}", create=True)
    sid = db.add_scenario(tiny)
    bid = db.start_batch(sid, 1)
    rec = runner.run_task(tiny, runner.Task("exercise", 0))
    db.save_run(store.run_key(tiny.sha256, "exercise", 0, rec.seed), sid, bid, rec, panel=True)
    back = results.scenario_results(db, tiny.sha256)
    a = back.assessments.sort_values(["pid", "week"]).reset_index(drop=True)
    assert list(a.columns) == ["arm", "replicate", "pid", "week", "score"]
    pd.testing.assert_frame_equal(a[["pid", "week", "score"]], rec.assessments, check_dtype=False)
    w = back.weekly.sort_values(["pid", "week"]).reset_index(drop=True)
    np.testing.assert_array_equal(w.sessions, rec.weekly.sessions)
    p = back.participants.sort_values("pid").reset_index(drop=True)
    for col in ("age", "measured_cognitive_control", "measured_baseline_severity"):
        np.testing.assert_allclose(p[col], rec.participants[col])
    f = metrics.Frames.of(back, tiny.scenario.outcomes, programme_weeks=tiny.scenario.weeks)
    assert one(metrics.compute("remission_rate", f, arm="exercise", week=4)) >= 0
    assert "assessments" in {p.stem for p in results.export(db, tmp_path / "out", "csv")}


def test_a_store_at_revision_0004_is_upgraded_keeping_its_rows(tiny, tmp_path):
    import alembic.command
    url = f"sqlite:///{tmp_path / 'old.db'}"
    eng = sa.create_engine(url)
    with eng.begin() as c:
        alembic.command.upgrade(store._alembic_config(c), "0004")
        sid = c.execute(store.scenarios.insert().values(name="old", sha256="0" * 64, path="old.yaml", text="x",
                                                        created_at=sa.func.now())).inserted_primary_key[0]
        rid = c.execute(store.runs.insert().values(key="k", scenario_id=sid, arm="a", replicate=0, seed="1/0",
                                                   status="done")).inserted_primary_key[0]
        c.exec_driver_sql(f"INSERT INTO participants (run_id, pid, baseline_severity) VALUES ({rid}, 0, 20.0)")
        c.exec_driver_sql(f"INSERT INTO participant_weeks (run_id, pid, week, severity) VALUES ({rid}, 0, 0, 20.0)")
    eng.dispose()
    db = store.Store(url, create=True)
    with db.engine.connect() as c:
        assert c.exec_driver_sql("select version_num from alembic_version").scalar_one() == "0008"
        row = c.execute(sa.select(store.participants)).one()
        assert row.baseline_severity == 20.0 and row.age is None and row.measured_fitness is None
        assert c.execute(sa.select(store.participant_weeks.c.sessions)).scalar_one() is None
        assert c.execute(sa.select(sa.func.count()).select_from(store.assessment_scores)).scalar_one() == 0
    # and the upgraded store takes new runs
    sid2 = db.add_scenario(tiny)
    rec = runner.run_task(tiny, runner.Task("usual_care", 0))
    assert db.save_run(store.run_key(tiny.sha256, "usual_care", 0, rec.seed), sid2, db.start_batch(sid2, 1), rec)
    assert len(results.table(db, "assessments", scenario="tiny")) == len(rec.assessments)


def test_packed_assessments_unpack_to_the_assessments_made():
    from sim.runs.records import pack_assessments, unpack_assessments
    rng = np.random.default_rng(3)
    weeks = (0, 2, 4, 8, 12)
    scores = np.rint(rng.uniform(0, 52, (40, len(weeks))))
    scores[rng.random(scores.shape) < 0.3] = np.nan  # dropouts and missed visits
    for grid in (scores, scores + 0.25):  # whole points, and scores that are not
        packed = pack_assessments(weeks, grid)
        cols = unpack_assessments(packed["weeks"], packed["scores"])
        pid, k = np.nonzero(~np.isnan(grid))
        np.testing.assert_array_equal(cols["pid"], pid)
        np.testing.assert_array_equal(cols["week"], np.asarray(weeks)[k])
        np.testing.assert_array_equal(cols["score"], grid[pid, k])
    assert "null" in packed["scores"] and ".25" in packed["scores"]
    assert ".0" not in pack_assessments(weeks, scores)["scores"]  # whole points are written as integers
    empty = pack_assessments(weeks, np.empty((0, len(weeks))))
    assert all(len(v) == 0 for v in unpack_assessments(empty["weeks"], empty["scores"]).values())


def test_the_sql_in_the_docs_reads_the_stored_assessments(tiny, tmp_path):
    import sqlite3
    from pathlib import Path
    db = store.Store(f"sqlite:///{tmp_path / 'q.db'}", create=True)
    sid = db.add_scenario(tiny)
    rec = runner.run_task(tiny, runner.Task("exercise", 0))
    db.save_run("key", sid, db.start_batch(sid, 1), rec)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    sql = doc.split("```sql\n")[1].split("```")[0]
    with sqlite3.connect(tmp_path / "q.db") as c:
        rows = sorted((pid, week, float(score)) for _, pid, week, score in c.execute(sql))
    assert rows == sorted(zip(rec.assessments.pid, rec.assessments.week, rec.assessments.score)) and rows
