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
TWO_PI = 2.0 * np.pi


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


@njit(cache=True, inline="always")
def normal(u_a, u_b):
    """A standard normal deviate from two uniforms (Box-Muller)."""
    return np.sqrt(-2.0 * np.log1p(-u_a)) * np.cos(TWO_PI * u_b)


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
    """Standard normal deviates of participants 0..n-1 at one counter value (e.g. a week) (numpy)."""
    with np.errstate(over="ignore"):
        uses = np.array([U_NORMAL_A, U_NORMAL_B], dtype=np.uint64)
        dk = _mix_np(np.full(2, keys[1], dtype=np.uint64) ^ ((np.uint64(counter) << S4) | uses))
        u = (_mix_np(person_keys(keys, n)[:, None] + dk[None, :]) >> S11).astype(np.float64) * TO_UNIT
    return np.sqrt(-2.0 * np.log1p(-u[:, 0])) * np.cos(TWO_PI * u[:, 1])


def day_uniforms(keys: np.ndarray, n: int, day: int) -> tuple[np.ndarray, np.ndarray]:
    """Everyone's uniforms for one day, shape (n, N_UNIFORMS), and their normal deviates (numpy)."""
    with np.errstate(over="ignore"):
        uses = np.arange(N_USES, dtype=np.uint64)
        dk = _mix_np(np.full(N_USES, keys[1], dtype=np.uint64) ^ ((np.uint64(day) << S4) | uses))
        u = (_mix_np(person_keys(keys, n)[:, None] + dk[None, :]) >> S11).astype(np.float64) * TO_UNIT
    z = np.sqrt(-2.0 * np.log1p(-u[:, U_NORMAL_A])) * np.cos(TWO_PI * u[:, U_NORMAL_B])
    return u[:, :N_UNIFORMS], z
