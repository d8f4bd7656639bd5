"""Estimates with uncertainty, propagated through a check's arithmetic.

An arm's metric is a sample over its seeds; its mean is an Estimate. The uncertainty is
kept as influence vectors, one per independent sample (an arm's runs): the mean of x
over runs i contributes (x_i - mean) / n. Arithmetic combines them linearly (the delta
method for products and quotients), so an arm that appears twice in a check (a ratio
(a - b) / b), or two metrics of the same runs (a.x - a.y, paired), are handled exactly;
independent samples give Welch-Satterthwaite degrees of freedom. With the bootstrap
method an Estimate also carries resampled draws (a fixed resampling per sample, so
metrics of the same runs stay paired). ``slack`` is exact, non-statistical width (the
undecided verdicts a count() may still gain).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Hashable

import numpy as np

MAX_MORE_SEEDS = 1000  # beyond this, "more seeds" is no longer advice


@dataclass(frozen=True)
class Estimate:
    point: float
    parts: dict[Hashable, np.ndarray] = field(default_factory=dict, compare=False)  # sample -> influence
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
    def sample(values: list[float] | np.ndarray, key: Hashable = "sample", draws: np.ndarray | None = None) -> "Estimate":
        """The mean of a sample of finite values; ``key`` names the sample (its runs).
        The mean is exact (``math.fsum``, kept within the values), so identical values
        have their own value as mean and no spread: a tie on a threshold stays a tie."""
        arr = np.asarray(values, dtype=float)
        n = len(arr)
        lo, hi = float(arr.min()), float(arr.max())
        if lo == hi:
            return Estimate(lo, n=n)
        mean = exact_mean(arr.tolist(), lo, hi)
        return Estimate(mean, {key: (arr - mean) / n}, draws=draws, n=n)

    def point_only(self) -> "Estimate":
        """The point estimate without its statistical width (judging on the point)."""
        return Estimate(self.point, slack_lo=self.slack_lo, slack_hi=self.slack_hi, missing=self.missing, n=self.n)

    # ---------------------------------------------------------------- properties

    @cached_property
    def _components(self) -> list[tuple[float, int]]:
        """(variance, sample size) of each independent sample's contribution; a variance
        past float range is infinite (the interval is then unbounded, never a point)."""
        out = []
        for infl in self.parts.values():
            n = len(infl)
            with np.errstate(over="ignore", invalid="ignore"):
                var = float(n / (n - 1) * np.dot(infl, infl))
            if var > 0 or math.isnan(var):
                out.append((var if var == var else math.inf, n))
        return out

    @cached_property
    def se(self) -> float:
        return math.sqrt(sum(v for v, _ in self._components))

    @cached_property
    def df(self) -> float:
        return welch_df([(v, n - 1) for v, n in self._components])

    @property
    def is_missing(self) -> bool:
        return bool(self.missing) or not math.isfinite(self.point)

    @property
    def uncertain(self) -> bool:
        """Whether the estimate has statistical width (not a constant or a single run)."""
        return self.draws is not None or bool(self._components)

    def interval(self, confidence: float) -> tuple[float, float]:
        if self.draws is not None and len(self.draws):
            alpha = (1 - confidence) / 2
            # inverted_cdf: a bound is a draw itself, so `lo >= t` exactly when fewer than
            # alpha of the draws fall below t (the p-value of p_above, from the same draws)
            lo, hi = np.quantile(self.draws, [alpha, 1 - alpha], method="inverted_cdf")
            lo, hi = min(float(lo), self.point), max(float(hi), self.point)
        else:
            se = self.se
            half = t_quantile(confidence, self.df) * se if se > 0 else 0.0
            lo, hi = self.point - half, self.point + half
        return lo - self.slack_lo, hi + self.slack_hi

    def half_width(self, confidence: float) -> float:
        lo, hi = self.interval(confidence)
        return (hi - lo) / 2

    def p_above(self, threshold: float = 0.0, strict: bool = False) -> float | None:
        """One-sided p-value for 'the true value is at least ``threshold``' (above it when
        ``strict``); small = confident. None (undefined) without statistical width: one
        seed, or no spread, is judged on the point and has no p. Exact slack (count())
        counts against the claim."""
        low = self.point - self.slack_lo
        if self.draws is not None and len(self.draws):
            shifted = self.draws - self.slack_lo
            return float(np.mean(shifted <= threshold if strict else shifted < threshold))
        se = self.se
        if se == 0:
            return None
        return t_sf((low - threshold) / se, self.df)

    # ---------------------------------------------------------------- arithmetic

    def _combine(self, other: "Estimate", point: float, scale_self: float, scale_other: float,
                 draws: np.ndarray | None) -> "Estimate":
        parts: dict[Hashable, np.ndarray] = {}
        for est, scale in ((self, scale_self), (other, scale_other)):
            for key, infl in est.parts.items():
                if scale == 0:
                    continue
                parts[key] = parts[key] + scale * infl if key in parts else scale * infl
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
        return self._combine(other, self.point + other.point, 1.0, 1.0, self._draws(other, np.add))

    def __sub__(self, other: "Estimate") -> "Estimate":
        return self._combine(other, self.point - other.point, 1.0, -1.0, self._draws(other, np.subtract))

    def __mul__(self, other: "Estimate") -> "Estimate":
        return self._combine(other, self.point * other.point, other.point, self.point, self._draws(other, np.multiply))

    def __truediv__(self, other: "Estimate") -> "Estimate":
        if other.point == 0:
            return Estimate(math.nan, missing=self.missing + other.missing + ("division by zero",))
        b = other.point
        return self._combine(other, self.point / b, 1 / b, -self.point / (b * b), self._draws(other, np.divide))

    def __neg__(self) -> "Estimate":
        draws = -self.draws if self.draws is not None else None
        return Estimate(-self.point, {k: -v for k, v in self.parts.items()}, draws, self.slack_hi, self.slack_lo,
                        self.missing, self.n)

    def apply(self, fn, derivative: float) -> "Estimate":
        """A smooth function of one estimate (delta method)."""
        parts = {k: derivative * v for k, v in self.parts.items()}
        draws = fn(self.draws) if self.draws is not None else None
        return Estimate(float(fn(np.float64(self.point))), parts, draws, self.slack_lo, self.slack_hi, self.missing)


@dataclass(frozen=True)
class Extremum(Estimate):
    """min() or max() over estimates. Its interval is what the members' intervals allow
    (the min of their lower bounds to the min of their upper bounds, for min), carried as
    exact slack so arithmetic on it stays conservative; a comparison with it is judged
    member by member (``max(a, b) <= t``: a <= t and b <= t), keeping each p-value."""

    kind: str = "min"
    members: tuple[Any, ...] = field(default=(), compare=False)  # (node, Estimate) pairs

    @staticmethod
    def of(kind: str, members: list[tuple[Any, Estimate]], confidence: float) -> "Extremum":
        ests = [e for _, e in members]
        missing = tuple(m for e in ests for m in e.missing)
        if missing or any(e.is_missing for e in ests):
            return Extremum(math.nan, missing=missing or ("NaN",), kind=kind, members=tuple(members))
        pick = min if kind == "min" else max
        point = pick(e.point for e in ests)
        bounds = [e.interval(confidence) for e in ests]
        lo, hi = pick(b[0] for b in bounds), pick(b[1] for b in bounds)
        return Extremum(point, slack_lo=point - lo, slack_hi=hi - point, kind=kind, members=tuple(members))


# -------------------------------------------------------------------- distributions


@lru_cache(maxsize=4096)
def t_quantile(confidence: float, df: float) -> float:
    """The two-sided critical value: t (normal for infinite df)."""
    q = 1 - (1 - confidence) / 2
    if not math.isfinite(df):
        return float(_special().ndtri(q))
    return float(_special().stdtrit(df, q))


def t_sf(z: float, df: float) -> float:
    special = _special()
    return float(special.ndtr(-z)) if not math.isfinite(df) else float(special.stdtr(df, -z))


def welch_df(components: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of (variance, df) components."""
    total = sum(v for v, _ in components)
    denom = sum(v * v / d for v, d in components if d > 0)
    return total * total / denom if 0 < total < math.inf and denom > 0 else math.inf


# -------------------------------------------------------------------- samples


@lru_cache(maxsize=4096)
def bootstrap_index(key: Hashable, n: int, samples: int) -> np.ndarray:
    """A fixed resampling [samples, n] for one sample (seeded by its key), shared by
    every metric of the same runs so that they stay paired, and reproducible."""
    seed = int(hashlib.sha256(repr(key).encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def mean_estimate(values: list[float] | np.ndarray, key: Hashable, method: str = "t", samples: int = 2000) -> Estimate:
    """The Estimate of the mean of finite ``values`` by the study's method."""
    arr = np.asarray(values, dtype=float)
    draws = arr[bootstrap_index(key, len(arr), samples)].mean(axis=1) if method == "bootstrap" and len(arr) > 1 else None
    return Estimate.sample(arr, key, draws)


def summarize(values: list[float], confidence: float, method: str = "t", samples: int = 2000,
              key: Hashable = "sample") -> dict[str, Any]:
    """n (finite values of those planned), mean, std and the confidence interval of the
    mean, by the study's method (t or bootstrap)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    base: dict[str, Any] = {"n": n, "planned": len(values), "method": method}
    if not finite:
        return {**base, "mean": None, "std": None, "ci_lo": None, "ci_hi": None}
    if method == "bootstrap":
        est = mean_estimate(finite, key, method, samples)
        mean, (lo, hi) = est.point, est.interval(confidence)
        std = float(np.std(finite, ddof=1)) if n > 1 else 0.0
        return {**base, "mean": mean, "std": std, "ci_lo": lo, "ci_hi": hi}
    # The t interval of Estimate.sample, in plain floats: a report summarises every arm's
    # every metric, and numpy's per-call cost is most of it for a few seeds.
    low, high = min(finite), max(finite)
    if low == high:
        return {**base, "mean": low, "std": 0.0, "ci_lo": low, "ci_hi": low}
    mean = exact_mean(finite, low, high)
    squares = math.fsum((v - mean) * (v - mean) for v in finite)  # inf, not an error, past float range
    half = t_quantile(confidence, n - 1) * math.sqrt(squares / (n * (n - 1)))
    spread = {"std": math.sqrt(squares / (n - 1)), "ci_lo": mean - half, "ci_hi": mean + half}
    return {**base, "mean": mean, **{k: v if math.isfinite(v) else None for k, v in spread.items()}}


def exact_mean(values: list[float], lo: float, hi: float) -> float:
    """The mean by ``math.fsum``, kept within the values (``lo``..``hi``); values whose
    sum leaves float range are summed divided."""
    n = len(values)
    try:
        total = math.fsum(values) / n
    except OverflowError:
        total = math.fsum(v / n for v in values)
    return min(max(total, lo), hi)


def seeds_to_settle(est: Estimate, margin: float, confidence: float) -> int | None:
    """About how many more seeds per arm would shrink the interval of ``est`` below
    ``margin`` (its point's distance to the threshold), if the spread holds. None when
    no number up to MAX_MORE_SEEDS would (or the width is not statistical)."""
    comps = est._components
    if margin <= 0 or not comps or est.slack_lo or est.slack_hi:
        return None

    def half(k: int) -> float:
        grown = [(v * n / (n + k), n + k - 1) for v, n in comps]
        return t_quantile(confidence, welch_df(grown)) * math.sqrt(sum(v for v, _ in grown))

    if half(MAX_MORE_SEEDS) >= margin:
        return None
    lo, hi = 1, MAX_MORE_SEEDS
    while lo < hi:
        mid = (lo + hi) // 2
        if half(mid) < margin:
            hi = mid
        else:
            lo = mid + 1
    return lo


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


def _special():
    """scipy.special, imported on the first interval that needs a quantile (it costs a
    large share of a small study's start-up)."""
    from scipy import special

    return special
