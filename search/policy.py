"""Quantization policies: one precision per quantization unit of a network.

Units are a network's top-level parts, named as the network modules name them: NB201
``stem, stage1, stage2, stage3, head``; FBNet ``stem, block0 .. block21, head``. A single
precision applies to every unit. Kept free of torch so validation is cheap everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

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


def uniform(space: str, precision: str) -> list[str]:
    return [precision] * len(units(space))


def named_mixed(space: str) -> dict[str, str]:
    """The mixed policies every accuracy study measures, by name: the quantized body with
    fp32 ends (the common deployment choice), its opposite, and one part of the body in int8
    at a time, so a model can learn what each part costs."""
    names = units(space)
    body = range(1, len(names) - 1)
    thirds = np.array_split(np.array(list(body)), 3)

    def only(indices: Iterable[int]) -> str:
        keep = set(int(i) for i in indices)
        return ",".join("int8" if i in keep else "fp32" for i in range(len(names)))

    out = {"body-int8": only(body), "ends-int8": only([0, len(names) - 1])}
    parts = names[1:-1] if space == "nb201" else ["first", "middle", "last"]
    label = "stage" if space == "nb201" else "third"
    for part, indices in zip(parts, thirds, strict=True):
        out[f"{part}-int8" if label == "stage" else f"{part}-third-int8"] = only(indices)
    return out


def random_mixed(space: str, rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct per-unit policies with both precisions in them, drawn uniformly."""
    n = len(units(space))
    out: dict[str, None] = {}
    while len(out) < count:
        mask = rng.random(n) < 0.5
        if mask.all() or not mask.any():
            continue
        out[",".join("int8" if m else "fp32" for m in mask)] = None
    return list(out)


PER_UNIT = "per-unit"  # a request's word for "every per-unit policy the space can take"
ENUMERATED_UNITS = 8  # up to 2**8 policies are enumerated; more are searched per unit


def per_unit_policies(space: str) -> list[str]:
    """Every assignment of fp32 / int8 to the space's units (NB201: 32), canonical: the two
    uniform ones as ``fp32`` and ``int8``. ValueError for a space with too many units to
    enumerate (FBNet's 24: its Optuna study draws one precision per unit instead)."""
    n = len(units(space))
    if n > ENUMERATED_UNITS:
        raise ValueError(
            f"{space} has {n} units ({2**n} policies): use a study, which draws a precision "
            f"per unit, or name the policies"
        )
    out = []
    for bits in range(2**n):
        parts = ["int8" if bits >> (n - 1 - u) & 1 else "fp32" for u in range(n)]
        out.append(parts[0] if len(set(parts)) == 1 else ",".join(parts))
    return out


def expand(space: str, policies: list[str], enumerate_all: bool = True) -> list[str]:
    """A request's policies with ``per-unit`` replaced by every per-unit policy, or, for a
    space with too many units (``enumerate_all`` false or FBNet), by fp32, int8 and the named
    mixed ones; duplicates dropped, order kept."""
    out: list[str] = []
    for policy in policies:
        if policy.strip().lower() != PER_UNIT:
            out.append(policy)
        elif enumerate_all and len(units(space)) <= ENUMERATED_UNITS:
            out += per_unit_policies(space)
        else:
            out += ["fp32", "int8", *named_mixed(space).values()]
    return list(dict.fromkeys(out))
