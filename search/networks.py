"""Designs as torch modules, so every design EdgeOpt recommends can be built, run and measured.

Each network's top-level children are its *quantization units*, named as a policy lists
them: NB201 ``stem, stage1, stage2, stage3, head``; FBNet ``stem, block0 .. block21, head``.
ONNX export keeps those names in node scopes, which is how a mixed-precision policy picks
the nodes to quantize.
"""

from __future__ import annotations

import torch
from torch import nn

from search.policy import units
from search.spaces import NB201, FBNet, get_space


class _ReLUConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
        )


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


def _nb201_op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return _Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return _ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return _ReLUConvBN(channels, channels, 3)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class _Cell(nn.Module):
    """NB201 cell: node j sums op(i -> j) over every earlier node i; node 3 is the output.

    ``none`` edges add nothing, so they are left out of the sum rather than computed as
    ``x * 0``: a node keeps a zero term only when all its inputs are ``none``. The multiply
    by zero cost real time and, being outside ONNX Runtime's blocked (NCHWc) kernels, forced
    layout conversions around every node it fed.
    """

    def __init__(self, ops: list[str], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(_nb201_op(op, channels) for op in ops)
        self.live = [op != "none" for op in ops]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes, k = [x], 0
        for j in range(1, 4):
            terms = [self.edges[k + i](nodes[i]) for i in range(j) if self.live[k + i]]
            total = terms[0] if terms else self.edges[k](nodes[0])  # all none: zeros
            for term in terms[1:]:
                total = total + term
            k += j
            nodes.append(total)
        return nodes[3]


class _Reduction(nn.Module):
    """Residual block halving resolution and doubling channels between NB201 stages."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.a = _ReLUConvBN(cin, cout, 3, 2)
        self.b = _ReLUConvBN(cout, cout, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


class _Head(nn.Module):
    def __init__(self, channels: int, classes: int, pre: nn.Module | None = None) -> None:
        super().__init__()
        self.pre = pre or nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.pre(x), 1), 1))


class NB201Network(nn.Module):
    """The NAS-Bench-201 network: stem, 3 stages of ``cells`` cells, reductions, head."""

    def __init__(
        self, encoding: str, channels: int = 16, cells: int = 5, classes: int = 10, in_ch: int = 3
    ) -> None:
        super().__init__()
        ops = NB201().ops(get_space("nb201").canonical(encoding))
        self.stem = nn.Sequential(
            nn.Conv2d(in_ch, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        stages: list[nn.Sequential] = []
        c = channels
        for s in range(3):
            layers: list[nn.Module] = []
            if s:
                layers.append(_Reduction(c, 2 * c))
                c *= 2
            layers += [_Cell(ops, c) for _ in range(cells)]
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3 = stages
        self.head = _Head(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage3(self.stage2(self.stage1(self.stem(x)))))


class _InvertedResidual(nn.Module):
    """FBNet block: 1x1 expand (groups g), depthwise k x k, 1x1 project (groups g)."""

    def __init__(self, block: str, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        kernel, expand = int(block[1]), int(block.split("_")[1][1:])
        groups = 2 if block.endswith("_g2") else 1
        mid = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, groups=groups, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, cout, 1, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def _fbnet_block(block: str, cin: int, cout: int, stride: int) -> nn.Module:
    if block != "skip":
        return _InvertedResidual(block, cin, cout, stride)
    if cin == cout and stride == 1:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class FBNetNetwork(nn.Module):
    """FBNet for 32x32 inputs (HW-NAS-Bench's macro-architecture), one block per layer."""

    def __init__(self, encoding: str, classes: int = 10, in_ch: int = 3, width: float = 1.0):
        super().__init__()
        space = FBNet()
        blocks = space.canonical(encoding).split("-")

        def w(c: int) -> int:
            return max(8, round(c * width / 8) * 8)

        self.stem = nn.Sequential(
            nn.Conv2d(in_ch, w(space.STEM_CHANNELS), 3, padding=1, bias=False),
            nn.BatchNorm2d(w(space.STEM_CHANNELS)),
            nn.ReLU(),
        )
        for i, (block, (_, cin, cout, stride, _)) in enumerate(
            zip(blocks, space.layers(), strict=True)
        ):
            setattr(self, f"block{i}", _fbnet_block(block, w(cin), w(cout), stride))
        last = w(space.STAGES[-1][0])
        pre = nn.Sequential(
            nn.Conv2d(last, w(1504), 1, bias=False), nn.BatchNorm2d(w(1504)), nn.ReLU()
        )
        self.head = _Head(w(1504), classes, pre)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(FBNet.LAYERS):
            x = getattr(self, f"block{i}")(x)
        return self.head(x)


def build(space: str, encoding: str, **kwargs: int | float) -> nn.Module:
    """The design as a torch module in eval mode (``kwargs`` size it, e.g. ``cells=1``)."""
    if space == "nb201":
        net: nn.Module = NB201Network(encoding, **kwargs)  # type: ignore[arg-type]
    elif space == "fbnet":
        net = FBNetNetwork(encoding, **kwargs)  # type: ignore[arg-type]
    else:
        units(space)  # raises the clear error
        raise AssertionError
    return net.eval()


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
