"""Benchmark: re-measure designs of a stored host table (test-retest, or drift).

    python benchmarks/host_retest.py --csv TABLE.csv [--database-url URL] [--count 100]
        [--policy fp32] [--device host-ort-cpu-1t] [--json OUT]

Re-measures ``count`` designs of a table ``host_measurement.py`` wrote, on this machine,
under the current protocol, and compares with the stored values. On the machine that
measured the table this is test-retest agreement: the share within +-10% of the stored value
is the ceiling for any predictor judged against those measurements. On another machine
under the same name (a VM placed on another CPU generation) the ratios spread in a way no
single factor removes, which is why host devices record a hardware id and refuse to mix
machines (``devices.measure.hardware_identity``). With ``--stable`` (the flags
``host_measurement.py`` wrote beside the table) the agreement is also given over the designs
whose stored and fresh measurements were both called stable by the protocol.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import select

from app.db import session_factory
from app.measure_service import host_normaliser
from app.models import Device
from devices.measure import Protocol, host_specs, measure
from search.export import export_design


def _table_hardware_id(table: Path) -> str | None:
    """The hardware id ``host_measurement.py`` recorded beside the table, if it did
    (``host_nb201_latency_X.csv`` kept beside ``host_measurement_X.json``)."""
    suffix = table.stem.removeprefix("host_nb201_latency")
    summary = table.with_name(f"host_measurement{suffix}.json")
    if not summary.is_file():
        return None
    return json.loads(summary.read_text()).get("host", {}).get("hardware_id")


def _timer(url: str | None, device: str, folder: Path) -> Callable[..., tuple[float, bool]]:
    """Raw ``measure`` (v3 tables), or the host job's normalised one on ``device``'s scale;
    each gives the value and whether its protocol called it stable."""
    if url is None:

        def raw(path: str, precisions: list[str], protocol: Protocol) -> tuple[float, bool]:
            result = measure(path, protocol)
            return result.median_ms, result.stable

        return raw
    factory = session_factory(url)
    with factory() as s:
        device_id = s.scalar(select(Device.id).where(Device.name == device))
    if device_id is None:
        raise SystemExit(f"{url}: no device {device}")
    normalised = host_normaliser(factory, folder, measure)

    def timed(path: str, precisions: list[str], protocol: Protocol) -> tuple[float, bool]:
        result = normalised(path, device_id, precisions, protocol)
        return result.median_ms, result.stable

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--policy", default="fp32,int8,int8,int8,fp32")
    parser.add_argument("--device", default="host-ort-cpu-1t")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pin-threads", action="store_true", help="Protocol(pinned=True)")
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/this-host/host_retest.json")
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="the registry that measured the table: re-measure as its job does (protocol v4,"
        " relative to the reference, on the device's baseline); without it, raw timings (v3)",
    )
    parser.add_argument("--stable", type=Path, default=None, help="host_nb201_stable.csv")
    args = parser.parse_args()
    with args.csv.open() as f:
        rows = [r for r in csv.DictReader(f) if r["policy"] == args.policy and r[args.device]]
    flags: dict[str, str] = {}
    if args.stable is not None:
        with args.stable.open() as f:
            table = csv.DictReader(f)
            flags = {r["arch"]: r[args.device] for r in table if r["policy"] == args.policy}
    if not rows:
        raise SystemExit(f"{args.csv}: no {args.device} values for policy {args.policy}")
    threads = int(args.device.rsplit("-", 1)[1].rstrip("t"))
    chosen = np.random.default_rng(args.seed).choice(len(rows), min(args.count, len(rows)), False)
    pairs, both_stable, records = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        timed = _timer(args.database_url, args.device, Path(tmp))
        for i in chosen:
            row = rows[i]
            exported = export_design("nb201", row["arch"], args.policy, Path(tmp) / "m.onnx")
            now, stable_now = timed(
                str(exported.path),
                exported.policy,
                Protocol(threads=threads, pinned=args.pin_threads),
            )
            pairs.append((float(row[args.device]), now))
            both_stable.append(stable_now and flags.get(row["arch"], "1") != "0")
            records.append(
                {"arch": row["arch"], "stored": pairs[-1][0], "now": now, "stable_now": stable_now}
            )
            print(f"{row['arch']}  stored {pairs[-1][0]:.3f} ms  now {now:.3f} ms", flush=True)
    ratio = np.array([now / stored for stored, now in pairs])
    level = float(np.median(ratio))
    result = {
        "table": str(args.csv),
        "policy": args.policy,
        "device": args.device,
        "designs": len(pairs),
        "hardware_id_now": host_specs()["hardware_id"],
        "hardware_id_table": _table_hardware_id(args.csv),
        "within_5pct": float(np.mean(np.abs(ratio - 1) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(ratio - 1) <= 0.10)),
        "ratio_median": level,
        "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max()),
        # after removing the best single factor, how far designs still disagree
        "within_5pct_of_median_ratio": float(np.mean(np.abs(ratio / level - 1) <= 0.05)),
        "within_10pct_of_median_ratio": float(np.mean(np.abs(ratio / level - 1) <= 0.10)),
    }
    sure = np.array(both_stable)
    if flags and sure.any():
        result["both_stable"] = int(sure.sum())
        result["within_10pct_both_stable"] = float(np.mean(np.abs(ratio[sure] - 1) <= 0.10))
    result["per_design"] = records
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_design"}, indent=2))


if __name__ == "__main__":
    main()
