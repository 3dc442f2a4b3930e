"""Choosing the fingerprint: the designs that say the most about an unknown device.

The set is a greedy D-optimal choice (:meth:`predictors.transfer.TransferModel.choose_shots`)
over the space's cost features and the two main directions of latency variation across every
reference device. Those are the inputs the transfer predictor fits on, so measuring these
designs pins its coefficients best. ``benchmarks/fingerprint.py`` checks the choice on the
reference data: each reference device held out in turn, predicted from the others with the
fingerprint vs 10 random designs.

The choice needs the spaces' features and the transfer predictor, so it lives here; the
result is shipped as JSON under ``devices/fingerprints/`` and read by
:func:`devices.fingerprint.fingerprint`. Regenerate with ``python -m search.fingerprint``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from devices.fingerprint import FOLDER, SIZE
from devices.reference import load_reference
from predictors.transfer import TransferBasis, TransferModel
from search.spaces import get_space


def choose(space: str, size: int = SIZE, seed: int = 0) -> list[str]:
    """Compute the fingerprint from the shipped reference data (deterministic for a seed).

    Over the devices measured on every design (the edge accelerators appended to NB201 cover
    an eighth of it) and with degenerate designs allowed: a fingerprint's one or two
    disconnected cells tell transfer how the device treats dead work.
    """
    table = load_reference(space)
    codec = get_space(space)
    whole = np.isfinite(table.latency_ms).all(axis=0)
    basis = TransferBasis(
        codec.features(table.encodings),
        table.latency_ms[:, whole],
        [d.name for d, keep in zip(table.devices, whole, strict=True) if keep],
    )
    rows = TransferModel(basis).choose_shots(size, np.random.default_rng(seed))
    return [table.encodings[i] for i in rows]


def write(space: str) -> Path:
    """Compute and ship a space's fingerprint (what ``devices.fingerprint`` reads)."""
    path = FOLDER / f"{space}.json"
    doc = {"space": space, "size": SIZE, "seed": 0, "designs": choose(space)}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


if __name__ == "__main__":
    for name in ("nb201", "fbnet"):
        print(write(name))
