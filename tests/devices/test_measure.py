from pathlib import Path

import pytest

from devices.measure import Protocol, host_device_name, host_specs, measure
from search.export import export_design

CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_design("nb201", CELL, "fp32", tmp_path_factory.mktemp("m") / "m.onnx").path


def test_measure_reports_median_dispersion_and_protocol(model: Path) -> None:
    result = measure(str(model), Protocol(threads=1, round_size=5, budget_s=2))
    assert result.median_ms > 0
    assert result.repeats >= 15 and result.repeats % 5 == 0
    assert result.dispersion >= 0
    assert result.protocol["threads"] == 1 and result.protocol["runtime"] == "onnxruntime"
    # the same bytes measure too (what an agent downloads)
    again = measure(model.read_bytes(), Protocol(threads=1, round_size=5, budget_s=2))
    assert again.median_ms == pytest.approx(result.median_ms, rel=0.5)


def test_host_specs_are_read_from_the_machine() -> None:
    specs = host_specs()
    assert specs["cores"] >= 1 and specs["onnxruntime"]
    assert host_device_name(2) == "host-ort-cpu-2t"
