"""Reference measurements shipped with EdgeOpt (HELP, HW-NAS-Bench, NAS-Bench-201).

The tables live in ``devices/reference_data`` with their attribution (README.md there) and
licenses. This module reads them into plain arrays; writing them to the registry is the
service's business.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_SPACES = ("nb201", "fbnet", "ofa_mbv3")
ACCURACY_COLUMNS = {
    "acc_cifar10": "cifar10",
    "acc_cifar100": "cifar100",
    "acc_imagenet16_120": "imagenet16-120",
}
ACCURACY_SOURCE = "NAS-Bench-201 (Dong et al. 2020), 200-epoch schedule, mean over seeds, fp32"

# The source tables call phones "mobile" and the Raspberry Pi "embedded_cpu": both run the
# network on their CPU. The form factor is kept in the specs.
_KIND = {
    "gpu": "gpu",
    "cpu": "cpu",
    "mobile": "cpu",
    "embedded_cpu": "cpu",
    "asic": "asic",
    "fpga": "fpga",
    "npu": "npu",
    "dsp": "dsp",
}

# Public vendor specifications of the chips behind the reference columns, keyed by the column
# name without its batch suffix. Where the source does not say which variant was used (memory
# size of a V100, RAM of a Raspberry Pi), the field is left out rather than guessed.
_GPU = ("cuda_cores", "clock_mhz", "memory_gb", "memory_bandwidth_gbs", "architecture")
_CPU = ("cores", "clock_mhz", "memory_bandwidth_gbs")
_CHIPS: dict[str, dict[str, Any]] = {
    "1080ti": dict(zip(_GPU, (3584, 1582, 11, 484.0, "Pascal"), strict=True)),
    "2080ti": dict(zip(_GPU, (4352, 1545, 11, 616.0, "Turing"), strict=True)),
    "titan_rtx": dict(zip(_GPU, (4608, 1770, 24, 672.0, "Turing"), strict=True)),
    "titanx": dict(zip(_GPU, (3072, 1075, 12, 336.5, "Maxwell"), strict=True)),
    "titanxp": dict(zip(_GPU, (3840, 1582, 12, 547.7, "Pascal"), strict=True)),
    "titan_xp": dict(zip(_GPU, (3840, 1582, 12, 547.7, "Pascal"), strict=True)),
    "v100": {
        "cuda_cores": 5120,
        "clock_mhz": 1530,
        "memory_bandwidth_gbs": 900.0,
        "architecture": "Volta",
    },
    "gold_6226": dict(zip(_CPU, (12, 2700, 140.8), strict=True)),
    "gold_6240": dict(zip(_CPU, (18, 2600, 140.8), strict=True)),
    "silver_4114": dict(zip(_CPU, (10, 2200, 115.2), strict=True)),
    "silver_4210r": dict(zip(_CPU, (10, 2400, 115.2), strict=True)),
    "pixel2": {"cores": 8, "clock_mhz": 2450, "memory_gb": 4, "chip": "Snapdragon 835"},
    "pixel3": {"cores": 8, "clock_mhz": 2500, "memory_gb": 4, "chip": "Snapdragon 845"},
    "essential_ph_1": {"cores": 8, "clock_mhz": 2450, "memory_gb": 4, "chip": "Snapdragon 835"},
    "samsung_a50": {"cores": 8, "clock_mhz": 2300, "chip": "Exynos 9610"},
    "samsung_s7": {"cores": 8, "clock_mhz": 2300, "memory_gb": 4},
    "raspi4": {"cores": 4, "clock_mhz": 1500, "chip": "Broadcom BCM2711 (Cortex-A72)"},
    "eyeriss": {"accelerator": "Eyeriss-like ASIC (cost model)"},
    "fpga": {"accelerator": "FPGA (cost model)"},
    "edgegpu_jetson_tx2": {
        "cuda_cores": 256,
        "memory_gb": 8,
        "architecture": "Pascal",
        "form_factor": "embedded",
    },
    "edgetpu": {"accelerator": "Google Coral Edge TPU", "precision": "int8"},
}


@dataclass(frozen=True)
class ReferenceDevice:
    """One column of a reference latency table, described as a registry device.

    ``specs["precision"]``, where the source gives one, is the policy its networks ran at
    (int8 or fp16 settings are not fp32 devices); fp32 otherwise.
    """

    space: str
    column: str
    kind: str
    batch_size: int | None
    hardware: str
    source: str
    runtime: str | None
    specs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Registry name: the same chip measured in two spaces is two measurement settings."""
        return f"{self.space}.{self.column}"

    @property
    def policy(self) -> str:
        """The quantization policy its measurements ran at."""
        return str(self.specs.get("precision") or "fp32")


@dataclass(frozen=True)
class ReferenceTable:
    """A space's reference data: encodings, latency matrix (NaN = not measured), accuracies."""

    space: str
    devices: list[ReferenceDevice]
    arch_ids: np.ndarray
    encodings: list[str]
    latency_ms: np.ndarray
    accuracies: dict[str, np.ndarray]

    @property
    def n_measurements(self) -> int:
        return int(np.isfinite(self.latency_ms).sum())


def data_dir() -> Path:
    """Folder of the shipped reference data (inside the installed package)."""
    return Path(str(resources.files("devices") / "reference_data"))


def _chip(column: str) -> str:
    for key in sorted(_CHIPS, key=len, reverse=True):
        if column == key or column.startswith(key + "_"):
            return key
    return column


def _device(space: str, row: dict[str, str]) -> ReferenceDevice:
    column, kind, desc, origin = row["device"], row["kind"], row["description"], row["origin"]
    specs = dict(_CHIPS.get(_chip(column), {}))
    if kind in ("mobile", "embedded_cpu"):
        specs["form_factor"] = "mobile" if kind == "mobile" else "embedded"
    if "estimate" in desc.lower():
        specs["estimated"] = True
    runtime = "PyTorch" if "(PyTorch)" in origin else ("TFLite" if "TFLite" in desc else None)
    batch = row["batch_size"].strip()
    return ReferenceDevice(
        space=space,
        column=column,
        kind=_KIND[kind],
        batch_size=int(float(batch)) if batch else None,
        hardware=desc.split(";")[0].split(". ")[0].strip(),
        source=f"{origin}; see devices/reference_data/README.md",
        runtime=runtime,
        specs=specs,
    )


def _float(text: str) -> float:
    return float(text) if text.strip() else math.nan


def load_reference(space: str, root: Path | None = None) -> ReferenceTable:
    """Read one space's shipped tables; archs and latencies are joined on ``arch_id``."""
    if space not in REFERENCE_SPACES:
        raise ValueError(f"no reference data for space {space!r} (have {REFERENCE_SPACES})")
    folder = (root or data_dir()) / space
    with (folder / "devices.csv").open(newline="") as f:
        devices_by_column = {row["device"]: _device(space, row) for row in csv.DictReader(f)}
    with gzip.open(folder / "archs.csv.gz", "rt", newline="") as f:
        arch_rows = list(csv.DictReader(f))
    with gzip.open(folder / "latency_ms.csv.gz", "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        lat_rows = {int(r[0]): [_float(v) for v in r[1:]] for r in reader}
    columns = header[1:]
    missing = [c for c in columns if c not in devices_by_column]
    if missing:
        raise ValueError(f"{space}: latency columns without a device row: {missing}")
    arch_ids = np.array([int(r["arch_id"]) for r in arch_rows])
    nan_row = [math.nan] * len(columns)
    latency = np.array([lat_rows.get(int(i), nan_row) for i in arch_ids], dtype=float)
    accuracies = {
        dataset: np.array([_float(r[col]) for r in arch_rows])
        for col, dataset in ACCURACY_COLUMNS.items()
        if arch_rows and col in arch_rows[0]
    }
    return ReferenceTable(
        space=space,
        devices=[devices_by_column[c] for c in columns],
        arch_ids=arch_ids,
        encodings=[r["arch"] for r in arch_rows],
        latency_ms=latency,
        accuracies=accuracies,
    )


# Tables of a space's designs measured by another group with its own implementation of the
# networks (folder -> space): the devices of another family, joined on ``arch_id``.
FAMILY_TABLES = {"nb201_latbench": "nb201"}
# What the reference import can load: each space's own table, then the family tables.
REFERENCE_TABLES = (*REFERENCE_SPACES, *FAMILY_TABLES)


def load_table(name: str, root: Path | None = None) -> ReferenceTable:
    """A space's reference table or a family table, by the name the import uses."""
    if name in FAMILY_TABLES:
        return load_family(name, root)
    if name in REFERENCE_SPACES:
        return load_reference(name, root)
    raise ValueError(f"no reference table {name!r} (have {', '.join(REFERENCE_TABLES)})")


def load_family(folder: str, root: Path | None = None) -> ReferenceTable:
    """A shipped table of another implementation family, over its space's reference designs.

    Its devices keep the source's precision in their specs (``int8`` and ``fp16`` settings
    ran the networks at that precision, not in fp32).
    """
    if folder not in FAMILY_TABLES:
        raise ValueError(f"no family table {folder!r} (have {sorted(FAMILY_TABLES)})")
    space = FAMILY_TABLES[folder]
    base = load_reference(space, root)
    path = (root or data_dir()) / folder
    with (path / "devices.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    devices = {}
    for row in rows:
        device = _device(space, row)
        if row.get("precision"):
            device.specs["precision"] = row["precision"]
        devices[row["device"]] = device
    with gzip.open(path / "latency_ms.csv.gz", "rt", newline="") as f:
        reader = csv.reader(f)
        columns = next(reader)[1:]
        values = {int(r[0]): [_float(v) for v in r[1:]] for r in reader}
    missing = [c for c in columns if c not in devices]
    if missing:
        raise ValueError(f"{folder}: latency columns without a device row: {missing}")
    empty = [math.nan] * len(columns)
    latency = np.array([values.get(int(i), empty) for i in base.arch_ids], dtype=float)
    return ReferenceTable(
        space=space,
        devices=[devices[c] for c in columns],
        arch_ids=base.arch_ids,
        encodings=base.encodings,
        latency_ms=latency,
        accuracies=base.accuracies,
    )


DIGITS = "digits"  # the folder of EdgeOpt's own accuracy measurements


@dataclass(frozen=True)
class AccuracyRow:
    """A measured top-1 of one design under one policy, and how it was measured."""

    design: str
    policy: str
    top1: float
    source: str


def digits_file(space: str, root: Path | None = None) -> Path:
    return (root or data_dir()) / DIGITS / f"{space}.csv.gz"


def load_digits_accuracy(space: str, root: Path | None = None) -> list[AccuracyRow]:
    """EdgeOpt's measured digits accuracies of a space (fp32, int8, mixed), none if unshipped."""
    path = digits_file(space, root)
    if not path.is_file():
        return []
    with gzip.open(path, "rt", newline="") as f:
        return [
            AccuracyRow(r["arch"], r["policy"], float(r["top1"]), r["source"])
            for r in csv.DictReader(f)
        ]


def write_digits_accuracy(space: str, rows: list[AccuracyRow], root: Path | None = None) -> Path:
    """Ship measured digits accuracies (sorted, so a rerun that measured the same is no diff)."""
    path = digits_file(space, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as raw, io.TextIOWrapper(raw, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "policy", "top1", "source"])
        for r in sorted(rows, key=lambda r: (r.design, r.policy)):
            writer.writerow([r.design, r.policy, repr(r.top1), r.source])
    return path


def runs_file(space: str, root: Path | None = None) -> Path:
    return (root or data_dir()) / DIGITS / f"{space}_runs.csv.gz"


def load_digits_runs(space: str, root: Path | None = None) -> dict[str, list[float]]:
    """Repeated digits trainings of a few designs (fp32 top-1 by seed), none if unshipped:
    a record is one training run, and these say how far another run lands from it."""
    path = runs_file(space, root)
    if not path.is_file():
        return {}
    runs: dict[str, list[float]] = {}
    with gzip.open(path, "rt", newline="") as f:
        for r in csv.DictReader(f):
            runs.setdefault(r["arch"], []).append(float(r["top1"]))
    return runs


def write_digits_runs(
    space: str, runs: dict[str, dict[int, float]], root: Path | None = None
) -> Path:
    """Ship repeated trainings as (arch, seed, top1) rows, sorted."""
    path = runs_file(space, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as raw, io.TextIOWrapper(raw, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "seed", "top1"])
        for design in sorted(runs):
            for seed, top1 in sorted(runs[design].items()):
                writer.writerow([design, seed, repr(top1)])
    return path
