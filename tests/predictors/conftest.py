"""Small slices of the shipped reference tables, so predictor tests run in seconds."""

from __future__ import annotations

import numpy as np
import pytest

from devices.reference import ReferenceTable, load_reference


@pytest.fixture(scope="session")
def nb201() -> ReferenceTable:
    return load_reference("nb201")


def columns(table: ReferenceTable, names: list[str]) -> np.ndarray:
    index = [d.column for d in table.devices]
    return np.stack([table.latency_ms[:, index.index(n)] for n in names], axis=1)
