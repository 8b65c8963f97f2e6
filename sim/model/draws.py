"""Random numbers keyed by (run, participant, day, use): a counter-based generator.

Every random number a participant uses on a day is a hash of the run's two 64-bit keys, the
participant's row, the day and the use (a column `U_*`), so it does not depend on what anyone else
did, on the order of computation, or on which runs are advanced together (stacked): common random
numbers between arms and run-alone == run-stacked hold by construction, and a number is computed
only when a mechanism needs it. The hash is SplitMix64's finalizer (Steele, Lea & Flood 2014),
applied twice; docs/decisions.md says why and tests/test_draws.py checks the output's moments and
independence. The compiled kernel and these numpy functions give the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Uses of a uniform in a participant's day; U_NORMAL_A and U_NORMAL_B make the day's normal deviate.
(U_ACT, U_DROP, U_EVENT, U_EVENT_SIZE, U_PILL, U_STOP, U_UPTAKE, U_RELAPSE, U_EPISODE, U_QUIT,
 U_NORMAL_A, U_NORMAL_B) = range(12)
N_UNIFORMS = 10  # the uniforms the update uses directly (the last two make the normal)
N_USES = 12

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
S30, S27, S31, S11, S4 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11), np.uint64(4)
TO_UNIT = 2.0 ** -53


def run_keys(rng: np.random.Generator) -> np.ndarray:
    """Two 64-bit keys for a run, taken from its generator (so the seed decides them)."""
    return rng.integers(0, np.iinfo(np.uint64).max, size=2, dtype=np.uint64, endpoint=True)


@njit(cache=True, inline="always")
def mix(z):
    """SplitMix64's output function of z + the golden gamma (a bijection of 64-bit words)."""
    z = z + GOLDEN
    z = (z ^ (z >> S30)) * M1
    z = (z ^ (z >> S27)) * M2
    return z ^ (z >> S31)


@njit(cache=True, inline="always")
def person_key(k0, row):
    """The key of participant `row` in the run with first key k0."""
    return mix(k0 ^ mix(np.uint64(row)))


@njit(cache=True, inline="always")
def day_key(k1, day, use):
    """The key of one use of a uniform on one day, in the run with second key k1."""
    return mix(k1 ^ ((np.uint64(day) << S4) | np.uint64(use)))


@njit(cache=True, inline="always")
def unit(pk, dk):
    """The uniform on [0, 1) for a participant key and a day-use key."""
    return float(mix(pk + dk) >> S11) * TO_UNIT


def _ziggurat(blocks: int, r: float, v: float) -> tuple[np.ndarray, np.ndarray]:
    """The ziggurat's layer edges x[0..blocks] (x[1] = r, the start of the tail) and the share of each
    layer inside the density, x[i + 1] / x[i] (Doornik 2005, from Marsaglia & Tsang 2000)."""
    x = np.zeros(blocks + 1)
    f = np.exp(-0.5 * r * r)
    x[0], x[1] = v / f, r
    for i in range(2, blocks):
        x[i] = np.sqrt(-2.0 * np.log(v / x[i - 1] + f))
        f = np.exp(-0.5 * x[i] * x[i])
    return x, x[1:] / x[:-1]


ZIG_R = 3.6541528853610088  # 256 layers of equal area v (Marsaglia & Tsang 2000)
ZIG_X, ZIG_INSIDE = _ziggurat(256, ZIG_R, 0.00492867323399)
LOW8 = np.uint64(255)


@njit(cache=True, inline="always")
def _signed(h):
    return 2.0 * (float(h >> S11) * TO_UNIT) - 1.0


@njit(cache=True)
def _normal_slow(h, pk, dkb):
    """The ziggurat's rare cases (about 1 draw in 100): the wedges and the tail, with further uniforms from
    the counter stream mix(pk + dkb + c * GOLDEN), c = 1, 2, ..."""
    c = np.uint64(0)
    while True:
        i = int(h & LOW8)
        u = _signed(h)
        if abs(u) < ZIG_INSIDE[i]:
            return u * ZIG_X[i]
        if i == 0:  # beyond r: Marsaglia's tail method
            while True:
                c += np.uint64(1)
                a = np.log1p(-float(mix(pk + dkb + c * GOLDEN) >> S11) * TO_UNIT) / ZIG_R
                c += np.uint64(1)
                b = np.log1p(-float(mix(pk + dkb + c * GOLDEN) >> S11) * TO_UNIT)
                if -2.0 * b >= a * a:
                    return a - ZIG_R if u < 0 else ZIG_R - a
        x = u * ZIG_X[i]
        f0 = np.exp(-0.5 * (ZIG_X[i] * ZIG_X[i] - x * x))
        f1 = np.exp(-0.5 * (ZIG_X[i + 1] * ZIG_X[i + 1] - x * x))
        c += np.uint64(1)
        if f1 + float(mix(pk + dkb + c * GOLDEN) >> S11) * TO_UNIT * (f0 - f1) < 1.0:
            return x
        c += np.uint64(1)
        h = mix(pk + dkb + c * GOLDEN)


@njit(cache=True, inline="always")
def normal(pk, dka, dkb):
    """A standard normal deviate for a participant key and two day-use keys: the ziggurat (256 layers) on
    one hashed word (8 bits pick the layer, the top 53 the point), which needs no log or cosine in the
    99% of draws that fall inside a layer."""
    h = mix(pk + dka)
    i = int(h & LOW8)
    u = _signed(h)
    if abs(u) < ZIG_INSIDE[i]:
        return u * ZIG_X[i]
    return _normal_slow(h, pk, dkb)


@njit(cache=True)
def normal_each(pks, dka, dkb):
    """normal(pk, dka, dkb) for each participant key in pks (for numpy callers: the same bits)."""
    out = np.empty(pks.shape[0])
    for i in range(pks.shape[0]):
        out[i] = normal(pks[i], dka, dkb)
    return out


def _mix_np(z: np.ndarray) -> np.ndarray:
    z = z + GOLDEN
    z = (z ^ (z >> S30)) * M1
    z = (z ^ (z >> S27)) * M2
    return z ^ (z >> S31)


def person_keys(keys: np.ndarray, n: int) -> np.ndarray:
    """The keys of participants 0..n-1 of a run (numpy; the same bits as `person_key`)."""
    return _mix_np(keys[0] ^ _mix_np(np.arange(n, dtype=np.uint64)))


def keys_from_seed(seed: int) -> np.ndarray:
    """Two 64-bit keys from an integer seed (for streams shared by every arm, such as rater errors)."""
    return np.random.SeedSequence(seed).generate_state(2, np.uint64)


def normals(keys: np.ndarray, n: int, counter: int) -> np.ndarray:
    """Standard normal deviates of participants 0..n-1 at one counter value (e.g. a week)."""
    with np.errstate(over="ignore"):
        uses = np.array([U_NORMAL_A, U_NORMAL_B], dtype=np.uint64)
        dk = _mix_np(np.full(2, keys[1], dtype=np.uint64) ^ ((np.uint64(counter) << S4) | uses))
    return normal_each(person_keys(keys, n), dk[0], dk[1])


def day_uniforms(keys: np.ndarray, n: int, day: int) -> tuple[np.ndarray, np.ndarray]:
    """Everyone's uniforms for one day, shape (n, N_UNIFORMS), and their normal deviates (numpy)."""
    with np.errstate(over="ignore"):
        uses = np.arange(N_USES, dtype=np.uint64)
        dk = _mix_np(np.full(N_USES, keys[1], dtype=np.uint64) ^ ((np.uint64(day) << S4) | uses))
        pks = person_keys(keys, n)
        u = (_mix_np(pks[:, None] + dk[None, :N_UNIFORMS]) >> S11).astype(np.float64) * TO_UNIT
    return u, normal_each(pks, dk[U_NORMAL_A], dk[U_NORMAL_B])
