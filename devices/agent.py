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

Several agents on one machine: each running agent holds its journal (an advisory lock, freed
when the process ends, however it ends), so by default each takes the first journal no
running agent holds (:meth:`Journal.own`) and with it its own identity; a restarted agent
takes back a journal its predecessor left. Agents told to share one journal share its
identity too, and every change to the journal is made under a lock and written atomically.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; give each agent its own journal there
    fcntl = None  # type: ignore[assignment]

import httpx

from devices.measure import Protocol, host_specs, measure

log = logging.getLogger("edgeopt.agent")


class AgentError(RuntimeError):
    """A refusal the agent cannot retry its way out of (bad key, bad device name)."""


class JournalInUse(AgentError):
    """The journal belongs to another running agent."""


class JournalUnreadable(AgentError):
    """The journal exists but cannot be read as one."""


def _try_lock(path: Path) -> IO[str] | None:
    """An exclusive lock on ``path`` held while the returned file stays open; None if held."""
    handle = open(path, "a")  # noqa: SIM115 - held open for the agent's lifetime
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


class Journal:
    """Results measured but not yet acknowledged, and the agent identity that goes with them.

    The journal is a JSON file ``{task id: result body}`` beside its identity (``.id``). Not
    shared, it is held (``.owner`` locked) for as long as the agent runs: a second agent on
    it is refused with the way out, where two would once overwrite each other's file.
    """

    def __init__(self, path: Path, share: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._owner: IO[str] | None = None
        if not share:
            self._owner = _try_lock(path.with_suffix(".owner"))
            if self._owner is None:
                raise JournalInUse(
                    f"journal {path} is held by another running agent: leave --journal out "
                    "(each agent then takes a journal of its own), give each agent its own "
                    "--journal, or pass --share-journal to share it and its agent identity"
                )

    @classmethod
    def own(cls, folder: Path, device: str) -> Journal:
        """The first of ``agent-DEVICE.journal.json``, ``agent-DEVICE@2.journal.json``, ...
        that no running agent holds ('@' is never in a device name), held from now on."""
        for n in itertools.count(1):
            suffix = "" if n == 1 else f"@{n}"
            try:
                return cls(folder / f"agent-{device}{suffix}.journal.json")
            except JournalInUse:
                continue
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Let another agent take the journal (also done by the process ending)."""
        if self._owner is not None:
            self._owner.close()
            self._owner = None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Every read-modify-write of the journal, so agents sharing it lose no entry."""
        with open(self.path.with_suffix(".lock"), "a") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def identity(self) -> str:
        """This journal's agent name: stable across restarts, one per journal."""
        path = self.path.with_suffix(".id")
        with self._locked():
            if path.is_file():
                ident = path.read_text().strip()
                if ident:
                    return ident
            ident = f"{socket.gethostname()[:40]}-{uuid.uuid4().hex[:8]}"
            self._write(path, ident)
            return ident

    def pending(self) -> dict[str, dict[str, Any]]:
        with self._locked():
            return self._read()

    def add(self, task_id: str, body: dict[str, Any]) -> None:
        with self._locked():
            pending = self._read()
            pending[task_id] = body
            self._write(self.path, json.dumps(pending))

    def remove(self, task_id: str) -> None:
        with self._locked():
            pending = self._read()
            if pending.pop(task_id, None) is not None:
                self._write(self.path, json.dumps(pending))

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise JournalUnreadable(f"cannot read the agent journal {self.path}: {exc}") from exc
        try:
            pending = json.loads(text)
            if not isinstance(pending, dict) or not all(
                isinstance(v, dict) for v in pending.values()
            ):
                raise ValueError("not an object of task results")
        except ValueError as exc:
            raise JournalUnreadable(
                f"the agent journal {self.path} is not a journal ({exc}); it may hold results "
                "measured but not yet posted: move it away (or repair it) and start again"
            ) from exc
        return pending

    @staticmethod
    def _write(path: Path, text: str) -> None:
        """Atomically: a kill leaves the old or the new file, never a torn one."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class Agent:
    def __init__(
        self,
        server: str,
        device: str,
        api_key: str,
        journal: Journal | Path,
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
        self.journal = journal if isinstance(journal, Journal) else Journal(journal)
        self.on_event = on_event or (lambda line: log.info(line))
        self.name = self.journal.identity()
        self.http = httpx.Client(headers={"X-API-Key": api_key}, timeout=60)
        self.device_id: int | None = None

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
    def flush(self) -> int:
        """Post every journalled result; each is removed once the server acknowledges it."""
        pending = self.journal.pending()
        for task_id, body in pending.items():
            response = self._request("POST", f"/tasks/{task_id}/result", json=body)
            if response.status_code == 409:
                self.on_event(f"task {task_id}: {response.json()['error']['message']}; dropped")
            else:
                ack = response.json()
                what = "already stored" if ack["duplicate"] else "stored"
                self.on_event(f"task {task_id}: {what} as measurement {ack['measurement_id']}")
            self.journal.remove(task_id)
        return len(self.journal.pending())

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
        body = {
            "agent": self.name,
            "median_ms": result.median_ms,
            "dispersion": result.dispersion,
            "repeats": result.repeats,
            "stable": result.stable,
            "protocol": {**result.protocol, "agent": self.name},
        }
        self.journal.add(str(task["id"]), body)
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
