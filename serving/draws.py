"""Exploration draws: where the arbiter's uniform numbers come from.

`rng` of a decision may be a `numpy.random.Generator` (its `random()` gives the draw of each rank)
or an integer seed; with a seed the draw at rank r (0-based) is `uniform(seed, r)`, a SplitMix64
hash of (seed, r) - counter-based, so a block computes every customer's draws at once and a
customer gets the same draws alone or in a block. The decision engine seeds each customer by
(customer_id, channel, now) (`decision_seed`): random across customers and moments, reproducible
for one of them, which is what makes online == batch testable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

import numpy as np

#: Draws for exploration: (rank, rows of the block still choosing) -> one uniform [0, 1) per row.
Draws = Callable[[int, np.ndarray], np.ndarray]

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_M64 = 2**64 - 1


def uniform(seeds: np.ndarray | int, rank: int) -> np.ndarray:
    """The exploration draw at `rank` for each seed: SplitMix64(seed + (rank + 1) x golden) / 2^64, in [0, 1).

    Counter-based (no generator state), so the draws of a whole block are a few array operations
    and equal to those of each customer alone.
    """
    z = np.atleast_1d(np.asarray(seeds, dtype=np.uint64)).copy()
    step = np.uint64(((rank + 1) * 0x9E3779B97F4A7C15) % 2**64)
    z += step
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _uniform_one(seed: int, rank: int) -> float:
    """`uniform` of one seed in plain Python integers (a one-row block: no array overhead)."""
    z = (seed + (rank + 1) * 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    z ^= z >> 31
    return (z >> 11) * (1.0 / 9007199254740992.0)


def seeded_draws(seeds: np.ndarray) -> Draws:
    """`Draws` of a block whose row i explores with `seeds[i]` (see `uniform`)."""
    seeds = np.asarray(seeds, dtype=np.uint64)
    if len(seeds) == 1:
        one = int(seeds[0])
        return lambda rank, rows: np.array([_uniform_one(one, rank)] * len(rows), dtype=np.float64)
    return lambda rank, rows: uniform(seeds[rows], rank)


def generator_draws(rng: np.random.Generator) -> Draws:
    """`Draws` from a generator, one `rng.random()` per row and rank, in row order."""
    return lambda rank, rows: np.array([rng.random() for _ in range(len(rows))], dtype=np.float64)


def decision_seed(customer_id: str, channel: str, now: datetime) -> int:
    """The exploration seed of one customer's decision on `channel` at `now` (naive UTC)."""
    digest = hashlib.blake2b(f"{customer_id}|{channel}|{now.isoformat()}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


class RowDraws:
    """One row's draws of a block, as the `random()` of a generator (for `selection.select_row`)."""

    def __init__(self, draws: Draws, row: int) -> None:
        self._draws, self._row, self._rank = draws, np.array([row]), 0

    def random(self) -> float:
        u = float(self._draws(self._rank, self._row)[0])
        self._rank += 1
        return u
