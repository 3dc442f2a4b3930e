"""Search spaces: names, encodings and their validation.

An encoding is a space's canonical text for one architecture; the registry stores it as is,
so two spellings of one architecture must canonicalise to the same text.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import ClassVar


class InvalidEncoding(ValueError):
    """An architecture encoding that does not belong to its space."""


class SearchSpace(ABC):
    name: ClassVar[str]

    @abstractmethod
    def canonical(self, encoding: str) -> str:
        """Return the canonical encoding, or raise InvalidEncoding saying what is wrong."""


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


SPACES: dict[str, SearchSpace] = {s.name: s for s in (NB201(), FBNet(), OFAMobileNetV3())}


def get_space(name: str) -> SearchSpace:
    """The space called ``name``; ValueError naming the known spaces otherwise."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r} (known: {sorted(SPACES)})") from None
