"""Platt scaling (ridge logistic regression) and isotonic regression (pool-adjacent-violators): the two fitted
maps a calibrator chains (``analysis.calibration``), features to a score and the score to a probability.

Plain numpy; a fitted map decides every preference's calibrated confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Platt:
    """Logistic regression on standardised features: ``score = bias + weights . (x - mean) / scale``."""

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.bias + ((x - self.mean) / self.scale) @ self.weights

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-self.score(x)))


def fit_platt(x: np.ndarray, y: np.ndarray, ridge: float = 1.0, iterations: int = 100) -> Platt:
    """Newton's method on the L2-penalised log-likelihood. The ridge keeps weights finite when a feature
    separates the classes (the simulator's debiased log-odds nearly does), and the bias is not penalised."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[0] != len(y):
        x = x.T
    y = np.asarray(y, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = np.column_stack([np.ones(len(y)), (x - mean) / scale])
    beta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], ridge)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(z @ beta)))
        gradient = z.T @ (p - y) + penalty * beta
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(z.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return Platt(weights=beta[1:], bias=float(beta[0]), mean=mean, scale=scale)


def fit_platt_increasing(x: np.ndarray, y: np.ndarray, ridge: float = 1.0) -> Platt:
    """``fit_platt`` with every weight >= 0: more evidence for the chosen response (any feature) never lowers its
    probability. Correlated features can take a negative weight in a free fit (one corrects another in-sample);
    such a feature is left out (weight 0) and the rest refitted, until none is negative."""
    x = np.asarray(x, dtype=np.float64)
    active = list(range(x.shape[1]))
    while True:
        platt = fit_platt(x[:, active], y, ridge)
        if platt.weights.min() >= 0 or len(active) == 1:
            break
        active.pop(int(np.argmin(platt.weights)))
    weights, mean, scale = np.zeros(x.shape[1]), x.mean(axis=0), np.ones(x.shape[1])
    weights[active], mean[active], scale[active] = np.maximum(platt.weights, 0), platt.mean, platt.scale
    return Platt(weights=weights, bias=platt.bias, mean=mean, scale=scale)


@dataclass(frozen=True)
class Isotonic:
    """A non-decreasing piecewise-linear map through knots (x ascending); flat beyond the ends."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, s: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(s, dtype=np.float64), self.x, self.y)


def fit_isotonic(x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Isotonic:
    """Pool adjacent violators: the least-squares non-decreasing fit of ``y`` on ``x``.

    Equal ``x`` values are pooled first (one fitted value per input value). Each final block contributes two
    knots, at its smallest and largest ``x``, so predictions are flat inside a block and linear between blocks.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=np.float64)
    xs, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=w * y)
    weights = np.bincount(inverse, weights=w)
    # blocks as a stack: [sum of w*y, sum of w, first x index, last x index]
    blocks: list[list[float]] = []
    for i in range(len(xs)):
        blocks.append([sums[i], weights[i], i, i])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s, n, _, last = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
            blocks[-1][3] = last
    knots_x: list[float] = []
    knots_y: list[float] = []
    for s, n, first, last in blocks:
        for index in sorted({int(first), int(last)}):
            knots_x.append(float(xs[index]))
            knots_y.append(s / n)
    return Isotonic(np.array(knots_x), np.array(knots_y))
