"""Cross-validation over VMs and time (docs/forecast.md, "Accuracy").

Folds of whole VMs (a seeded permutation dealt round-robin) crossed with two blocks of
time over the scored period (targets from the start of day 8, the first with a
last-week value, to the end, cut in the middle). A test cell (VM fold f, block b) is
forecast by a model trained only on the other folds' VMs and only on samples whose
every target lies in the other block, at least `purge` steps away from b. So no VM and
no target instant is on both sides of a split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def vm_folds(n_vms: int, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint, sorted index arrays covering range(n_vms), sizes differing by <= 1."""
    order = np.random.default_rng(seed).permutation(n_vms)
    return [np.sort(order[i::k]) for i in range(k)]


@dataclass(frozen=True)
class TimeBlocks:
    """Scored targets are rows [start, end); block 0 is [start, split), block 1
    [split, end)."""

    start: int
    split: int
    end: int
    purge: int

    @staticmethod
    def halves(n_rows: int, start: int, purge: int) -> "TimeBlocks":
        return TimeBlocks(start, start + (n_rows - start) // 2, n_rows, purge)

    def test_rows(self, block: int) -> tuple[int, int]:
        return (self.start, self.split) if block == 0 else (self.split, self.end)

    def train_origins(self, block: int, h_min: int, h_max: int, first_origin: int = 0) -> np.ndarray:
        """Origins t whose targets t+h_min .. t+h_max all lie in the other block's side,
        at least `purge` rows from test block `block`: for block 0 (the earlier),
        t + h_min >= split + purge; for block 1, t + h_max < split - purge. Samples
        before `start` (targets without a last-week value) train block 1's models."""
        if block == 0:
            lo = self.split + self.purge - h_min
            return np.arange(max(lo, first_origin), self.end - h_max)
        hi = self.split - self.purge - h_max
        return np.arange(first_origin, max(hi, first_origin))

    def block_of(self, rows: np.ndarray) -> np.ndarray:
        """Block of each target row: 0, 1, or -1 (not scored)."""
        rows = np.asarray(rows)
        return np.where((rows >= self.start) & (rows < self.split), 0,
                        np.where((rows >= self.split) & (rows < self.end), 1, -1))
