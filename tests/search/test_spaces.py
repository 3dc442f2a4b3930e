"""Encodings are validated and canonicalised per space, with errors that say what is wrong."""

from __future__ import annotations

import pytest

from search.spaces import InvalidEncoding, get_space

NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"


def test_valid_encodings_are_canonical() -> None:
    assert get_space("nb201").canonical(f"  {NB201} ") == NB201
    fbnet = " - ".join(["k5_e6"] * 21 + ["skip"])
    assert get_space("fbnet").canonical(fbnet) == "-".join(["k5_e6"] * 21 + ["skip"])
    ofa = '{"r": 224, "d": [2,3,4,2,3], "e": ' + str([3] * 20) + ', "ks": ' + str([7] * 20) + "}"
    canonical = get_space("ofa_mbv3").canonical(ofa)
    assert canonical.startswith('{"ks":[7,7') and canonical.endswith('"r":224}')


@pytest.mark.parametrize(
    ("space", "encoding", "message"),
    [
        ("nb201", "|nor_conv_3x3~0|", "3 node groups"),
        ("nb201", NB201.replace("none~2", "conv_7x7~2"), "unknown op 'conv_7x7'"),
        ("nb201", NB201.replace("none~2", "none~0"), "must read from node 2"),
        ("fbnet", "-".join(["k3_e1"] * 21), "22 blocks"),
        ("fbnet", "-".join(["k3_e1"] * 21 + ["k7_e6"]), "layer 21: unknown block 'k7_e6'"),
        ("ofa_mbv3", "{not json", "not JSON"),
        ("ofa_mbv3", '{"ks": [], "e": [], "d": [], "r": 224}', "'ks' must be a list of 20"),
    ],
)
def test_invalid_encodings_say_what_is_wrong(space: str, encoding: str, message: str) -> None:
    with pytest.raises(InvalidEncoding, match=message):
        get_space(space).canonical(encoding)


def test_unknown_space() -> None:
    with pytest.raises(ValueError, match="unknown search space 'darts'"):
        get_space("darts")


def test_nb201_encoding_counts_the_kernels_a_runtime_runs() -> None:
    nb201 = get_space("nb201")
    # node 1 = skip(x); node 2 = pool(x) + node 1; node 3 = conv1x1(x) + conv1x1(node 2)
    design = (
        "|skip_connect~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_1x1~2|"
    )
    row = nb201.encode([design])[0]
    assert row.shape == (57,)
    assert row[:30].reshape(6, 5).sum(axis=1).tolist() == [1] * 6  # one op per edge
    # 0 conv3x3, 2 conv1x1, 1 pool; ReLUs of 2 nodes, pools of 1; 1 + 1 adds; no zero node;
    # the same ReLUs and pools seen through identities; nothing reads a zero node
    assert row[34:47].tolist() == [0, 2, 1, 2, 1, 2, 0, 2, 1, 0, 0, 0, 0]
    # node 2 (two convolutions) reaches the output only through none: dead, nothing runs
    dead = "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|none~2|"
    assert nb201.encode([dead])[0][34:47].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    empty = nb201.encode(["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"])[0]
    assert empty[34:47].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    # then the kernels whose form depends on the policy given (search/kernels.py), such as
    # the float and int8 pool kernels per stage
    assert row[47:53].tolist() == [5, 0, 6, 0, 6, 0]
    assert nb201.encode([design], "int8")[0][47:53].tolist() == [0, 5, 0, 6, 0, 6]
    with pytest.raises(ValueError, match="1 or 5 precisions"):
        nb201.encode([design], "fp32,int8")


def test_fbnet_features_count_the_convolutions_a_design_runs() -> None:
    """Blocks run three convolutions; a skip runs one only where it changes the shape."""
    fbnet = get_space("fbnet")
    all_skip = "-".join(["skip"] * 22)
    all_blocks = "-".join(["k3_e1"] * 22)
    features = fbnet.features([all_skip, all_blocks])
    names = fbnet.feature_names()
    assert features.shape == (2, len(names))
    kernels, blocks = names.index("conv_kernels"), names.index("n_blocks")
    # the six stages whose first layer changes channels or strides need a projection
    assert features[0, kernels] == 6 and features[0, blocks] == 0
    assert features[1, kernels] == 66 and features[1, blocks] == 22
    assert (features[1] >= features[0]).all()
