"""The kernels worked out from a cell match what ONNX Runtime runs for the exported design."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.export import export_design, optimised_node_counts
from search.kernels import READS_ZERO, cell_kernels, precision_kernels
from search.spaces import NB201

MIXED = "fp32,int8,int8,int8,fp32"


def ops(encoding: str) -> list[str]:
    return NB201().ops(encoding)


def test_identities_share_kernels_and_zero_nodes_are_priced() -> None:
    # node 1 is x itself, so pool(x) and pool(node 1) are one pool kernel, not two
    kernels = cell_kernels(
        ops("|skip_connect~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|none~0|none~1|nor_conv_1x1~2|")
    )
    assert kernels[4] == 2  # pools of 2 nodes as listed...
    assert kernels[8] == 1  # ...one pool kernel once node 1 is seen to be x
    # node 1 has no input (x * 0) and feeds skip -> node 2 and pool -> node 3
    kernels = cell_kernels(
        ops("|none~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    )
    assert kernels[6] == 1
    read_zero = dict(zip(READS_ZERO, kernels[9:], strict=True))
    assert read_zero == {"skip_connect": 1, "nor_conv_1x1": 0, "nor_conv_3x3": 0, "avg_pool_3x3": 1}


def pool_precisions(edge_ops: list[str], precisions: list[str]) -> tuple[float, ...]:
    """Float and int8 pool kernels per stage: the first 6 policy-dependent counts."""
    return precision_kernels(edge_ops, precisions)[:6]


def test_pools_run_int8_only_where_their_input_is_quantized() -> None:
    # one pool kernel per cell (pool(x) feeds node 1 and node 2), 5 cells; stages 2 and 3
    # add the reduction's shortcut pool
    cell = "|avg_pool_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|none~1|nor_conv_3x3~2|"
    assert pool_precisions(ops(cell), ["fp32"] * 5) == (5, 0, 6, 0, 6, 0)
    assert pool_precisions(ops(cell), ["int8"] * 5) == (0, 5, 0, 6, 0, 6)
    # after the fp32 stem, the first cell's pool reads a float tensor: it stays float
    assert pool_precisions(ops(cell), MIXED.split(",")) == (1, 4, 0, 6, 0, 6)
    # a cell without convolutions or adds quantizes nothing: stage 1 stays float, and so
    # does the pool of stage 2's reduction, which reads stage 1's output
    pools_only = "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|"
    assert pool_precisions(ops(pools_only), MIXED.split(",")) == (5, 0, 1, 5, 0, 6)


def test_relus_are_counted_by_precision_and_by_whether_they_share_their_input() -> None:
    # per cell: ReLU(x) shares x with the pool and the add of node 2, ReLU(node 2) reads it
    # alone; per reduction one of each. 15 cells and 2 reductions.
    design = ops(
        "|skip_connect~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_1x1~2|"
    )
    # float alone, float shared, int8 alone, int8 shared
    assert precision_kernels(design, ["fp32"] * 5)[6:] == (17, 17, 0, 0)
    assert precision_kernels(design, ["int8"] * 5)[6:] == (0, 0, 17, 17)


def _runtime_pools(encoding: str, policy: str, tmp: Path) -> tuple[int, ...]:
    """Float and int8 pools per stage in the graph ONNX Runtime actually runs."""
    counts = optimised_node_counts(export_design("nb201", encoding, policy, tmp / "m.onnx").path)
    return tuple(
        counts.get(f"stage{s}:{op}", 0)
        for s in (1, 2, 3)
        for op in ("AveragePool", "QLinearAveragePool")
    )


@pytest.mark.parametrize(
    "encoding",
    [
        "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|none~2|",
        "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|",
        "|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|",
    ],
)
def test_pool_precisions_match_the_optimised_graph(encoding: str, tmp_path: Path) -> None:
    expected = tuple(int(n) for n in pool_precisions(ops(encoding), MIXED.split(",")))
    assert _runtime_pools(encoding, MIXED, tmp_path) == expected
