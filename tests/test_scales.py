"""sim.scales: one internal scale (HAM-D-17 points) and published linkings to MADRS, PHQ-9 and BDI-II."""

import numpy as np
import pytest

from sim import scales

NAMES = ("HAM-D-17", "MADRS", "PHQ-9", "BDI-II")


def test_the_four_scales_with_their_ranges_and_remission_cut_offs():
    assert tuple(scales.SCALES) == NAMES
    got = {n: (s.max, s.remission) for n, s in scales.SCALES.items()}
    assert got == {"HAM-D-17": (52, 7), "MADRS": (60, 10), "PHQ-9": (27, 4), "BDI-II": (63, 13)}
    for name, s in scales.SCALES.items():
        assert s.name == name and scales.scale(name) is s
        assert s.anchors_internal[0] == 0 and s.anchors_scale[0] == 0
        assert s.anchors_internal[-1] == 52 and s.anchors_scale[-1] == s.max
        assert s.source.strip()


def test_ham_d_17_is_the_identity():
    x = np.linspace(0, 52, 1001)
    assert np.array_equal(scales.to_internal("HAM-D-17", x), x)
    assert np.array_equal(scales.from_internal("HAM-D-17", x), x)


@pytest.mark.parametrize("name", NAMES)
def test_round_trips_are_exact_over_the_whole_range(name):
    top = scales.scale(name).max
    internal = np.linspace(0, 52, 5201)
    points = np.linspace(0, top, 5001)
    np.testing.assert_allclose(scales.to_internal(name, scales.from_internal(name, internal)), internal,
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(scales.from_internal(name, scales.to_internal(name, points)), points,
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_conversions_are_strictly_increasing_and_span_the_range(name):
    top = scales.scale(name).max
    up = scales.from_internal(name, np.linspace(0, 52, 2001))
    assert np.all(np.diff(up) > 0) and up[0] == 0 and up[-1] == top
    down = scales.to_internal(name, np.linspace(0, top, 2001))
    assert np.all(np.diff(down) > 0) and down[0] == 0 and down[-1] == 52


@pytest.mark.parametrize("name", NAMES)
def test_values_outside_the_range_are_clipped(name):
    top = scales.scale(name).max
    assert scales.to_internal(name, -5.0) == 0 and scales.to_internal(name, top + 10) == 52
    assert scales.from_internal(name, -1.0) == 0 and scales.from_internal(name, 80.0) == top


def test_published_anchor_points_are_reproduced():
    # Leucht et al. 2018: HAM-D 10, 20, 30, 40 ~ MADRS 13, 26, 39, 52-53
    assert scales.from_internal("MADRS", np.array([10.0, 20, 30])).tolist() == [13, 26, 39]
    assert 52 <= scales.from_internal("MADRS", 40.0) <= 53
    # Carmody et al. 2006 (IRT equating): HAM-D 7 ~ MADRS 8-9; within a point of that
    assert 8 - 1 <= scales.from_internal("MADRS", 7.0) <= 9 + 1
    # Furukawa et al. 2019: HAMD 10, 20, 30 ~ BDI-II 13, 32, 50
    assert scales.from_internal("BDI-II", np.array([10.0, 20, 30])).tolist() == [13, 32, 50]
    # PHQ-9 via Wahl et al. 2014 and Furukawa et al. 2019: severity band edges 5/10/15/20
    assert scales.to_internal("PHQ-9", np.array([5.0, 10, 15, 20])).tolist() == [8.6, 12.8, 16.9, 21.5]


@pytest.mark.parametrize("name", ["MADRS", "PHQ-9"])
def test_remission_cut_offs_map_to_each_other_within_one_point(name):
    s = scales.scale(name)
    assert abs(scales.to_internal(name, s.remission) - 7) <= 1
    assert abs(scales.from_internal(name, 7.0) - s.remission) <= 1


def test_bdi_ii_remission_cut_off_is_milder_than_ham_d_7_by_the_published_linking():
    # documented, not an error: BDI-II <= 13 corresponds to HAM-D <= 10 (Furukawa et al. 2019)
    assert scales.to_internal("BDI-II", 13.0) == pytest.approx(10.0)
    assert scales.from_internal("BDI-II", 7.0) < 13 - 3


def test_floats_stay_floats_and_arrays_stay_arrays():
    for name in NAMES:
        for fn in (scales.to_internal, scales.from_internal):
            assert type(fn(name, 7.0)) is float and type(fn(name, 7)) is float
            out = fn(name, np.full((3, 2), 7.0))
            assert isinstance(out, np.ndarray) and out.shape == (3, 2) and out.dtype == float
            assert isinstance(fn(name, [1.0, 2.0]), np.ndarray)


def test_vectorised_on_a_day_of_200000_people():
    x = np.random.default_rng(1).uniform(0, 52, 200_000)
    out = scales.from_internal("PHQ-9", x)
    assert out.shape == x.shape and np.all((out >= 0) & (out <= 27))
    np.testing.assert_allclose(scales.to_internal("PHQ-9", out), x, rtol=0, atol=1e-9)


@pytest.mark.parametrize("bad", ["HAMD", "madrs", "PHQ9", "", None, 3])
def test_unknown_scale_is_refused_naming_the_allowed_ones(bad):
    for call in (lambda: scales.scale(bad), lambda: scales.to_internal(bad, 1.0),
                 lambda: scales.from_internal(bad, 1.0)):
        with pytest.raises(ValueError) as err:
            call()
        assert all(name in str(err.value) for name in NAMES)
