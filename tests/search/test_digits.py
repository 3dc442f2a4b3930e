"""Accuracy is measured on held-out digits through ONNX Runtime, fp32 and int8."""

from search.digits import digits, measure_accuracy
from search.spaces import NB201

CELL = NB201().from_ops(
    ["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3"]
)


def test_digits_split_is_fixed_and_offline() -> None:
    data = digits()
    assert data.x_train.shape[1:] == (3, 16, 16)
    assert len(data.x_test) == 540 and len(data.x_train) == 1257


def test_trained_design_is_accurate_in_fp32_and_int8() -> None:
    top1 = measure_accuracy("nb201", CELL, ["fp32", "int8"], epochs=2)
    assert top1["fp32"] > 80  # chance is 10%
    assert abs(top1["int8"] - top1["fp32"]) < 5
