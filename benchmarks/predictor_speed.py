"""Benchmark: train every predictor for the reference devices, then predict a whole space.

    python benchmarks/predictor_speed.py [--json OUT]

Uses a fresh SQLite database in a temporary folder with the shipped reference data imported
(not timed). Times (1) the ``train-predictors`` job over all 66 reference devices and the
NB201 accuracy datasets, (2) predicting all 15,625 NB201 designs for one device (pixel3):
the model alone on encoded designs, encoding included (and the encoding alone, the first
time in the process and warm; and encoding included for the slowest of the NB201 reference
devices, whose models differ in kind and size), and the whole ``/predict`` service path
(accuracy on three datasets + latency + energy lookup), and (3) a warm ``/optimize`` with
method ``search`` over all 15,625 NB201 designs for a device with its own model.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import app.reference_import  # noqa: F401  (registers the import job kind)
from app.db import session_factory, upgrade
from app.jobs import JobRunner
from app.models import Device, Predictor
from app.predict_service import predict_designs
from app.predictor_service import latest_predictors, load_model
from devices.reference import load_reference
from search.spaces import get_space


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    table = load_reference("nb201")
    space = get_space("nb201")
    t0 = time.perf_counter()
    space.encode(table.encodings)  # the first time in this process: rows are worked out
    encode_cold_s = time.perf_counter() - t0
    encode_warm_s = best_of(lambda: space.encode(table.encodings))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        factory = session_factory(url)
        runner = JobRunner(factory, 1, 2.0, Path(tmp) / "artifacts")
        try:
            runner.run_inline("import-reference", {})
            t0 = time.perf_counter()
            runner.run_inline("train-predictors", {})
            train_s = time.perf_counter() - t0
        finally:
            runner.shutdown()
        with factory() as s:
            n_models = s.query(Predictor).count()
            device = s.query(Device).filter_by(name="nb201.pixel3").one()
            model = load_model(
                Path(tmp) / "artifacts",
                latest_predictors(s, "latency_ms", "nb201", "fp32", device.id)[0],
            )
            x = space.encode(table.encodings)
            model_s = best_of(lambda: model.predict(x))
            encode_s = best_of(lambda: model.predict(space.encode(list(table.encodings))))
            slowest_s, slowest = 0.0, ""
            for other in s.query(Device).filter(Device.name.like("nb201.%")).all():
                found = latest_predictors(s, "latency_ms", "nb201", "fp32", other.id)
                if not found:
                    continue
                other_model = load_model(Path(tmp) / "artifacts", found[0])
                took = best_of(
                    lambda m=other_model: m.predict(space.encode(list(table.encodings))), 3
                )
                if took > slowest_s:
                    slowest_s, slowest = took, other.name
            from app.optimize_service import optimize
            from app.schemas import OptimizeRequest

            request = OptimizeRequest.model_validate(
                {"device": "nb201.pixel3", "method": "search", "goals": {"max_latency_ms": 10}}
            )
            optimize_s = best_of(lambda: optimize(s, Path(tmp) / "artifacts", request), repeats=3)
            s.rollback()
            service_s = best_of(
                lambda: predict_designs(
                    s, Path(tmp) / "artifacts", device, "nb201", "fp32", table.encodings
                ),
                repeats=3,
            )
    result = {
        "predictors_trained": n_models,
        "train_all_s": round(train_s, 1),
        "predict_15625_model_ms": round(1000 * model_s, 1),
        "predict_15625_with_encoding_ms": round(1000 * encode_s, 1),
        "predict_15625_with_encoding_slowest_device_ms": round(1000 * slowest_s, 1),
        "slowest_device": slowest,
        "encode_15625_first_ms": round(1000 * encode_cold_s, 1),
        "encode_15625_warm_ms": round(1000 * encode_warm_s, 1),
        "predict_15625_service_ms": round(1000 * service_s, 1),
        "optimize_nb201_search_warm_ms": round(1000 * optimize_s, 1),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
