import pytest
import torch

from search.networks import build, count_parameters
from search.policy import units
from search.spaces import NB201, InvalidEncoding, get_space

CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def test_nb201_network_runs_and_names_its_units() -> None:
    net = build("nb201", CELL)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert [name for name, _ in net.named_children()] == units("nb201")


def test_more_convolutions_mean_more_parameters() -> None:
    light = "|skip_connect~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|skip_connect~2|"
    heavy = NB201().from_ops(["nor_conv_3x3"] * 6)
    assert count_parameters(build("nb201", heavy)) > 5 * count_parameters(build("nb201", light))


def test_fbnet_network_runs_every_block_kind() -> None:
    space = get_space("fbnet")
    encoding = "-".join((space.BLOCKS * 3)[:22])
    net = build("fbnet", encoding, width=0.25)
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert [name for name, _ in net.named_children()] == units("fbnet")


def test_bad_designs_and_spaces() -> None:
    with pytest.raises(InvalidEncoding):
        build("nb201", "|conv9~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ValueError, match="no network builder"):
        build("ofa_mbv3", "{}")
