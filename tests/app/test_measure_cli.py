"""``edgeopt measure`` / ``measure-accuracy`` as a user runs them: real exports, real timings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

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
    assert refused.returncode == 1
    assert "host-ort-cpu-1t" in refused.stderr and "--host" in refused.stderr
    with session_factory(url)() as s:
        assert s.scalars(select(Measurement.value)).all() == [before]  # nothing added

    renamed = edgeopt(*other, "--host", "lab", env=env, timeout=300)
    assert renamed.returncode == 0, renamed.stderr
    assert "1 measurements on lab-ort-cpu-1t" in renamed.stdout
    bad_name = edgeopt(*other, "--host", "Lab Box", env=env)
    assert bad_name.returncode == 1 and "host" in bad_name.stderr
