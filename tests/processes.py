"""Helpers to run the real service as a separate process on loopback."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def edgeopt(
    *args: str, env: Mapping[str, str], timeout: float = 120, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


# A progress line of the CLI on a pipe: "KIND  42% 0:01:05 note" (app.cli_common.JobProgress).
PROGRESS_LINE = re.compile(r"^(?P<job>.+?) +(?P<percent>\d+)% \d+:\d\d:\d\d ?(?P<note>.*)$")


def edgeopt_job(
    *args: str, env: Mapping[str, str], stall_s: float = 120.0, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a CLI command that waits on a job, with no fixed deadline: it is killed (and the
    test fails) only when the job's progress lines on stderr stop changing for ``stall_s``."""
    cmd = [sys.executable, "-m", "app", *args]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out: list[str] = []
    err: list[str] = []
    lines: queue.Queue[str] = queue.Queue()

    def read(stream: IO[str], into: list[str], forward: bool) -> None:
        for line in stream:
            into.append(line)
            if forward:
                lines.put(line.rstrip("\n"))

    readers = [
        threading.Thread(target=read, args=(proc.stdout, out, False), daemon=True),
        threading.Thread(target=read, args=(proc.stderr, err, True), daemon=True),
    ]
    for reader in readers:
        reader.start()
    state: tuple[str, ...] | None = None
    changed = time.monotonic()
    while proc.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            line = ""
        if (m := PROGRESS_LINE.match(line)) and m.groups() != state:
            state, changed = m.groups(), time.monotonic()
        if time.monotonic() - changed > stall_s:
            proc.kill()
            proc.wait()
            raise AssertionError(
                f"edgeopt {' '.join(args)}: no progress for {stall_s:.0f} s; stderr: {''.join(err)}"
            )
    for reader in readers:
        reader.join(10)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(out), "".join(err))


class Child:
    """``python -m app ARGS`` in a child process, its output read as it comes into ``output``
    (a full pipe would stop it mid-request)."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: str | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", *args],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as in a crash."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, wait_s: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.kill()


class Server(Child):
    """``edgeopt serve`` in a child process; ``url`` once it answers /health."""

    def __init__(
        self, env: Mapping[str, str], cwd: str | None = None, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["serve", "--port", str(self.port)], env, cwd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(10)
                raise RuntimeError(f"server exited: {''.join(self.output)}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not answer /health within 60 s")
