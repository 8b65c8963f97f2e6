"""Power curves: a sweep over participants per arm, power with Wilson intervals, the size reaching a target."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml

from sim import scenario
from sim.analysis import power
from sim.runs import executors, results, store
from sim.runs.sweep import run_sweep
from sim.sweep_spec import design_points, load_sweep
from tests.conftest import CLASS, TEST_SEED

SIZES = [10, 40, 160]
REPLICATES = 30
WEEKS = 6


def _scenario(folder) -> scenario.LoadedScenario:
    data = {"name": "power_tiny", "seed": TEST_SEED, "replicates": 2, "weeks": WEEKS, "follow_up_weeks": 0,
            "population": {"size": 10}, "arms": {"usual_care": {}, "exercise": CLASS}}
    path = folder / "power_tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return scenario.load(path)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The power sweep of a supervised-class arm (a large effect) run into a fresh store."""
    folder = tmp_path_factory.mktemp("power")
    loaded = _scenario(folder)
    sw = power.power_sweep(loaded, "exercise", "usual_care", SIZES, REPLICATES)
    db = store.Store(f"sqlite:///{folder}/p.db", create=True)
    with executors.executor("serial") as ex:
        out = run_sweep(sw, db, ex)
    assert out.failed == 0
    return loaded, sw, db, out.sweep_id


@pytest.fixture(scope="module")
def table(swept):
    loaded, _, db, sweep_id = swept
    return power.power_table(results.sweep_results(db, sweep_id), loaded.scenario.outcomes, "exercise",
                             "usual_care", WEEKS, moderator="fitness")


def test_sweep_is_a_grid_of_sizes_that_round_trips_through_its_text(swept):
    loaded, sw, _, _ = swept
    assert sw.spec.design == "grid" and sw.factor_names == ["population.size"]
    assert sw.spec.outcomes[0].week == WEEKS  # the end of the programme by default
    assert sw.name == "power-power_tiny-exercise"
    # the stored text is a sweep file: written next to its base scenario it loads to the same design
    path = loaded.path.replace("power_tiny.yaml", "power_sweep.yaml")
    with open(path, "w") as f:
        f.write(sw.text)
    again = load_sweep(path)
    pd.testing.assert_frame_equal(design_points(again), design_points(sw))
    assert again.sha256 == sw.sha256


def test_power_rises_with_size(table):
    assert table["size"].tolist() == SIZES  # one row per design point; the base point is left out
    assert (table.replicates == REPLICATES).all()
    by = table.set_index("size").power
    assert by[160] > by[10]
    assert by[160] >= 0.9  # g around 0.7 with 160 per arm is detected almost always
    assert (table.g_mean > 0.3).all()
    # independent cohorts spread g between trials more with fewer people
    spread = (table["g_trial_p97.5"] - table["g_trial_p2.5"]).to_numpy()
    assert spread[0] > spread[-1]


def test_wilson_intervals_contain_power_and_narrow_with_replicates(swept, table):
    assert ((table.power_low <= table.power) & (table.power <= table.power_high)).all()
    assert ((table.power_low >= 0) & (table.power_high <= 1)).all()
    loaded, _, db, sweep_id = swept
    few = power.power_table(results.sweep_results(db, sweep_id, replicates=10), loaded.scenario.outcomes,
                            "exercise", "usual_care", WEEKS)
    assert (few.replicates == 10).all()
    def width_at_160(t: pd.DataFrame) -> float:
        return float((t.power_high - t.power_low)[t["size"] == 160].iloc[0])

    assert width_at_160(few) > width_at_160(table)
    assert "moderation_power" not in few  # only when a moderator is asked for


def test_moderation_columns(table):
    for col in ("moderation_power", "moderation_low", "moderation_high"):
        assert table[col].between(0, 1).all(), col
    assert ((table.moderation_low <= table.moderation_power) & (table.moderation_power <= table.moderation_high)).all()
    assert table.interaction_mean.notna().all()


def test_smallest_and_interpolated_size_on_a_hand_made_table():
    t = pd.DataFrame({"size": [200, 20, 100, 50], "power": [0.97, 0.3, 0.85, 0.6]})
    assert power.smallest_size(t, 0.8) == 100
    # log-linear between 50 (0.6) and 100 (0.85): 50 * 2 ** 0.8 = 87.06, rounded up
    assert power.interpolated_size(t, 0.8) == 88
    assert power.smallest_size(t, 0.99) is None and power.interpolated_size(t, 0.99) is None
    assert power.smallest_size(t, 0.2) == 20 and power.interpolated_size(t, 0.2) is None
    assert power.smallest_size(t.assign(moderation_power=[0.5, 0.0, 0.1, 0.05]), 0.4, "moderation_power") == 200


@pytest.mark.parametrize("kwargs, named", [
    ({"arm": "yoga"}, "'yoga'"),
    ({"reference": "waitlist"}, "'waitlist'"),
    ({"arm": "usual_care"}, "'usual_care'"),
    ({"sizes": [10, 1, 40]}, "size 1 "),
    ({"sizes": [10, 40, 10]}, "size 10 "),
    ({"sizes": [10, 300_000]}, "size 300000"),
    ({"sizes": [10, 20.5]}, "size 20.5"),
    ({"replicates": 1}, "replicates 1 "),
    ({"week": WEEKS + 1}, f"week {WEEKS + 1} "),
])
def test_bad_inputs_name_the_value(tmp_path, kwargs, named):
    args = {"arm": "exercise", "reference": "usual_care", "sizes": SIZES, "replicates": 10, **kwargs}
    with pytest.raises(ValueError, match=named):
        power.power_sweep(_scenario(tmp_path), **args)


def test_bad_moderator_and_arm_in_the_table(swept):
    loaded, _, db, sweep_id = swept
    res = results.sweep_results(db, sweep_id, replicates=2)
    with pytest.raises(ValueError, match="'mood'"):
        power.power_table(res, loaded.scenario.outcomes, "exercise", "usual_care", WEEKS, moderator="mood")
    with pytest.raises(ValueError, match="'yoga'"):
        power.power_table(res, loaded.scenario.outcomes, "yoga", "usual_care", WEEKS)


def test_figure_and_text(table, tmp_path):
    footer = "scenario power_tiny (sha256 0123456789), seed 12345, code 0.1.0"
    fig = power.power_figure(table, 0.8, footer, "Power of exercise vs usual care")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "participants per arm"
    assert ax.get_ylabel() == "power (share of replicate trials with p < 0.05)"
    assert ax.get_xscale() == "log"
    texts = [t.get_text() for t in fig.texts] + [t.get_text() for t in ax.texts]
    assert footer in texts
    assert any("Monte Carlo intervals are wide" in t for t in texts)
    assert f"{REPLICATES} replicate trials per size" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("moderation" in lab for lab in labels) and any("target" in lab for lab in labels)
    fig.savefig(tmp_path / "power.png")
    plt.close(fig)

    text = power.power_text(table, 0.8, "exercise", "usual_care", WEEKS)
    assert "smallest size reaching 80% power:" in text
    assert "Monte Carlo intervals are wide" in text
    none = power.power_text(table.assign(power=0.1), 0.8, "exercise", "usual_care", WEEKS)
    assert "none of the sizes tried reaches 80% power" in none
    lines = text.splitlines()
    assert len({len(line) for line in lines[1:2 + len(SIZES) + 1]}) == 1  # header, rule and rows align
