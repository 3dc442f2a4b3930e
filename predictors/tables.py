"""Wide latency tables (arch_id plus one column per device), as ../shared/data ships them.

Holes (empty cells) are allowed and kept as NaN; anything else that is not a positive number
is an error naming the file, row and column, so a broken table never yields a figure.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


class Encodings(Protocol):
    """What a table needs of a search space: its canonical form of an encoding.

    A ``search.spaces.SearchSpace`` is one; predictors take it as this protocol so they never
    import ``search`` (dependencies point app -> search -> predictors -> devices).
    """

    def canonical(self, encoding: str) -> str:
        """The canonical encoding; raises ``ValueError`` for one the space cannot hold."""
        ...


class TableError(ValueError):
    """A latency or archs table that cannot be used as it is."""


@dataclass(frozen=True)
class LatencyTable:
    arch_ids: np.ndarray
    encodings: list[str]
    devices: list[str]
    latency_ms: np.ndarray  # archs x devices, NaN = hole
    columns: dict[str, np.ndarray]  # other numeric columns of the archs file (accuracies)

    def column(self, device: str) -> np.ndarray:
        if device not in self.devices:
            raise TableError(f"device {device!r} is not a column of the latency table")
        return self.latency_ms[:, self.devices.index(device)]


def _open(path: Path) -> io.TextIOBase:
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", newline="")  # type: ignore[return-value]


def _number(text: str, where: str) -> float:
    if not text.strip():
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise TableError(f"{where}: {text!r} is not a number") from None
    if not np.isfinite(value) or value <= 0:
        raise TableError(f"{where}: {text!r} is not a positive finite latency")
    return value


def read_tables(latency_path: Path, archs_path: Path, space: Encodings) -> LatencyTable:
    """Join a wide latency CSV with its archs CSV on ``arch_id``, validating every cell."""
    with _open(latency_path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0].strip() != "arch_id" or len(header) < 2:
            raise TableError(f"{latency_path}: header must be arch_id followed by device columns")
        devices = [h.strip() for h in header[1:]]
        if len(set(devices)) != len(devices):
            raise TableError(f"{latency_path}: a device column appears twice")
        rows: dict[int, list[float]] = {}
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise TableError(
                    f"{latency_path} row {line}: {len(row)} cells, expected {len(header)}"
                )
            arch = _arch_id(row[0], f"{latency_path} row {line}")
            rows[arch] = [
                _number(v, f"{latency_path} row {line} column {devices[j]!r}")
                for j, v in enumerate(row[1:])
            ]
    with _open(archs_path) as f:
        arch_rows = list(csv.DictReader(f))
    if not arch_rows or not {"arch_id", "arch"} <= set(arch_rows[0]):
        raise TableError(f"{archs_path}: needs columns arch_id and arch")
    ids, encodings, values = [], [], []
    for line, r in enumerate(arch_rows, start=2):
        arch = _arch_id(r["arch_id"], f"{archs_path} row {line}")
        if arch not in rows:
            continue
        try:
            encodings.append(space.canonical(r["arch"]))
        except ValueError as exc:  # search.spaces.InvalidEncoding is one
            raise TableError(f"{archs_path} row {line}: {exc}") from None
        ids.append(arch)
        values.append(rows[arch])
    if len(ids) < len(rows):
        missing = sorted(set(rows) - set(ids))[:5]
        raise TableError(f"{latency_path}: arch_id {missing} not in {archs_path}")
    extra = {}
    for name in arch_rows[0]:
        if name.startswith("acc"):
            by_id = {int(r["arch_id"]): r[name] for r in arch_rows}
            extra[name] = np.array([float(by_id[i]) if by_id[i].strip() else np.nan for i in ids])
    return LatencyTable(np.array(ids), encodings, devices, np.array(values), extra)


def _arch_id(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TableError(f"{where}: arch_id {text!r} is not an integer") from None
