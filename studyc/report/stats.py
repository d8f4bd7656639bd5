"""Estimates with uncertainty, propagated through a check's arithmetic.

An arm's metric is a sample over its seeds. Its mean is an Estimate: a point, variance
components (one per independent sample, each with its degrees of freedom, so that
combinations get Welch-Satterthwaite degrees of freedom), and, for the bootstrap method,
resampled draws. Arithmetic on Estimates propagates all three (delta method for products
and quotients). ``slack`` is exact, non-statistical width (counts of undecided verdicts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Estimate:
    point: float
    parts: tuple[tuple[float, float], ...] = ()  # (variance, degrees of freedom)
    draws: np.ndarray | None = field(default=None, compare=False)
    slack_lo: float = 0.0
    slack_hi: float = 0.0
    missing: tuple[str, ...] = ()  # names whose data is missing, failed or NaN
    n: int | None = None  # sample size, for a single arm's metric

    # ---------------------------------------------------------------- construction

    @staticmethod
    def const(value: float) -> "Estimate":
        return Estimate(float(value))

    @staticmethod
    def absent(name: str) -> "Estimate":
        return Estimate(math.nan, missing=(name,))

    @staticmethod
    def sample(values: list[float] | np.ndarray, rng_draws: np.ndarray | None = None) -> "Estimate":
        """The mean of a sample of finite values. ``rng_draws``: bootstrap resample means."""
        arr = np.asarray(values, dtype=float)
        n = len(arr)
        mean = float(arr.mean())
        parts: tuple = ()
        if n >= 2:
            var = float(arr.var(ddof=1)) / n
            if var > 0:
                parts = ((var, float(n - 1)),)
        return Estimate(mean, parts, draws=rng_draws, n=n)

    # ---------------------------------------------------------------- properties

    @property
    def se(self) -> float:
        return math.sqrt(sum(v for v, _ in self.parts))

    @property
    def df(self) -> float:
        total = sum(v for v, _ in self.parts)
        if total == 0:
            return math.inf
        denom = sum(v * v / d for v, d in self.parts if d > 0)
        return total * total / denom if denom > 0 else math.inf

    @property
    def is_missing(self) -> bool:
        return bool(self.missing) or not math.isfinite(self.point)

    def interval(self, confidence: float) -> tuple[float, float]:
        if self.draws is not None and len(self.draws):
            alpha = (1 - confidence) / 2
            lo, hi = np.quantile(self.draws, [alpha, 1 - alpha])
            lo, hi = min(float(lo), self.point), max(float(hi), self.point)
        elif self.parts:
            half = t_quantile(confidence, self.df) * self.se
            lo, hi = self.point - half, self.point + half
        else:
            lo = hi = self.point
        return lo - self.slack_lo, hi + self.slack_hi

    def half_width(self, confidence: float) -> float:
        lo, hi = self.interval(confidence)
        return (hi - lo) / 2

    def p_above(self, threshold: float = 0.0) -> float:
        """One-sided p-value for 'the true value is above ``threshold``' (small = confident)."""
        if self.draws is not None and len(self.draws):
            return float(np.mean(self.draws <= threshold))
        if not self.parts:
            return 0.0 if self.point > threshold or (self.point == threshold) else 1.0
        z = (self.point - threshold) / self.se
        return float(sps.t.sf(z, self.df)) if math.isfinite(self.df) else float(sps.norm.sf(z))

    # ---------------------------------------------------------------- arithmetic

    def _merge(self, other: "Estimate", point: float, scale_self: float, scale_other: float,
               draws: np.ndarray | None) -> "Estimate":
        parts = tuple((v * scale_self ** 2, d) for v, d in self.parts) + tuple((v * scale_other ** 2, d) for v, d in other.parts)
        parts = tuple(p for p in parts if p[0] > 0 and math.isfinite(p[0]))
        # slack: the widths move with the sign of each side's coefficient
        lo = hi = 0.0
        for est, scale in ((self, scale_self), (other, scale_other)):
            a, b = est.slack_lo * abs(scale), est.slack_hi * abs(scale)
            lo, hi = (lo + a, hi + b) if scale >= 0 else (lo + b, hi + a)
        return Estimate(point, parts, draws, lo, hi, self.missing + other.missing)

    def _draws(self, other: "Estimate", op) -> np.ndarray | None:
        if self.draws is None and other.draws is None:
            return None
        a = self.draws if self.draws is not None else self.point
        b = other.draws if other.draws is not None else other.point
        with np.errstate(all="ignore"):
            return op(a, b)

    def __add__(self, other: "Estimate") -> "Estimate":
        return self._merge(other, self.point + other.point, 1.0, 1.0, self._draws(other, np.add))

    def __sub__(self, other: "Estimate") -> "Estimate":
        return self._merge(other, self.point - other.point, 1.0, -1.0, self._draws(other, np.subtract))

    def __mul__(self, other: "Estimate") -> "Estimate":
        return self._merge(other, self.point * other.point, other.point, self.point, self._draws(other, np.multiply))

    def __truediv__(self, other: "Estimate") -> "Estimate":
        if other.point == 0:
            return Estimate(math.nan, missing=self.missing + other.missing + ("division by zero",))
        b = other.point
        return self._merge(other, self.point / b, 1 / b, -self.point / (b * b), self._draws(other, np.divide))

    def __neg__(self) -> "Estimate":
        draws = -self.draws if self.draws is not None else None
        return Estimate(-self.point, self.parts, draws, self.slack_hi, self.slack_lo, self.missing, self.n)

    def apply(self, fn, derivative: float) -> "Estimate":
        """A smooth function of one estimate (delta method)."""
        parts = tuple((v * derivative ** 2, d) for v, d in self.parts)
        draws = fn(self.draws) if self.draws is not None else None
        return Estimate(float(fn(np.float64(self.point))), parts, draws, self.slack_lo, self.slack_hi, self.missing)


def t_quantile(confidence: float, df: float) -> float:
    q = 1 - (1 - confidence) / 2
    return float(sps.norm.ppf(q)) if not math.isfinite(df) else float(sps.t.ppf(q, df))


def bootstrap_means(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Resampled means of ``values`` for a fixed index matrix [B, n] (shared by an arm's
    metrics, so metrics of the same runs stay paired)."""
    return values[index].mean(axis=1)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm step-down adjusted p-values."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    adjusted: dict[str, float] = {}
    running = 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * pvalues[key]))
        adjusted[key] = running
    return adjusted


def describe(values: list[float], confidence: float) -> dict[str, float | int | None]:
    """n, mean, std and the t confidence interval of a sample's finite values."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(arr)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_lo": None, "ci_hi": None}
    est = Estimate.sample(arr)
    lo, hi = est.interval(confidence)
    return {"n": n, "mean": est.point, "std": float(arr.std(ddof=1)) if n > 1 else 0.0, "ci_lo": lo, "ci_hi": hi}
