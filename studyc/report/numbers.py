"""How numbers read in verdicts and reports: enough digits to compare, no more."""

from __future__ import annotations

import math


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _infinite(value: float | None) -> str | None:
    """±∞ (an interval that is still the whole line), else None."""
    return None if value is None or not math.isinf(value) else ("∞" if value > 0 else "−∞")


def fmt(value: float | None, digits: int = 4) -> str:
    if not _finite(value):
        return _infinite(value) or "NaN"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.{max(digits - 1, 1)}g}"
    return f"{value:.{digits}g}"


def fmt_width(value: float | None) -> str:
    """An interval's half-width: two significant figures are all it carries."""
    return f"{value:.2g}" if _finite(value) else _infinite(value) or "NaN"


def fmt_threshold(threshold: float, observed: float | None) -> str:
    """A threshold at three significant figures (as people state them: 'NRMSE <= 0.0606'),
    or more where fewer would put it on the wrong side of the observed value as shown."""
    if not _finite(threshold):
        return fmt(threshold)
    if not _finite(observed):
        return fmt(threshold, 3)
    shown = float(fmt(observed))
    want = (threshold > shown) - (threshold < shown)
    for digits in range(3, 10):
        text = fmt(threshold, digits)
        got = (float(text) > shown) - (float(text) < shown)
        if got == want:
            return text
    return repr(threshold)


def pct(value: float) -> str:
    return f"{value * 100:+.1f}%" if _finite(value) else _infinite(value) or "NaN"


def duration(seconds: float | None) -> str:
    if not _finite(seconds):
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
