"""Benchmark: ``POST /optimize`` and ``/optimize/front`` as served, search beside neural.

    python benchmarks/learned_service.py [--workdir /tmp/edgeopt-learned] [--synthetic 4000]

A scratch registry (SQLite) is built through the API as a user would: the NB201 reference
devices imported, the 6 standard test devices removed (they play new users' devices),
predictors trained, then the learned optimizer trained (both jobs). Each test device
then asks as a new user does, with an inline profile holding its measured fingerprint
(answered by few-shot transfer or a proxy, never by a model of its own): ``POST /optimize``
at the 10/25/50/75th percentiles of its true latencies with ``method`` search and neural,
and ``POST /optimize/front`` with 20 budgets. Reported: the service's own ``elapsed_s``
and the request's wall time (in-process ASGI), medians; true latency and accuracy of each
answer from the reference data. Writes ``learned_service.json`` under ``--out``.
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
from devices.fingerprint import fingerprint
from devices.measure import hardware_id, hardware_identity
from devices.reference import load_reference

TEST = ["titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss"]
KEY = "bench-key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgeopt-learned"))
    parser.add_argument("--synthetic", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    settings = scratch_registry(args.workdir, KEY)
    ref = load_reference("nb201")
    column = {d.column: j for j, d in enumerate(ref.devices)}
    row = {e: i for i, e in enumerate(ref.encodings)}
    accuracy = ref.accuracies["cifar10"]
    prints = fingerprint("nb201")
    setup: dict[str, float] = {}
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = KEY
        started = time.perf_counter()
        body = {"kind": "import-reference", "params": {"spaces": ["nb201"]}}
        wait(client, client.post("/jobs", json=body).json()["id"])
        for name in TEST:
            found = client.get("/devices", params={"q": name, "limit": 100}).json()["items"]
            device = next(d for d in found if d["name"] == f"nb201.{name}")
            assert client.delete(f"/devices/{device['id']}").status_code == 204
        setup["import_s"] = time.perf_counter() - started
        started = time.perf_counter()
        wait(client, client.post("/predictors/train", json={"spaces": ["nb201"]}).json()["id"])
        setup["predictors_s"] = time.perf_counter() - started
        started = time.perf_counter()
        body = {"synthetic": args.synthetic}
        job = wait(client, client.post("/optimizers/train", json=body).json()["id"])
        setup["learned_optimizer_s"] = time.perf_counter() - started
        queries: list[dict] = []
        fronts: list[dict] = []
        for name in TEST:
            truth = ref.latency_ms[:, column[name]]
            profile = {
                "name": f"new-{name}",
                "kind": "cpu",
                "policy": "fp32",
                "measurements": [{"arch": e, "latency_ms": float(truth[row[e]])} for e in prints],
            }
            usable = np.isfinite(truth) & np.isfinite(accuracy)
            for method in ("search", "neural"):
                client.post("/optimize", json={"profile": profile, "method": method})  # warm
                for pct in (10, 25, 50, 75):
                    budget = float(np.percentile(truth[usable], pct))
                    body = {"profile": profile, "method": method, "policies": ["fp32"],
                            "goals": {"max_latency_ms": budget}}  # fmt: skip
                    t0 = time.perf_counter()
                    answer = client.post("/optimize", json=body).json()
                    wall = time.perf_counter() - t0
                    design = answer.get("design")
                    best = float(accuracy[usable & (truth <= budget)].max())
                    queries.append(
                        {
                            "device": name,
                            "method": method,
                            "percentile": pct,
                            "elapsed_s": answer["elapsed_s"],
                            "wall_s": wall,
                            "answered_by": answer["answered_by"]["optimizer"]["method"],
                            "feasible": answer["feasible"],
                            "regret": None if design is None else
                            best - float(accuracy[row[design["arch"]]]),
                            "violation": None if design is None else
                            bool(truth[row[design["arch"]]] > budget),
                        }
                    )  # fmt: skip
                budgets = [float(np.percentile(truth[usable], p)) for p in np.linspace(5, 95, 20)]
                body = {"profile": profile, "method": method, "policies": ["fp32"],
                        "budgets_ms": budgets}  # fmt: skip
                t0 = time.perf_counter()
                front = client.post("/optimize/front", json=body).json()
                fronts.append(
                    {
                        "device": name,
                        "method": method,
                        "elapsed_s": front["elapsed_s"],
                        "wall_s": time.perf_counter() - t0,
                        "answered_by_search": sum(
                            p["answered_by"] == "search" for p in front["points"]
                        ),
                    }
                )
        optimizer = client.get("/optimizers").json()["items"][0]
    summary = {}
    for method in ("search", "neural"):
        mine = [q for q in queries if q["method"] == method]
        answered = [q for q in mine if q["regret"] is not None]
        summary[method] = {
            "median_elapsed_ms": 1000 * float(np.median([q["elapsed_s"] for q in mine])),
            "median_wall_ms": 1000 * float(np.median([q["wall_s"] for q in mine])),
            "mean_regret": float(np.mean([q["regret"] for q in answered])),
            "violation_rate": float(np.mean([q["violation"] for q in answered])),
            "answered_by_search": sum(q["answered_by"] == "search" for q in mine),
            "queries": len(mine),
            "front_median_wall_ms": 1000
            * float(np.median([f["wall_s"] for f in fronts if f["method"] == method])),
        }
    doc = {
        "meta": {
            "command": f"python benchmarks/learned_service.py --synthetic {args.synthetic}",
            "date": date.today().isoformat(),
            "machine": hardware_id(hardware_identity()),
            "platform": f"{platform.machine()} {platform.processor() or platform.system()}",
        },
        "setup": setup | {"train_job": job["result"]},
        "optimizer": optimizer,
        "summary": summary,
        "queries": queries,
        "fronts": fronts,
    }
    out = args.out / doc["meta"]["machine"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "learned_service.json").write_text(json.dumps(doc, indent=2))
    print(json.dumps({"setup": setup, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
