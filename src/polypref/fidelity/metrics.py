"""Distances between two answer distributions on one ordinal scale (option 0 .. K-1, in scale order)."""

from __future__ import annotations

import numpy as np


def distribution(options: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray | None:
    """Weighted share of each of ``k`` options; ``options`` holds option numbers (-1: no answer, left out).
    None when nothing was answered."""
    answered = options >= 0
    mass = np.bincount(options[answered], weights=weights[answered], minlength=k).astype(np.float64)
    total = mass.sum()
    return mass / total if total > 0 else None


def tvd(p: np.ndarray, q: np.ndarray) -> float:
    """Total variation distance: the share of answers that would have to change for p to become q (0..1)."""
    return float(0.5 * np.abs(p - q).sum())


def alignment(p: np.ndarray, q: np.ndarray) -> float:
    """OpinionQA's alignment: 1 - the Wasserstein distance between p and q on the ordinal scale, divided by the
    largest possible (K - 1), so 1 is identical and 0 is all answers at opposite ends. Unlike TVD, an answer one
    step off costs less than one at the far end."""
    k = len(p)
    if k < 2:
        return 1.0
    w1 = np.abs(np.cumsum(p)[:-1] - np.cumsum(q)[:-1]).sum()
    return float(1.0 - w1 / (k - 1))
