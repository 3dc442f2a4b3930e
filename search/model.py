"""A chosen design as a PyTorch network you train yourself: the user's entry point.

    from search.model import build

    net = build("nb201", "|nor_conv_3x3~0|+|...|", num_classes=10, input_shape=(3, 32, 32))
    # an ordinary torch.nn.Module (train mode, random weights): train it with any loop, or
    # with search.deploy.train_model / `edgeopt train`

The network is the one EdgeOpt predicted latency for (``size="full"``: NB201 with 16
channels and 5 cells per stage, FBNet at full width), so a model trained from it runs as
fast as the prediction says at 3x32x32. ``size="small"`` is the network EdgeOpt measured
digits accuracy with (search/digits.py): the accuracy predictions for digits are for it.
Its top-level children are the quantization units a per-unit policy names.
"""

from __future__ import annotations

from torch import nn

from search import networks
from search.digits import SMALL
from search.policy import NETWORK_SPACES

INPUT_SHAPE = (3, 32, 32)  # the input every latency prediction and measurement uses
SIZES = ("full", "small")
MIN_SIDE = 4  # below this the stride-2 stages have nothing left to halve


def size_kwargs(space: str, size: str) -> dict[str, int | float]:
    """The builder's sizing arguments for a named size."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r} (use {' or '.join(SIZES)})")
    return dict(SMALL[space]) if size == "small" else {}


def build(
    space: str,
    design: str,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    size: str = "full",
) -> nn.Module:
    """The design as an untrained torch module in train mode, for ``num_classes`` classes and
    inputs of ``input_shape`` (channels, height, width). ValueError names a bad argument."""
    if space not in NETWORK_SPACES:
        raise ValueError(
            f"space {space!r} has no network builder (have {', '.join(NETWORK_SPACES)})"
        )
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape}")
    if min(input_shape[1:]) < MIN_SIDE:
        raise ValueError(f"input images must be at least {MIN_SIDE}x{MIN_SIDE}, got {input_shape}")
    kwargs = size_kwargs(space, size)
    try:
        net = networks.build(space, design, classes=num_classes, in_ch=input_shape[0], **kwargs)
    except (KeyError, IndexError) as exc:
        raise ValueError(f"{design!r} is not a {space} design: {exc}") from exc
    return net.train()
