"""The keyed random numbers: uniform, independent across people, days and uses; the same bits compiled or not."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from scipy import stats

from sim.model import draws
from sim.model.population import truncnorm_ppf

KEYS = draws.run_keys(np.random.default_rng(2026))


@njit(cache=False)
def _compiled_day(k0, k1, n, day):
    out = np.empty((n, draws.N_USES))
    for i in range(n):
        pk = draws.person_key(k0, i)
        for use in range(draws.N_USES):
            out[i, use] = draws.unit(pk, draws.day_key(k1, day, use))
    return out


def test_compiled_and_numpy_draws_are_the_same_bits():
    u, z = draws.day_uniforms(KEYS, 500, 17)
    c = _compiled_day(KEYS[0], KEYS[1], 500, 17)
    np.testing.assert_array_equal(u, c[:, :draws.N_UNIFORMS])
    np.testing.assert_allclose(z, [draws.normal(a, b) for a, b in c[:, [draws.U_NORMAL_A, draws.U_NORMAL_B]]],
                               rtol=1e-14)


def test_uniforms_are_uniform_and_independent():
    u = np.concatenate([draws.day_uniforms(KEYS, 2000, day)[0] for day in range(25)])  # 50,000 x 10
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3
    assert abs(u.mean() - 0.5) < 0.002 and abs(u.var() - 1 / 12) < 0.001
    corr = np.corrcoef(u.T)  # between uses
    assert np.abs(corr[np.triu_indices(draws.N_UNIFORMS, 1)]).max() < 0.02
    by_day = u.reshape(25, 2000, -1)
    assert abs(np.corrcoef(by_day[:-1, :, 0].ravel(), by_day[1:, :, 0].ravel())[0, 1]) < 0.02  # day to day
    assert abs(np.corrcoef(by_day[:, :-1, 0].ravel(), by_day[:, 1:, 0].ravel())[0, 1]) < 0.02  # neighbours
    counts, _ = np.histogram(u[:, 0], bins=50, range=(0, 1))
    assert stats.chisquare(counts).pvalue > 1e-3


def test_normals_are_standard_normal():
    z = np.concatenate([draws.day_uniforms(KEYS, 5000, day)[1] for day in range(10)])
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02


def test_keys_separate_runs_and_seeds_reproduce():
    other = draws.run_keys(np.random.default_rng(2027))
    a, b = draws.day_uniforms(KEYS, 1000, 3)[0], draws.day_uniforms(other, 1000, 3)[0]
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.03
    np.testing.assert_array_equal(draws.run_keys(np.random.default_rng(2026)), KEYS)
    # a person's numbers do not depend on how many people there are
    np.testing.assert_array_equal(draws.day_uniforms(KEYS, 10, 3)[0], a[:10])


@pytest.mark.parametrize("bounds", [(-2.5, 2.5), (-9.0, 1.0), (0.5, 3.0), (1.5, 9.0), (-3.0, -1.0)])
def test_truncated_normal_quantiles_match_scipy(bounds):
    u = np.random.default_rng(1).random(20_000)
    a, b = bounds
    np.testing.assert_allclose(truncnorm_ppf(u, a, b, 0.3, 0.2), stats.truncnorm.ppf(u, a, b, loc=0.3, scale=0.2),
                               rtol=0, atol=1e-12)
