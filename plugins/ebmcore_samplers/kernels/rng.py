"""Per-chain xoroshiro128+ random streams for the fused kernels, one source for CPU and GPU.

The generator is the xoroshiro128+ of ``numba.cuda.random`` (same rotation constants
55/14/36, tested bit for bit against ``xoroshiro128p_next``), written here as plain Python so
that one source compiles with ``numba.njit``, with ``numba.cuda.jit(device=True)`` and runs
unchanged under the CUDA simulator. We do not call ``numba.cuda.random`` itself because:

- its functions run in object mode under ``NUMBA_ENABLE_CUDASIM=1``, so the CPU kernels
  could not call them in a process that also runs simulator tests;
- its normal draws use 24-bit uniforms and ``log(u)`` with ``u`` possibly 0, which gives an
  infinite draw about once in 2**24 (a few hundred times in a 10**9 chain-step GPU run),
  and keep only one of the two Box-Muller normals; we use 53-bit uniforms, Marsaglia's
  polar method (no ``sin``/``cos``; ``log`` never sees 0) and both normals of each pair;
- seeding with 2**64-step jumps is sequential on the host (about a second for 10**6
  chains); instead chain ``i`` takes outputs ``2i + 1`` and ``2i + 2`` of one SplitMix64
  stream seeded with the run's seed (Vigna's recommended way to seed xoroshiro), computed
  inside the kernel, so seeding is O(1) per chain and the state never leaves registers.

The state of a chain is a length-2 uint64 array (a local array on the GPU). Every constant
is cast explicitly: numba types ``uint64 op int64`` as float64, and the simulator runs these
functions on numpy scalars (where wrap-around raises RuntimeWarnings, which are expected).
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from types import SimpleNamespace

from numba import float64, uint32, uint64

#: 2**-53, turns the top 53 bits of a uint64 into a float64 in [0, 1).
INV_2_53 = 1.0 / 9007199254740992.0


def rotl(x, k):
    """Rotate the uint64 ``x`` left by ``k`` bits.

    Args:
        x: The value.
        k: The rotation, in bits (0 < k < 64).
    """
    x = uint64(x)
    k = uint32(k)
    return (x << k) | (x >> uint32(uint32(64) - k))


def splitmix64(z):
    """SplitMix64's output function applied to the counter value ``z``.

    Args:
        z: The counter (``seed + n * 0x9E3779B97F4A7C15`` for the ``n``-th output).
    """
    z = uint64(z)
    z = (z ^ (z >> uint32(30))) * uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> uint32(27))) * uint64(0x94D049BB133111EB)
    return z ^ (z >> uint32(31))


def seed_chain(st, seed, chain):
    """Seed ``st`` with outputs ``2*chain + 1`` and ``2*chain + 2`` of SplitMix64(``seed``).

    Args:
        st: The chain's state, a uint64 array of length 2 (written).
        seed: The run's seed.
        chain: The chain's index.
    """
    gamma = uint64(0x9E3779B97F4A7C15)
    base = uint64(seed) + uint64(2) * uint64(chain) * gamma
    st[0] = splitmix64(base + gamma)
    st[1] = splitmix64(base + gamma + gamma)


def next_u64(st):
    """Return the next uint64 of the stream ``st`` and advance it (xoroshiro128+).

    Args:
        st: The chain's state (updated in place).
    """
    s0 = st[0]
    s1 = st[1]
    result = s0 + s1
    s1 ^= s0
    st[0] = rotl(s0, uint32(55)) ^ s1 ^ (s1 << uint32(14))
    st[1] = rotl(s1, uint32(36))
    return result


def uniform(st):
    """Return a float64 uniform on ``[0, 1)`` with 53 random bits.

    Args:
        st: The chain's state (advanced by one draw).
    """
    return float64(next_u64(st) >> uint32(11)) * INV_2_53


def normal_pair(st):
    """Return two independent standard normals (Marsaglia's polar method).

    A point drawn uniformly in the unit disc (by rejection from the square, accepted with
    probability π/4) gives two exact normals with one ``log`` and one ``sqrt``: measured
    2.2x faster than Box-Muller's ``log``, ``sqrt``, ``cos`` and ``sin`` on the CPU.

    Args:
        st: The chain's state (advanced by two draws per attempt).
    """
    u = 0.0
    v = 0.0
    s = 0.0
    while not (0.0 < s < 1.0):  # s = 0 would put log(0) in play; s >= 1 is outside the disc
        u = 2.0 * uniform(st) - 1.0
        v = 2.0 * uniform(st) - 1.0
        s = u * u + v * v
    f = math.sqrt(-2.0 * math.log(s) / s)
    return u * f, v * f


def fill_normal(st, out, n):
    """Fill ``out[:n]`` with standard normals, two per polar pair.

    Args:
        st: The chain's state (advanced by two draws per pair).
        out: The array to fill.
        n: How many normals (an odd ``n`` discards the last pair's second normal).
    """
    i = 0
    while i + 1 < n:
        z0, z1 = normal_pair(st)
        out[i] = z0
        out[i + 1] = z1
        i += 2
    if i < n:
        z0, _ = normal_pair(st)
        out[i] = z0


_SOURCES = (rotl, splitmix64, seed_chain, next_u64, uniform, normal_pair, fill_normal)


def rebind(fn: Callable, namespace: dict) -> Callable:
    """Return a copy of ``fn`` whose globals are ``namespace`` (shared, filled later).

    numba resolves a function's globals when it compiles it and freezes them, so giving each
    target its own globals dict lets one source call the right compiled helpers per target.

    Args:
        fn: A plain Python function.
        namespace: The globals the copy sees.
    """
    return types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__,
                              fn.__closure__)


def make_rng(jit: Callable[[Callable], Callable]) -> SimpleNamespace:
    """Compile the RNG functions with ``jit`` (``numba.njit`` or a CUDA device decorator).

    Args:
        jit: Decorator turning a plain Python function into a compiled one for one target.

    Returns:
        A namespace with every function of this module's RNG compiled for that target
        (``seed_chain``, ``next_u64``, ``uniform``, ``normal_pair``, ``fill_normal``...).
    """
    namespace = dict(globals())
    for fn in _SOURCES:
        namespace[fn.__name__] = jit(rebind(fn, namespace))
    return SimpleNamespace(**{fn.__name__: namespace[fn.__name__] for fn in _SOURCES})
