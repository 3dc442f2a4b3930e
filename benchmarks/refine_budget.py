"""Benchmark: do measure-and-refine answers on this host stay within budget when measured again?

    python benchmarks/refine_budget.py [--runs 20] [--threads 1] [--max-measurements 6]
        [--workdir /tmp/edgeopt-refine] [--out FILE] [--measure-budget-s 5]

A scratch registry (SQLite) is built through the API as a user would: the NB201 reference
data imported and latency models trained for a few CPU and mobile reference devices (the
basis the host's transfer model adapts from). This host's setting is registered the way
``edgeopt measure`` registers it. Each run then asks ``POST /optimize`` with
``max_measurements`` (the ``optimize-refine`` job the service runs) for the most accurate
CIFAR-10 design within a budget, and verifies the answer with
``POST /optimizations/{id}/verify`` (a fresh measurement, the job the service runs). Budgets
are multiples of the host's reference-design baseline (the normaliser's scale), cycled over
the runs. Reported: the share of answers whose re-verification is within the budget (the
target is at least 95%), and per run the answer's median, spread, bound and re-measurement.

Measurements made in one run are stored and reused by the next (as in the service), so later
runs measure fewer new designs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

from fastapi.testclient import TestClient
from scratch import scratch_registry, wait

from app.db import session_factory, unit_of_work
from app.main import create_app
from app.measure_service import register_host
from app.models import Device
from devices.measure import hardware_id, hardware_identity
from devices.normaliser import REFERENCE_DESIGN

KEY = "bench-key"
BASIS = [
    f"nb201.{name}"
    for name in ("gold_6226", "gold_6240", "silver_4114", "silver_4210r", "raspi4", "pixel3")
]
SCALES = (0.7, 0.85, 1.0, 1.2, 1.5)  # budgets: these times the reference design's baseline


def baseline_ms(url: str, device_id: int) -> float | None:
    """The normaliser's fp32 reference baseline of the device (None before a measurement)."""
    with session_factory(url)() as s:
        device = s.get(Device, device_id)
        assert device is not None
        return ((device.specs or {}).get("reference_ms") or {}).get("fp32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-measurements", type=int, default=6)
    parser.add_argument("--measure-budget-s", type=float, default=5.0)
    parser.add_argument(
        "--busy-wait-s", type=float, default=1800.0, help="longest wait for a quiet baseline"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgeopt-refine"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    machine = hardware_id(hardware_identity())
    out_path = args.out or Path(f"benchmarks/results/{machine}/refine_budget.json")
    settings = scratch_registry(args.workdir, KEY).model_copy(
        update={"measure_budget_s": args.measure_budget_s, "busy_wait_s": args.busy_wait_s}
    )
    runs: list[dict] = []
    started = time.monotonic()
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = KEY
        body = {"kind": "import-reference", "params": {"spaces": ["nb201"]}}
        wait(client, client.post("/jobs", json=body).json()["id"])
        body = {"spaces": ["nb201"], "devices": BASIS, "targets": ["latency_ms"]}
        wait(client, client.post("/predictors/train", json=body).json()["id"])
        # the reference design measured first, as `edgeopt measure` would: it times the
        # normaliser's baseline, the scale the budgets are multiples of
        body = {
            "kind": "measure-host",
            "params": {"designs": [REFERENCE_DESIGN], "threads": [args.threads],
                       "budget_s": args.measure_budget_s, "busy_wait_s": args.busy_wait_s},
        }  # fmt: skip
        wait(client, client.post("/jobs", json=body).json()["id"])
        with unit_of_work(session_factory(settings.database_url)) as s:
            host = register_host(s, args.threads)
            name, host_id = host.name, host.id
        base = baseline_ms(settings.database_url, host_id)
        assert base is not None
        print(f"basis trained, baseline {base:.3f} ms in {time.monotonic() - started:.0f} s")
        for k in range(args.runs):
            scale = SCALES[k % len(SCALES)]
            goals = {"max_latency_ms": round(scale * base, 4)}
            req = {
                "device": name,
                "policies": ["fp32"],
                "goals": goals,
                "max_measurements": args.max_measurements,
                "confidence": 0.9,
            }
            t0 = time.monotonic()
            started_job = client.post("/optimize", json=req)
            assert started_job.status_code == 202, started_job.text
            job = wait(client, started_job.json()["job_id"])
            optimization_id = job["result"]["optimization_id"]
            answer = client.get(f"/optimizations/{optimization_id}").json()
            row: dict = {
                "run": k,
                "budget_ms": goals["max_latency_ms"],
                "scale": scale,
                "feasible": answer["feasible"],
                "new_measurements": answer["measurements"],
                "refine_s": round(time.monotonic() - t0, 1),
            }
            design = answer["design"]
            if design is not None:
                refined = answer["verification"] or {}
                verify = client.post(f"/optimizations/{optimization_id}/verify")
                assert verify.status_code == 202, verify.text
                wait(client, verify.json()["job_id"])
                again = client.get(f"/optimizations/{optimization_id}").json()
                v = again["verification"]
                row.update(
                    arch=design["arch"],
                    measured_ms=refined.get("measured_latency_ms"),
                    spread=refined.get("spread"),
                    bound_ms=refined.get("bound_ms"),
                    remeasured_ms=v["measured_latency_ms"],
                    ratio=v["measured_latency_ms"] / refined["measured_latency_ms"]
                    if refined.get("measured_latency_ms")
                    else None,
                    within_budget=v["meets_budget"],
                    shown_as_miss=again["message"].startswith("missed"),
                )
            runs.append(row)
            print(json.dumps(row))
    answered = [r for r in runs if r.get("within_budget") is not None]
    within = sum(bool(r["within_budget"]) for r in answered)
    ratios = sorted(r["ratio"] for r in answered if r.get("ratio"))
    result = {
        "command": "python benchmarks/refine_budget.py"
        + (f" --runs {args.runs}" if args.runs != 20 else ""),
        "date": date.today().isoformat(),
        "machine": machine,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "device": name,
        "baseline_ms": base,
        "wall_s": round(time.monotonic() - started, 1),
        "summary": {
            "runs": len(runs),
            "answered": len(answered),
            "within_budget_on_reverification": within,
            "share_within": within / len(answered) if answered else None,
            "misses_shown_as_miss": sum(
                bool(r.get("shown_as_miss")) for r in answered if not r["within_budget"]
            ),
            "remeasured_over_measured": {
                "min": ratios[0] if ratios else None,
                "median": ratios[len(ratios) // 2] if ratios else None,
                "max": ratios[-1] if ratios else None,
            },
        },
        "runs": runs,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
