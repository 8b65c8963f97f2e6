"""Calibration fit against validation: held-out targets, where a published value falls among the
replicate trials, and leave-one-trial-out refits that never see the held-out trial."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sim import cli, parameters
from sim.analysis import calibration, loto, validation
from tests.test_validation import GOOD, TRIAL, _targets


def _validate(tmp_path, body, *extra):
    path = _targets(tmp_path, body)
    out = tmp_path / "v.md"
    code = cli.main(["validate", "--targets", str(path), "--db", f"sqlite:///{tmp_path / 'v.db'}", "--out", str(out),
                     "--replicates", "3", *extra])
    return code, out


def test_without_holdout_every_row_is_calibration_fit(tmp_path, capsys):
    code, out = _validate(tmp_path, GOOD)
    text = capsys.readouterr().out
    assert "Calibration fit (in-sample" in text and "Validation (out-of-sample" not in text
    assert "every row is calibration fit, not validation" in text
    assert "every row is calibration fit, not validation" in out.read_text()


@pytest.mark.parametrize("how", ["flag", "option"])
def test_held_out_targets_are_reported_as_validation_apart(tmp_path, capsys, how):
    body = GOOD.replace("replicates: 2\n", "replicates: 2\n        holdout: true\n") if how == "flag" else GOOD
    code, out = _validate(tmp_path, body, *(["--hold-out", "exercise_helps"] if how == "option" else []))
    text = capsys.readouterr().out
    fit, _, val = text.partition("Validation (out-of-sample")
    assert "dropout_some" in fit and "exercise_helps" not in fit
    assert "exercise_helps" in val and "dropout_some" not in val
    md = out.read_text()
    assert "## Calibration fit" in md and "## Validation (out-of-sample" in md
    rows = {r["id"]: r for r in validation.read_record(out.with_suffix(".json"))["rows"]}
    assert rows["exercise_helps"]["held_out"] and not rows["dropout_some"]["held_out"]
    assert "calibrated without them" in text


def test_unknown_hold_out_id_exits_2(tmp_path, capsys):
    code, _ = _validate(tmp_path, GOOD, "--hold-out", "no_such_target")
    err = capsys.readouterr().err
    assert code == 2 and "no_such_target" in err and "dropout_some" in err


def test_published_percentile_and_verdict():
    values = pd.Series(np.arange(1.0, 101.0))  # 100 replicate trials
    assert validation.published_percentile(values, 50.5) == pytest.approx(50.0)
    assert validation.published_percentile(values, 0.0) == 0.0
    assert validation.published_percentile(pd.Series([-1.0, 1.0, 2.0, 3.0]), "positive") == 75.0
    assert validation.verdict(50, 40, 60, 50.5, 50.0, 100) == "pass"
    # above all 100 replicates: p = 2 x 1 / 101 < 0.05
    assert validation.distribution_p(100.0, 100) == pytest.approx(2 / 101)
    assert validation.verdict(50, 40, 60, 59.0, 100.0, 100) == "published outside the replicates, p < 0.05"
    assert validation.verdict(50, 40, 60, 59.0, 98.0, 100) == "pass"  # 2 replicates beyond it: p = 6/101
    # 20 replicates cannot make any value implausible at 5% (p >= 2/21): untested, said so
    assert validation.verdict(50, 40, 60, 59.0, 100.0, 20) == "pass"
    row = {"passed": True, "published": 59.0, "replicates": 20}
    assert "distribution untested" in validation.result_word(row)
    assert validation.verdict(70, 40, 60, 59.0, 20.0, 100) == "mean outside band"
    assert validation.verdict(0.3, 0.05, 1, "positive", 60.0, 100) == "pass"  # a direction has no percentile test
    stored = {"mean": 50, "accept_low": 40, "accept_high": 60, "published": 59.0, "percentile": 100.0,
              "replicates": 100, "passed": True, "verdict": "pass"}
    assert validation.rejudge(stored)["passed"] is False


def test_spread_wider_than_the_band_is_flagged(tmp_path, capsys):
    """A band narrower than the replicates' 95% range: marked, and explained under the table."""
    code, out = _validate(tmp_path, GOOD.replace("accept: [0.0, 0.9]", "accept: [0.0, 0.001]").replace(
        "published: 0.2", "published: 0.0005"))
    text = capsys.readouterr().out
    rows = {r["id"]: r for r in validation.read_record(out.with_suffix(".json"))["rows"]}
    if rows["dropout_some"]["p97.5"] - rows["dropout_some"]["p2.5"] > 0.001:
        assert rows["dropout_some"]["wide"] and "spread > band" in text
    assert "published at" in text and "percentile" in text


TINY_STAGE = {"tiny": {"scenarios": ("small_trial.yaml", "other_trial.yaml"),
                       "free": {"dropout.base": (0.1, 0.3), "symptoms.plasticity_benefit": (0.5, 0.8)}}}
TWO_TRIALS = GOOD.rstrip(" ") + """\
      - id: other_dropout
        scenario: other_trial.yaml
        metric: dropout_rate
        arm: exercise
        week: 8
        published: 0.2
        accept: [0.0, 0.9]
    """


@pytest.fixture
def two_trials(tmp_path, monkeypatch):
    (tmp_path / "other_trial.yaml").write_text(TRIAL.replace("name: small_trial", "name: other_trial")
                                               .replace("seed: 3", "seed: 5"))
    monkeypatch.setattr(calibration, "STAGES", TINY_STAGE)
    seen: list[set[str]] = []
    real = calibration.evaluate

    def spy(targets, values, replicates, executor):
        seen.append({t.id for t in targets.targets})
        return real(targets, values, replicates, executor)

    monkeypatch.setattr(calibration, "evaluate", spy)
    return _targets(tmp_path, TWO_TRIALS), seen


def test_calibration_objective_leaves_held_out_targets_out(two_trials):
    path, seen = two_trials
    targets = validation.load_targets(path)
    from sim.runs import executors
    with executors.executor("serial") as ex:
        out = calibration.calibrate(targets, 2, 2, ex, hold_out=frozenset({"exercise_helps"}), log=lambda *_: None,
                                    with_sensitivity=False)
    objective_calls = seen[:-1]  # the last call is the final table over every target
    assert objective_calls and all("exercise_helps" not in ids for ids in objective_calls)
    assert all({"dropout_some", "other_dropout"} <= ids for ids in objective_calls)
    assert out["held_out"] == ["exercise_helps"]
    assert {r["id"]: r["held_out"] for r in out["targets"]}["exercise_helps"] is True


def test_leave_one_trial_out_refits_without_the_trial(two_trials, tmp_path, capsys):
    path, seen = two_trials
    out = tmp_path / "loto.json"
    code = loto.main(["--targets", str(path), "--trials", "3", "--replicates", "2", "--eval-replicates", "2",
                      "--jobs", "1", "--out", str(out), "--trial", "small_trial.yaml"])
    record = json.loads(out.read_text())
    fold, = record["folds"]
    assert fold["trial"] == "small_trial.yaml" and fold["held_out"] == ["dropout_some", "exercise_helps"]
    refits = [ids for ids in seen if ids == {"other_dropout"}]
    assert len(refits) == 3  # every trial of the refit scored the other trial only
    assert {r["id"] for r in fold["rows"] if r["held_out"]} == {"dropout_some", "exercise_helps"}
    # no warm start from the defaults, which were fitted with the held-out trial
    assert fold["refitted"]["dropout.base"] != parameters.DEFAULTS["dropout.base"]
    assert code in (0, 1) and "held-out targets pass out of sample" in capsys.readouterr().out
    md = out.with_suffix(".md").read_text()
    assert "held-out targets pass out of sample" in md
    assert "| small_trial | 1 |" in md  # refit quality: the one in-sample target of the fold, refit vs defaults
    # a second call resumes: the finished fold is kept, not refitted
    seen.clear()
    loto.main(["--targets", str(path), "--trials", "3", "--replicates", "2", "--eval-replicates", "2",
               "--jobs", "1", "--out", str(out), "--trial", "small_trial.yaml"])
    assert not [ids for ids in seen if ids == {"other_dropout"}]
