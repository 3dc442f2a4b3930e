"""Benchmark: which summary of the timed runs repeats best (test-retest per statistic).

    python benchmarks/measurement_statistic.py [--designs 40] [--rounds 9]
        [--json benchmarks/results/this-host/measurement_statistic.json]

Samples NB201 designs and times each twice (pass A, then pass B in another order, minutes
later) for three host settings (fp32 1 thread, mixed 1 thread, fp32 2 threads), threads
left to the scheduler (protocol v4) and pinned one per CPU (v5), with the protocol's
layout otherwise: 3 sessions of the model and 3 of the reference design, interleaved
rounds of 10 runs, here a fixed number of rounds. Every run's time is kept, so each
candidate statistic (median of session medians, the protocol so far; lower percentiles;
minima; each alone and relative to the reference) is computed from the same runs and
judged by the share of designs whose two passes agree within +-5% and +-10%. The JSON's
``raw`` holds, per setting, pass and design, [the model's median of session medians in
seconds, the reference's in milliseconds]. Agreement
between two measurements bounds what any predictor can show against one of them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from devices.measure import host_specs, pin_cpus, pinned, session
from devices.normaliser import REFERENCE_DESIGN
from search.export import export_design
from search.spaces import NB201

SETTINGS = [("fp32", 1), ("fp32,int8,int8,int8,fp32", 1), ("fp32", 2)]
SESSIONS = 3
RUNS = 10


def timings(model: str, reference: str, threads: int, rounds: int, pin: bool) -> np.ndarray:
    """Seconds per run, shape (2 [model, reference], sessions, rounds, runs); with ``pin``,
    one CPU per thread as the protocol does (``devices.measure.pinned``)."""
    cpus = pin_cpus(threads) if pin else None
    with pinned(None if cpus is None else cpus[0]):
        return _timings(model, reference, threads, rounds, cpus)


def _timings(
    model: str, reference: str, threads: int, rounds: int, cpus: list[int] | None
) -> np.ndarray:
    sessions = [
        [session(path, threads, cpus=cpus) for _ in range(SESSIONS)] for path in (model, reference)
    ]
    inp = sessions[0][0].get_inputs()[0]
    feed = {inp.name: np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    for group in sessions:
        for sess in group:
            for _ in range(10):
                sess.run(None, feed)
    out = np.zeros((2, SESSIONS, rounds, RUNS))
    for r in range(rounds):
        for k in range(SESSIONS):
            for which in (0, 1):
                sess = sessions[which][k]
                for i in range(RUNS):
                    t0 = time.perf_counter()
                    sess.run(None, feed)
                    out[which, k, r, i] = time.perf_counter() - t0
    return out


def _session_medians(t: np.ndarray) -> np.ndarray:
    return np.median(t.reshape(t.shape[0], -1), axis=1)


def _round_medians(t: np.ndarray) -> np.ndarray:
    return np.median(t, axis=2)


# each maps one model's (sessions, rounds, runs) array to a value
STATISTICS: dict[str, Callable[[np.ndarray], float]] = {
    "median_of_session_medians": lambda t: float(np.median(_session_medians(t))),
    "min_of_session_medians": lambda t: float(np.min(_session_medians(t))),
    "median_all_runs": lambda t: float(np.median(t)),
    "p25_all_runs": lambda t: float(np.percentile(t, 25)),
    "p10_all_runs": lambda t: float(np.percentile(t, 10)),
    "min_all_runs": lambda t: float(np.min(t)),
    "min_of_round_medians": lambda t: float(np.min(_round_medians(t))),
    "p25_of_round_medians": lambda t: float(np.percentile(_round_medians(t), 25)),
}


def paired_ratio(pair: np.ndarray) -> float:
    """Median over sessions and rounds of model / reference round medians (closest in time)."""
    return float(np.median(_round_medians(pair[0]) / _round_medians(pair[1])))


def values(pair: np.ndarray) -> dict[str, float]:
    """Every statistic, raw and relative to the reference timed in the same rounds."""
    out: dict[str, float] = {}
    for name, stat in STATISTICS.items():
        out[name] = stat(pair[0])
        out[f"{name}/reference"] = stat(pair[0]) / stat(pair[1])
    out["paired_round_ratio"] = paired_ratio(pair)
    out["reference_ms"] = 1000 * STATISTICS["median_of_session_medians"](pair[1])
    return out


def agreement(a: list[dict[str, float]], b: list[dict[str, float]]) -> dict[str, dict]:
    """Per statistic: share of designs whose passes agree within +-5% / +-10%, worst ratio."""
    result = {}
    for name in a[0]:
        ratio = np.array([y[name] / x[name] for x, y in zip(a, b, strict=True)])
        # a level shift of the whole machine between passes moves every design alike
        level = float(np.median(ratio))
        result[name] = {
            "within_5pct": float(np.mean(np.abs(ratio - 1) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(ratio - 1) <= 0.10)),
            "within_10pct_of_level": float(np.mean(np.abs(ratio / level - 1) <= 0.10)),
            "level": level,
            "worst": float(np.max(np.abs(np.log(ratio)))),
        }
    return result


def quiet_agreement(
    a: list[dict[str, float]], b: list[dict[str, float]], slow_spell: float = 0.05
) -> dict[str, float | None]:
    """The protocol's statistic on the designs whose reference ran within ``slow_spell`` of
    the quiet level (lower quartile of all reference times) in both passes: what the host
    job's slow-spell check keeps (``devices.normaliser.SLOW_SPELL``)."""
    refs = np.array([[x["reference_ms"], y["reference_ms"]] for x, y in zip(a, b, strict=True)])
    quiet = np.percentile(refs, 25)
    keep = np.all(refs <= quiet * (1 + slow_spell), axis=1)
    name = "median_of_session_medians/reference"
    ratio = np.array([y[name] / x[name] for x, y in zip(a, b, strict=True)])[keep]
    return {
        "designs": int(keep.sum()),
        "within_5pct": float(np.mean(np.abs(ratio - 1) <= 0.05)) if keep.any() else None,
        "within_10pct": float(np.mean(np.abs(ratio - 1) <= 0.10)) if keep.any() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/this-host/measurement_statistic.json")
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        default=[f"{policy} {threads}t" for policy, threads in SETTINGS],
        help='which settings, e.g. "fp32 2t"',
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    designs = NB201().sample(rng, args.designs)
    report: dict[str, object] = {
        "host": host_specs(),
        "designs": len(designs),
        "settings": {},
        "raw": {},
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for policy, threads in [s for s in SETTINGS if f"{s[0]} {s[1]}t" in args.settings]:
            ref = str(export_design("nb201", REFERENCE_DESIGN, policy, Path(tmp) / "r.onnx").path)
            paths = [
                str(export_design("nb201", d, policy, Path(tmp) / f"m{i}.onnx").path)
                for i, d in enumerate(designs)
            ]
            layouts = {"unpinned": False, "pinned": True}
            passes: dict[str, list[list[dict[str, float]]]] = {name: [] for name in layouts}
            for order in (range(len(paths)), rng.permutation(len(paths))):
                got: dict[str, dict[int, dict[str, float]]] = {name: {} for name in layouts}
                for n, i in enumerate(order):
                    # both layouts back to back, alternating which goes first: the machine's
                    # quiet and noisy spells fall on both alike
                    names = list(layouts) if n % 2 == 0 else list(layouts)[::-1]
                    for name in names:
                        pair = timings(paths[i], ref, threads, args.rounds, layouts[name])
                        got[name][int(i)] = values(pair)
                for name in layouts:
                    passes[name].append([got[name][i] for i in range(len(paths))])
            for name in layouts:
                key = f"{policy} {threads}t {name}"
                report["settings"][key] = agreement(*passes[name])
                report["raw"][key] = [
                    [[p["median_of_session_medians"], p["reference_ms"]] for p in one]
                    for one in passes[name]
                ]
                report["settings"][key]["quiet_pairs"] = quiet_agreement(*passes[name])
                current = report["settings"][key]["median_of_session_medians/reference"]
                print(f"{key}: protocol statistic {current}", flush=True)
    report["wall_s"] = round(time.monotonic() - started, 1)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    for key, stats in report["settings"].items():
        print(key)
        print(f"  quiet pairs: {stats['quiet_pairs']}")
        statistics = {k: v for k, v in stats.items() if k != "quiet_pairs"}
        for name, s in sorted(statistics.items(), key=lambda kv: -kv[1]["within_10pct"]):
            print(
                f"  {name:40s} {s['within_5pct']:.3f} {s['within_10pct']:.3f}"
                f" {s['within_10pct_of_level']:.3f} worst {s['worst']:.3f}"
            )


if __name__ == "__main__":
    main()
