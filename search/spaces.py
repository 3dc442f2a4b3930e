"""Search spaces: names, encodings and their validation.

An encoding is a space's canonical text for one architecture; the registry stores it as is,
so two spellings of one architecture must canonicalise to the same text.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import ClassVar

import numpy as np

from predictors.shots_model import DesignFeatures
from search.kernels import cell_kernels, precision_kernels


class InvalidEncoding(ValueError):
    """An architecture encoding that does not belong to its space."""


# NB201 edges (from node, to node) in encoding order; a node's inputs all come before it.
_NB201_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


class SearchSpace(ABC):
    name: ClassVar[str]

    @abstractmethod
    def canonical(self, encoding: str) -> str:
        """Return the canonical encoding, or raise InvalidEncoding saying what is wrong."""

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        """``n`` designs drawn uniformly from the space (repeats possible in small spaces)."""
        raise NotImplementedError(f"{self.name} cannot sample designs yet")

    @abstractmethod
    def encode(self, encodings: Sequence[str], policy: str = "fp32") -> np.ndarray:
        """Each (canonical) design as a fixed-length numeric vector for learned predictors.

        ``policy`` is the quantization policy the designs run in, where the kernels a
        runtime executes depend on it (a space without such features ignores it); the
        width never depends on it.
        """

    def feature_names(self) -> list[str]:
        """Names of :meth:`features` columns; empty where the space has no cost features yet."""
        return []

    def encode_blocks(self) -> tuple[tuple[int, int], ...]:
        """Column ranges of :meth:`encode` that one kind of runtime's costs follow on their own
        (none by default); see ``predictors.shots_model.DesignFeatures``."""
        return ()

    def design_features(self, encodings: Sequence[str], policy: str = "fp32") -> DesignFeatures:
        """:meth:`encode` with its blocks: what few-shot transfer learns a device's costs over."""
        return DesignFeatures(self.encode(encodings, policy), self.encode_blocks())

    def degenerate(self, encodings: Sequence[str]) -> np.ndarray:
        """Which designs compute nothing from their input (a bool per design).

        Their latency says how a runtime treats dead work, not how it runs a network: some
        prune them to almost nothing, others run every op. Few-shot transfer neither
        spends shots on them nor lets them bend a device's fit. None in most spaces.
        """
        return np.zeros(len(encodings), dtype=bool)

    def choices(self) -> list[int]:
        """How many options each architecture decision has (empty: no decisions known).

        A design is one option per decision; the learned optimizer has one head per decision.
        """
        return []

    def decisions(self, encodings: Sequence[str]) -> np.ndarray:
        """The option chosen at each decision, per design (designs x decisions, ints)."""
        raise NotImplementedError(f"{self.name} has no architecture decisions defined")

    def from_decisions(self, options: Sequence[int]) -> str:
        """The encoding of one option per decision (the inverse of :meth:`decisions`)."""
        raise NotImplementedError(f"{self.name} has no architecture decisions defined")

    def features(self, encodings: Sequence[str]) -> np.ndarray:
        """Cost features of each design (rows), additive in the work a device does.

        Latency on many devices is close to linear in these (operator counts, per-stage
        FLOPs), which is what lets a predictor adapt to a new device from a few shots.
        """
        return np.zeros((len(encodings), 0))


class NB201(SearchSpace):
    """NAS-Bench-201 cells: 4 nodes, each summing one op over every earlier node."""

    name = "nb201"
    OPS: ClassVar[tuple[str, ...]] = (
        "none",
        "skip_connect",
        "nor_conv_1x1",
        "nor_conv_3x3",
        "avg_pool_3x3",
    )

    def canonical(self, encoding: str) -> str:
        nodes = encoding.strip().split("+")
        if len(nodes) != 3:
            raise InvalidEncoding(
                f"nb201 encoding needs 3 node groups joined by '+', got {len(nodes)}: {encoding!r}"
            )
        out = []
        for j, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise InvalidEncoding(f"nb201 node {j} must be wrapped in '|': {node!r}")
            edges = node[1:-1].split("|")
            if len(edges) != j:
                raise InvalidEncoding(f"nb201 node {j} needs {j} edges, got {len(edges)}")
            for i, edge in enumerate(edges):
                op, _, src = edge.partition("~")
                if op not in self.OPS:
                    raise InvalidEncoding(f"nb201 unknown op {op!r} (use {list(self.OPS)})")
                if src != str(i):
                    raise InvalidEncoding(f"nb201 node {j} edge {i} must read from node {i}")
            out.append("|" + "|".join(edges) + "|")
        return "+".join(out)

    def from_ops(self, ops: Iterable[str]) -> str:
        """The encoding of 6 edge ops given in encoding order."""
        o = list(ops)
        return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"

    def enumerate(self) -> list[str]:
        """All 15,625 cells, first edge varying fastest (the official NAS-Bench-201 index of
        each is the reference tables' ``arch_id``; it follows no simple order). Built once
        per process (every ``/optimize`` asks for it), returned as a fresh list."""
        return list(_nb201_cells())

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        picks = rng.integers(0, len(self.OPS), size=(n, 6))
        return [self.from_ops(self.OPS[i] for i in row) for row in picks]

    def choices(self) -> list[int]:
        return [len(self.OPS)] * 6

    def decisions(self, encodings: Sequence[str]) -> np.ndarray:
        index = {op: i for i, op in enumerate(self.OPS)}
        return np.array([[index[o] for o in self.ops(e)] for e in encodings], dtype=int).reshape(
            len(encodings), 6
        )

    def from_decisions(self, options: Sequence[int]) -> str:
        return self.from_ops(self.OPS[int(i)] for i in options)

    def ops(self, encoding: str) -> list[str]:
        """The 6 edge ops of a (valid) encoding, in encoding order."""
        return [e.split("~")[0] for node in encoding.split("+") for e in node.strip("|").split("|")]

    def encode(self, encodings: Sequence[str], policy: str = "fp32") -> np.ndarray:
        """One-hot op per edge (6 x 5), the op counts, the kernels one cell runs, then the
        kernels whose form depends on ``policy`` (float or int8 pools per stage, ReLUs by
        precision and by whether they share their input). ValueError for a policy that
        does not give 1 or 5 precisions.

        The kernel counts are what a runtime executes rather than what the cell lists (dead
        nodes removed, shared ReLUs and pools merged, adds, zero nodes and their readers:
        see ``search/kernels.py``). Latency adds up over kernels, not over edges. Held-out
        designs within +-10% of this host's measured latency, mean over 6 settings
        (``benchmarks/host_predictor.py``): 0.88 with 41 columns -> 0.95 with the identity
        and zero-node counts -> 0.96 with the pool precisions -> 0.98 with the ReLUs by
        precision (``benchmarks/host_predictor.py`` table in the README).
        """
        if not encodings:
            return np.zeros((0, NB201_COLUMNS))
        from search.policy import unit_precisions  # search.policy imports this module

        precisions = tuple(unit_precisions(self.name, policy))
        with _NB201_ROWS_LOCK:  # the service encodes from several threads
            if precisions not in _NB201_ROWS:
                if len(_NB201_ROWS) >= ROW_CACHE_POLICIES:
                    del _NB201_ROWS[next(iter(_NB201_ROWS))]  # the oldest policy's rows
                _NB201_ROWS[precisions] = {}
            rows = _NB201_ROWS[precisions]
        stacked = [rows[e] if e in rows else _nb201_row(e, precisions, rows) for e in encodings]
        return np.stack(stacked)

    def feature_names(self) -> list[str]:
        return [f"n_{op}" for op in self.OPS[1:]]

    def encode_blocks(self) -> tuple[tuple[int, int], ...]:
        """The kernels a runtime executes (cell and policy kernels, after the one-hot edges and
        op counts). Runtimes that remove dead code follow them (LatBench's TensorFlow
        settings: 13 cell-kernel columns explain 0.94 Spearman, the 4 op counts 0.83), those
        that run every edge follow the op counts (NAS-Bench-201's PyTorch devices: 0.97)."""
        return ((6 * len(self.OPS) + len(self.OPS) - 1, NB201_COLUMNS),)

    def degenerate(self, encodings: Sequence[str]) -> np.ndarray:
        """Cells whose output no path of non-``none`` edges reaches from the input.

        341 of the 15,625: near-zero latency on TFLite (pixel3, raspi4), a full network's on
        PyTorch, and chance accuracy.
        """
        out = np.zeros(len(encodings), dtype=bool)
        for row, encoding in enumerate(encodings):
            ops = self.ops(encoding)  # edges (0,1), (0,2), (1,2), (0,3), (1,3), (2,3)
            reached = {0}
            for (i, j), op in zip(_NB201_EDGES, ops, strict=True):
                if op != "none" and i in reached:
                    reached.add(j)
            out[row] = 3 not in reached
        return out

    def features(self, encodings: Sequence[str]) -> np.ndarray:
        """How many of the 6 edges carry each op (``none`` left out: it is the remainder).

        Every cell of a network is the same, so the per-op count is the whole network's work
        up to per-stage constants.
        """
        index = {op: i for i, op in enumerate(self.OPS)}
        out = np.zeros((len(encodings), len(self.OPS)))
        for row, encoding in enumerate(encodings):
            for op in self.ops(encoding):
                out[row, index[op]] += 1
        return out[:, 1:]


class FBNet(SearchSpace):
    """FBNet: 22 searchable layers, each one of 9 block choices."""

    name = "fbnet"
    LAYERS = 22
    BLOCKS: ClassVar[tuple[str, ...]] = (
        "k3_e1",
        "k3_e1_g2",
        "k3_e3",
        "k3_e6",
        "k5_e1",
        "k5_e1_g2",
        "k5_e3",
        "k5_e6",
        "skip",
    )

    def canonical(self, encoding: str) -> str:
        blocks = [b.strip() for b in encoding.strip().split("-")]
        if len(blocks) != self.LAYERS:
            raise InvalidEncoding(
                f"fbnet encoding needs {self.LAYERS} blocks joined by '-', got {len(blocks)}"
            )
        for i, b in enumerate(blocks):
            if b not in self.BLOCKS:
                raise InvalidEncoding(f"fbnet layer {i}: unknown block {b!r}")
        return "-".join(blocks)

    # Macro-architecture (HW-NAS-Bench's FBNet for 32x32 inputs): a 16-channel stem, then
    # stages of (out channels, layers, stride of the first layer). 1+4+4+4+4+4+1 = 22 layers.
    STAGES: ClassVar[tuple[tuple[int, int, int], ...]] = (
        (16, 1, 1),
        (24, 4, 2),
        (32, 4, 2),
        (64, 4, 2),
        (112, 4, 1),
        (184, 4, 2),
        (352, 1, 1),
    )
    STEM_CHANNELS = 16
    INPUT_SIZE = 32

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        picks = rng.integers(0, len(self.BLOCKS), size=(n, self.LAYERS))
        return ["-".join(self.BLOCKS[i] for i in row) for row in picks]

    def choices(self) -> list[int]:
        return [len(self.BLOCKS)] * self.LAYERS

    def decisions(self, encodings: Sequence[str]) -> np.ndarray:
        index = {b: i for i, b in enumerate(self.BLOCKS)}
        rows = [[index[b] for b in e.split("-")] for e in encodings]
        return np.array(rows, dtype=int).reshape(len(encodings), self.LAYERS)

    def from_decisions(self, options: Sequence[int]) -> str:
        return "-".join(self.BLOCKS[int(i)] for i in options)

    def layers(self) -> list[tuple[int, int, int, int, int]]:
        """(stage, in channels, out channels, stride, output size) of each searchable layer."""
        out, cin, size = [], self.STEM_CHANNELS, self.INPUT_SIZE
        for stage, (cout, n, stride) in enumerate(self.STAGES):
            for i in range(n):
                s = stride if i == 0 else 1
                size //= s
                out.append((stage, cin, cout, s, size))
                cin = cout
        return out

    @staticmethod
    def block_cost(
        block: str, cin: int, cout: int, stride: int, size: int
    ) -> tuple[float, float, float]:
        """Multiply-accumulates, weights, and the depthwise share of the MACs of one block.

        Depthwise and pointwise convolutions differ in arithmetic intensity by an order of
        magnitude, so devices weigh them differently: the split is a feature of its own.
        """
        if block == "skip":
            if cin == cout and stride == 1:
                return 0.0, 0.0, 0.0
            return float(cin * cout * size * size), float(cin * cout), 0.0
        kernel, expand = int(block[1]), int(block.split("_")[1][1:])
        groups = 2 if block.endswith("_g2") else 1
        mid = cin * expand
        in_size = size * stride
        depthwise = mid * kernel**2 * size**2
        macs = cin * mid / groups * in_size**2 + depthwise + mid * cout / groups * size**2
        params = cin * mid / groups + mid * kernel**2 + mid * cout / groups
        return float(macs), float(params), float(depthwise)

    def feature_names(self) -> list[str]:
        stages = [f"mmacs_stage{i}" for i in range(len(self.STAGES))]
        return [*stages, "mparams", "n_blocks", "conv_kernels"]

    def features(self, encodings: Sequence[str]) -> np.ndarray:
        """Per-stage MACs and weights (millions), non-skip blocks, and convolution kernels run.

        A block runs three convolutions (expand, depthwise, project), a skip that changes
        shape one: on small inputs each kernel's fixed cost counts as much as its MACs. The
        kernel count was chosen over a depthwise / pointwise split of the MACs by holding
        out each training device of the standard split in turn (few-shot Spearman 0.852
        with the split, 0.860 with the count: ``benchmarks/transfer_tuning.py``).
        """
        layers = self.layers()
        n_stages = len(self.STAGES)
        out = np.zeros((len(encodings), n_stages + 3))
        cache: dict[tuple[int, str], tuple[float, float, float]] = {}
        for row, encoding in enumerate(encodings):
            for li, block in enumerate(encoding.split("-")):
                key = (li, block)
                if key not in cache:
                    macs, params, _ = self.block_cost(block, *layers[li][1:])
                    cache[key] = (macs, params, float(self.conv_kernels(block, *layers[li][1:4])))
                macs, params, kernels = cache[key]
                out[row, layers[li][0]] += macs / 1e6
                out[row, n_stages] += params / 1e6
                out[row, n_stages + 1] += block != "skip"
                out[row, n_stages + 2] += kernels
        return out

    @staticmethod
    def conv_kernels(block: str, cin: int, cout: int, stride: int) -> int:
        """Convolutions one block runs: 3 for an inverted residual, 1 or 0 for a skip."""
        if block == "skip":
            return int(cin != cout or stride != 1)
        return 3

    def encode(self, encodings: Sequence[str], policy: str = "fp32") -> np.ndarray:
        """One-hot block per layer (22 x 9), then the cost features."""
        index = {b: i for i, b in enumerate(self.BLOCKS)}
        onehot = np.zeros((len(encodings), self.LAYERS * len(self.BLOCKS)))
        for row, encoding in enumerate(encodings):
            for layer, block in enumerate(encoding.split("-")):
                onehot[row, layer * len(self.BLOCKS) + index[block]] = 1
        return np.c_[onehot, self.features(encodings)]


class OFAMobileNetV3(SearchSpace):
    """Once-for-All MobileNetV3: kernel size and expansion per block, depth per stage, input r."""

    name = "ofa_mbv3"

    def canonical(self, encoding: str) -> str:
        try:
            spec = json.loads(encoding)
        except json.JSONDecodeError as exc:
            raise InvalidEncoding(f"ofa_mbv3 encoding is not JSON: {exc.msg}") from exc
        if not isinstance(spec, dict) or set(spec) != {"ks", "e", "d", "r"}:
            raise InvalidEncoding("ofa_mbv3 encoding needs exactly the keys ks, e, d, r")
        rules = {"ks": (20, {3, 5, 7}), "e": (20, {3, 4, 6}), "d": (5, {2, 3, 4})}
        for key, (length, allowed) in rules.items():
            values = spec[key]
            if not isinstance(values, list) or len(values) != length:
                raise InvalidEncoding(f"ofa_mbv3 {key!r} must be a list of {length} values")
            if any(v not in allowed or isinstance(v, bool) for v in values):
                raise InvalidEncoding(f"ofa_mbv3 {key!r} values must be in {sorted(allowed)}")
        r = spec["r"]
        if not isinstance(r, int) or isinstance(r, bool) or not 128 <= r <= 224:
            raise InvalidEncoding("ofa_mbv3 'r' must be an integer resolution in 128..224")
        ordered = {k: spec[k] for k in ("ks", "e", "d", "r")}
        return json.dumps(ordered, separators=(",", ":"))

    def encode(self, encodings: Sequence[str], policy: str = "fp32") -> np.ndarray:
        """Kernel sizes, expansions, depths and resolution as numbers (46 columns)."""
        rows = []
        for encoding in encodings:
            spec = json.loads(encoding)
            rows.append([*spec["ks"], *spec["e"], *spec["d"], spec["r"]])
        return np.array(rows, dtype=float).reshape(len(encodings), 46)


# Encoded rows per policy (read-only arrays): the whole space is asked for often, and a
# plain dict lookup per design keeps a 15,625-design encoding at about 14 ms.
_NB201_ROWS: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
_NB201_ROWS_LOCK = threading.Lock()
ROW_CACHE_POLICIES = 8


def _nb201_row(
    encoding: str, precisions: tuple[str, ...], cache: dict[str, np.ndarray]
) -> np.ndarray:
    """One design's NB201 encoding row, stored in ``cache``."""
    ops = NB201.OPS
    row = [0.0] * (6 * len(ops) + len(ops) - 1)
    edge_ops = NB201().ops(encoding)
    for edge, op in enumerate(edge_ops):
        k = ops.index(op)
        row[edge * len(ops) + k] = 1.0
        if k:
            row[6 * len(ops) + k - 1] += 1.0
    out = np.array([*row, *cell_kernels(edge_ops), *precision_kernels(edge_ops, list(precisions))])
    out.flags.writeable = False
    cache[encoding] = out
    return out


NB201_COLUMNS = 57  # 6 x 5 one-hot, 4 op counts, 13 cell kernels, 10 policy-dependent kernels


SPACES: dict[str, SearchSpace] = {s.name: s for s in (NB201(), FBNet(), OFAMobileNetV3())}


@lru_cache(maxsize=1)
def _nb201_cells() -> tuple[str, ...]:
    ops, space = NB201.OPS, NB201()
    out = []
    for index in range(len(ops) ** 6):
        digits = [(index // len(ops) ** k) % len(ops) for k in range(6)]
        out.append(space.from_ops(ops[d] for d in digits))
    return tuple(out)


def get_space(name: str) -> SearchSpace:
    """The space called ``name``; ValueError naming the known spaces otherwise."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r} (known: {sorted(SPACES)})") from None
