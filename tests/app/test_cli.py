"""The edgeopt CLI, run as a user runs it: in a child process, against a real database."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import select

from app.db import session_factory
from app.models import Job
from app.settings import Settings
from devices.reference import load_reference
from tests.app.conftest import flag_unstable, seed_slice
from tests.processes import edgeopt, edgeopt_job


def env_for(settings: Settings) -> dict[str, str]:
    return {
        "EDGEOPT_DATABASE_URL": settings.database_url,
        "EDGEOPT_ARTIFACTS_DIR": str(settings.artifacts_dir),
    }


def test_import_list_show_and_jobs(settings: Settings) -> None:
    env = env_for(settings)
    imported = edgeopt("import-reference", "--space", "ofa_mbv3", env=env)
    assert imported.returncode == 0, imported.stderr
    assert "60000" in imported.stdout
    assert "100%" in imported.stderr  # the progress bar

    again = edgeopt("import-reference", "--space", "ofa_mbv3", env=env)
    assert again.returncode == 0
    assert "│ ofa_mbv3 │ 0 " in again.stdout

    listed = edgeopt("devices", "list", "--q", "v100", env=env)
    assert listed.returncode == 0
    assert "3 devices" in listed.stdout

    shown = edgeopt("devices", "show", "ofa_mbv3.v100_32", env=env)
    assert shown.returncode == 0
    assert "batch_size: 32" in shown.stdout
    assert "ofa_mbv3 fp32 latency_ms: 5000" in shown.stdout

    jobs = edgeopt("jobs", "list", env=env)
    assert "import-reference" in jobs.stdout and "succeeded" in jobs.stdout
    watched = edgeopt("jobs", "watch", "1", env=env)
    assert watched.returncode == 0 and "succeeded" in watched.stdout


def test_a_job_shows_its_progress_while_it_runs(settings: Settings) -> None:
    """Piped (as in docker logs or CI), a job's progress lines come while the job runs: one
    at once, then more as it advances, each seen while the job row is still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "import-reference", "--space", "nb201"],
        env={**os.environ, **env_for(settings)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    stderr = proc.stderr
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stderr:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    factory = session_factory(settings.database_url)

    def job_row() -> tuple[str, float]:
        with factory() as s:
            job = s.scalars(select(Job)).one()
            return job.status, job.progress

    try:
        first = lines.get(timeout=120)
        assert re.match(r"import-reference +0% \S+ started$", first), first
        assert job_row()[0] in ("queued", "running")
        during = []
        while len(during) < 2:  # two distinct partial values, each while the job runs
            line = lines.get(timeout=120)  # a line at least every 15 s while it runs
            partial = re.match(r"import-reference +(\d+)% ", line)
            assert partial, line
            if 0 < int(partial[1]) < 100 and partial[1] not in {p for p, _ in during}:
                during.append((partial[1], job_row()))
        assert all(status == "running" and done < 1 for _, (status, done) in during), during
        assert proc.wait(timeout=600) == 0
        reader.join(10)
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        assert re.match(r"import-reference 100% .*imported 425610 measurements", rest[-1]), rest
        assert job_row() == ("succeeded", 1.0)
    finally:
        proc.kill()
        proc.wait()


def test_bad_arguments_exit_non_zero_with_a_message(settings: Settings) -> None:
    env = env_for(settings)
    cases = [
        (["devices", "show", "no-such-device"], "no device named 'no-such-device'"),
        (["import-reference", "--space", "darts"], "unknown space 'darts'"),
        (["jobs", "show", "999"], "no job with id 999"),
        (["jobs", "show", "abc"], "Invalid value for 'job_id'"),
        (["devices", "list", "--limit", "0"], "Invalid value for '--limit'"),
        # the API's 422, not a job run as another method
        (["optimize", "--device", "pixel3", "--method", "neural", "--max-measurements", "6"],
         "method 'neural' answers from predictions"),
    ]  # fmt: skip
    for args, message in cases:
        result = edgeopt(*args, env=env)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)


def test_commands_on_a_database_that_is_behind(tmp_path: Path) -> None:
    env = {"EDGEOPT_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    behind = edgeopt("devices", "list", env=env)
    assert behind.returncode == 1
    assert "run `edgeopt db upgrade`" in behind.stderr
    assert edgeopt("db", "upgrade", env=env).returncode == 0
    assert edgeopt("devices", "list", env=env).returncode == 0
    unreachable = edgeopt(
        "db", "upgrade", env={"EDGEOPT_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1:1/x"}
    )
    assert unreachable.returncode == 1
    assert "cannot use the database" in unreachable.stderr


def test_a_database_password_stays_out_of_the_output(tmp_path: Path) -> None:
    """A database that cannot be reached is named, its password hidden."""
    env = {
        "EDGEOPT_DATABASE_URL": "postgresql+psycopg://edgeopt:s3cret-pw@127.0.0.1:1/x",
        "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    for args in (["db", "upgrade"], ["db", "current"], ["devices", "list"], ["worker"]):
        result = edgeopt(*args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert "cannot use the database (postgresql+psycopg://edgeopt:***@127.0.0.1:1/x)" in (
            result.stderr
        ), (args, result.stderr)
        assert "s3cret-pw" not in result.stdout + result.stderr, args


def test_predictor_list_scores_flagged_measurements_apart(settings: Settings) -> None:
    """A device with measurements its protocol flagged gets a second +-10% figure."""
    seed_slice(settings.database_url, load_reference("nb201"), ["gold_6226", "raspi4"], 300)
    flag_unstable(settings.database_url, "raspi4", 100)
    env = {**env_for(settings), "COLUMNS": "200"}
    trained = edgeopt_job("predictors", "train", "--space", "nb201", "--min-rows", "100", env=env)
    assert trained.returncode == 0, trained.stderr
    listed = edgeopt("predictors", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {
        cells[3]: cells
        for line in listed.stdout.splitlines()
        if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 10  # body rows
    }
    assert "stable +-10%" in listed.stdout.splitlines()[1]  # the header
    assert 0.0 <= float(rows["raspi4"][8]) <= 1.0
    assert rows["gold_6226"][8] == ""  # nothing flagged there
    assert float(rows["gold_6226"][7]) > 0.5
