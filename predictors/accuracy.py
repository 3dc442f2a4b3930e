"""Which evidence answers a design's accuracy: its record, the dataset's model, or the fp32
accuracy plus the change a quantization policy brings.

One ladder for every caller (``/predict``, ``/optimize``, the dashboards, the learned
optimizer's training): a record answers first (exact, or where the dataset's run-to-run
spread is known, the next run's expectation from record and model), the dataset's model
answers the designs without one, and for a quantized policy with neither, the fp32 answer
plus the predicted change. The registry's reads are passed in as callables, so this stays
arithmetic on arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from predictors.answer import Arrays
from predictors.run_spread import next_run

Model = Callable[[list[str]], Arrays]
"""The dataset's accuracy model at the policy: centre, low, high for the designs given."""
Quantized = Callable[[list[str]], "tuple[Arrays, dict[str, Any]] | None"]
"""fp32 accuracy plus the policy's change for the designs given, with where each came from;
None where either is missing."""


def accuracy_ladder(
    designs: list[str],
    records: dict[str, float],
    model: Model | None,
    quantized: Quantized | None,
    run_sigma: float | None,
    scope: str,
) -> tuple[Arrays | None, dict[str, Any]]:
    """Predicted top-1 (%) of ``designs`` with 90% intervals, kept within 0-100, and how it
    was answered (``method``: recorded, space-model, fp32+change; ``reason`` when nothing
    could answer ``scope``, a description such as "nb201 on 'digits' at int8")."""
    n = len(designs)
    centre, low, high = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    have = np.array([d in records for d in designs], dtype=bool)
    info: dict[str, Any] = {"method": "recorded" if have.all() else "space-model",
                            "recorded": int(have.sum())}  # fmt: skip
    if have.any():
        kept = [d for d, h in zip(designs, have, strict=True) if h]
        values = np.array([records[d] for d in kept])
        if run_sigma is None:  # no repeat runs: the record is the answer
            centre[have], low[have], high[have] = values, values, values
        else:
            guess = model(kept) if model is not None else None
            answer = np.clip(next_run(values, run_sigma, guess), 0.0, 100.0)
            centre[have], low[have], high[have] = answer
            info["run_sigma_points"] = round(run_sigma, 3)
    if have.all():
        return (centre, low, high), info
    missing = [d for d, h in zip(designs, have, strict=True) if not h]
    if model is not None:
        centre[~have], low[~have], high[~have] = np.clip(model(missing), 0.0, 100.0)
        return (centre, low, high), info
    changed = quantized(missing) if quantized is not None else None
    if changed is not None:
        arrays, change_info = changed
        centre[~have], low[~have], high[~have] = np.clip(arrays, 0.0, 100.0)
        return (centre, low, high), info | change_info
    if not have.any():
        reason = f"no accuracy records or model for {scope}"
        if quantized is not None:
            reason += " (and no fp32 accuracy with an accuracy-change model to start from)"
        return None, {"method": None, "reason": reason}
    info["method"] = "recorded"
    info["note"] = f"{len(missing)} designs without a record were left out"
    return (centre, low, high), info
