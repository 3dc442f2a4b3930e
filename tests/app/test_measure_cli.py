"""``edgeopt measure`` / ``measure-accuracy`` as a user runs them: real exports, real timings."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app.db import session_factory
from app.models import AccuracyRecord, Device, Measurement
from tests.processes import edgeopt

CELL = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def test_measure_registers_the_host_and_stores_protocols(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    env = {"EDGEOPT_DATABASE_URL": url, "EDGEOPT_ARTIFACTS_DIR": str(tmp_path / "art")}
    assert edgeopt("db", "upgrade", env=env).returncode == 0
    args = ["measure", "--design", CELL, "--policy", "fp32", "--policy", "int8", "--threads", "1"]
    first = edgeopt(*args, env=env, timeout=300)
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
