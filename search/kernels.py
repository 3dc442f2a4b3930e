"""The kernels ONNX Runtime runs for an NB201 design, worked out from the cell alone.

Latency adds up over the kernels a runtime executes, not over the edges a cell lists: dead
nodes are removed, a pool or ReLU of one tensor runs once however many edges read it, a
node with no input is a multiply by zero outside the blocked (NCHWc) kernels, and under a
mixed-precision policy a pool runs in int8 only where its input is quantized. Exporting and
optimising a design tells exactly (``benchmarks/host_graph_kernels.py``), but takes about a
second; these rules take microseconds, so the encoding can carry them for a whole space.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (from, to) in encoding order
READS_ZERO = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
UNITS = ("stem", "stage1", "stage2", "stage3", "head")
CELLS = 5  # cells per stage of the exported network (search.networks.NB201Network)

Node = tuple[str, tuple[str, ...], str]  # kind, input tensors, output tensor


def _edges(edge_ops: list[str]) -> list[tuple[tuple[int, int], str]]:
    return list(zip(EDGES, edge_ops, strict=True))


def _live(edge_ops: list[str]) -> set[int]:
    """Nodes with a path of non-``none`` edges to the output (node 3)."""
    live = {3}
    for node in (2, 1):
        if any(i == node and j in live and op != "none" for (i, j), op in _edges(edge_ops)):
            live.add(node)
    return live


def cell_kernels(edge_ops: list[str]) -> tuple[float, ...]:
    """Kernels one cell runs: 3x3 and 1x1 convolutions, pools, ReLU and pool kernels, adds,
    zero nodes; then the same ReLU and pool kernels once identities are seen through, and
    the ops that read a zero node (one count per op in READS_ZERO).

    Only edges into a live node run: a node whose every path to the output is ``none`` is
    dead code, which exporters and runtimes remove. ReLUs and pools of the same node are one
    kernel each (common-subexpression elimination), and so are those of a node that is only
    ``skip`` of another: it is the same tensor. A live node with no input is ``x * 0``, a
    multiply outside ONNX Runtime's blocked-layout (NCHWc) kernels: every op reading it
    pays layout conversions, which the last four counts price.
    """
    live = _live(edge_ops)
    runs = [((i, j), op) for (i, j), op in _edges(edge_ops) if j in live and op != "none"]
    terms = {node: [(i, op) for (i, j), op in runs if j == node] for node in (1, 2, 3)}
    inputs = [len(terms[node]) for node in sorted(live)]
    same: dict[int, int] = {0: 0}  # node -> the node whose tensor it is
    for node in (1, 2, 3):
        only = terms[node]
        same[node] = same[only[0][0]] if len(only) == 1 and only[0][1] == "skip_connect" else node
    zero = {node for node in live if not terms[node]}
    from_zero = [op for (i, _), op in runs if i in zero]
    return (
        float(sum(op == "nor_conv_3x3" for _, op in runs)),
        float(sum(op == "nor_conv_1x1" for _, op in runs)),
        float(sum(op == "avg_pool_3x3" for _, op in runs)),
        float(len({i for (i, _), op in runs if op.startswith("nor_conv")})),
        float(len({i for (i, _), op in runs if op == "avg_pool_3x3"})),
        float(sum(max(n - 1, 0) for n in inputs)),
        float(inputs.count(0)),
        float(len({same[i] for (i, _), op in runs if op.startswith("nor_conv")})),
        float(len({same[i] for (i, _), op in runs if op == "avg_pool_3x3"})),
        *(float(from_zero.count(op)) for op in READS_ZERO),
    )


def _cell_graph(edge_ops: list[str]) -> tuple[list[Node], str]:
    """One cell as the torch exporter writes it: nodes in forward order, dead nodes dropped,
    identical pools, ReLUs and zero multiplies merged; tensors named ``in`` (the cell's
    input) and ``t0, t1, ...``. Returns the nodes and the cell's output tensor."""
    live = _live(edge_ops)
    nodes: list[Node] = []
    merged: dict[tuple[str, tuple[str, ...]], str] = {}

    def emit(kind: str, *inputs: str) -> str:
        key = (kind, inputs)
        if kind != "conv" and kind != "add" and key in merged:
            return merged[key]
        out = f"t{len(nodes)}"
        nodes.append((kind, inputs, out))
        merged[key] = out
        return out

    tensor = {0: "in"}
    for node in (1, 2, 3):
        if node not in live:
            continue
        terms = []
        for (i, j), op in _edges(edge_ops):
            if j != node or op == "none":
                continue
            if op == "skip_connect":
                terms.append(tensor[i])
            elif op == "avg_pool_3x3":
                terms.append(emit("pool", tensor[i]))
            else:
                terms.append(emit("conv", emit("relu", tensor[i])))
        total = terms[0] if terms else emit("mul", tensor[0])
        for term in terms[1:]:
            total = emit("add", total, term)
        tensor[node] = total
    return nodes, tensor[3]


def _network_graph(cell: tuple[Node, ...], cell_out: str, cells: int) -> list[tuple[str, Node]]:
    """The whole network's nodes that matter for quantization, each with its unit."""
    graph: list[tuple[str, Node]] = [("stem", ("conv", ("x",), "stem"))]
    current = "stem"
    for stage in (1, 2, 3):
        unit = f"stage{stage}"
        if stage > 1:  # residual reduction: relu-conv-relu-conv, pool-conv shortcut, add
            r = f"{unit}.r."
            graph += [
                (unit, ("relu", (current,), r + "ra")),
                (unit, ("conv", (r + "ra",), r + "a")),
                (unit, ("relu", (r + "a",), r + "rb")),
                (unit, ("conv", (r + "rb",), r + "b")),
                (unit, ("pool", (current,), r + "p")),
                (unit, ("conv", (r + "p",), r + "s")),
                (unit, ("add", (r + "b", r + "s"), r + "out")),
            ]
            current = r + "out"
        for c in range(cells):
            names = {"in": current}
            for kind, inputs, out in cell:
                names[out] = f"{unit}.{c}.{out}"
                graph.append((unit, (kind, tuple(names[t] for t in inputs), names[out])))
            current = names[cell_out]
    return graph


def precision_kernels(
    edge_ops: list[str], precisions: list[str], cells: int = CELLS
) -> tuple[float, ...]:
    """Kernels whose form depends on the policy (10 counts): per stage the pool kernels
    that run in float and in int8, then the ReLU kernels of float and of int8 units, each
    split by whether the ReLU is its input's only reader.

    Pools follow ONNX Runtime's QDQ quantizer over the exported graph in node order: in an
    int8 unit a convolution, add or multiply quantizes its inputs and output, while a pool
    or ReLU quantizes its output only if its input already is. A pool then runs as
    ``QLinearAveragePool`` when its input ends up quantized, else in float: so the first
    cell after an fp32 unit keeps float pools until something quantizes its input, and a
    stage without convolutions or adds runs all its pools in float (several times cheaper
    on this CPU). Against the real optimised graphs of 660 designs under
    ``fp32,int8,int8,int8,fp32`` the pool counts agree for 647
    (``benchmarks/host_graph_kernels.py``).

    ReLUs: in an int8 unit the quantizer folds a ReLU into its input's quantization only
    when the ReLU is that tensor's sole reader; a shared input leaves a dequantize /
    requantize pair per ReLU. In a float unit a sole reader can fuse into the convolution
    that produced it.
    """
    cell, cell_out = _cell_graph(edge_ops)
    return _precision_kernels(tuple(cell), cell_out, tuple(precisions), cells)


@lru_cache(maxsize=16384)
def _precision_kernels(
    cell: tuple[Node, ...], cell_out: str, precisions: tuple[str, ...], cells: int
) -> tuple[float, ...]:
    """``precision_kernels`` of one exported cell; the 15,625 NB201 cells export to 2,342
    distinct cell graphs, so caching on the graph saves most of the work."""
    int8 = {unit for unit, p in zip(UNITS, precisions, strict=True) if p == "int8"}
    graph = _network_graph(cell, cell_out, cells)
    quantized: set[str] = set()
    for unit, (kind, inputs, out) in graph:
        if unit not in int8:
            continue
        if kind in ("conv", "add", "mul"):
            quantized.update(inputs)
            quantized.add(out)
        elif inputs[0] in quantized:  # pool, relu
            quantized.add(out)
    counts = []
    for stage in ("stage1", "stage2", "stage3"):
        pools = [inputs[0] for unit, (kind, inputs, _) in graph if unit == stage and kind == "pool"]
        in_int8 = sum(t in quantized for t in pools)
        counts += [float(len(pools) - in_int8), float(in_int8)]
    readers = Counter(t for _, (_, inputs, _) in graph for t in inputs)
    relus = Counter(
        (unit in int8, readers[inputs[0]] > 1)
        for unit, (kind, inputs, _) in graph
        if kind == "relu"
    )
    counts += [float(relus[(q, shared)]) for q in (False, True) for shared in (False, True)]
    return tuple(counts)
