"""The reference tables ship inside the package, with their attribution and licenses."""

from __future__ import annotations

import numpy as np
import pytest

from devices.reference import REFERENCE_TABLES, data_dir, load_reference
from search.spaces import get_space


@pytest.mark.parametrize(
    ("space", "archs", "devices"),
    [("nb201", 15_625, 29), ("fbnet", 5_000, 27), ("ofa_mbv3", 5_000, 12)],
)
def test_tables_load_with_their_devices(space: str, archs: int, devices: int) -> None:
    table = load_reference(space)
    assert table.latency_ms.shape == (archs, devices)
    assert len({d.name for d in table.devices}) == devices
    assert np.nanmin(table.latency_ms) > 0
    sample = table.encodings[:: max(1, archs // 200)]
    assert all(get_space(space).canonical(e) == e for e in sample)


def test_nb201_has_accuracies_and_the_standard_split_devices() -> None:
    table = load_reference("nb201")
    assert set(table.accuracies) == {"cifar10", "cifar100", "imagenet16-120"}
    assert 90 < np.nanmax(table.accuracies["cifar10"]) < 100
    columns = {d.column for d in table.devices}
    assert {"titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss"} <= columns


def test_devices_are_described_for_the_registry() -> None:
    by_column = {d.column: d for d in load_reference("nb201").devices}
    assert by_column["pixel3"].kind == "cpu"
    assert by_column["pixel3"].specs["form_factor"] == "mobile"
    assert by_column["pixel3"].runtime == "TFLite"
    assert by_column["eyeriss"].specs["estimated"] is True
    assert by_column["titanxp_256"].specs["cuda_cores"] == 3840  # not Titan X's 3072
    assert by_column["titanx_256"].specs["cuda_cores"] == 3072
    assert by_column["edgetpu"].kind == "npu"
    assert by_column["edgegpu_jetson_tx2"].kind == "gpu"
    assert by_column["1080ti_256"].batch_size == 256


def test_edge_accelerators_cover_the_cells_they_were_measured_on() -> None:
    table = load_reference("nb201")
    columns = [d.column for d in table.devices]
    measured = np.isfinite(table.latency_ms)
    assert measured[:, columns.index("edgegpu_jetson_tx2")].sum() == 1_996
    assert measured[:, columns.index("edgetpu")].sum() == 1_739
    assert measured[:, : columns.index("edgegpu_jetson_tx2")].all()


def test_attribution_and_licenses_ship_with_the_data() -> None:
    readme = (data_dir() / "README.md").read_text()
    for source in ("HELP", "HW-NAS-Bench", "NAS-Bench-201", "OneProxy", "BRP-NAS"):
        assert source in readme
    assert {p.name for p in (data_dir() / "licenses").iterdir()} == {
        "HELP-MIT.txt",
        "HW-NAS-Bench-MIT.txt",
        "OneProxy-MIT.txt",
        "eagle-Apache-2.0.txt",
    }
    assert set(REFERENCE_TABLES) <= {p.name for p in data_dir().iterdir()}
    assert "Apache-2.0" in (data_dir() / "nb201_latbench" / "README.md").read_text()


def test_unknown_space_is_refused() -> None:
    with pytest.raises(ValueError, match="no reference data for space 'darts'"):
        load_reference("darts")
