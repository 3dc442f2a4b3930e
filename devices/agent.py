"""The measurement agent: runs on any machine with Python and onnxruntime.

It registers (or refreshes) its device with the specs it detects, then loops: lease a task,
download the model, measure it with the same protocol as the host (devices/measure.py),
post the result. It needs only httpx, numpy and onnxruntime (no torch: the server exports).

Robustness: every request is retried with backoff on network errors and 5xx answers (a
server restart is a network error to the agent). A measured result is written to a local
journal *before* it is posted and removed once the server acknowledges it, so a killed agent
re-posts what it measured instead of measuring again; the server acknowledges a repeat
without storing it, so nothing is ever stored twice. A task leased by an agent that died is
leased again once its lease expires, to this agent or another.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from devices.measure import Protocol, host_specs, measure

log = logging.getLogger("edgeopt.agent")


class AgentError(RuntimeError):
    """A refusal the agent cannot retry its way out of (bad key, bad device name)."""


class Agent:
    def __init__(
        self,
        server: str,
        device: str,
        api_key: str,
        journal: Path,
        protocol: Protocol = Protocol(),
        lease_s: float = 120.0,
        poll_s: float = 2.0,
        retry_for_s: float = 600.0,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.device = device
        self.protocol = protocol
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.retry_for_s = retry_for_s
        self.journal = journal
        self.on_event = on_event or (lambda line: log.info(line))
        self.name = self._agent_id()
        self.http = httpx.Client(headers={"X-API-Key": api_key}, timeout=60)
        self.device_id: int | None = None

    def _agent_id(self) -> str:
        """Stable across restarts (kept in the journal folder), unique per machine."""
        path = self.journal.with_suffix(".id")
        if path.is_file():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        ident = f"{socket.gethostname()[:40]}-{uuid.uuid4().hex[:8]}"
        path.write_text(ident)
        return ident

    # -- HTTP with retries -------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.2
        while True:
            try:
                response = self.http.request(method, self.server + path, **kwargs)
                if response.status_code < 500:
                    if response.status_code in (401, 403, 404, 422):
                        raise AgentError(f"{method} {path}: {response.status_code} {response.text}")
                    return response
                problem = f"server answered {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise AgentError(
                    f"{method} {path} kept failing for {self.retry_for_s:.0f} s: {problem}"
                )
            self.on_event(f"retrying {method} {path} in {delay:.1f} s ({problem})")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    # -- journal of results measured but not yet acknowledged --------------------------
    def _pending(self) -> dict[str, dict[str, Any]]:
        if not self.journal.is_file():
            return {}
        return dict(json.loads(self.journal.read_text()))

    def _write_pending(self, pending: dict[str, dict[str, Any]]) -> None:
        tmp = self.journal.with_suffix(".tmp")
        tmp.write_text(json.dumps(pending))
        os.replace(tmp, self.journal)  # atomic: a kill leaves the old or the new journal

    def flush(self) -> int:
        """Post every journalled result; each is removed once the server acknowledges it."""
        pending = self._pending()
        for task_id, body in list(pending.items()):
            response = self._request("POST", f"/tasks/{task_id}/result", json=body)
            if response.status_code == 409:
                self.on_event(f"task {task_id}: {response.json()['error']['message']}; dropped")
            else:
                ack = response.json()
                what = "already stored" if ack["duplicate"] else "stored"
                self.on_event(f"task {task_id}: {what} as measurement {ack['measurement_id']}")
            del pending[task_id]
            self._write_pending(pending)
        return len(pending)

    # -- the loop ----------------------------------------------------------------------
    def register(self) -> int:
        specs = host_specs()
        body = {
            "kind": "cpu",
            "hardware": str(specs.get("cpu", "unknown CPU")),
            "specs": specs,
            "runtime": "onnxruntime",
            "runtime_version": str(specs["onnxruntime"]),
            "threads": self.protocol.threads,
            "batch_size": self.protocol.batch,
        }
        device = self._request("PUT", f"/agents/{self.device}", json=body).json()
        self.device_id = int(device["id"])
        self.on_event(f"registered as {self.device} (device {self.device_id}), agent {self.name}")
        return self.device_id

    def run_once(self) -> int:
        """Lease and measure one task; returns how many tasks were measured (0 or 1)."""
        self.flush()
        leased = self._request(
            "POST",
            f"/devices/{self.device_id}/tasks/lease",
            json={"agent": self.name, "max_tasks": 1, "lease_s": self.lease_s},
        ).json()
        if not leased:
            return 0
        task = leased[0]
        model = self._request("GET", task["model_url"]).content
        result = measure(model, self.protocol)
        pending = self._pending()
        pending[str(task["id"])] = {
            "agent": self.name,
            "median_ms": result.median_ms,
            "dispersion": result.dispersion,
            "repeats": result.repeats,
            "stable": result.stable,
            "protocol": {**result.protocol, "agent": self.name},
        }
        self._write_pending(pending)
        self.on_event(f"task {task['id']}: {result.median_ms:.3f} ms ({task['policy']})")
        self.flush()
        return 1

    def run(self, until_empty: bool = False, max_tasks: int | None = None) -> int:
        """Work until stopped (or the queue is empty, or ``max_tasks`` are done)."""
        if self.device_id is None:
            self.register()
        done = 0
        while max_tasks is None or done < max_tasks:
            n = self.run_once()
            done += n
            if n == 0:
                if until_empty:
                    break
                time.sleep(self.poll_s)
        self.flush()
        return done
