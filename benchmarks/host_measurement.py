"""Benchmark: measure NB201 designs on this host (fp32, int8, mixed) and summarise.

    python benchmarks/host_measurement.py [--count 340] [--database-url URL] [--out DIR]
        [--seed 0] [--policies fp32 int8 ...] [--threads 1 2]

Runs the ``measure-host`` job (the same as ``edgeopt measure``) into the given registry
(default: EDGEOPT_DATABASE_URL or the local SQLite file) for ``count`` sampled designs x 3
policies x threads 1 and 2, then writes from the registry:
- ``host_nb201_latency.csv``: one row per design x policy, one column per host device;
- ``host_nb201_stable.csv``: the same cells, 1 where the measurement's protocol called it
  stable, 0 where it stayed flagged after its re-measures (``host_predictor.py --stable``);
- ``host_measurement.json``: designs per minute, stability, repeatability (CV of 10 fresh
  measurements of one design, target <= 3%), int8 / fp32 latency ratios.
A rerun skips what is stored, so it can be stopped and resumed.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

import app.measure_service  # noqa: F401  (registers the measure-host job kind)
from app.db import session_factory, upgrade
from app.jobs import JobRunner
from app.models import Architecture, Device, Job, Measurement
from app.settings import get_settings
from devices.measure import Protocol, host_specs, measure
from search.export import export_design

POLICIES = ["fp32", "int8", "fp32,int8,int8,int8,fp32"]
DEVICES = ["host-ort-cpu-1t", "host-ort-cpu-2t"]


def repeatability(design: str, policy: str, runs: int = 10) -> dict[str, object]:
    """CV of ``runs`` independent measurements of one design (fresh sessions each time)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = export_design("nb201", design, policy, Path(tmp) / "m.onnx").path
        values = [measure(str(path), Protocol(threads=1)).median_ms for _ in range(runs)]
    return {
        "design": design,
        "protocol": Protocol(threads=1).as_dict()["version"],
        "median_ms": float(np.median(values)),
        "cv": float(np.std(values) / np.mean(values)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=340)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--pin-threads", action="store_true", help="Protocol(pinned=True)")
    parser.add_argument("--policies", nargs="+", default=POLICIES, help="default: all three")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], choices=[1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/this-host"))
    parser.add_argument(
        "--repeatability-only",
        action="store_true",
        help="only re-measure the repeatability of one design (current protocol)",
    )
    args = parser.parse_args()
    if args.repeatability_only:
        path = args.out / "host_measurement.json"
        summary = json.loads(path.read_text())
        design = next(csv.DictReader((args.out / "host_nb201_latency.csv").open()))["arch"]
        summary["repeatability"] = repeatability(design, "fp32")
        path.write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary["repeatability"], indent=2))
        return
    settings = get_settings()
    url = args.database_url or settings.database_url
    settings.ensure_dirs()
    upgrade(url)
    factory = session_factory(url)
    runner = JobRunner(factory, 1, 2.0)
    params = {
        "space": "nb201",
        "count": args.count,
        "seed": args.seed,
        "policies": args.policies,
        "threads": args.threads,
        "pin_threads": args.pin_threads,
    }
    t0 = time.monotonic()
    try:
        job_id = runner.run_inline("measure-host", params)
    finally:
        runner.shutdown()
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None
        if job.status != "succeeded":
            raise SystemExit(f"measure-host {job.status}: {job.error}")
        result = dict(job.result or {})
        rows = s.execute(
            select(Architecture.encoding, Measurement.policy, Device.name, Measurement.value,
                   Measurement.dispersion, Measurement.protocol)
            .join(Architecture).join(Device)
            .where(Device.name.in_(DEVICES), Architecture.space == "nb201")
        ).all()  # fmt: skip
    table: dict[tuple[str, str], dict[str, float]] = {}
    flags: dict[tuple[str, str], dict[str, int]] = {}
    stable, dispersion = [], []
    for enc, policy, device, value, disp, protocol in rows:
        table.setdefault((enc, policy), {})[device] = value
        stable.append(bool((protocol or {}).get("stable")))
        flags.setdefault((enc, policy), {})[device] = int(stable[-1])
        dispersion.append(disp)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, cells in (("host_nb201_latency.csv", table), ("host_nb201_stable.csv", flags)):
        with (args.out / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["arch", "policy", *DEVICES])
            for (enc, policy), values in sorted(cells.items()):
                w.writerow([enc, policy, *[values.get(d, "") for d in DEVICES]])
    ratios = {}
    for device in DEVICES:
        pairs = [
            v[device] / table[(enc, "fp32")][device]
            for (enc, policy), v in table.items()
            if policy == "int8" and device in v and device in table.get((enc, "fp32"), {})
        ]
        ratios[device] = {"median": float(np.median(pairs)), "n": len(pairs)} if pairs else None
    specs = host_specs()
    summary = {
        "host": {"hardware_id": specs["hardware_id"], "hardware": specs["hardware"]},
        "job": result,
        "wall_s": round(time.monotonic() - t0, 1),
        "stored_measurements": len(rows),
        "designs_per_device": {d: sum(d in v for v in table.values()) for d in DEVICES},
        "stable_fraction": float(np.mean(stable)) if stable else None,
        "median_dispersion": float(np.median(dispersion)) if dispersion else None,
        "int8_over_fp32_latency": ratios,
        "repeatability": repeatability(next(iter(table))[0], "fp32") if table else None,
    }
    (args.out / "host_measurement.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
