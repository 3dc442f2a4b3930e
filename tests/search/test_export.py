"""Export is checked against torch; int8 is real QDQ; a mixed policy quantizes only its units."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from search.export import FP32_TOLERANCE, INT8_TOLERANCE, export_design, export_fp32, quantize
from search.policy import UnsupportedPolicy, parse_policy
from search.spaces import NB201

CELL = NB201().from_ops(
    ["nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3"]
)


def test_fp32_int8_and_mixed_exports(tmp_path: Path) -> None:
    fp32 = export_fp32("nb201", CELL, tmp_path / "fp32.onnx", cells=1)
    assert fp32.fp32_error <= FP32_TOLERANCE
    ops = {n.op_type for n in onnx.load(str(fp32.path)).graph.node}
    assert "QuantizeLinear" not in ops
    full = quantize(fp32, "nb201", "int8", tmp_path / "int8.onnx")
    assert full.int8_error is not None and full.int8_error <= INT8_TOLERANCE
    assert full.quantized_units == ["head", "stage1", "stage2", "stage3", "stem"]
    mixed = quantize(fp32, "nb201", "fp32,fp32,int8,fp32,fp32", tmp_path / "mixed.onnx")
    assert mixed.quantized_units == ["stage2"]
    q_inputs = [
        n.input[0] for n in onnx.load(str(mixed.path)).graph.node if n.op_type == "QuantizeLinear"
    ]
    assert q_inputs and all(name.startswith("/stage2/") for name in q_inputs)
    sizes = [p.stat().st_size for p in (fp32.path, mixed.path, full.path)]
    assert sizes[2] < sizes[0]  # int8 weights


def test_policies_the_runtime_cannot_run_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedPolicy, match="fp16 needs an execution provider"):
        export_design("nb201", CELL, "fp16", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(UnsupportedPolicy, match="1 or 5 precisions"):
        parse_policy("nb201", "int8,fp32")
    with pytest.raises(UnsupportedPolicy, match="unknown precision 'int4'"):
        parse_policy("fbnet", "int4")
    assert parse_policy("nb201", "fp16", providers=["CUDAExecutionProvider"]) == ["fp16"] * 5


def test_export_matches_torch_on_given_inputs(tmp_path: Path) -> None:
    inputs = np.random.default_rng(3).standard_normal((4, 3, 16, 16)).astype(np.float32)
    exported = export_design(
        "nb201", CELL, "fp32", tmp_path / "m.onnx", calibration=inputs, cells=1
    )
    assert exported.fp32_error <= FP32_TOLERANCE


def test_int8_convolutions_run_as_integer_kernels(tmp_path: Path) -> None:
    """Every convolution of an int8 export becomes QLinearConv once ONNX Runtime optimizes it.

    A weight reaching its convolution through an ``Identity`` (the exporter's way of storing
    equal weights once) kept convolutions in float with weights dequantized on every run.
    """
    import onnxruntime as ort

    # two identical cells: their equal weights are what the exporter deduplicates
    int8 = export_design("nb201", CELL, "int8", tmp_path / "int8.onnx", cells=2)
    assert not [n for n in onnx.load(str(int8.path)).graph.node if n.op_type == "Identity"]
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8.path), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("QLinearConv") == 7 + 2 * 3 * 4  # stem, reductions; 4 convs per cell
    assert "Conv" not in ops
