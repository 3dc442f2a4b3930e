"""``edgeopt measure`` / ``measure-accuracy`` as a user runs them: real exports, real timings."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import session_factory
from app.models import AccuracyRecord, Device, Measurement
from devices.measure import pin_cpus
from devices.normaliser import REFERENCE_DESIGN
from tests.processes import edgeopt

CELL = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def test_measure_registers_the_host_and_stores_protocols(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    env = {"EDGEOPT_DATABASE_URL": url, "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "art")}
    assert edgeopt("db", "upgrade", env=env).returncode == 0
    args = ["measure", "--design", CELL, "--policy", "fp32", "--policy", "int8", "--threads", "1"]
    first = edgeopt(*args, "--pin-threads", env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "2 measurements on host-ort-cpu-1t" in first.stdout
    again = edgeopt(*args, env=env, timeout=300)
    assert "0 measurements" in again.stdout and "2 already stored" in again.stdout
    with session_factory(url)() as s:
        device = s.scalar(select(Device).where(Device.name == "host-ort-cpu-1t"))
        assert device is not None and device.threads == 1 and device.specs["cores"] >= 1
        rows = s.scalars(select(Measurement)).all()
        assert {m.policy for m in rows} == {"fp32", "int8"}
        assert all(m.protocol and m.protocol["runtime_version"] and m.repeats for m in rows)
        # --pin-threads: the thread ran on one CPU, named in the stored protocol
        assert all(m.protocol["pinned"] and m.protocol["cpus"] == pin_cpus(1) for m in rows)
        for m in rows:  # timed beside the reference, put on the device's reference scale
            ref = m.protocol["reference"]
            assert ref["policy"] == m.policy and ref["design"] == REFERENCE_DESIGN
            assert ref["baseline_ms"] == device.specs["reference_ms"][m.policy]
            expected = m.protocol["raw_median_ms"] * ref["baseline_ms"] / ref["median_ms"]
            assert m.value == pytest.approx(expected)
    refused = edgeopt("measure", "--design", CELL, "--policy", "fp16", env=env)
    assert refused.returncode == 1 and "fp16 needs an execution provider" in refused.stderr
    bad = edgeopt("measure", "--design", "|conv~0|", env=env)
    assert bad.returncode == 1 and "nb201" in bad.stderr

    acc = edgeopt("measure-accuracy", "--design", CELL, "--epochs", "1", env=env, timeout=300)
    assert acc.returncode == 0, acc.stderr
    with session_factory(url)() as s:
        records = s.scalars(select(AccuracyRecord)).all()
        assert {r.policy for r in records} == {"fp32", "int8"}
        assert all(r.dataset == "digits" and "scikit-learn digits" in r.source for r in records)


def test_a_host_device_measured_on_other_hardware_is_refused_not_mixed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    env = {"EDGEOPT_DATABASE_URL": url, "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "art")}
    assert edgeopt("db", "upgrade", env=env).returncode == 0
    args = ["measure", "--design", CELL, "--policy", "fp32", "--threads", "1"]
    assert edgeopt(*args, env=env, timeout=300).returncode == 0
    # the registry moves to another machine: its host device now names other hardware
    with session_factory(url)() as s, s.begin():
        device = s.scalar(select(Device).where(Device.name == "host-ort-cpu-1t"))
        assert device is not None and device.specs["hardware_id"]
        device.specs = {**device.specs, "hardware_id": "0123456789ab"}
        before = s.scalar(select(Measurement.value))

    other = ["measure", "--design", CELL, "--policy", "int8", "--threads", "1"]
    refused = edgeopt(*other, env=env, timeout=300)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "host-ort-cpu-1t" in refused.stderr and "--host" in refused.stderr
    with session_factory(url)() as s:
        assert s.scalars(select(Measurement.value)).all() == [before]  # nothing added

    renamed = edgeopt(*other, "--host", "lab", env=env, timeout=300)
    assert renamed.returncode == 0, renamed.stderr
    assert "1 measurements on lab-ort-cpu-1t" in renamed.stdout
    bad_name = edgeopt(*other, "--host", "Lab Box", env=env)
    assert bad_name.returncode == 1 and "host" in bad_name.stderr


@contextmanager
def busy_machine() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Other work on every CPU: one process spinning per CPU, until stopped or the end."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpus or 1)]
    try:
        yield hogs
    finally:
        stop(hogs)


def stop(hogs: list[subprocess.Popen[bytes]]) -> None:
    for hog in hogs:
        hog.kill()
        hog.wait()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_busy_machine_gives_up_with_one_line_and_leaves_no_device(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    env = {"EDGEOPT_DATABASE_URL": url, "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "art")}
    assert edgeopt("db", "upgrade", env=env).returncode == 0
    with busy_machine():
        busy = edgeopt("measure", "--design", CELL, "--busy-wait", "5", env=env, timeout=120)
    assert busy.returncode == 1
    assert "Traceback" not in busy.stderr + busy.stdout
    [line] = error_lines(busy.stderr)  # one line: the condition and the way out
    assert "CPU busy with other work" in line and "no baseline for host-ort-cpu-1t" in line
    assert "stop that work or raise --busy-wait (5 s)" in line
    assert line.endswith("nothing stored, device removed")
    with session_factory(url)() as s:
        assert s.scalars(select(Device)).all() == []  # nothing half-written left behind
        assert s.scalar(select(func.count()).select_from(Measurement)) == 0


def test_a_busy_machine_is_waited_for_and_measured_once_it_quietens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    env = {"EDGEOPT_DATABASE_URL": url, "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "art")}
    assert edgeopt("db", "upgrade", env=env).returncode == 0
    args = ["measure", "--design", CELL, "--busy-wait", "60"]
    with busy_machine() as hogs:
        run = subprocess.Popen(
            [sys.executable, "-m", "app", *args], env={**os.environ, **env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines: list[str] = []
        waiting = threading.Event()

        def read() -> None:
            assert run.stderr is not None
            for line in run.stderr:
                lines.append(line)
                if "the CPU is busy" in line:
                    waiting.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert waiting.wait(60), "".join(lines)  # the progress shows the wait ...
            time.sleep(3)
            stop(hogs)  # ... and the other work ends
            out, _ = run.communicate(timeout=120)
        finally:
            run.kill()
        reader.join(10)
    stderr = "".join(lines)
    assert run.returncode == 0, stderr
    assert "1 measurements on host-ort-cpu-1t" in out
    busy = [line for line in lines if "the CPU is busy" in line]
    assert (
        "(other processes used" in busy[0] and "waiting to time the reference baseline" in busy[0]
    )
    assert busy[-1].rstrip().endswith("of 60 s")
    with session_factory(url)() as s:
        device = s.scalar(select(Device).where(Device.name == "host-ort-cpu-1t"))
        assert device is not None and device.specs["reference_ms"]["fp32"] > 0
        assert s.scalar(select(func.count()).select_from(Measurement)) == 1


def test_a_busy_run_leaves_a_device_that_was_there_as_it_was(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    env = {"EDGEOPT_DATABASE_URL": url, "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "art")}
    assert edgeopt("db", "upgrade", env=env).returncode == 0
    quiet = edgeopt("measure", "--design", CELL, env=env, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    with session_factory(url)() as s:
        before = s.scalar(select(Device).where(Device.name == "host-ort-cpu-1t"))
        assert before is not None
        baselines, stored = before.specs["reference_ms"], s.scalars(select(Measurement.value)).all()

    # int8 needs a baseline of its own, which a busy machine does not let it time
    other = ["measure", "--design", CELL, "--policy", "int8", "--busy-wait", "3"]
    with busy_machine():
        busy = edgeopt(*other, env=env, timeout=120)
    assert busy.returncode == 1 and "Traceback" not in busy.stderr
    [line] = error_lines(busy.stderr)
    assert line.endswith("nothing stored")  # and the device kept
    with session_factory(url)() as s:
        after = s.scalar(select(Device).where(Device.name == "host-ort-cpu-1t"))
        assert after is not None and after.id == before.id
        assert after.specs["reference_ms"] == baselines  # fp32 only, as it was
        assert s.scalars(select(Measurement.value)).all() == stored
