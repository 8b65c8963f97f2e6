"""The metric vocabulary against direct computations, targets files, and `sim validate` end to end."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sim import cli, parameters, scenario
from sim.analysis import metrics, validation
from sim.analysis.calibration import frames_of, target_loss
from sim.runs import executors, provenance

TRIAL = textwrap.dedent("""\
    name: small_trial
    seed: 3
    replicates: 3
    weeks: 8
    follow_up_weeks: 4
    population: {size: 120}
    arms:
      usual_care: {}
      exercise:
        prescription: {sessions_per_week: 3, minutes: 40, intensity: 0.6}
        support: {kind: class, level: 0.6}
    """)


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    path = tmp_path_factory.mktemp("val") / "small_trial.yaml"
    path.write_text(TRIAL)
    loaded = scenario.load(path)
    with executors.executor("serial") as ex:
        return loaded, frames_of(loaded, 3, ex)


def test_metrics_match_direct_computation(trial):
    _, f = trial
    p, w = f.participants, f.weekly
    ex = p[p.arm == "exercise"]
    expected = ex.groupby("replicate").apply(lambda d: (d.dropout_day <= 56).mean(), include_groups=False)
    np.testing.assert_allclose(metrics.compute("dropout_rate", f, arm="exercise", week=8), expected)
    # true state: effect size from daily aggregates equals Hedges g on the individual severities
    g = metrics.compute("effect_size", f, arm="exercise", reference="usual_care", week=8, analysis="true")
    for rep in range(3):
        a = w[(w.arm == "exercise") & (w.replicate == rep) & (w.week == 8)].severity
        b = w[(w.arm == "usual_care") & (w.replicate == rep) & (w.week == 8)].severity
        assert g[rep] == pytest.approx(metrics.hedges_g(a.values, b.values)[0], rel=1e-9)
        assert g[rep] > 0
    # severity change from aggregates equals the change of individual means
    chg = metrics.compute("severity_change_pct", f, arm="exercise", week=8, analysis="true")
    e0 = w[(w.arm == "exercise") & (w.week == 0)].groupby("replicate").severity.mean()
    e8 = w[(w.arm == "exercise") & (w.week == 8)].groupby("replicate").severity.mean()
    np.testing.assert_allclose(chg, 100 * (e8 / e0 - 1))
    remit = metrics.compute("remission_rate", f, arm="exercise", week=8, analysis="true")
    np.testing.assert_allclose(remit, w[(w.arm == "exercise") & (w.week == 8)].groupby("replicate")
                               .severity.apply(lambda s: (s <= 7).mean()))
    # relapse (true state, one assessment above the threshold suffices): of those remitted at the end of
    # the programme (week 8), the share above the threshold in any week from 9 to 12
    wide = w[w.arm == "exercise"].pivot_table(index=["replicate", "pid"], columns="week", values="severity")
    rel = metrics.compute("relapse_rate", f, arm="exercise", remitted_at=8, week=12, analysis="true")
    for rep in range(3):
        r = wide.loc[rep]
        remitted, above = r[8] <= 7, (r[[9, 10, 11, 12]] > 7).any(axis=1)
        assert remitted.sum() > 0  # someone remitted, so the rate is defined
        assert rel[rep] == pytest.approx((remitted & above).sum() / remitted.sum())
    # the default analysis is what a trial sees: the last assessment carried forward
    a = f.assessments[(f.assessments.arm == "exercise") & (f.assessments.week <= 8)]
    last = a.sort_values("week").groupby(["replicate", "pid"]).score.last()
    np.testing.assert_allclose(metrics.compute("remission_rate", f, arm="exercise", week=8),
                               (last <= 7).groupby("replicate").mean())
    # association is a Spearman rho per replicate
    rho = metrics.compute("association", f, arm="exercise", x="baseline_severity", y="adherence")
    d0 = ex[ex.replicate == 0]
    assert rho[0] == pytest.approx(stats.spearmanr(d0.baseline_severity, d0.adherence).statistic)
    # change during follow-up: only those still enrolled at the end of the programme (week 8)
    fade = metrics.compute("association", f, arm="exercise", week=8, x="follow_up_minutes",
                           y="severity_change_follow_up")
    kept = d0[~(d0.dropout_day <= 56)]
    assert len(kept) < len(d0)
    assert fade[0] == pytest.approx(stats.spearmanr(kept.minutes_per_week_follow_up,
                                                    kept.severity_end - kept.severity_end_programme).statistic)
    assert metrics.compute("dropout_difference", f, arm="exercise", reference="usual_care", week=8).gt(0).all()
    assert metrics.compute("adherence_rate", f, arm="exercise").between(0.3, 1).all()
    # usual care exercises only on people's own initiative (own.uptake): a few minutes a week on average
    assert metrics.compute("mean_weekly_minutes", f, arm="usual_care", week=4).lt(5).all()
    assert metrics.compute("meets_guideline_rate", f, arm="exercise", week=8, window_weeks=4, minutes=60).gt(0).all()
    odds = metrics.compute("odds_ratio_depressed_by_activity", f, arm="all", week=8, minutes=60, window_weeks=4)
    assert (odds < 1).mean() >= 2 / 3  # the active are less often depressed
    assert metrics.compute("median_days_to_habit", f, arm="exercise", level=0.95).between(7, 84).all()


def test_metric_arguments_are_checked(trial):
    _, f = trial
    with pytest.raises(metrics.MetricError, match="needs reference"):
        metrics.compute("effect_size", f, arm="exercise", week=8)
    with pytest.raises(metrics.MetricError, match="does not take x"):
        metrics.compute("dropout_rate", f, arm="exercise", week=8, x="adherence")
    with pytest.raises(metrics.MetricError, match="unknown metric"):
        metrics.compute("joy", f)
    with pytest.raises(metrics.MetricError, match="outside the run"):
        metrics.compute("response_rate", f, arm="exercise", week=40)
    empty = metrics.Frames(f.participants, f.daily, f.weekly.iloc[0:0], f.outcomes)
    with pytest.raises(metrics.MetricError, match="participants-weekly"):
        metrics.compute("relapse_rate", empty, arm="exercise", remitted_at=4, week=8, analysis="true")


def _targets(tmp_path, body: str):
    (tmp_path / "small_trial.yaml").write_text(TRIAL)
    path = tmp_path / "targets.yaml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """\
    targets:
      - id: dropout_some
        finding: some people drop out
        source: test
        scenario: small_trial.yaml
        metric: dropout_rate
        arm: exercise
        week: 8
        published: 0.2
        accept: [0.0, 0.9]
      - id: exercise_helps
        scenario: small_trial.yaml
        metric: effect_size
        arm: exercise
        reference: usual_care
        week: 8
        published: positive
        accept: [0.05, 5]
        replicates: 2
    """


def test_validate_passes_writes_markdown_and_exits_0(tmp_path, capsys):
    path = _targets(tmp_path, GOOD)
    out = tmp_path / "validation.md"
    code = cli.main(["validate", "--targets", str(path), "--db", f"sqlite:///{tmp_path / 'v.db'}",
                     "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "2 of 2 targets pass" in text and "dropout_some" in text
    md = out.read_text()
    assert "| exercise_helps |" in md and "model hash" in md
    record = validation.read_record(out.with_suffix(".json"))
    assert [r["id"] for r in record["rows"]] == ["dropout_some", "exercise_helps"]
    assert all(r["passed"] for r in record["rows"]) and record["model_hash"] == provenance.model_hash()


def test_validate_exits_1_when_a_target_fails(tmp_path, capsys):
    path = _targets(tmp_path, GOOD.replace("accept: [0.0, 0.9]", "accept: [0.95, 1.0]"))
    code = cli.main(["validate", "--targets", str(path), "--db", f"sqlite:///{tmp_path / 'v.db'}",
                     "--out", str(tmp_path / "v.md"), "--replicates", "2"])
    assert code == 1 and "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize("change, field, fragment", [
    (("metric: dropout_rate", "metric: happiness"), "targets.0.metric", "Input should be"),
    (("arm: exercise\n        week: 8\n        published: 0.2", "arm: gym\n        week: 8\n        published: 0.2"),
     "targets.0.arm", "not an arm of small_trial"),
    (("arm: exercise\n        reference", "arm: all\n        reference"), "targets.1.arm",
     "effect_size compares two arms"),
    (("arm: exercise\n        reference: usual_care", "arm: usual_care\n        reference: usual_care"),
     "targets.1.arm", "different reference arm"),
    (("week: 8\n        published: 0.2", "week: 99\n        published: 0.2"), "targets.0.week", "must be 0-"),
    (("accept: [0.0, 0.9]", "accept: [.nan, 0.9]"), "targets.0.accept.0", "finite number"),
    (("published: 0.2", "published: 0.2\n        published: 0.3"), "line 10", "duplicate key 'published'"),
    (("        reference: usual_care\n", ""), "targets.1", "effect_size needs reference"),
    (("accept: [0.0, 0.9]", "accept: [0.9, 0.0]"), "targets.0", "accept must be [low, high]"),
    (("scenario: small_trial.yaml\n        metric: dropout_rate", "scenario: nope.yaml\n        metric: dropout_rate"),
     "targets.0.scenario", "no scenario file at"),
    (("published: 0.2", "published: 0.2\n        colour: red"), "targets.0.colour", "unknown key"),
])
def test_bad_targets_file_exits_2(tmp_path, capsys, change, field, fragment):
    path = _targets(tmp_path, GOOD.replace(*change))
    code = cli.main(["validate", "--targets", str(path), "--db", f"sqlite:///{tmp_path / 'v.db'}"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "Traceback" not in err
    assert field in err


def test_calibration_loss_is_zero_at_the_published_value():
    t = validation.Target(id="x", scenario="s.yaml", metric="dropout_rate", arm="a", week=1, published=0.2,
                          accept=[0.1, 0.3])
    assert target_loss(t, 0.2) == 0 and target_loss(t, 0.3) == pytest.approx(1.0)
    d = validation.Target(id="y", scenario="s.yaml", metric="dropout_rate", arm="a", week=1, published="positive",
                          accept=[0.05, 1.0])
    assert target_loss(d, 0.5) == 0 and target_loss(d, -0.425) == pytest.approx(1.0)


def test_the_project_targets_file_is_valid():
    targets = validation.load_targets(validation.DEFAULT_TARGETS)
    assert len(targets.targets) == 22 and len(targets.scenarios) == 12
    assert pd.Series([t.id for t in targets.targets]).is_unique


def test_calibration_sensitivity_signs_follow_the_mechanisms(tmp_path):
    """More dropout hazard per miss -> more dropout; more exercise benefit -> a larger effect."""
    from sim.analysis.calibration import sensitivity, sensitivity_markdown

    targets = validation.load_targets(_targets(tmp_path, GOOD))
    with executors.executor("serial", 1) as ex:
        table = sensitivity(targets, dict(parameters.DEFAULTS), 2, ex, step=0.3, log=lambda *_: None)
    assert table.loc["dropout_some", "dropout.base"] > 0
    assert table.loc["exercise_helps", "symptoms.plasticity_benefit"] > 0
    md = sensitivity_markdown(table)
    assert "| dropout_some |" in md and md.count("\n") == len(table) + 1


def test_power_and_spread_of_g_come_from_independent_cohorts():
    """Arms of a replicate are the same people, so the paired g hardly varies; power and the spread of g
    between trials compare an arm with another replicate's reference group, as in a real trial."""
    text = TRIAL.replace("replicates: 3", "replicates: 12").replace("size: 120", "size: 60").replace(
        "usual_care: {}", "usual_care: {}\n  twin: {}")
    data = __import__("yaml").safe_load(text)
    s, arms = scenario.parse(data, "twin.yaml")
    loaded = scenario.LoadedScenario(scenario=s, path="twin.yaml", text=text, sha256="t", arms=arms)
    with executors.executor("serial") as ex:
        f = frames_of(loaded, 12, ex)
    trials = metrics.trial_metrics(f.participants, f.daily, f.outcomes, "usual_care", 8)
    summary = metrics.across_replicates(trials).set_index("arm")
    twin = trials[trials.arm == "twin"]
    assert (twin.g == 0).all()  # the same people with the same draws: no difference at all
    assert twin.g_trial.std() > 0.05  # two different groups of 60 differ by chance
    assert summary.loc["twin", "power"] <= 0.25  # no real effect: rarely "significant"
    ex_ = trials[trials.arm == "exercise"]
    # paired g varies too now (people differ in how much they respond), but less than between cohorts
    assert ex_.g_trial.std() > 1.5 * ex_.g.std()
    assert abs(ex_.g_trial.mean() - ex_.g.mean()) < 0.25  # same effect on average


def test_unreadable_targets_files_exit_2(tmp_path, capsys):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"targets:\n  - id: \xff\xfe\n")
    for path, fragment in ((binary, "not UTF-8"), (tmp_path, "is a folder"), (tmp_path / "nope.yaml", "not found")):
        code = cli.main(["validate", "--targets", str(path), "--db", f"sqlite:///{tmp_path / 'v.db'}"])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and str(path) in err and "Traceback" not in err
