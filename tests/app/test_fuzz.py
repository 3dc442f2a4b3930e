"""The API against its own OpenAPI schema: schemathesis generates requests, valid and
invalid, for every operation and sends them in process with a write key; every answer must
be no server error (5xx), with a status code, content type and body the schema declares.

The registry holds the NB201 slice of the other service tests (4 reference devices x 400
designs, no predictors: predictions are then 4xx, which the schema declares), and generated
ids and spaces are often real ones, so requests reach past the lookups that 404. Jobs are
recorded but not run: their bodies train predictors, import reference data or measure on
this host for minutes each, which a thousand generated requests would multiply, and their
own tests (test_jobs, test_predictors, test_optimize, ...) run them. The routes that start
them are fuzzed like the others; their answers end once the job is queued.

Bounded by ``MAX_EXAMPLES`` per operation and ``REQUEST_TIMEOUT_S`` per request (about
4,500 requests in a minute on 2 cores; ``pytest -s`` prints the figures), with a fixed seed
so CI fails or passes the same way every run (``EDGEOPT_FUZZ_SEED`` explores others).
SQLite only here; ``benchmarks/fuzz_server.py`` sends the same requests to a running server
on PostgreSQL (the hooks, checks and loop are ``benchmarks/fuzzing.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.python.asgi import shutdown_lifespans

import app.main
from app.jobs import JobRunner, create_job
from app.settings import Settings
from benchmarks.fuzzing import DEFAULT_SEED, Tally, config, fuzz, steer_to_registry
from tests.app.conftest import DEVICES
from tests.conftest import API_KEY

MIN_REQUESTS = 1000
SEED = int(os.environ.get("EDGEOPT_FUZZ_SEED", str(DEFAULT_SEED)))


class QueuedOnly(JobRunner):
    """Records each job as queued, with its parameters checked, and runs none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "consume": False})

    def submit(self, kind: str, params: dict[str, Any]) -> int:
        return create_job(self.factory, kind, params, self.owner)


@pytest.fixture
def service(
    settings: Settings,
    seeded: dict[str, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FastAPI]:
    monkeypatch.setattr(app.main, "JobRunner", QueuedOnly)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    yield app.main.create_app(settings.model_copy(update={"optuna_storage": storage}))
    # schemathesis keeps an in-process app's lifespan running between requests; end it here,
    # while the database is still there (its pytest plugin also does, after each test)
    shutdown_lifespans()


@pytest.fixture
def api_schema(service: FastAPI) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_asgi("/openapi.json", service, config=config(SEED, API_KEY))
    return steer_to_registry(schema, DEVICES)


@pytest.mark.parametrize("migrated_url", ["sqlite"], indirect=True)
def test_every_answer_is_declared_and_no_server_error(api_schema: schemathesis.BaseSchema) -> None:
    tally = Tally()
    failed = fuzz(api_schema, tally)
    print(f"\nfuzzing: {tally.summary()}")
    assert not failed, "\n\n".join(f"{label}\n{report}" for label, report in failed.items())
    assert tally.requests >= MIN_REQUESTS, tally.summary()
