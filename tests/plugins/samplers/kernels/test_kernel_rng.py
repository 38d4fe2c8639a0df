"""The kernels' xoroshiro128+ streams: the numba.cuda.random generator, seeded per chain."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from ebmcore_samplers.kernels import factory, rng

MASK = (1 << 64) - 1


def splitmix64_reference(z: int) -> int:
    """SplitMix64's output function on Python ints (Vigna's C code)."""
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


@pytest.fixture(scope="module")
def cpu_rng():
    return factory.target_rng("cpu")


@numba.njit
def _draw_u64(next_u64, st, n):
    out = np.empty(n, np.uint64)
    for k in range(n):
        out[k] = next_u64(st)
    return out


def test_stream_is_numba_cuda_random_xoroshiro128p_bit_for_bit(cpu_rng) -> None:
    from numba.cuda import random as cuda_random

    st = np.empty(2, np.uint64)
    cpu_rng.seed_chain(st, np.uint64(123456789), 5)
    states = np.zeros(1, dtype=cuda_random.xoroshiro128p_dtype)
    states[0]["s0"], states[0]["s1"] = st[0], st[1]
    ours = _draw_u64(cpu_rng.next_u64, st.copy(), 1000)
    theirs = np.array([cuda_random.xoroshiro128p_next(states, 0) for _ in range(1000)],
                      dtype=np.uint64)
    assert np.array_equal(ours, theirs)


def test_chain_seeding_is_consecutive_splitmix64_outputs(cpu_rng) -> None:
    seed = 2**62 + 12345
    gamma = 0x9E3779B97F4A7C15
    for chain in (0, 1, 7, 10**6):
        st = np.empty(2, np.uint64)
        cpu_rng.seed_chain(st, np.uint64(seed), chain)
        expected = [splitmix64_reference(seed + (2 * chain + k) * gamma) for k in (1, 2)]
        assert [int(st[0]), int(st[1])] == expected


def test_compiled_and_plain_python_agree(cpu_rng) -> None:
    # The plain functions are what the CUDA simulator runs; the compiled ones what njit runs.
    a = np.empty(2, np.uint64)
    b = np.empty(2, np.uint64)
    cpu_rng.seed_chain(b, np.uint64(99), 3)
    with np.errstate(over="ignore"):  # numpy warns on the uint64 wrap-around we rely on
        rng.seed_chain(a, np.uint64(99), 3)
        assert np.array_equal(a, b)
        plain = [rng.normal_pair(a) for _ in range(50)]
    compiled = [cpu_rng.normal_pair(b) for _ in range(50)]
    assert plain == compiled
    assert np.array_equal(a, b)  # both streams advanced identically


@numba.njit
def _normals(fill_normal, seed_chain, n_chains, per_chain):
    out = np.empty((n_chains, per_chain))
    st = np.empty(2, np.uint64)
    for c in range(n_chains):
        seed_chain(st, np.uint64(2024), c)
        fill_normal(st, out[c], per_chain)
    return out


@numba.njit
def _uniforms(uniform, seed_chain, n):
    out = np.empty(n)
    st = np.empty(2, np.uint64)
    seed_chain(st, np.uint64(7), 0)
    for k in range(n):
        out[k] = uniform(st)
    return out


def test_uniforms_lie_in_unit_interval_with_the_right_moments(cpu_rng) -> None:
    u = _uniforms(cpu_rng.uniform, cpu_rng.seed_chain, 200_000)
    assert u.min() >= 0.0 and u.max() < 1.0
    n = u.size
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs((u**2).mean() - 1 / 3) < 5 * math.sqrt((1 / 5 - 1 / 9) / n)


def test_normals_are_standard_and_chains_independent(cpu_rng) -> None:
    # 3 normals per chain: pairs and the odd leftover both get used.
    z = _normals(cpu_rng.fill_normal, cpu_rng.seed_chain, 40_000, 3)
    assert np.isfinite(z).all()
    flat = z.ravel()
    n = flat.size
    assert abs(flat.mean()) < 5 / math.sqrt(n)
    assert abs((flat**2).mean() - 1) < 5 * math.sqrt(2 / n)
    assert abs((flat**4).mean() - 3) < 5 * math.sqrt(96 / n)
    # Neighbouring chains (consecutive seeds) and the two halves of a pair are uncorrelated.
    for a, b in ((z[:-1, 0], z[1:, 0]), (z[:, 0], z[:, 1]), (z[:, 1], z[:, 2])):
        assert abs(np.mean(a * b)) < 5 / math.sqrt(a.size)


def test_normals_follow_the_normal_law_in_distribution(cpu_rng) -> None:
    # Moments alone would miss a wrong shape (the polar method's rejection step, say):
    # Kolmogorov-Smirnov against the exact normal CDF, on both members of each pair.
    stats = pytest.importorskip("scipy.stats")
    z = _normals(cpu_rng.fill_normal, cpu_rng.seed_chain, 50_000, 2)
    for column in (z[:, 0], z[:, 1]):
        assert stats.kstest(column, "norm").pvalue > 1e-3
    # The pair's radius² is chi-square(2), which pins the joint law, not only the marginals.
    assert stats.kstest((z**2).sum(1), "chi2", args=(2,)).pvalue > 1e-3
