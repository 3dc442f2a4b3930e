"""Device value objects shared by the registry, measurement and predictors."""

from __future__ import annotations

from enum import StrEnum


class DeviceKind(StrEnum):
    """What executes the network; a phone CPU or a Raspberry Pi is ``cpu``."""

    CPU = "cpu"
    GPU = "gpu"
    NPU = "npu"
    DSP = "dsp"
    FPGA = "fpga"
    ASIC = "asic"
    MCU = "mcu"


class Metric(StrEnum):
    LATENCY_MS = "latency_ms"
    ENERGY_MJ = "energy_mj"


class Precision(StrEnum):
    """Numeric precision of a stage/block, as ONNX Runtime executes it."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


def canonical_policy(policy: str) -> str:
    """Normalise a quantization policy string: ``fp32`` or ``int8,fp32,...`` (per stage/block).

    A uniform per-stage policy collapses to its single precision, so ``fp32,fp32`` and
    ``fp32`` name the same design.

    Raises:
        ValueError: for an empty policy or an unknown precision.
    """
    parts = [p.strip().lower() for p in policy.split(",")]
    if not parts or any(not p for p in parts):
        raise ValueError(f"policy {policy!r} is empty or has an empty entry")
    known = {p.value for p in Precision}
    bad = [p for p in parts if p not in known]
    if bad:
        raise ValueError(f"policy {policy!r}: unknown precision {bad[0]!r} (use {sorted(known)})")
    if len(set(parts)) == 1:
        return parts[0]
    return ",".join(parts)
