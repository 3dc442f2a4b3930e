"""Benchmark: is any point of a reference device's front faster than its measurements support
without saying so?

    python benchmarks/front_plausibility.py [--workdir /tmp/edgeopt-fronts] [--out FILE]

A scratch registry (SQLite) is built through the API as a user would: the NB201 reference
data imported (HELP's 29 devices, each measured on every cell, with CIFAR-10 accuracy; the
LatBench family table is not imported here) and a latency model trained per device. Each
device then gets ``POST /optimize`` with the default method and no goals (the most accurate
design, and the accuracy-latency front of up to 200 points). A front point predicted below
half of the device's fastest measured latency of a working cell (read from the reference
data here, not from the service) must carry ``extrapolated: true``; reported per device:
front points, those below half, how many of them are marked (must be all), points marked
``uncertain`` (90% interval over a factor of 3), and the fastest front point against the
fastest measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from scratch import scratch_registry, wait

from app.main import create_app
from devices.reference import load_reference
from search.plausibility import EXTRAPOLATION_FACTOR, fastest_working
from search.spaces import get_space

KEY = "bench-key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgeopt-fronts"))
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/reference/front_plausibility.json")
    )
    args = parser.parse_args()
    settings = scratch_registry(args.workdir, KEY)
    table = load_reference("nb201")
    dead = get_space("nb201").degenerate(table.encodings)
    names = [d.name for d in table.devices]  # registry names, e.g. nb201.gold_6226
    started = time.monotonic()
    rows: list[dict] = []
    skipped: list[str] = []
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = KEY
        body = {"kind": "import-reference", "params": {"spaces": ["nb201"]}}
        wait(client, client.post("/jobs", json=body).json()["id"])
        body = {"spaces": ["nb201"], "devices": names, "targets": ["latency_ms"]}
        wait(client, client.post("/predictors/train", json=body).json()["id"])
        print(f"{len(names)} devices imported and trained in {time.monotonic() - started:.0f} s")
        for k, name in enumerate(names):
            if table.devices[k].policy != "fp32":  # edgetpu ran int8: no CIFAR-10 int8 accuracy
                skipped.append(f"{name} ({table.devices[k].policy}: no accuracy to make a front)")
                continue
            floor = fastest_working(table.latency_ms[:, k], dead)
            assert floor is not None
            answer = client.post("/optimize", json={"device": name, "policies": ["fp32"]})
            assert answer.status_code == 201, answer.text
            front = answer.json()["pareto"]
            below = [p for p in front if p["latency_ms"] < EXTRAPOLATION_FACTOR * floor]
            row = {
                "device": name,
                "fastest_measured_ms": floor,
                "front_points": len(front),
                "fastest_front_ms": min(p["latency_ms"] for p in front),
                "below_half": len(below),
                "below_half_marked": sum(bool(p["extrapolated"]) for p in below),
                "marked_not_below_half": sum(
                    bool(p["extrapolated"]) for p in front if p not in below
                ),
                "uncertain": sum(bool(p["uncertain"]) for p in front),
            }
            rows.append(row)
            print(json.dumps(row))
    unmarked = sum(r["below_half"] - r["below_half_marked"] for r in rows)
    result = {
        "command": "python benchmarks/front_plausibility.py",
        "date": date.today().isoformat(),
        "machine": "reference (the shipped reference data; no host timing)",
        "python": platform.python_version(),
        "wall_s": round(time.monotonic() - started, 1),
        "summary": {
            "devices": len(rows),
            "skipped": skipped,
            "front_points": sum(r["front_points"] for r in rows),
            "below_half": sum(r["below_half"] for r in rows),
            "below_half_unmarked": unmarked,
            "devices_with_points_below_half": sum(r["below_half"] > 0 for r in rows),
            "uncertain_points": sum(r["uncertain"] for r in rows),
            "fastest_front_over_fastest_measured_min": float(
                np.min([r["fastest_front_ms"] / r["fastest_measured_ms"] for r in rows])
            ),
        },
        "devices": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    if unmarked:
        raise SystemExit(f"{unmarked} front points below half the fastest measured, unmarked")


if __name__ == "__main__":
    main()
