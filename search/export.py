"""Designs to ONNX: torch -> ONNX (fp32) -> QDQ int8 for the units a policy quantizes.

Every export is checked before it is returned: ONNX Runtime's output must match torch's
within FP32_TOLERANCE, and a quantized model's output must stay within INT8_TOLERANCE of the
fp32 model's on the calibration inputs. A policy the CPU runtime cannot execute (fp16) is
refused with the reason, never silently run in another precision.

Static QDQ quantization (calibrated activations, per-channel int8 weights) is used because
ONNX Runtime's CPU kernels fuse it into integer convolutions; dynamic int8 quantization was
several times slower on convolutions. Mixed precision quantizes only the nodes of the chosen
units (the exporter names nodes by module path, ``/stage2/...``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)

from search.networks import build
from search.policy import UnsupportedPolicy, parse_policy, units

__all__ = [
    "ExportMismatch",
    "UnsupportedPolicy",
    "export_design",
    "export_fp32",
    "optimised_node_counts",
    "quantize",
]

FP32_TOLERANCE = 1e-4  # max |ort - torch| / max(1, max |torch|)
INT8_TOLERANCE = 0.35  # RMS(int8 - fp32) / RMS(fp32) of the logits on calibration inputs
INPUT_SHAPE = (3, 32, 32)


# torch's exporter keeps its state in module globals (``GLOBALS.in_onnx_export``): two exports
# in one process at once fail. Every export in the process takes this lock.
_TORCH_EXPORT = threading.Lock()


class ExportMismatch(RuntimeError):
    """An exported model whose outputs do not match the source model within tolerance."""


@dataclass
class Exported:
    """An exported design and the checks it passed."""

    path: Path
    policy: list[str]
    fp32_error: float
    int8_error: float | None = None
    quantized_units: list[str] = field(default_factory=list)

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


class _Batches(CalibrationDataReader):
    def __init__(self, inputs: np.ndarray, name: str) -> None:
        self._items = iter([{name: inputs[i : i + 1]} for i in range(len(inputs))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(path: Path, inputs: np.ndarray) -> np.ndarray:
    sess = _session(path)
    name = sess.get_inputs()[0].name
    return np.concatenate(
        [sess.run(None, {name: inputs[i : i + 1]})[0] for i in range(len(inputs))]
    )


def _unit_nodes(model: onnx.ModelProto, chosen: set[str]) -> list[str]:
    """Names of the nodes that belong to the chosen units (by their module-path name)."""
    return [
        n.name
        for n in model.graph.node
        if n.name.split("/")[1:2] and n.name.split("/")[1] in chosen
    ]


def _calibration(calibration: np.ndarray | None) -> np.ndarray:
    if calibration is None:
        calibration = np.random.default_rng(0).standard_normal((16, *INPUT_SHAPE))
    return np.ascontiguousarray(calibration, dtype=np.float32)


def export_fp32(
    space: str,
    encoding: str,
    out: Path,
    net: torch.nn.Module | None = None,
    calibration: np.ndarray | None = None,
    **net_kwargs: int | float,
) -> Exported:
    """The design (given ``net`` or freshly built) as fp32 ONNX at ``out``, checked vs torch."""
    net = (net or build(space, encoding, **net_kwargs)).eval()
    calibration = _calibration(calibration)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _TORCH_EXPORT, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        # The TorchScript exporter: 10-20x faster than dynamo here (0.3 s vs 4-7 s per
        # design), which is what makes measuring thousands of designs practical.
        torch.onnx.export(
            net,
            (torch.from_numpy(calibration[:1]),),
            str(out),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    _inline_shared_weights(out)
    with torch.no_grad():
        reference = net(torch.from_numpy(calibration)).numpy()
    got = _run(out, calibration)
    error = float(np.max(np.abs(got - reference)) / max(1.0, np.max(np.abs(reference))))
    if error > FP32_TOLERANCE:
        out.unlink(missing_ok=True)
        raise ExportMismatch(f"ONNX fp32 differs from torch by {error:.2e}")
    return Exported(out, ["fp32"] * len(units(space)), error)


def _inline_shared_weights(path: Path) -> None:
    """Give every weight its own initializer in place of the exporter's ``Identity`` copies.

    The exporter stores equal weights once and feeds the other layers through ``Identity``
    nodes. A weight behind an ``Identity`` is not a constant to ONNX Runtime's QDQ fusion, so
    those convolutions stayed float with their weights dequantized on every run: int8 was
    3x slower than fp32 until this pass.
    """
    model = onnx.load(str(path))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    copies = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in weights]
    if not copies:
        return
    for node in copies:
        copy = onnx.TensorProto()
        copy.CopyFrom(weights[node.input[0]])
        copy.name = node.output[0]
        graph.initializer.append(copy)
        graph.node.remove(node)
    onnx.save(model, str(path))


def quantize(
    fp32: Exported, space: str, policy: str, out: Path, calibration: np.ndarray | None = None
) -> Exported:
    """The fp32 export with the policy's int8 units quantized (static QDQ), checked."""
    precisions = parse_policy(space, policy)
    chosen = {u for u, p in zip(units(space), precisions, strict=True) if p == "int8"}
    out.parent.mkdir(parents=True, exist_ok=True)
    if not chosen:
        if out != fp32.path:
            out.write_bytes(fp32.read_bytes())
        return Exported(out, precisions, fp32.fp32_error)
    calibration = _calibration(calibration)
    nodes = _unit_nodes(onnx.load(str(fp32.path)), chosen)
    logging.getLogger("root").setLevel(logging.ERROR)
    quantize_static(
        str(fp32.path),
        str(out),
        _Batches(calibration, "input"),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        # 7-bit weights: on CPUs without VNNI (AVX2 only) ONNX Runtime's u8s8 kernels
        # saturate with full-range weights (digits top-1 80.7% against 93.9% in fp32 on such
        # a host; 93.3% with 7 bits), and the model must run wherever it is sent
        reduce_range=True,
        nodes_to_quantize=None if len(chosen) == len(precisions) else nodes,
    )
    reference = _run(fp32.path, calibration)
    quantized = _run(out, calibration)
    error = float(
        np.sqrt(np.mean((quantized - reference) ** 2)) / max(np.sqrt(np.mean(reference**2)), 1e-12)
    )
    if error > INT8_TOLERANCE:
        out.unlink(missing_ok=True)
        raise ExportMismatch(f"int8 logits differ from fp32 by {error:.2f} (RMS, relative)")
    return Exported(out, precisions, fp32.fp32_error, error, sorted(chosen))


def export_design(
    space: str,
    encoding: str,
    policy: str,
    out: Path,
    net: torch.nn.Module | None = None,
    calibration: np.ndarray | None = None,
    **net_kwargs: int | float,
) -> Exported:
    """Write the design as a checked ONNX file at ``out`` in the given policy.

    ``calibration``: inputs (N, 3, 32, 32) for int8 calibration and the checks; 16 seeded
    random images by default (enough for latency measurement, where weights do not matter).
    """
    parse_policy(space, policy)  # refuse an impossible policy before exporting anything
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_fp32(space, encoding, Path(tmp) / "fp32.onnx", net, calibration, **net_kwargs)
        return quantize(fp32, space, policy, out, calibration)


def optimised_node_counts(path: Path) -> dict[str, int]:
    """Node counts per ``unit:op_type`` (``stage2:QLinearAveragePool``; ``?`` for nodes the
    optimiser added, such as layout reorders) of the graph ONNX Runtime runs for a model,
    after its optimiser at ``ORT_ENABLE_ALL``, the level measurements use. What the
    encoding's kernel counts (``search/kernels.py``) are checked against."""
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    counts: dict[str, int] = {}
    for node in graph.node:
        unit = node.name.split("/")[1] if "/" in node.name else "?"
        counts[f"{unit}:{node.op_type}"] = counts.get(f"{unit}:{node.op_type}", 0) + 1
    return counts
