"""Benchmark: time the full reference import (about 617,000 measurements) into a fresh database.

    python benchmarks/import_reference.py [--database-url URL] [--json OUT]

Without --database-url it uses a new SQLite file in a temporary folder (the embedded
default). It runs the import job twice: the first run loads everything, the second must
change nothing (idempotence), and both are timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import sqlalchemy
from sqlalchemy import func, select

import app.reference_import  # noqa: F401  (registers the job kind)
from app.db import session_factory, upgrade
from app.jobs import JobRunner
from app.models import AccuracyRecord, Device, Job, Measurement


def run(url: str) -> dict[str, object]:
    upgrade(url)
    factory = session_factory(url)
    runner = JobRunner(factory)
    timings = []
    try:
        for _ in range(2):
            start = time.perf_counter()
            job_id = runner.run_inline("import-reference", {})
            timings.append(time.perf_counter() - start)
            with factory() as s:
                job = s.get(Job, job_id)
                assert job is not None and job.status == "succeeded", job and job.error
    finally:
        runner.shutdown()
    with factory() as s:
        counts = {
            "devices": s.scalar(select(func.count()).select_from(Device)),
            "measurements": s.scalar(select(func.count()).select_from(Measurement)),
            "accuracy_records": s.scalar(select(func.count()).select_from(AccuracyRecord)),
        }
    return {
        "backend": url.split(":")[0],
        "first_import_s": round(timings[0], 2),
        "second_import_s": round(timings[1], 2),
        **counts,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlalchemy": sqlalchemy.__version__,
            "platform": platform.platform(),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a new SQLite file")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        result = run(url)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
