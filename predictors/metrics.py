"""Quality figures of a predictor on data it never saw."""

from __future__ import annotations

import numpy as np

QUALITY_KEYS = ("spearman", "kendall", "rmse_ms", "mape", "within_10pct")


def quality(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Rank agreement and error of predictions against measurements (both in ms).

    ``mape`` is in percent; ``within_10pct`` is the fraction of designs whose prediction is
    within +-10% of the measurement (nn-Meter's headline figure).
    """
    from scipy.stats import kendalltau  # scipy.stats costs ~1 s at import

    predicted = np.asarray(predicted, dtype=float)
    measured = np.asarray(measured, dtype=float)
    if predicted.shape != measured.shape or predicted.size < 2:
        raise ValueError("quality needs two equal-length arrays of at least 2 values")
    rel = np.abs(predicted - measured) / np.abs(measured)
    return {
        "spearman": spearman(predicted, measured),
        "kendall": _finite(kendalltau(predicted, measured)[0]),
        "rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2))),
        "mape": float(100 * np.mean(rel)),
        "within_10pct": float(np.mean(rel <= 0.10)),
    }


def spearman(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Rank agreement of predictions with measurements; 0 where one side is constant."""
    from scipy.stats import spearmanr  # scipy.stats costs ~1 s at import

    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    if len(predicted) < 2 or np.ptp(predicted) == 0 or np.ptp(measured) == 0:
        return 0.0
    return _finite(spearmanr(predicted, measured)[0])


def coverage(low: np.ndarray, high: np.ndarray, measured: np.ndarray) -> float:
    """Fraction of measurements inside their predicted interval."""
    measured = np.asarray(measured, dtype=float)
    return float(np.mean((measured >= low) & (measured <= high)))


def mean_quality(rows: list[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of several quality dicts (seeds, devices)."""
    if not rows:
        raise ValueError("nothing to average")
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _finite(value: float) -> float:
    """A constant prediction has no rank correlation; count it as none rather than NaN."""
    return float(value) if np.isfinite(value) else 0.0
