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
    out, z = np.empty((n, draws.N_USES)), np.empty(n)
    for i in range(n):
        pk = draws.person_key(k0, i)
        for use in range(draws.N_USES):
            out[i, use] = draws.unit(pk, draws.day_key(k1, day, use))
        z[i] = draws.normal(pk, draws.day_key(k1, day, draws.U_NORMAL_A), draws.day_key(k1, day, draws.U_NORMAL_B))
    return out, z


def test_compiled_and_numpy_draws_are_the_same_bits():
    u, z = draws.day_uniforms(KEYS, 5000, 17)
    c, cz = _compiled_day(KEYS[0], KEYS[1], 5000, 17)
    np.testing.assert_array_equal(u, c[:, :draws.N_UNIFORMS])
    np.testing.assert_array_equal(z, cz)


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
    days = [draws.day_uniforms(KEYS, 100_000, day) for day in range(10)]
    z = np.concatenate([d[1] for d in days])
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 0.005 and abs(z.std() - 1) < 0.005
    edges = np.linspace(-4.0, 4.0, 81)
    counts, _ = np.histogram(z, bins=edges)
    expected = np.diff(stats.norm.cdf(edges))
    assert stats.chisquare(counts, expected * counts.sum() / expected.sum()).pvalue > 1e-3
    # the ziggurat's rare branches (wedges, and the tail beyond its last layer) give the right tail masses
    for t in (2.0, 3.0, draws.ZIG_R, 4.0):
        expected_n = z.size * 2 * stats.norm.sf(t)
        assert abs((np.abs(z) > t).sum() - expected_n) < 4 * np.sqrt(expected_n), t
    u = np.concatenate([d[0] for d in days])
    assert np.abs([np.corrcoef(u[:, k], np.abs(z))[0, 1] for k in range(draws.N_UNIFORMS)]).max() < 0.01


def test_ziggurat_layers_have_equal_area():
    x, f = draws.ZIG_X, lambda v: np.exp(-0.5 * v * v)
    layers = x[1:-1] * (f(x[2:]) - f(x[1:-1]))  # the rectangles above the base layer
    base = x[1] * f(x[1]) + np.sqrt(np.pi / 2) * 2 * stats.norm.sf(x[1])  # base rectangle and the tail
    np.testing.assert_allclose(layers, base, rtol=1e-6)
    assert 0.98 < draws.ZIG_INSIDE.mean() < 0.99  # the share of draws with no log, exp or cosine


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
