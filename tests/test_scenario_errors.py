"""Bad scenario input gives a ScenarioError naming the file, the field path, the bad value and what is allowed."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from sim import scenario
from sim.scenario import ScenarioError
from tests.conftest import EXERCISE, scenario_dict

FILE = "trial.yaml"


def error(**overrides) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        scenario.parse(scenario_dict(**overrides), FILE)
    return info.value


def assert_names(e: ScenarioError, field: str, *fragments: str) -> str:
    """The error names the file and field (attributes and message) and every fragment in its message."""
    msg = str(e)
    assert e.file == FILE and msg.startswith(f"{FILE}: ")
    assert e.field == field and field in msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


def test_a_valid_scenario_parses():
    s, arms = scenario.parse(scenario_dict(arms={"usual_care": {}, "exercise": EXERCISE,
                                                 "titrated": {"extends": "exercise", "titration": {}}}), FILE)
    assert arms["titrated"].prescription == arms["exercise"].prescription
    assert arms["titrated"].titration is not None and arms["exercise"].titration is None
    assert s.reference == "usual_care" and s.days == 7 * 12


# ------------------------------------------------------------------ unknown keys
def test_unknown_top_level_key():
    e = error(colour="red")
    msg = str(e)
    assert msg.startswith(f"{FILE}: ")
    assert e.field == "colour" and "unknown key" in msg
    assert "allowed keys: name, description, seed" in msg and "arms" in e.allowed


def test_unknown_key_inside_an_arm_component():
    e = error(arms={"ex": {"prescription": {"sessions_per_week": 3, "minuts": 50}}})
    assert_names(e, "arms.ex.prescription.minuts", "unknown key",
                 "allowed keys: sessions_per_week, minutes, intensity, modality")


def test_unknown_arm_component():
    e = error(arms={"ex": {"prescriptions": {"minutes": 50}}})
    assert_names(e, "arms.ex.prescriptions", "unknown key", "prescription", "titration", "self_management",
                 "stage2")


def test_unknown_key_errors_point_at_the_key_itself():
    top = error(colour="red", description="x" * 300)
    assert top.field == "colour" and len(str(top)) < 300
    nested = error(arms={"ex": {"prescription": {"sessions_per_week": 3, "minuts": 50}}})
    assert nested.field == "arms.ex.prescription.minuts"


# ------------------------------------------------------------------ types, ranges, required keys
def test_wrong_type():
    assert_names(error(weeks="twelve"), "weeks", "got 'twelve'", "valid integer")
    assert_names(error(arms={"ex": {"prescription": {"minutes": "long"}}}), "arms.ex.prescription.minutes",
                 "got 'long'", "valid number")
    assert_names(error(weeks=12.5), "weeks", "got 12.5", "integer")


def test_out_of_range_value():
    e = error(arms={"ex": {"prescription": {"sessions_per_week": 9}}})
    assert_names(e, "arms.ex.prescription.sessions_per_week", "got 9", "less than or equal to 7")
    assert e.value == 9
    assert_names(error(population={"size": 1}), "population.size", "got 1", "greater than or equal to 2")
    assert_names(error(population={"correlations": [{"between": ["baseline_severity", "fitness"], "r": 1.5}]}),
                 "population.correlations.0.r", "got 1.5", "0.95")


def test_value_not_among_the_choices():
    assert_names(error(arms={"ex": {"support": {"kind": "coach"}}}), "arms.ex.support.kind", "got 'coach'",
                 "'class' or 'partner'")
    e = error(population={"traits": {"happiness": {"mean": 0.5, "sd": 0.1}}})
    assert "population.traits.happiness" in e.field
    assert "'reward_sensitivity', 'cognitive_control'" in str(e)


def test_missing_required_key():
    e = error(seed=None)
    assert_names(e, "seed", "required key is missing")
    assert "got" not in str(e)
    assert_names(error(weeks=None), "weeks", "required key is missing")
    assert_names(error(arms={"ex": {**EXERCISE, "stage2": {"week": 3}}}), "arms.ex.stage2.add",
                 "required key is missing")


def test_file_not_a_mapping():
    with pytest.raises(ScenarioError, match="must hold a mapping"):
        scenario.parse([1, 2], FILE)


# ------------------------------------------------------------------ cross-field rules
def test_extends_an_undefined_arm():
    e = error(arms={"usual_care": {}, "ex": {"extends": "exercise_arm"}})
    assert_names(e, "arms.ex.extends", "got 'exercise_arm'", "must name another arm: usual_care, ex")


def test_arms_extending_each_other_in_a_cycle():
    e = error(arms={"a": {"extends": "b"}, "b": {"extends": "a"}})
    assert e.field in ("arms.a.extends", "arms.b.extends")
    assert "cycle" in str(e) and ("a -> b -> a" in str(e) or "b -> a -> b" in str(e))


def test_reference_arm_undefined():
    e = error(arms={"usual_care": {}, "exercise": EXERCISE}, reference_arm="placebo")
    assert_names(e, "reference_arm", "got 'placebo'", "must be one of the arms: usual_care, exercise")


def test_stage2_week_outside_the_programme():
    e = error(arms={"ex": {**EXERCISE, "stage2": {"week": 30, "add": {}}}})
    assert_names(e, "arms.ex.stage2.week", "got 30", "1-12")


def test_check_names_an_undefined_arm():
    e = error(checks=[{"id": "c", "metric": "dropout_rate", "arm": "exercise", "week": 4, "accept": [0, 1]}])
    assert_names(e, "checks.0.arm", "got 'exercise'", "usual_care")


@pytest.mark.parametrize("check, field, fragments", [
    ({"metric": "association", "arm": "exercise", "x": "follow_up_minutes"}, "checks.0", ("association needs y",)),
    ({"metric": "dropout_rate", "arm": "exercise", "week": 4, "level": 0.9}, "checks.0",
     ("dropout_rate does not take level", "it takes arm, week")),
    ({"metric": "happiness", "arm": "exercise"}, "checks.0.metric", ("'dropout_rate'",)),
    ({"metric": "association", "arm": "exercise", "x": "fitnes", "y": "adherence"}, "checks.0",
     ("x 'fitnes' is not a per-participant quantity", "fitness")),
    ({"metric": "median_days_to_habit", "arm": "exercise", "level": 0.7}, "checks.0",
     ("level 0.7 is not recorded", "0.5, 0.8, 0.9, 0.95")),
    ({"metric": "relapse_rate", "arm": "exercise", "remitted_at": 99, "week": 12}, "checks.0.remitted_at",
     ("got 99", "0-12")),
])
def test_check_arguments_must_fit_the_metric(check, field, fragments):
    e = error(arms={"usual_care": {}, "exercise": EXERCISE}, checks=[{"id": "c", "accept": [0, 1], **check}])
    assert_names(e, field, *fragments)


@pytest.mark.parametrize("check, field, fragments", [
    ({"metric": "effect_size", "arm": "all", "week": 4}, "checks.0.arm", ("got 'all'", "compares two arms")),
    ({"metric": "effect_size", "arm": "usual_care", "week": 4}, "checks.0.arm",
     ("got 'usual_care'", "different reference arm")),  # the scenario's reference, filled in
    ({"metric": "dropout_difference", "arm": "exercise", "reference": "all", "week": 4}, "checks.0.reference",
     ("got 'all'", "named arm")),
])
def test_a_comparison_needs_two_different_named_arms(check, field, fragments):
    e = error(arms={"usual_care": {}, "exercise": EXERCISE}, checks=[{"id": "c", "accept": [0, 1], **check}])
    assert_names(e, field, *fragments)


def test_check_ids_must_be_unique():
    check = {"id": "c", "metric": "dropout_rate", "arm": "exercise", "week": 4, "accept": [0, 1]}
    e = error(arms={"usual_care": {}, "exercise": EXERCISE}, checks=[check, check])
    assert_names(e, "checks", "got 'c'", "unique")


def test_a_check_of_any_metric_is_measured_with_the_scenarios_reference_by_default():
    from sim.analysis import metrics
    from sim.analysis.calibration import frames_of
    from sim.runs import executors

    data = scenario_dict(arms={"usual_care": {}, "exercise": EXERCISE}, replicates=2, checks=[
        {"id": "g", "metric": "effect_size", "arm": "exercise", "week": 12, "accept": [-5, 5]},
        {"id": "rho", "metric": "association", "arm": "exercise", "x": "adherence",
         "y": "severity_change_end_programme", "accept": [-1, 1]}])
    s, arms = scenario.parse(data, FILE)
    loaded = scenario.LoadedScenario(scenario=s, path=FILE, text=yaml.safe_dump(data), sha256="t", arms=arms)
    with executors.executor("serial", 1) as ex:
        f = frames_of(loaded, 2, ex)
    out = metrics.evaluate_checks(s.checks, f, s.reference).set_index("id")
    g = metrics.summarise(metrics.compute("effect_size", f, arm="exercise", reference="usual_care", week=12))
    assert out.loc["g", "mean"] == pytest.approx(g["mean"])
    assert out.loc["rho", "mean"] < 0 and out.loc["rho", "replicates"] == 2  # more sessions, more improvement


def test_assignment_rule_without_bounds():
    e = error(arms={"ex": {**EXERCISE, "assign": [{"when": {"cognitive_control": {}}, "add": {}}]}})
    assert_names(e, "arms.ex.assign.0.when.cognitive_control", "'below', 'above'")


def test_assignment_rule_no_one_can_match():
    e = error(arms={"ex": {**EXERCISE, "assign": [{"when": {"fitness": {"below": 0.2, "above": 0.8}}, "add": {}}]}})
    assert_names(e, "arms.ex.assign.0.when.fitness", "both below 0.2 and above 0.8")


@pytest.mark.parametrize("traits, field, fragment", [
    ({"fitness": {"mean": float("nan"), "sd": 0.1}}, "population.traits.fitness.mean", "finite number"),
    ({"fitness": {"mean": 0.5, "sd": float("inf")}}, "population.traits.fitness.sd", "finite number"),
    ({"fitness": {"mean": 0.5, "sd": 0.1, "low": float("nan")}}, "population.traits.fitness.low", "finite number"),
    ({"fitness": {"mean": 50, "sd": 0.01}}, "population.traits.fitness.mean", "within the trait's bounds, 0 to 1"),
])
def test_trait_distributions_must_be_finite_and_inside_their_bounds(traits, field, fragment):
    assert_names(error(population={"traits": traits}), field, fragment)


def test_no_number_anywhere_may_be_nan_or_infinite():
    assert_names(error(outcomes={"remission_threshold": float("inf")}), "outcomes.remission_threshold",
                 "finite number")
    rule = {"when": {"fitness": {"below": float("nan")}}, "add": {}}
    assert_names(error(arms={"ex": {**EXERCISE, "assign": [rule]}}), "arms.ex.assign.0.when.fitness.below",
                 "finite number")


@pytest.mark.parametrize("component", ["support", "reward_cues"])
def test_fading_must_fit_inside_the_components_window(component):
    e = error(arms={"ex": {**EXERCISE, component: {"weeks": 2, "fade_weeks": 10}}})
    assert_names(e, f"arms.ex.{component}.fade_weeks", "got 10", "must be 0-2")
    e = error(arms={"ex": {**EXERCISE, component: {"fade_weeks": 20}}})  # window: the 12-week programme
    assert_names(e, f"arms.ex.{component}.fade_weeks", "got 20", "must be 0-12")


# ------------------------------------------------------------------ parameter overrides
def test_unknown_parameter_override():
    e = error(parameters={"intention.bogus": 1.0})
    assert_names(e, "parameters.intention.bogus", "got 1.0", "unknown parameter")


def test_out_of_range_parameter_override():
    e = error(parameters={"intention.bias": 10.0})
    assert_names(e, "parameters.intention.bias", "got 10.0", "allowed range -3.0 to 3.0")
    assert e.value == 10.0


def test_non_numeric_parameter_override():
    e = error(parameters={"intention.bias": "high"})
    assert e.field.startswith("parameters.intention.bias") and "number" in str(e)
    e = error(parameters={"intention.bias": True})  # YAML `yes`/`true` is not a number here
    assert e.field.startswith("parameters.intention.bias")


def test_non_numeric_parameter_override_names_field_and_value():
    assert_names(error(parameters={"intention.bias": "high"}), "parameters.intention.bias", "got 'high'", "number")


# ------------------------------------------------------------------ population
def test_subgroup_shares_must_sum_to_one():
    e = error(population={"size": 100, "subgroups": [{"name": "late_life", "share": 0.5},
                                                      {"name": "young", "share": 0.3}]})
    assert e.field.startswith("population")
    assert "subgroup shares must sum to 1" in str(e) and "0.8" in str(e)


# ------------------------------------------------------------------ files
def test_load_reads_validates_and_hashes(tmp_path):
    path = tmp_path / "ok.yaml"
    text = yaml.safe_dump(scenario_dict(arms={"usual_care": {}, "exercise": EXERCISE}))
    path.write_text(text)
    loaded = scenario.load(path)
    assert loaded.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert loaded.text == text and loaded.path == str(path) and set(loaded.arms) == {"usual_care", "exercise"}


def test_load_errors_name_the_file(tmp_path):
    path = tmp_path / "range.yaml"
    path.write_text(yaml.safe_dump(scenario_dict(arms={"ex": {"prescription": {"sessions_per_week": 9}}})))
    with pytest.raises(ScenarioError) as info:
        scenario.load(path)
    assert info.value.file == str(path) and str(info.value).startswith(f"{path}: arms.ex.prescription")


def test_malformed_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nseed: 1\nweeks: 4\narms:\n  a: {prescription: {minutes: 30}\n  b: {}\n")
    with pytest.raises(ScenarioError) as info:
        scenario.load(path)
    e = info.value
    assert e.file == str(path) and str(e).startswith(str(path))
    assert "malformed YAML" in str(e) and e.field.startswith("line 6")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ScenarioError) as info:
        scenario.load(path)
    assert info.value.file == str(path) and "file not found" in str(info.value)


@pytest.mark.parametrize("text, line, key", [
    ("name: x\nseed: 1\nweeks: 4\nweeks: 6\narms: {a: {}}\n", 4, "weeks"),
    ("name: x\nseed: 1\nweeks: 4\narms:\n  a: {}\n  a: {}\n", 6, "a"),
    ("name: x\nseed: 1\nweeks: 4\npopulation: {size: 10, size: 20}\narms: {a: {}}\n", 4, "size"),
])
def test_a_repeated_key_is_refused_not_silently_overwritten(tmp_path, text, line, key):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        scenario.load(path)
    assert info.value.field.startswith(f"line {line}") and f"duplicate key {key!r}" in str(info.value)


def test_unreadable_files(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    for path, fragment in ((binary, "not UTF-8"), (tmp_path, "is a folder")):
        with pytest.raises(ScenarioError, match=fragment) as info:
            scenario.load(path)
        assert info.value.file == str(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ScenarioError, match="the file is empty"):
        scenario.load(path)


def test_session_components_need_a_prescription():
    e = error(arms={"usual_care": {}, "cued": {"reward_cues": {"value": 0.5}}})
    assert e.field == "arms.cued.reward_cues" and "needs a prescription" in str(e) and "got" not in str(e)
    # a prescription from extends or from an assign rule is enough
    scenario.parse(scenario_dict(arms={"ex": EXERCISE, "cued": {"extends": "ex", "reward_cues": {}}}), FILE)


def test_titration_builds_up_to_the_prescription_not_down():
    e = error(arms={"ex": {**EXERCISE, "titration": {"start_minutes": 60}}})
    assert_names(e, "arms.ex.titration.start_minutes", "got 60", "at most at its")
    e = error(arms={"ex": {**EXERCISE, "titration": {"start_intensity": 0.95}}})
    assert_names(e, "arms.ex.titration.start_intensity", "got 0.95", "at most at its intensity")


@pytest.mark.parametrize("outcomes, field, fragment", [
    ({"scale": "HAMD"}, "outcomes.scale", "HAM-D-17"),
    ({"scale": "PHQ-9", "remission_threshold": 30}, "outcomes", "above the top of PHQ-9"),
    ({"assessment_weeks": [4, 4]}, "outcomes", "repeats week 4"),
    ({"assessment_weeks": [4, 99]}, "outcomes.assessment_weeks", "weeks 0-12"),
    ({"relapse_assessments": 0}, "outcomes.relapse_assessments", "greater than or equal to 1"),
])
def test_outcome_definitions_are_checked(outcomes, field, fragment):
    assert_names(error(outcomes=outcomes), field, fragment)


def test_trial_realism_keys_are_checked():
    assert_names(error(arms={"ex": {**EXERCISE, "follow_up": {"placebo": {}}}}), "arms.ex.follow_up",
                 "follow_up_weeks")
    assert_names(error(arms={"ex": {**EXERCISE, "assign": [{"add": {"placebo": {}}}]}}), "arms.ex.assign.0",
                 "'when'")
    assert_names(error(arms={"ex": {**EXERCISE, "assign": [{"share": 1.5, "add": {}}]}}),
                 "arms.ex.assign.0.share", "less than or equal to 1")
    assert_names(error(arms={"ex": {**EXERCISE, "placebo": {"adherence": 2}}}), "arms.ex.placebo.adherence",
                 "less than or equal to 1")
