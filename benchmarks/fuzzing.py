"""The API fuzzing both runs use: in process on SQLite (``tests/app/test_fuzz.py``) and
against a running server on PostgreSQL (``benchmarks/fuzz_server.py``).

One configuration (seed, key, examples per operation), one pair of hooks that steer
generated ids, spaces and device names towards the registry (so requests reach past the
lookups that 404), one set of checks and one loop over the operations, so the two runs
differ only in the registry and where the requests go.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

DEFAULT_SEED = 20260
MAX_EXAMPLES = 50  # fuzzing-phase cases per operation; the coverage phase adds its own
REQUEST_TIMEOUT_S = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SPACES = ("nb201", "fbnet", "ofa_mbv3")


@dataclass
class Tally:
    """What was sent and what came back: the figures, and the floor of requests."""

    started: float = field(default_factory=time.monotonic)
    operations: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    other_methods: int = 0  # the coverage phase's TRACE, PUT, ... to a GET-only path (405)

    @property
    def requests(self) -> int:
        return self.operations.total()

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def slowest(self, n: int) -> list[tuple[str, float]]:
        """The ``n`` operations whose requests took the most seconds in all."""
        return sorted(self.seconds.items(), key=lambda item: -item[1])[:n]

    def summary(self) -> str:
        return (
            f"{self.requests} requests to {len(self.operations)} operations "
            f"(and {self.other_methods} with a method the path lacks) in "
            f"{self.elapsed():.0f} s, {self.server_errors} server errors; by status: "
            + ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
            + "; slowest: "
            + ", ".join(f"{op} {s:.0f} s" for op, s in self.slowest(5))
        )


def config(seed: int, key: str, max_examples: int = MAX_EXAMPLES) -> schemathesis.Config:
    """Every request with a write key; a fixed seed and no example database, so a run with
    the same seed sends the same requests."""
    return schemathesis.Config.from_dict(
        {
            "seed": seed,
            "headers": {"X-API-Key": key},
            "generation": {"max-examples": max_examples, "database": "none"},
        }
    )


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


def _registered_device(body: object, devices: Sequence[str]) -> st.SearchStrategy[object]:
    if isinstance(body, dict) and isinstance(body.get("device"), str):
        return st.sampled_from(devices).map(lambda name: {**body, "device": name})
    return st.just(body)


def steer_to_registry(
    schema: schemathesis.BaseSchema, devices: Sequence[str]
) -> schemathesis.BaseSchema:
    """Half the generated path parameters and bodies name what the registry holds (ids 1-8,
    the three spaces, the registered ``devices``); the other half stay as generated."""

    @schema.hook
    def before_generate_path_parameters(
        context: schemathesis.HookContext, strategy: st.SearchStrategy[object]
    ) -> st.SearchStrategy[object]:
        return st.one_of(strategy, strategy.flatmap(_real_ids))

    @schema.hook
    def before_generate_body(
        context: schemathesis.HookContext, strategy: st.SearchStrategy[object]
    ) -> st.SearchStrategy[object]:
        return st.one_of(strategy, strategy.flatmap(lambda body: _registered_device(body, devices)))

    return schema


def _report(exc: BaseException) -> str:
    """A failed operation as schemathesis reports it: each failure and how to replay it."""
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


def fuzz(
    schema: schemathesis.BaseSchema, tally: Tally, timeout_s: float = REQUEST_TIMEOUT_S
) -> dict[str, str]:
    """Send every operation's generated requests and check each answer against the schema.

    Returns the failed operations, each with schemathesis's report (the failures and a
    command that replays them); the other operations still run after one fails.
    """

    def check(case: schemathesis.Case) -> None:
        sent = time.monotonic()
        response = case.call(timeout=timeout_s)
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
    given: dict[str, Any] = {}
    for built in get_all_tests(schema=schema, test_func=check, settings=None, given_kwargs=given):
        if isinstance(built, Err):  # an operation the schema describes wrongly
            error = built.err()
            failed[str(error)] = _report(error)
            continue
        operation, test = built.ok()
        try:
            test()
        except (Exception, FailureGroup) as exc:  # noted; the other operations still run
            failed[operation.label] = _report(exc)
    return failed
