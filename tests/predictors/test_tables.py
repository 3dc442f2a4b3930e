"""Wide latency tables as users bring them: holes are fine, broken cells are named."""

from pathlib import Path

import numpy as np
import pytest

from predictors.tables import TableError, read_tables
from search.spaces import get_space

A = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"
B = "|skip_connect~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def write(tmp: Path, latency: str, archs: str = f"arch_id,arch\n0,{A}\n1,{B}\n"):
    (tmp / "lat.csv").write_text(latency)
    (tmp / "archs.csv").write_text(archs)
    return read_tables(tmp / "lat.csv", tmp / "archs.csv", get_space("nb201"))


def test_holes_become_nan(tmp_path: Path) -> None:
    table = write(tmp_path, "arch_id,d1,d2\n0,1.5,\n1,2.5,3\n")
    assert table.devices == ["d1", "d2"]
    assert np.isnan(table.column("d2")[0]) and table.column("d2")[1] == 3


@pytest.mark.parametrize(
    ("latency", "archs", "message"),
    [
        ("arch_id,d1\n0,fast\n", None, "row 2 column 'd1': 'fast' is not a number"),
        ("arch_id,d1\n0,-1\n", None, "not a positive finite latency"),
        ("arch_id,d1\n0\n", None, "1 cells, expected 2"),
        ("id,d1\n0,1\n", None, "header must be arch_id"),
        ("arch_id,d1\n7,1\n", None, "arch_id [7] not in"),
        ("arch_id,d1\n0,1\n", "arch_id,arch\n0,|bogus~0|\n", "row 2: nb201 encoding needs 3"),
    ],
)
def test_broken_tables_name_the_cell(
    tmp_path: Path, latency: str, archs: str | None, message: str
) -> None:
    with pytest.raises(TableError, match=message.replace("[", r"\[").replace("]", r"\]")):
        if archs is None:
            write(tmp_path, latency)
        else:
            write(tmp_path, latency, archs)


def test_unknown_device_column(tmp_path: Path) -> None:
    table = write(tmp_path, "arch_id,d1\n0,1\n1,2\n")
    with pytest.raises(TableError, match="'d9' is not a column"):
        table.column("d9")
