"""Benchmark: what moves a host latency measurement (the reasons behind protocol v3).

    python benchmarks/measurement_noise.py
        [--json benchmarks/results/this-host/measurement_noise.json]

One NB201 design (fp32). (1) Four 2-thread sessions timed in interleaved rounds, with idle
intra-op threads spinning and sleeping: the spread of the session medians. (2) The 1-thread
protocol measurement alone and beside a busy neighbour process (two, on this 2-core
machine): the change of the median and the ``foreign_load`` the protocol records.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from devices.measure import Protocol, measure, session
from search.export import export_design
from search.spaces import NB201

DESIGN = NB201().from_ops(
    ["nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"]
)


def session_spread(path: str, spinning: bool, threads: int = 2) -> dict[str, float]:
    """Max/min - 1 of the medians of 4 sessions timed in 15 interleaved rounds of 10 runs."""
    sessions = [session(path, threads, spinning) for _ in range(4)]
    inp = sessions[0].get_inputs()[0]
    feed = {inp.name: np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    times: list[list[float]] = [[] for _ in sessions]
    for sess in sessions:
        for _ in range(20):
            sess.run(None, feed)
    for _ in range(15):
        for k, sess in enumerate(sessions):
            for _ in range(10):
                t0 = time.perf_counter()
                sess.run(None, feed)
                times[k].append(time.perf_counter() - t0)
    medians = [1000 * float(np.median(t)) for t in times]
    return {"session_medians_ms": medians, "spread": max(medians) / min(medians) - 1}


def with_neighbours(path: str, count: int) -> dict[str, float | None]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.3)
        result = measure(path, Protocol(threads=1))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return {"median_ms": result.median_ms, "foreign_load": result.foreign_load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/this-host/measurement_noise.json")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(export_design("nb201", DESIGN, "fp32", Path(tmp) / "m.onnx").path)
        result = {
            "design": DESIGN,
            "two_threads_spinning": session_spread(path, spinning=True),
            "two_threads_sleeping": session_spread(path, spinning=False),
            "alone": with_neighbours(path, 0),
            "one_busy_neighbour": with_neighbours(path, 1),
            "two_busy_neighbours": with_neighbours(path, 2),
        }
    alone = result["alone"]["median_ms"]
    for key in ("one_busy_neighbour", "two_busy_neighbours"):
        result[key]["change"] = result[key]["median_ms"] / alone - 1
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
