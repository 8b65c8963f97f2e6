"""The engine: compiled update == per-agent reference, stacked == alone, seeds reproduce, common random numbers, Mesa idioms."""

from __future__ import annotations

from dataclasses import fields

import mesa
import numpy as np
import pandas as pd
import pytest
import yaml

from sim.model import dynamics
from sim.model.model import AdherenceModel
from sim.runs import runner
from tests.conftest import CLASS, EXERCISE, make_scenario, scenario_dict

# Every arm component, an assignment rule and a stage-2 rule; partner support in a second arm.
FULL = {
    "prescription": {"sessions_per_week": 4, "minutes": 45, "intensity": 0.65},
    "titration": {"start_minutes": 10, "start_intensity": 0.4, "weeks": 4},
    "support": {"kind": "class", "level": 0.7, "weeks": 8, "fade_weeks": 2, "class_size": 5},
    "priming": {"strength": 1.0, "weeks": 6},
    "reward_cues": {"value": 0.4, "streak_bonus": 0.5, "fade_weeks": 3},
    "self_management": {"weeks": 6, "skill": 0.2},
    "medication": {"adherence": 0.7, "continue_after": True},
    "contact": {"sessions_per_week": 1, "weeks": 10},
    "assign": [{"when": {"reward_sensitivity": {"below": 0.4}},
                "add": {"reward_cues": {"value": 0.8}, "priming": {"strength": 2.0}}}],
    "stage2": {"week": 4, "min_improvement": 0.3, "add": {"medication": {"effect": 0.3, "adherence": 0.9}}},
}
PARTNER = {
    "extends": "full",
    "support": {"kind": "partner", "level": 0.9},
    "assign": [{"when": {"cognitive_control": {"below": 0.45}}, "add": {"self_management": {"skill": 0.3}}}],
    "stage2": {"week": 3, "min_improvement": 0.2,
               "add": {"support": {"kind": "class", "level": 0.6, "class_size": 4}}},
}


@pytest.fixture(scope="module")
def full_scenario():
    return make_scenario(weeks=10, follow_up_weeks=4, population={"size": 40},
                         arms={"usual_care": {}, "full": FULL, "partner": PARTNER})


STATE_FIELDS = [f.name for f in fields(dynamics.State)]


@pytest.mark.parametrize("arm", ["full", "partner", "usual_care"])
def test_compiled_update_matches_per_agent_reference(full_scenario, arm):
    fast = runner.build_model(full_scenario, arm, 0)
    ref = runner.build_model(full_scenario, arm, 0, reference=True)
    assert ref.reference and not fast.reference
    acted = dropped = 0
    for day in range(fast.days):
        fast.step()
        ref.step()
        for name in STATE_FIELDS:
            a, b = getattr(fast.state, name), getattr(ref.state, name)
            if a.dtype == bool:
                np.testing.assert_array_equal(a, b, err_msg=f"day {day}: {name}")
            else:
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"day {day}: {name}")
        np.testing.assert_array_equal(fast.partner, ref.partner)
        np.testing.assert_array_equal(fast.group, ref.group)
        acted += int(fast.state.acted.sum())
    dropped = int((fast.state.dropout_day >= 0).sum())
    assert not fast.running and not ref.running
    np.testing.assert_allclose(fast.daily, ref.daily, rtol=1e-10)
    np.testing.assert_allclose(fast.severity_weekly, ref.severity_weekly, rtol=1e-10)
    np.testing.assert_allclose(fast.minutes_weekly, ref.minutes_weekly, rtol=1e-10)
    np.testing.assert_array_equal(fast.plan.augmented, ref.plan.augmented)
    np.testing.assert_array_equal(fast.assessed, ref.assessed)
    for name in ("planned_count", "done_count", "sessions_weekly", "habit_history"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
    for name in ("minutes_programme", "minutes_follow_up", "habit_max"):
        np.testing.assert_allclose(getattr(fast, name), getattr(ref, name), rtol=1e-10, err_msg=name)
    np.testing.assert_array_equal(fast.days_to_habit(), ref.days_to_habit())
    if arm != "usual_care":  # the comparison exercised the interesting branches
        assert acted > 200, "too few sessions for the comparison to mean anything"
        assert dropped > 0 or fast.state.misses.max() > 0
        assert fast.plan.augmented.any(), "no stage-2 augmentation happened"
        assert (fast.state.med > 0).any()
    if arm == "partner":
        assert (fast.partner >= 0).any() and (fast.group >= 0).any(), "partners and stage-2 classes formed"


def _assert_records_equal(a, b):
    for attr in ("daily", "participants", "weekly", "assessments"):
        pd.testing.assert_frame_equal(getattr(a, attr), getattr(b, attr), check_exact=True)


def test_stacked_runs_give_exactly_what_they_give_alone(full_scenario):
    """Arms, replicates and parameter points advanced together in one stack: each run's records are
    bit-for-bit those of the run alone (own parameters, own random numbers, own partners and classes)."""
    todo = [runner.Task(arm, r) for r in (0, 1) for arm in full_scenario.scenario.arms]
    stacked = runner.run_tasks(full_scenario, todo)
    for task, rec in zip(todo, stacked):
        alone = runner.run_task(full_scenario, task)
        _assert_records_equal(rec, alone)
    # a sweep's points: the same run under other parameter values, stacked with the default
    from sim.model.stack import Stack
    base = runner.build_model(full_scenario, "partner", 0)
    other = [AdherenceModel(full_scenario, arm="partner", cohort=base.cohort, rng=runner.replicate_streams(
        full_scenario.scenario.seed, 0)[1], parameters={"plasticity.gain": g}) for g in (0.05, 0.3)]
    Stack([base, *other]).run()
    for g, m in zip((0.05, 0.3), other):
        alone = AdherenceModel(full_scenario, arm="partner", cohort=base.cohort, rng=runner.replicate_streams(
            full_scenario.scenario.seed, 0)[1], parameters={"plasticity.gain": g}).run()
        np.testing.assert_array_equal(m.daily, alone.daily)
        np.testing.assert_array_equal(m.state.S, alone.state.S)
    assert not np.array_equal(other[0].state.P, other[1].state.P), "the points' parameters took effect"


@pytest.mark.parametrize("arm", ["full", "partner"])
def test_runs_taken_in_blocks_of_rows_give_what_one_block_gives(full_scenario, arm, monkeypatch):
    """A large run goes through its days block by block (blocks.visit_blocks): every state array and record
    is bit-for-bit that of one block; the arm's daily aggregates agree to 1e-12 (the severity sd is merged
    across blocks, and where ties reorder rows the sums are taken in another order)."""
    from sim.model import blocks
    whole = runner.build_model(full_scenario, arm, 0).run()
    monkeypatch.setattr(blocks, "BLOCK_ROWS", 7)
    blocked = runner.build_model(full_scenario, arm, 0)
    blocked.run()
    stack = blocked._stack
    assert stack.run_cut[-1] >= 4, "the run went through several blocks"
    np.testing.assert_array_equal(blocked.state.records, whole.state.records)
    for name in ("assessed", "habit_history", "minutes_weekly", "sessions_weekly", "severity_weekly"):
        np.testing.assert_array_equal(getattr(blocked, name), getattr(whole, name), err_msg=name)
    np.testing.assert_allclose(blocked.daily, whole.daily, rtol=1e-12)


def test_blocks_of_rows_never_split_partners_or_classes():
    from sim.model import blocks
    rng = np.random.default_rng(5)
    offsets = np.array([0, 300, 310, 1000])
    partner, group = np.full(1000, -1), np.full(1000, -1)
    for a, b in rng.choice(1000, size=(150, 2), replace=False):  # pairs anywhere, even across the run
        if (np.searchsorted(offsets, a, "right") == np.searchsorted(offsets, b, "right")):
            partner[a], partner[b] = b, a
    free = np.flatnonzero(partner < 0)
    free = free[free >= 310]
    group[free[:400]] = rng.integers(0, 50, 400)  # classes scattered over the third run
    visit, cuts, run_cut = blocks.visit_blocks(offsets, partner, group, 50, 32)
    block = np.empty(1000, dtype=int)
    for b in range(len(cuts) - 1):
        block[visit[cuts[b]:cuts[b + 1]]] = b
    for r in range(3):
        rows = np.arange(offsets[r], offsets[r + 1])
        np.testing.assert_array_equal(np.sort(visit[rows]), rows)  # each run's rows, each once
        assert cuts[run_cut[r]] == offsets[r] and cuts[run_cut[r + 1]] == offsets[r + 1]
    tied = partner >= 0
    np.testing.assert_array_equal(block[tied], block[partner[tied]])
    for g in range(50):
        assert len(set(block[group == g])) <= 1
    np.testing.assert_array_equal(visit[300:310], np.arange(300, 310))  # a run that fits a block: row order,
    assert run_cut[2] - run_cut[1] == 1                                 # one block
    assert np.diff(cuts)[:run_cut[1] - 1].min() >= 32 and run_cut[1] > 1  # others: at least 32 rows, but the last


def _records_differ(a, b) -> bool:
    return not np.allclose(a.weekly.severity.to_numpy(), b.weekly.severity.to_numpy())


def test_same_seed_reproduces_exactly_and_other_seeds_differ():
    loaded = make_scenario(weeks=6, follow_up_weeks=2, population={"size": 150},
                           arms={"usual_care": {}, "class": CLASS})
    task = runner.Task("class", 1)
    first, again = runner.run_task(loaded, task), runner.run_task(loaded, task)
    _assert_records_equal(first, again)
    other_replicate = runner.run_task(loaded, runner.Task("class", 2))
    other_seed = runner.run_task(make_scenario(seed=999, weeks=6, follow_up_weeks=2, population={"size": 150},
                                               arms={"usual_care": {}, "class": CLASS}), task)
    assert _records_differ(first, other_replicate)
    assert _records_differ(first, other_seed)
    assert not np.allclose(first.participants.baseline_severity, other_seed.participants.baseline_severity)


def test_arms_of_a_replicate_share_the_cohort():
    loaded = make_scenario(population={"size": 100}, arms={"usual_care": {}, "class": CLASS, "full": FULL})
    models = [runner.build_model(loaded, arm, 3) for arm in loaded.scenario.arms]
    base = models[0].cohort
    for m in models[1:]:
        for trait, values in base.traits.items():
            np.testing.assert_array_equal(m.cohort.traits[trait], values)
        for attr in ("habit_rate", "course", "subgroup", "assign_u"):
            np.testing.assert_array_equal(getattr(m.cohort, attr), getattr(base, attr))
    other = runner.build_model(loaded, "usual_care", 4).cohort
    assert not np.allclose(other.traits["baseline_severity"], base.traits["baseline_severity"])


def test_identical_arms_give_identical_runs():
    loaded = make_scenario(weeks=6, follow_up_weeks=2, population={"size": 120},
                           arms={"usual_care": {}, "usual_care_copy": {}, "class": CLASS, "class_copy": CLASS})
    for a, b in (("usual_care", "usual_care_copy"), ("class", "class_copy")):
        ra, rb = runner.run_task(loaded, runner.Task(a, 0)), runner.run_task(loaded, runner.Task(b, 0))
        _assert_records_equal(ra, rb)


LOW_C = {"cognitive_control": {"below": 0.45}}


def _outside_vs_inside(loaded, base_arm, matched_arm, replicate=0):
    a = runner.run_task(loaded, runner.Task(base_arm, replicate))
    b = runner.run_task(loaded, runner.Task(matched_arm, replicate))
    inside = a.participants.measured_cognitive_control.to_numpy() < 0.45  # rules act on measured traits
    assert 10 < inside.sum() < len(inside) - 10
    sev_a = a.weekly.severity.to_numpy().reshape(len(inside), -1)
    sev_b = b.weekly.severity.to_numpy().reshape(len(inside), -1)
    min_a = a.weekly.minutes.to_numpy().reshape(len(inside), -1)
    min_b = b.weekly.minutes.to_numpy().reshape(len(inside), -1)
    outside_same = np.array([np.array_equal(sev_a[i], sev_b[i]) and np.array_equal(min_a[i], min_b[i])
                             for i in range(len(inside))])
    return a, b, inside, outside_same


def test_extra_support_for_a_subgroup_leaves_non_interacting_others_untouched():
    """Common random numbers: a matched arm that makes low-control people exercise more (classes among
    themselves, cues, priming) must not move anyone outside the rule, since they share no class or partner."""
    matched = {**EXERCISE, "assign": [{"when": LOW_C, "add": {"support": {"kind": "class", "level": 0.9},
                                                              "reward_cues": {"value": 0.5}}}]}
    loaded = make_scenario(weeks=8, follow_up_weeks=4, population={"size": 300},
                           arms={"exercise": EXERCISE, "matched": matched})
    a, b, inside, same = _outside_vs_inside(loaded, "exercise", "matched")
    assert same[~inside].all(), f"{(~same[~inside]).sum()} people outside the rule changed"
    pa, pb = a.participants.set_index("pid"), b.participants.set_index("pid")
    out = ~inside
    pd.testing.assert_frame_equal(pa[out], pb[out])
    # the rule did something to the people it targets
    assert (~same[inside]).mean() > 0.8
    assert pb.adherence[inside].mean() > pa.adherence[inside].mean() + 0.05


def test_classes_shared_across_the_rule_boundary_do_move_others():
    """The converse: when everyone is in classes, extra help for one subgroup changes who shows up, and with
    it the support and social reward of their classmates outside the rule (real interactions)."""
    matched = {**CLASS, "assign": [{"when": LOW_C, "add": {"reward_cues": {"value": 1.0},
                                                           "priming": {"strength": 2.0}}}]}
    loaded = make_scenario(weeks=8, follow_up_weeks=4, population={"size": 300},
                           arms={"class": CLASS, "matched": matched})
    a, b, inside, same = _outside_vs_inside(loaded, "class", "matched")
    changed = ~same[~inside]
    assert changed.sum() >= 5, "classmates of the helped subgroup should be affected"
    # and only through their classes: people outside the rule whose class holds nobody from inside it are untouched
    group = runner.build_model(loaded, "matched", 0).group
    helped_groups = np.unique(group[inside])
    no_contact = ~inside & ~np.isin(group, helped_groups)
    assert same[no_contact].all()


# ------------------------------------------------------------------ Mesa idioms
def test_model_uses_the_generator_passed_and_agentset_views():
    loaded = make_scenario(weeks=4, population={"size": 80}, arms={"class": CLASS})
    gen = np.random.default_rng(7)
    model = AdherenceModel(loaded, arm="class", rng=gen)
    assert model.rng is gen
    assert len(model.agents) == model.n == 80
    for _ in range(21):
        model.step()
    enrolled = model.agents.select(lambda a: a.enrolled)
    assert len(enrolled) == int(model.state.enrolled.sum())
    assert len(enrolled) < model.n, "some dropout expected after three weeks"
    exercising = model.agents.select(lambda a: a.exercised_today)
    assert len(exercising) == int(model.state.acted.sum())
    severities = np.array(model.agents.get("severity"))
    rows = np.array(model.agents.get("row"))
    np.testing.assert_array_equal(severities, model.state.S[rows])
    one = model.agents.select(lambda a: a.row == 5)
    view = one.map("view")[0]
    assert view["S"] == model.state.S[5] and view["enrolled"] == bool(model.state.enrolled[5])
    # the same integer seed gives the same run; Mesa's default (rng=None) is not reproducible by accident
    m1, m2 = AdherenceModel(loaded, arm="class", rng=11).run(), AdherenceModel(loaded, arm="class", rng=11).run()
    np.testing.assert_array_equal(m1.daily, m2.daily)


@pytest.mark.parametrize("via", ["path", "loaded_in_list"])
def test_mesa_batch_run(tmp_path, via):
    spec = {"weeks": 3, "population": {"size": 50}, "arms": {"usual_care": {}, "class": CLASS}}
    if via == "path":
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(scenario_dict(**spec)))
        scenario = str(path)
    else:  # a bare LoadedScenario would be iterated by batch_run (pydantic models are iterable)
        scenario = [make_scenario(**spec)]
    rows = mesa.batch_run(AdherenceModel, parameters={"scenario": scenario, "arm": ["usual_care", "class"]},
                          rng=[1, 2], max_steps=21, data_collection_period=1, number_processes=1,
                          display_progress=False)
    df = pd.DataFrame(rows)
    assert {"RunId", "iteration", "Step", "arm", "severity_mean", "enrolled_share", "exercising_share"} <= set(df)
    assert set(df.arm) == {"usual_care", "class"} and set(df.iteration) == {0, 1}
    assert len(df) == 2 * 2 * 22  # 2 arms x 2 seeds x days 0..21
    uc, cl = df[df.arm == "usual_care"], df[df.arm == "class"]
    # usual care: nobody leaves; a few exercise on their own (own.uptake), far fewer than in classes
    assert (uc.enrolled_share == 1).all() and uc.exercising_share.mean() < 0.02
    assert cl.exercising_share.max() > 0.2
    # every row matches the model run directly with the same seed; daily row k = state after k days
    direct = AdherenceModel(scenario if via == "path" else scenario[0], arm="class", rng=2)
    while direct.running and direct.steps < 21:
        direct.step()
    for _, row in df[(df.arm == "class") & (df.iteration == 1)].iterrows():
        day = int(row.Step)
        assert row.severity_mean == pytest.approx(direct.daily[day, 0], rel=1e-12)
        assert row.enrolled_share == pytest.approx(direct.daily[day, 2], rel=1e-12)


# ------------------------------------------------------------------ records kept as far as outputs need them
def test_population_sized_runs_keep_small_records(monkeypatch):
    """Above the limits a model keeps no weekly panel and no habit history unless asked; asked, the habit
    history is 16-bit and gives the float32 history's days to habit within a day; agents appear on first use."""
    from sim.model import model as model_module

    loaded = make_scenario(weeks=8, follow_up_weeks=4, population={"size": 300}, arms={"class": CLASS})
    exact = runner.build_model(loaded, "class", 0).run()  # trial size: float32 history and the panel
    assert exact.habit_history.dtype == np.float32 and exact.severity_weekly.shape == (300, 13)
    monkeypatch.setattr(model_module, "HABIT_CELLS", 1000)
    monkeypatch.setattr(model_module, "PANEL_CELLS", 1000)
    cohort, rng = exact.cohort, lambda: runner.replicate_streams(loaded.scenario.seed, 0)[1]
    lean = AdherenceModel(loaded, arm="class", cohort=cohort, rng=rng()).run()
    assert lean.habit_history.size == 0 and not lean._agents_made
    with pytest.raises(ValueError, match="habit_history=True"):
        lean.days_to_habit()
    with pytest.raises(ValueError, match="panel=True"):
        lean.severity_weekly  # noqa: B018
    np.testing.assert_array_equal(lean.daily, exact.daily)  # what is kept does not change the run
    coarse = AdherenceModel(loaded, arm="class", cohort=cohort, rng=rng(), habit_history=True).run()
    assert coarse.habit_history.dtype == np.uint16
    a, b = exact.days_to_habit(), coarse.days_to_habit()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= 1 and (a == b)[~np.isnan(a)].mean() > 0.95
    assert len(lean.agents) == 300 and lean._agents_made
