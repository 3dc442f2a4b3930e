"""The benchmark results the dashboards draw: the cross-class transfer suite and the
validation by family, read from the JSON files their benchmarks write (checked against a
schema: a file from another version of a benchmark gets a message, not a broken page).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from app.dashboard_data import finite
from devices.reference import REFERENCE_SPACES
from predictors.suite import BELOW_BASELINE

SUITE_COMMAND = "python benchmarks/transfer_suite.py"
# interval coverage this far from the nominal level (0.85 to 0.95 for 90% intervals) is marked
COVERAGE_TOLERANCE = 0.05


# -- the cross-class transfer suite --------------------------------------------------
class _Quality(BaseModel):
    spearman: float


class _Baseline(BaseModel):
    devices: dict[str, _Quality]
    mean: _Quality


class _Intervals(BaseModel):
    level: float
    coverage: dict[str, float]
    mean_coverage: float


class _Setup(BaseModel):
    train: list[str]
    test: list[str]
    shots: int
    seeds: int


class _Run(BaseModel):
    split: str
    description: str = ""
    devices: dict[str, _Quality]
    mean: _Quality
    baseline: _Baseline
    intervals: _Intervals
    setup: _Setup


class _Summary(BaseModel):
    geomean_spearman: float
    baseline_geomean_spearman: float
    devices_below_baseline: int
    coverage_range: tuple[float, float]


class _SuiteFile(BaseModel):
    """What ``benchmarks/transfer_suite.py`` writes per space: evaluate_suite's output and
    where it came from. Only the fields the dashboard shows are checked."""

    space: str
    command: str | None = None
    date: str | None = None
    machine: str | None = None
    summary: dict[int, _Summary]
    runs: list[_Run]


def transfer_suite(folder: Path) -> dict[str, Any]:
    """The suite's figures for each space whose result file is in ``folder``.

    A missing file is skipped (that space was not run); one that cannot be read as a suite
    result becomes an entry with ``error`` set, so one bad file never hides the others.
    """
    spaces = []
    for space in REFERENCE_SPACES:
        path = folder / f"transfer_suite_{space}.json"
        if not path.is_file():
            continue
        suite = _read_suite(path, space)
        entry = {"error": suite} if isinstance(suite, str) else _suite_view(suite)
        spaces.append({"space": space, "file": str(path), **entry})
    return {
        "command": SUITE_COMMAND,
        "folder": str(folder),
        "below_baseline_margin": BELOW_BASELINE,
        "spaces": spaces,
    }


def _read_suite(path: Path, space: str) -> _SuiteFile | str:
    """The file's suite result, or what is wrong with it."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        return f"cannot be read: {e}"
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e}"
    try:
        suite = _SuiteFile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'top level'}: {err['msg']}"
            for err in e.errors()[:3]
        )
        more = f" (and {e.error_count() - 3} more)" if e.error_count() > 3 else ""
        return f"not a transfer-suite result: {problems}{more}"
    if suite.space != space:
        return f"the file holds space {suite.space!r}, not {space!r}"
    return suite


def _suite_view(suite: _SuiteFile) -> dict[str, Any]:
    splits, rows = [], []
    for run in suite.runs:
        setup = run.setup
        splits.append(
            {
                "split": run.split,
                "description": run.description,
                "shots": setup.shots,
                "spearman": finite(run.mean.spearman),
                "baseline_spearman": finite(run.baseline.mean.spearman),
                "coverage": finite(run.intervals.mean_coverage),
                "train": len(setup.train),
                "test": len(setup.test),
            }
        )
        for device, q in run.devices.items():
            base = run.baseline.devices.get(device)
            ours = finite(q.spearman)
            theirs = finite(base.spearman) if base else None
            rows.append(
                {
                    "split": run.split,
                    "description": run.description,
                    "device": device,
                    "shots": setup.shots,
                    "spearman": ours,
                    "baseline_spearman": theirs,
                    "below_baseline": ours is not None
                    and theirs is not None
                    and ours < theirs - BELOW_BASELINE,
                    "coverage": finite(run.intervals.coverage.get(device)),
                    "train": len(setup.train),
                }
            )
    levels = {run.intervals.level for run in suite.runs}
    level = levels.pop() if len(levels) == 1 else None
    return {
        "space": suite.space,
        "date": suite.date,
        "command": suite.command,
        "machine": suite.machine,
        "level": level,
        "coverage_band": None
        if level is None
        else [round(level - COVERAGE_TOLERANCE, 6), round(level + COVERAGE_TOLERANCE, 6)],
        "summary": [
            {
                "shots": shots,
                "geomean_spearman": finite(s.geomean_spearman),
                "baseline_geomean_spearman": finite(s.baseline_geomean_spearman),
                "devices_below_baseline": s.devices_below_baseline,
                "coverage_range": [finite(x) for x in s.coverage_range],
            }
            for shots, s in sorted(suite.summary.items())
        ],
        "splits": splits,
        "rows": rows,
    }


# -- validation by implementation family ---------------------------------------------
FAMILIES_COMMAND = "python benchmarks/families.py"
FAMILIES_FILE = "families.json"


class _FamilyShots(BaseModel):
    devices: int
    spearman: dict[str, float | None]
    coverage_90: float | None = None
    worst_device: str | None = None
    worst_margin: float | None = None


class _Family(BaseModel):
    basis: list[str] = []
    tested: list[str] = []
    shots: dict[int, _FamilyShots]


class _Regret(BaseModel):
    regret: float | None = None
    violation_rate: float | None = None


class _OptimizeBaseline(BaseModel):
    mean: _Regret


class _FamilyOptimize(BaseModel):
    test: list[str]
    edgeopt: _Regret | None = None  # None: no device of the family measured the fingerprint
    baseline: _OptimizeBaseline | None = None


class _Provenance(BaseModel):
    command: str | None = None
    date: str | None = None
    machine: str | None = None
    methods: list[str] = []


class _FamiliesFile(BaseModel):
    """What ``benchmarks/families.py`` writes; only the fields the dashboard shows are
    checked (per-device figures are left in the file)."""

    families: dict[str, _Family]
    setup: dict[str, Any] = {}
    provenance: _Provenance = _Provenance()
    optimize: dict[str, _FamilyOptimize] = {}


def families(folder: Path) -> dict[str, Any]:
    """The family benchmark's learning curves (mean Spearman per shot count, each method).

    ``result`` is None while ``folder`` has no result file (the benchmark was not run), and
    carries ``error`` for a file that cannot be read as one, so the page says which.
    """
    path = folder / FAMILIES_FILE
    result: dict[str, Any] | None = None
    if path.is_file():
        doc = _read_families(path)
        entry = {"error": doc} if isinstance(doc, str) else _families_view(doc)
        result = {"file": str(path), **entry}
    return {"command": FAMILIES_COMMAND, "folder": str(folder), "result": result}


def _read_families(path: Path) -> _FamiliesFile | str:
    """The file's family result, or what is wrong with it."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        return f"cannot be read: {e}"
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e}"
    try:
        return _FamiliesFile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'top level'}: {err['msg']}"
            for err in e.errors()[:3]
        )
        more = f" (and {e.error_count() - 3} more)" if e.error_count() > 3 else ""
        return f"not a family-benchmark result: {problems}{more}"


def _families_view(doc: _FamiliesFile) -> dict[str, Any]:
    methods = list(doc.provenance.methods)
    for family in doc.families.values():  # a file without the list: every method it scores
        for row in family.shots.values():
            methods += [m for m in row.spearman if m not in methods]
    seeds = doc.setup.get("seeds")
    return {
        "command": doc.provenance.command,
        "date": doc.provenance.date,
        "machine": doc.provenance.machine,
        "seeds": seeds if isinstance(seeds, int) else None,
        "methods": methods,
        "families": [
            {
                "family": name,
                "basis": len(family.basis),
                "tested": len(family.tested),
                "points": [
                    {
                        "shots": shots,
                        "devices": row.devices,
                        "spearman": {m: finite(row.spearman.get(m)) for m in methods},
                        "coverage_90": finite(row.coverage_90),
                        "worst_device": row.worst_device,
                        "worst_margin": finite(row.worst_margin),
                    }
                    for shots, row in sorted(family.shots.items())
                ],
            }
            for name, family in doc.families.items()
        ],
        "optimize": [
            {
                "family": name,
                "devices": len(row.test),
                "regret": finite(row.edgeopt.regret),
                "violation_rate": finite(row.edgeopt.violation_rate),
                "baseline_regret": finite(row.baseline.mean.regret),
                "baseline_violation_rate": finite(row.baseline.mean.violation_rate),
            }
            for name, row in doc.optimize.items()
            if row.edgeopt is not None and row.baseline is not None
        ],
    }
