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
SQLite only: the contract does not depend on the database.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import app.main
from app.jobs import JobRunner, create_job
from app.settings import Settings
from tests.app.conftest import DEVICES
from tests.conftest import API_KEY

MIN_REQUESTS = 1000
MAX_EXAMPLES = 50  # fuzzing-phase cases per operation; the coverage phase adds its own
REQUEST_TIMEOUT_S = 60
SEED = int(os.environ.get("EDGEOPT_FUZZ_SEED", "20260"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SPACES = ("nb201", "fbnet", "ofa_mbv3")


class QueuedOnly(JobRunner):
    """Records each job as queued, with its parameters checked, and runs none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "consume": False})

    def submit(self, kind: str, params: dict[str, Any]) -> int:
        return create_job(self.factory, kind, params, self.owner)


@dataclass
class Tally:
    """What was sent and what came back: the figures, and the floor of requests."""

    started: float = field(default_factory=time.monotonic)
    operations: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    other_methods: int = 0  # the coverage phase's TRACE, PUT, ... to a GET-only path (405)

    @property
    def requests(self) -> int:
        return self.operations.total()

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        server_errors = sum(n for code, n in self.statuses.items() if code >= 500)
        return (
            f"{self.requests} requests to {len(self.operations)} operations "
            f"(and {self.other_methods} with a method the path lacks) in {elapsed:.0f} s, "
            f"{server_errors} server errors; by status: "
            + ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
            + "; slowest: "
            + ", ".join(f"{op} {s:.0f} s" for op, s in self.seconds.most_common(5))
        )


def _report(exc: BaseException) -> str:
    """A failed operation as schemathesis reports it: each failure and how to replay it."""
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


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


def _known_value(name: str, value: object) -> st.SearchStrategy[object]:
    if name.endswith("_id"):
        return st.integers(1, 8)  # the seeded devices, and the first jobs, tasks, keys
    if name == "space":
        return st.sampled_from(SPACES)
    return st.just(value)


def _real_ids(params: object) -> st.SearchStrategy[object]:
    if not isinstance(params, dict):
        return st.just(params)
    return st.fixed_dictionaries({k: _known_value(k, v) for k, v in params.items()})


def _registered_device(body: object) -> st.SearchStrategy[object]:
    if isinstance(body, dict) and isinstance(body.get("device"), str):
        return st.sampled_from(DEVICES).map(lambda name: {**body, "device": name})
    return st.just(body)


@pytest.fixture
def api_schema(service: FastAPI) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"X-API-Key": API_KEY},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", service, config=config)

    @schema.hook
    def before_generate_path_parameters(
        context: schemathesis.HookContext, strategy: st.SearchStrategy[object]
    ) -> st.SearchStrategy[object]:
        return st.one_of(strategy, strategy.flatmap(_real_ids))

    @schema.hook
    def before_generate_body(
        context: schemathesis.HookContext, strategy: st.SearchStrategy[object]
    ) -> st.SearchStrategy[object]:
        return st.one_of(strategy, strategy.flatmap(_registered_device))

    return schema


@pytest.mark.parametrize("migrated_url", ["sqlite"], indirect=True)
def test_every_answer_is_declared_and_no_server_error(api_schema: schemathesis.BaseSchema) -> None:
    tally = Tally()

    def check(case: schemathesis.Case) -> None:
        sent = time.monotonic()
        response = case.call(timeout=REQUEST_TIMEOUT_S)
        tally.seconds[case.operation.label] += time.monotonic() - sent
        tally.statuses[response.status_code] += 1
        if case.method.upper() == case.operation.method.upper():
            tally.operations[case.operation.label] += 1
        else:
            tally.other_methods += 1
        case.validate_response(response, checks=CHECKS)

    failed: dict[str, str] = {}
    # The per-operation tests (examples, coverage and fuzzing phases) that
    # ``schemathesis.pytest.from_fixture`` runs as subtests; its wrapper reads a private
    # pytest attribute (``Function._nodeid``) that pytest 9.2 no longer has.
    for built in get_all_tests(schema=api_schema, test_func=check, settings=None, given_kwargs={}):
        try:
            operation, test = built.ok()
        except Exception as exc:  # an operation the schema describes wrongly
            failed[str(exc)] = _report(exc)
            continue
        try:
            test()
        except (Exception, FailureGroup) as exc:  # noted; the other operations still run
            failed[operation.label] = _report(exc)
    print(f"\nfuzzing: {tally.summary()}")
    assert not failed, "\n\n".join(f"{label}\n{report}" for label, report in failed.items())
    assert tally.requests >= MIN_REQUESTS, tally.summary()
