"""Which predictions a user should not take at face value: extrapolations and wide intervals.

A latency model fitted on a device's measurements (or transferred from other devices) can
answer any design, and at the fast end of a space it answers far below anything measured:
0.02 ms on a device whose fastest measured design takes 0.24 ms. Such a figure is an
extrapolation, not evidence: it is flagged, not hidden. The floor it is judged against is
the device's fastest measured latency (in the same policy, working designs only) or, where
the device measured nothing there, per design the fastest of the basis devices' predictions
for it: a design predicted under half of that is faster than anything the device or any
comparable device supports.

An interval whose high end is more than ``WIDE_FACTOR`` times its low end says the model
hardly knows; a chart marks such points so the fast end of a front does not look
authoritative.
"""

from __future__ import annotations

import numpy as np

EXTRAPOLATION_FACTOR = 0.5  # below half of the floor is an extrapolation
WIDE_FACTOR = 3.0  # a 90% interval with high / low above this is uncertain


def extrapolated(predicted: np.ndarray, floor: np.ndarray | float | None) -> np.ndarray:
    """Per prediction, whether it lies below ``EXTRAPOLATION_FACTOR`` x its floor.

    ``floor`` is one value (the device's fastest measured latency) or one per prediction
    (the fastest basis device's prediction of that design); None or NaN: nothing to judge
    against, never flagged.
    """
    predicted = np.asarray(predicted, dtype=float)
    if floor is None:
        return np.zeros(predicted.shape, dtype=bool)
    limit = EXTRAPOLATION_FACTOR * np.broadcast_to(np.asarray(floor, dtype=float), predicted.shape)
    with np.errstate(invalid="ignore"):
        return np.asarray(np.isfinite(limit) & np.isfinite(predicted) & (predicted < limit))


def uncertain(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per interval, whether it spans more than ``WIDE_FACTOR`` (high / low); an interval
    reaching zero or below spans any factor. Exact values (low == high) are certain."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        wide = np.where(low > 0, high > WIDE_FACTOR * low, high > low)
    return np.asarray(wide & np.isfinite(low) & np.isfinite(high))


def fastest_working(values: np.ndarray, degenerate: np.ndarray | None = None) -> float | None:
    """The fastest measured latency among designs that compute something: a degenerate cell
    (output disconnected) runs in next to nothing on some runtimes and is no floor."""
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values) & (values > 0)
    if degenerate is not None:
        keep &= ~np.asarray(degenerate, dtype=bool)
    return float(values[keep].min()) if keep.any() else None


def extrapolation_note(count: int, floor: float | None, policy: str) -> str:
    """The answer's note for ``count`` flagged predictions in a policy."""
    against = (
        f"half of the device's fastest measured latency ({floor:.3g} ms)"
        if floor is not None
        else "half of the fastest basis device's prediction for the same design"
    )
    return (
        f"{count} shown prediction(s) at {policy} are extrapolations (extrapolated: true): "
        f"below {against}; nothing measured supports them"
    )
