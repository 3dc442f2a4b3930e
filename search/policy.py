"""Quantization policies: one precision per quantization unit of a network.

Units are a network's top-level parts, named as the network modules name them: NB201
``stem, stage1, stage2, stage3, head``; FBNet ``stem, block0 .. block21, head``. A single
precision applies to every unit. Kept free of torch so validation is cheap everywhere.
"""

from __future__ import annotations

from search.kernels import UNITS as NB201_UNITS
from search.spaces import FBNet

PRECISIONS = ("fp32", "int8", "fp16")
NETWORK_SPACES = ("nb201", "fbnet")  # spaces with a network builder, hence units


class UnsupportedPolicy(ValueError):
    """A quantization policy this runtime cannot execute, or that does not fit the space."""


def units(space: str) -> list[str]:
    """Quantization units of a space, in policy order."""
    if space == "nb201":
        return list(NB201_UNITS)
    if space == "fbnet":
        return ["stem", *[f"block{i}" for i in range(FBNet.LAYERS)], "head"]
    raise ValueError(f"space {space!r} has no network builder (have {', '.join(NETWORK_SPACES)})")


def unit_precisions(space: str, policy: str) -> list[str]:
    """One precision per unit as written (not checked against what a runtime can execute),
    or UnsupportedPolicy when the count fits neither 1 nor the space's units."""
    names = units(space)
    parts = [p.strip().lower() for p in policy.split(",")]
    if len(parts) == 1:
        parts = parts * len(names)
    if len(parts) != len(names):
        raise UnsupportedPolicy(
            f"{space} policy needs 1 or {len(names)} precisions ({', '.join(names)}), "
            f"got {len(parts)}"
        )
    return parts


def parse_policy(space: str, policy: str, providers: list[str] | None = None) -> list[str]:
    """One precision per unit, or UnsupportedPolicy saying what is wrong.

    fp16 is refused unless an execution provider that runs fp16 kernels (CUDA, TensorRT,
    DirectML, CoreML) is available: the CPU provider would not execute it as fp16.
    """
    parts = unit_precisions(space, policy)
    bad = [p for p in parts if p not in PRECISIONS]
    if bad:
        raise UnsupportedPolicy(f"unknown precision {bad[0]!r} (use {', '.join(PRECISIONS)})")
    if "fp16" in parts:
        if providers is None:
            import onnxruntime as ort

            providers = ort.get_available_providers()
        fp16 = {"CUDAExecutionProvider", "TensorrtExecutionProvider", "DmlExecutionProvider",
                "CoreMLExecutionProvider"}  # fmt: skip
        if not fp16 & set(providers):
            raise UnsupportedPolicy(
                f"fp16 needs an execution provider that runs fp16 kernels; this ONNX Runtime "
                f"has {providers}, whose CPU provider computes in fp32 or int8"
            )
    return parts
