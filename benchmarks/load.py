"""Benchmark: the service under a bounded load, on loopback.

    python benchmarks/load.py --database-url sqlite:////tmp/edgeopt-learned/registry.db \\
        --artifacts-dir /tmp/edgeopt-learned/artifacts [--workers 2] [--seconds 20]

Starts ``edgeopt serve --workers N`` on a registry that has predictors (and, for the neural
scenario, a learned optimizer: ``benchmarks/learned_service.py`` builds one, or ``make
run`` then ``edgeopt optimizer train``), then keeps ``--concurrency`` requests in flight for
``--seconds`` per scenario after a short warm-up:

- ``predict``: ``POST /predict``, one design on a reference device with its own model;
- ``optimize-search`` / ``optimize-neural``: ``POST /optimize`` for that device within a
  latency budget (each answer is stored, as every optimization is).

``--scenarios`` picks some of them (a registry without a learned optimizer: ``predict
optimize-search``). ``--busy-worker SPACE`` keeps one of the server's job workers training
that space's predictors for the whole run (``POST /predictors/train``, submitted again as
each ends), as a deployment does while it retrains: a space other than the one loaded
(``fbnet``) measures the cores it takes; ``nb201`` also replaces the loaded device's model
mid-run, which every API process then reloads.

Reports requests per second, p50 and p99 latency and errors (non-2xx or failed requests),
and the machine's load average before and after each scenario: the load generator shares
the cores with the server, and anything else running on them shows in the figures.
Writes ``load.json`` (SQLite) or ``load_postgresql.json`` under
``benchmarks/results/<hardware id>/``, with ``_busy-worker`` before ``.json`` under a
training worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from scratch import free_port, wait_ready

from app.settings import Settings, redact_url
from devices.measure import hardware_id, hardware_identity

KEY = "load-key"
DEVICE = "nb201.pixel3"
DESIGN = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
    "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)


SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "predict": ("/predict", {"device": DEVICE, "space": "nb201", "designs": [DESIGN]}),
    "optimize-search": ("/optimize", {"device": DEVICE, "method": "search",
                                      "goals": {"max_latency_ms": 10}}),
    "optimize-neural": ("/optimize", {"device": DEVICE, "method": "neural",
                                      "goals": {"max_latency_ms": 10}}),
}  # fmt: skip


class BusyWorker(threading.Thread):
    """Keeps a predictor-training job of ``space`` queued or running until stopped: a new
    one is submitted as each ends, and the last one cancelled at the stop. Records each
    job's id, status (at the stop, for the last) and seconds."""

    def __init__(self, url: str, space: str) -> None:
        super().__init__(daemon=True)
        self.url, self.space = url, space
        self.stop = threading.Event()
        self.jobs: list[dict] = []
        self.running = threading.Event()  # set once the first job is running

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"X-API-Key": KEY}, timeout=60) as client:
            while not self.stop.is_set():
                r = client.post("/predictors/train", json={"spaces": [self.space]})
                if r.status_code != 202:
                    self.jobs.append({"error": f"{r.status_code}: {r.text[:200]}"})
                    self.running.set()
                    return
                job, t0 = r.json(), time.monotonic()
                while not self.stop.wait(1.0):
                    job = client.get(f"/jobs/{job['id']}").json()
                    if job["status"] == "running":
                        self.running.set()
                    if job["status"] in ("succeeded", "failed", "cancelled", "interrupted"):
                        break
                self.jobs.append({"id": job["id"], "status": job["status"],
                                  "seconds": round(time.monotonic() - t0, 1)})  # fmt: skip
            # the job still running is cancelled, not handed back to the queue at shutdown
            # for the next run's worker to train through that run
            if self.jobs and self.jobs[-1].get("status") in ("queued", "running"):
                client.post(f"/jobs/{self.jobs[-1]['id']}/cancel")


async def scenario(
    url: str, path: str, body: dict, concurrency: int, seconds: float, warmup: float
) -> dict:
    """Keep ``concurrency`` requests in flight; latency of those started after the warm-up."""
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    measure_from, stop = started + warmup, started + warmup + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": KEY}, timeout=60, limits=limits
    ) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, json=body)
                    ok = r.is_success
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                except httpx.HTTPError:
                    ok = False
                if t0 >= measure_from:
                    latencies.append(time.perf_counter() - t0)
                    errors += 0 if ok else 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = np.array(latencies)
    return {
        "path": path,
        "requests": len(done),
        "requests_per_s": len(done) / seconds,
        "p50_ms": 1000 * float(np.percentile(done, 50)) if len(done) else None,
        "p99_ms": 1000 * float(np.percentile(done, 99)) if len(done) else None,
        "errors": errors,
        "statuses": statuses,
        "concurrency": concurrency,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--artifacts-dir", type=Path, required=True)
    parser.add_argument(
        "--queue-url", help="the job queue (EDGEOPT_QUEUE_URL), e.g. redis://127.0.0.1:6379/0"
    )
    parser.add_argument("--artifact-store", choices=["local", "database"], default="local")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument(
        "--busy-worker", metavar="SPACE", help="keep a job worker training this space's predictors"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    port = free_port()
    env = {
        **os.environ,
        "EDGEOPT_DATABASE_URL": args.database_url,
        "EDGEOPT_ARTIFACTS_DIR": str(args.artifacts_dir),
        "EDGEOPT_ARTIFACT_STORE": args.artifact_store,
        "EDGEOPT_API_KEYS": KEY,
        "EDGEOPT_LOG_FORMAT": "text",
    }
    if args.queue_url:
        env["EDGEOPT_QUEUE_URL"] = args.queue_url
    cmd = [sys.executable, "-m", "app", "serve", "--port", str(port),
           "--workers", str(args.workers)]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    busy = BusyWorker(url, args.busy_worker) if args.busy_worker else None
    try:
        wait_ready(url, server, "is the registry migrated?", timeout_s=60)
        probe = httpx.post(f"{url}/predict", json={"device": DEVICE, "space": "nb201",
                                                   "designs": [DESIGN]}, timeout=60)  # fmt: skip
        if probe.status_code != 200:
            raise SystemExit(f"/predict answered {probe.status_code}: {probe.text[:200]}")
        if busy is not None:
            busy.start()
            if not busy.running.wait(120) or any("error" in job for job in busy.jobs):
                raise SystemExit(f"no training job started: {busy.jobs}")
        results = {}
        for name in args.scenarios:
            path, body = SCENARIOS[name]
            for _ in range(2):  # warm every worker's caches
                httpx.post(f"{url}{path}", json=body, headers={"X-API-Key": KEY}, timeout=120)
            before = os.getloadavg()[0]
            results[name] = asyncio.run(
                scenario(url, path, body, args.concurrency, args.seconds, args.warmup)
            )
            r = results[name]
            r["load_average_1min"] = {"before": before, "after": os.getloadavg()[0]}
            print(
                f"{name}: {r['requests_per_s']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, "
                f"p99 {r['p99_ms']:.1f} ms, {r['errors']} errors {r['statuses']}, "
                f"load average {before:.2f} -> {os.getloadavg()[0]:.2f}"
            )
        if busy is not None:
            busy.stop.set()
            busy.join(timeout=10)
            print(f"busy worker: training {busy.space} predictors, jobs {busy.jobs}")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    machine = hardware_id(hardware_identity())
    database = "postgresql" if args.database_url.startswith("postgresql") else "sqlite"
    command = (
        f"python benchmarks/load.py --database-url {redact_url(args.database_url)} "
        f"--artifacts-dir {args.artifacts_dir} --artifact-store {args.artifact_store} "
        f"--workers {args.workers} --concurrency {args.concurrency} --seconds {args.seconds} "
        f"--scenarios {' '.join(args.scenarios)}"
    )
    if args.queue_url:
        command += f" --queue-url {redact_url(args.queue_url)}"
    if busy is not None:
        command += f" --busy-worker {busy.space}"
    doc = {
        "meta": {
            "command": command,
            "date": date.today().isoformat(),
            "machine": machine,
            "platform": f"{platform.machine()} {platform.processor() or platform.system()}",
            "cores": os.cpu_count(),
            "database": args.database_url.split(":")[0],
            "queue": redact_url(
                Settings(
                    database_url=args.database_url,
                    artifacts_dir=args.artifacts_dir,
                    queue_url=args.queue_url,
                ).job_queue_url
            ),
            "artifact_store": args.artifact_store,
            "api_processes": args.workers,
            "busy_worker": None if busy is None else {"space": busy.space, "jobs": busy.jobs},
        },
        "results": results,
    }
    out = args.out / machine
    out.mkdir(parents=True, exist_ok=True)
    name = "load" if database == "sqlite" else f"load_{database}"
    name += "_busy-worker" if busy is not None else ""
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
