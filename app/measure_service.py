"""Measuring real designs on this host: export, measure per thread setting, store (a job).

This host registers as one device per thread count (``host-ort-cpu-1t``, ...), with specs
read from the machine, its hardware identity among them: a device measured on other hardware
is refused, not refreshed. Each design x policy is exported once, measured on every thread
setting under the same protocol, and stored in its own transaction with the protocol, so an
interrupted run keeps what it measured and a rerun skips it. A device the run registered and
never stored a measurement on leaves with a failed run: nothing half-written stays behind.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import unit_of_work
from app.domain_errors import HostBusy, NotMeasurable
from app.jobs import JobContext, job_kind
from app.models import AccuracyRecord, Architecture, Device, Measurement
from app.repository import architecture_id, latency_row, upsert_measurements
from app.settings import get_settings
from devices.normaliser import (
    REFERENCE_DESIGN,
    REFERENCE_SPACE,
    MachineBusy,
    Measure,
    Normaliser,
    Waiting,
)
from devices.profile import DeviceKind, Metric, canonical_policy
from search.policy import parse_policy
from search.spaces import get_space

HOST_SOURCE = "host"
HOST_DEVICE_SOURCE = "measured on this host by edgeopt measure"


class DesignSelection(BaseModel):
    """Which designs a job works on (given, or sampled with a seed) and in which policies."""

    model_config = ConfigDict(extra="forbid")

    space: Literal["nb201", "fbnet"] = "nb201"
    designs: list[str] | None = Field(None, max_length=20_000, description="default: sample")
    count: int = Field(10, ge=1, le=20_000, description="designs to sample when none given")
    seed: int = 0
    policies: list[str] = Field(default_factory=lambda: ["fp32"], min_length=1, max_length=50)

    @model_validator(mode="after")
    def _runnable(self) -> DesignSelection:
        """Refuse, at submission, a policy the runtime cannot execute or the space cannot hold."""
        for policy in self.policies:
            parse_policy(self.space, policy)
        return self

    def resolve(self) -> tuple[list[str], list[str]]:
        """Canonical designs (sampled ones deduplicated) and canonical policies."""
        space = get_space(self.space)
        designs = (
            [space.canonical(d) for d in self.designs]
            if self.designs
            else list(dict.fromkeys(space.sample(np.random.default_rng(self.seed), self.count)))
        )
        return designs, list(dict.fromkeys(canonical_policy(p) for p in self.policies))


class MeasureParams(DesignSelection):
    threads: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [1], min_length=1, max_length=8
    )
    host: str = Field(
        "host",
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$",
        description="device name prefix: devices are named HOST-ort-cpu-{threads}t",
    )
    replace: bool = False
    warmup: int = Field(10, ge=0, le=1000)
    round_size: int = Field(10, ge=1, le=10_000)
    budget_s: float = Field(20.0, gt=0, le=600)
    pin_threads: bool = Field(False, description="each ONNX Runtime thread on its own CPU")
    busy_wait_s: float | None = Field(
        None,
        ge=0,
        le=3600,
        description="seconds to wait for a busy CPU before a new baseline gives up; "
        "default EDGEOPT_BUSY_WAIT_S",
    )


class HostChanged(NotMeasurable):
    """The registered host device was measured on other hardware than this machine."""


def register_host(session: Session, threads: int, host: str = "host") -> Device:
    """Create or refresh this host's device row for a thread count (specs from the machine).

    A device already measured on other hardware (another CPU, ISA or cache: see
    ``devices.measure.hardware_identity``) is refused rather than refreshed: its stored
    latencies belong to that machine, and mixing the two would corrupt its predictors.
    """
    from devices.measure import host_device_name, host_specs

    name = host_device_name(threads, host)
    specs = host_specs()
    device = session.scalar(select(Device).where(Device.name == name))
    if device is None:
        device = Device(name=name, kind=DeviceKind.CPU.value)
        session.add(device)
    else:
        before = (device.specs or {}).get("hardware_id")
        stored = session.scalar(
            select(func.count()).select_from(Measurement).where(Measurement.device_id == device.id)
        )
        if before is not None and before != specs["hardware_id"] and stored:
            raise HostChanged(
                f"device {name} holds {stored} measurements taken on other hardware "
                f"(hardware id {before}, this machine {specs['hardware_id']}: "
                f"{_differences(device.specs.get('hardware', {}), specs['hardware'])}); "
                "measure under another host name (--host NAME) or delete that device first"
            )
    device.hardware = str(specs.get("cpu", "this host"))
    kept = {}
    if device.specs and device.specs.get("hardware_id") == specs["hardware_id"]:
        kept = {"reference_ms": device.specs.get("reference_ms", {})}  # same machine, same scale
    device.specs = {**specs, **kept, "threads": threads, "host": host}
    device.runtime, device.runtime_version = "onnxruntime", str(specs["onnxruntime"])
    device.threads, device.batch_size = threads, 1
    device.source = HOST_DEVICE_SOURCE
    session.flush()
    return device


def _differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    keys = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    return ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in keys) or "no details"


def is_this_host(device: Device) -> bool:
    """Whether ``device`` is a thread setting of this very machine (measurable here)."""
    from devices.measure import host_specs

    if device.source != HOST_DEVICE_SOURCE or device.threads is None:
        return False
    here = host_specs()["hardware_id"]
    # rows registered before hardware ids were recorded: trust the name
    return (device.specs or {}).get("hardware_id", here) == here


class DeviceBaselines:
    """The normaliser's baselines, kept in each device's specs (``reference_ms`` per policy)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def get(self, device: int, policy: str) -> float | None:
        with unit_of_work(self.factory) as s:
            row = s.get(Device, device)
            assert row is not None
            known = (row.specs or {}).get("reference_ms", {}).get(policy)
        return None if known is None else float(known)

    def put(self, device: int, policy: str, value: float) -> None:
        with unit_of_work(self.factory) as s:
            row = s.get(Device, device)
            assert row is not None
            specs = dict(row.specs or {})
            specs["reference_ms"] = {**specs.get("reference_ms", {}), policy: value}
            row.specs = specs


class ReferenceExports:
    """The reference design exported once per policy into ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: dict[str, str] = {}

    def __call__(self, policy: str) -> str:
        from search.export import export_design  # torch loads on first export

        if policy not in self.paths:
            out = self.folder / f"reference-{len(self.paths)}.onnx"
            exported = export_design(REFERENCE_SPACE, REFERENCE_DESIGN, policy, out)
            self.paths[policy] = str(exported.path)
        return self.paths[policy]


def host_normaliser(
    factory: sessionmaker[Session],
    folder: Path,
    measure: Measure,
    busy_wait_s: float | None = None,
    waiting: Waiting | None = None,
) -> Normaliser:
    """The host job's normaliser: references exported under ``folder``, baselines stored;
    a busy CPU is waited for up to ``busy_wait_s`` (default: the setting)."""
    wait_s = get_settings().busy_wait_s if busy_wait_s is None else busy_wait_s
    return Normaliser(measure, ReferenceExports(folder), DeviceBaselines(factory), wait_s, waiting)


def busy_note(waited_s: float, wait_s: float, load: float | None) -> str:
    """The progress message while a baseline waits for other processes to leave the CPU."""
    cores = "" if load is None else f" used {load:.1f} cores"
    return (
        f"the CPU is busy (other processes{cores}): waiting to time the reference baseline, "
        f"{waited_s:.0f} of {wait_s:.0f} s"
    )


def measure_on_host(
    factory: sessionmaker[Session], params: MeasureParams, ctx: JobContext | None = None
) -> dict[str, Any]:
    """Export, measure and store every design x policy on every thread setting."""
    # torch and ONNX Runtime load here, not when the CLI or service starts
    from devices.measure import Protocol, host_device_name, measure
    from search.export import export_fp32, quantize

    designs, policies = params.resolve()
    names = {t: host_device_name(t, params.host) for t in params.threads}
    with unit_of_work(factory) as s:
        existed = set(s.scalars(select(Device.name).where(Device.name.in_(names.values()))))
        devices = {t: register_host(s, t, params.host).id for t in params.threads}
    registered = [devices[t] for t, name in names.items() if name not in existed]
    wait_s = get_settings().busy_wait_s if params.busy_wait_s is None else params.busy_wait_s
    work = [(d, p) for d in designs for p in policies]
    measured = skipped = unstable = retried = worked = 0
    done, timing = 0.0, ""  # the share of the work done, the device being timed

    def waiting(waited_s: float, load: float | None) -> None:
        if ctx is not None:  # shown by the CLI's progress bar; honours cancellation
            ctx.progress(done, busy_note(waited_s, wait_s, load))

    started = time.monotonic()
    fp32: dict[str, Any] = {}  # one fp32 export per design, quantized per policy
    try:
        with tempfile.TemporaryDirectory() as tmp:
            normalised = host_normaliser(factory, Path(tmp), measure, wait_s, waiting)
            for i, (design, policy) in enumerate(work):
                with factory() as s:
                    arch = s.scalar(
                        select(Architecture.id).where(
                            Architecture.space == params.space, Architecture.encoding == design
                        )
                    )
                    have = set()
                    if arch is not None:
                        have = set(
                            s.scalars(
                                select(Measurement.device_id).where(
                                    Measurement.architecture_id == arch,
                                    Measurement.policy == policy,
                                    Measurement.metric == Metric.LATENCY_MS.value,
                                )
                            )
                        )
                todo = [t for t, dev in devices.items() if params.replace or dev not in have]
                if todo:
                    if design not in fp32:
                        fp32 = {design: export_fp32(params.space, design, Path(tmp) / "fp32.onnx")}
                    exported = quantize(fp32[design], params.space, policy, Path(tmp) / "m.onnx")
                    results = {}
                    for t in todo:
                        protocol = Protocol(
                            threads=t,
                            warmup=params.warmup,
                            round_size=params.round_size,
                            budget_s=params.budget_s,
                            pinned=params.pin_threads,
                        )
                        run = (str(exported.path), devices[t], exported.policy, protocol)
                        timing = names[t]
                        results[t] = normalised(*run)
                        retried += results[t].protocol["attempts"] > 1
                        unstable += not results[t].stable
                    with unit_of_work(factory) as s:
                        arch_id = architecture_id(s, params.space, design)
                        for t, result in results.items():
                            row = latency_row(arch_id, policy, result)
                            upsert_measurements(s, devices[t], [row], HOST_SOURCE)
                    measured += len(todo)
                    worked += 1
                skipped += len(devices) - len(todo)
                done = (i + 1) / len(work)
                if ctx is not None:
                    ctx.progress(done, f"{i + 1}/{len(work)} designs")
    except MachineBusy as exc:
        # one line the CLI prints as it is (kept under its 200 columns): condition, way out
        dropped = _drop_unmeasured(factory, registered)
        kept = f"{measured} measurements stored" if measured else "nothing stored"
        if dropped:
            kept += ", device removed" if len(dropped) == 1 else ", devices removed"
        cores = "" if exc.load is None else f" ({exc.load:.1f} cores)"
        raise HostBusy(
            f"CPU busy with other work{cores} for {exc.waited_s:.0f} s: no baseline for "
            f"{timing}; stop that work or raise --busy-wait ({wait_s:g} s); {kept}"
        ) from exc
    except BaseException:
        _drop_unmeasured(factory, registered)
        raise
    minutes = (time.monotonic() - started) / 60
    return {
        "devices": {host_device_name(t, params.host): dev for t, dev in devices.items()},
        "designs": len(work),
        "measurements": measured,
        "skipped": skipped,
        "unstable": unstable,
        # measured again: another process was busy or the machine in a slow spell
        "retried": retried,
        # designs x policies measured (not those already stored) per minute of this job
        "designs_per_minute": round(worked / minutes, 1) if minutes else None,
    }


def _drop_unmeasured(factory: sessionmaker[Session], ids: list[int]) -> list[str]:
    """Remove the devices of ``ids`` that hold no measurement; their names."""
    if not ids:
        return []
    with unit_of_work(factory) as s:
        measured = set(
            s.scalars(select(Measurement.device_id).where(Measurement.device_id.in_(ids)))
        )
        rows = [row for i in ids if i not in measured and (row := s.get(Device, i)) is not None]
        for row in rows:
            s.delete(row)
        return [row.name for row in rows]


@job_kind("measure-host", MeasureParams)
def _measure_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    return measure_on_host(ctx.factory, MeasureParams.model_validate(params), ctx)


class AccuracyParams(DesignSelection):
    count: int = Field(5, ge=1, le=2_000, description="designs to sample when none given")
    policies: list[str] = Field(default_factory=lambda: ["fp32", "int8"], min_length=1)
    epochs: int = Field(4, ge=1, le=100)
    replace: bool = False
    mixed: bool = Field(False, description="also the space's named mixed policies")
    random_policies: int = Field(
        0, ge=0, le=30, description="further mixed policies drawn per design (seeded)"
    )

    def policies_for(self, index: int, policies: list[str]) -> list[str]:
        """The policies design ``index`` is measured in: the asked ones, the named mixed,
        and its own random draw (seed and index fix it, so a rerun asks for the same)."""
        from search.policy import named_mixed, random_mixed

        out = list(policies)
        if self.mixed:
            out += named_mixed(self.space).values()
        if self.random_policies:
            rng = np.random.default_rng([self.seed, index])
            out += random_mixed(self.space, rng, self.random_policies)
        return list(dict.fromkeys(canonical_policy(p) for p in out))


def measure_accuracy_job(
    factory: sessionmaker[Session], params: AccuracyParams, ctx: JobContext | None = None
) -> dict[str, Any]:
    """Train each design on digits, evaluate every policy's ONNX model, store the records."""
    from search.digits import DATASET, measure_accuracy, provenance

    designs, asked = params.resolve()
    source = provenance(params.space, params.epochs)
    stored = skipped = 0
    for i, design in enumerate(designs):
        policies = params.policies_for(i, asked)
        with factory() as s:
            have = set(
                s.scalars(
                    select(AccuracyRecord.policy)
                    .join(Architecture)
                    .where(
                        Architecture.space == params.space,
                        Architecture.encoding == design,
                        AccuracyRecord.dataset == DATASET,
                    )
                )
            )
        todo = [p for p in policies if params.replace or p not in have]
        if todo:
            top1 = measure_accuracy(params.space, design, todo, params.epochs)
            with unit_of_work(factory) as s:
                arch_id = architecture_id(s, params.space, design)
                for policy, value in top1.items():
                    row = s.scalar(
                        select(AccuracyRecord).where(
                            AccuracyRecord.architecture_id == arch_id,
                            AccuracyRecord.policy == policy,
                            AccuracyRecord.dataset == DATASET,
                        )
                    )
                    if row is None:
                        row = AccuracyRecord(
                            architecture_id=arch_id, policy=policy, dataset=DATASET
                        )
                        s.add(row)
                    row.top1, row.source = value, source
            stored += len(todo)
        skipped += len(policies) - len(todo)
        if ctx is not None:
            ctx.progress((i + 1) / len(designs), f"{i + 1}/{len(designs)} designs trained")
    return {"records": stored, "skipped": skipped, "dataset": DATASET, "source": source}


@job_kind("measure-accuracy", AccuracyParams)
def _accuracy_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    return measure_accuracy_job(ctx.factory, AccuracyParams.model_validate(params), ctx)
