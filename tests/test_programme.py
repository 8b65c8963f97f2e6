"""ArmPlan: a table of distinct settings and each person's row in it, read per person through ids."""

from __future__ import annotations

import numpy as np
import pytest

from sim.model.programme import PLAN_COLUMNS, SETTING_COLUMNS
from sim.runs import runner
from sim.scenario import Components
from tests.conftest import make_scenario
from tests.test_engine import FULL, PARTNER


@pytest.fixture
def plan():
    ls = make_scenario(weeks=10, follow_up_weeks=4, population={"size": 300},
                       arms={"usual_care": {}, "full": FULL, "partner": PARTNER})
    return runner.build_model(ls, "partner", 0).plan


def _per_person(plan) -> np.ndarray:
    return np.column_stack([getattr(plan, c) for c in SETTING_COLUMNS]).astype(float)


def test_table_rows_are_the_settings_of_the_people_who_point_to_them(plan):
    table, ids = plan.table()
    assert table.shape == (len(plan.settings), len(PLAN_COLUMNS)) and table.flags.c_contiguous
    assert ids.dtype == np.int64 and len(ids) == plan.n
    assert (np.bincount(ids, minlength=len(table)) > 0).all(), "every row is someone's"
    assert 1 < len(table) < 10, "an assignment rule splits the arm into a handful of settings"
    np.testing.assert_array_equal(plan.matrix(), _per_person(plan)[:, :len(PLAN_COLUMNS)])
    for name, kind in (("rx_spw", "i"), ("sup_kind", "i"), ("class_size", "i"), ("med_on", "b"), ("rx_min", "f")):
        assert getattr(plan, name).dtype.kind == kind, name
    assert plan.setting("class_size", 0) == plan.class_size[0]
    np.testing.assert_array_equal(plan.having("sup_kind", 1, 2), plan.sup_kind > 0)


def test_settings_per_person_are_read_only(plan):
    with pytest.raises(ValueError):
        plan.rx_spw[0] = 7  # a write here would be lost; settings change through apply
    with pytest.raises(AttributeError):
        plan.sup_kind = np.zeros(plan.n, dtype=int)


def test_apply_sets_the_components_fields_for_its_rows_only(plan):
    rng = np.random.default_rng(1)
    before = _per_person(plan)
    k = len(plan.settings)
    rows = rng.random(plan.n) < 0.3
    plan.apply(Components(medication={"effect": 0.3, "adherence": 0.9}), rows, start_day=21)
    after = _per_person(plan)
    np.testing.assert_array_equal(after[~rows], before[~rows])
    med = [SETTING_COLUMNS.index(c) for c in ("med_on", "med_effect", "med_adh", "med_from", "med_until")]
    rest = np.setdiff1d(np.arange(len(SETTING_COLUMNS)), med)
    np.testing.assert_array_equal(after[rows][:, rest], before[rows][:, rest])
    np.testing.assert_array_equal(after[rows][:, med], np.tile([1.0, 0.3, 0.9, 21.0, 70.0], (rows.sum(), 1)))
    assert len(plan.settings) == 2 * k, "each row some of whose people are in rows is copied for them"
    plan.apply(Components(contact={"sessions_per_week": 2}), np.ones(plan.n, dtype=bool), start_day=70)
    assert len(plan.settings) == 2 * k, "a component for everyone changes the rows in place"
    assert (plan.contact_rate == 2).all() and (plan.contact_from == 70).all()
    np.testing.assert_array_equal(_per_person(plan)[:, med], after[:, med])
