"""Benchmark: the API fuzzed against its own schema on a running server, on PostgreSQL.

    python benchmarks/fuzz_server.py [--database-url postgresql+psycopg://...] \\
        [--seed 20260] [--max-examples 50]

``tests/app/test_fuzz.py`` fuzzes the app in process on SQLite; this sends requests made the
same way (``benchmarks/fuzzing.py``: the same seed, hooks and checks) over loopback to a real
``edgeopt serve`` process on PostgreSQL: its own database driver, connection pool,
transactions and error mapping, and the process's own request handling. Steps:

1. a scratch database: ``--database-url`` (an empty one, or one this command seeded
   before), else ``edgeopt_fuzz_server`` on 127.0.0.1, dropped and created anew (and dropped
   at the end unless ``--keep``);
2. ``edgeopt db upgrade`` and ``edgeopt import-reference --space nb201`` (the NB201
   reference devices, all 15,625 designs each, and their accuracy records; no predictors,
   so predictions are 4xx as in the test), unless the database already holds devices;
3. ``edgeopt serve`` on a free port with ``EDGEOPT_JOB_WORKERS_MODE=external`` and no worker,
   so generated job requests are queued, not run (as in the test), and a bootstrap key;
4. schemathesis from the server's ``/openapi.json`` with ``--seed`` and ``--max-examples``
   per operation; generated device names are often the registry's own.

Writes ``fuzz_server_postgresql.json`` under ``benchmarks/results/<hardware id>/``: the seed,
requests per operation and by status, each failed operation with schemathesis's report (the
failures and a curl command that replays them against a server started the same way), the
slowest operations, the duration and the database. The server's log (a 500 logs its
traceback) is kept in ``--workdir``. Exits 1 on any server error (5xx) or answer the schema
does not declare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import schemathesis
from fuzzing import (
    DEFAULT_SEED,
    MAX_EXAMPLES,
    REQUEST_TIMEOUT_S,
    Tally,
    config,
    fuzz,
    steer_to_registry,
)
from scratch import free_port, wait_ready
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from app.db import session_factory
from app.models import Device
from app.settings import redact_url
from devices.measure import hardware_id, hardware_identity

REPO = Path(__file__).resolve().parents[1]

KEY = "fuzz-server-key"
SCRATCH = "postgresql+psycopg://postgres@127.0.0.1:5432/edgeopt_fuzz_server"


def recreate(url: str, drop_only: bool = False) -> None:
    """Drop the database ``url`` names (closing its connections) and create it empty."""
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not drop_only:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def edgeopt(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "app", *args], env=env, cwd=REPO, check=False)
    if done.returncode != 0:
        raise SystemExit(f"edgeopt {' '.join(args)} exited {done.returncode}")


def device_names(url: str) -> list[str]:
    with session_factory(url)() as s:
        return list(s.scalars(select(Device.name).order_by(Device.id)))


def seed_registry(url: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """The NB201 reference data, unless this database already holds devices; says which,
    with the registry's device names."""
    names = device_names(url)
    if names:
        return f"kept the {len(names)} devices already there", names
    # run here, not queued for the workers the server's setting says run elsewhere
    here = {**env, "EDGEOPT_JOB_WORKERS_MODE": "process"}
    edgeopt("import-reference", "--space", "nb201", env=here)
    names = device_names(url)
    return f"NB201 reference data ({len(names)} devices, no predictors)", names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help=f"default: {SCRATCH}, made anew")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--max-examples", type=int, default=MAX_EXAMPLES, help="per operation")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgeopt-fuzz-server"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    started = time.monotonic()
    scratch = args.database_url is None
    db_url = args.database_url or SCRATCH
    if not db_url.startswith("postgresql"):
        raise SystemExit("--database-url: a PostgreSQL URL (the in-process test covers SQLite)")
    if scratch:
        recreate(db_url)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    env = {
        **os.environ,
        "EDGEOPT_DATABASE_URL": db_url,
        "EDGEOPT_ARTIFACTS_DIR": str(args.workdir / "artifacts"),
        "EDGEOPT_OPTUNA_STORAGE": f"sqlite:///{args.workdir / 'optuna.db'}",
        "EDGEOPT_QUEUE_URL": f"sqlite:///{args.workdir / 'queue.db'}",
        "EDGEOPT_API_KEYS": KEY,
        "EDGEOPT_JOB_WORKERS_MODE": "external",
        "EDGEOPT_LOG_FORMAT": "text",
    }
    edgeopt("db", "upgrade", env=env)
    registry, devices = seed_registry(db_url, env)
    print(f"registry: {registry}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = args.workdir / "server.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            env=env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_ready(url, server, f"its log: {log}")
            schema = schemathesis.openapi.from_url(
                f"{url}/openapi.json", config=config(args.seed, KEY, args.max_examples)
            )
            tally = Tally()
            failed = fuzz(steer_to_registry(schema, devices), tally)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    if scratch and not args.keep:
        recreate(db_url, drop_only=True)
    print(f"fuzzing: {tally.summary()}")
    for label, report in failed.items():
        print(f"\n{label}\n{report}")
    machine = hardware_id(hardware_identity())
    replay = (
        f"python benchmarks/fuzz_server.py --seed {args.seed} --max-examples {args.max_examples}"
    )
    doc = {
        "meta": {
            "command": replay,
            "date": date.today().isoformat(),
            "machine": machine,
            "platform": f"{platform.machine()} {platform.processor() or platform.system()}",
            "cores": os.cpu_count(),
            "database": redact_url(db_url),
            "registry": registry,
            "jobs": "queued, not run (EDGEOPT_JOB_WORKERS_MODE=external, no worker)",
        },
        "seed": args.seed,
        "max_examples_per_operation": args.max_examples,
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "requests": tally.requests,
        "requests_with_a_method_the_path_lacks": tally.other_methods,
        "operations": len(tally.operations),
        "requests_per_operation": dict(sorted(tally.operations.items())),
        "statuses": {str(code): n for code, n in sorted(tally.statuses.items())},
        "server_errors": tally.server_errors,
        "failed_operations": [
            {"operation": label, "report": report, "replay": f"{replay} (server log: {log})"}
            for label, report in failed.items()
        ],
        "slowest_operations_s": {op: round(s, 2) for op, s in tally.slowest(10)},
        "fuzzing_s": round(tally.elapsed(), 1),
        "duration_s": round(time.monotonic() - started, 1),
    }
    out = args.out / machine
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz_server_postgresql.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if failed or tally.server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
