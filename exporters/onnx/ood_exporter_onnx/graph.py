"""Graph passes on ONNX models: fp16 conversion, Cast de-duplication, topological sort, lineage."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable

import onnx

from ood_exporter_onnx.errors import ExportError, import_onnxruntime


def _cast_to(node: onnx.NodeProto) -> int | None:
    for attr in node.attribute:
        if attr.name == "to":
            return int(attr.i)
    return None


def dedupe_casts(graph: onnx.GraphProto) -> int:
    """Merge Cast nodes that cast the same tensor to the same type; returns how many were removed.

    A Cast whose output is a graph output is the one kept (graph outputs keep their names).
    """
    outputs = {o.name for o in graph.output}
    groups: dict[tuple[str, int | None], list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        if node.op_type == "Cast" and node.domain in ("", "ai.onnx") and len(node.input) == 1:
            groups[(node.input[0], _cast_to(node))].append(node)
    rename: dict[str, str] = {}
    drop: set[int] = set()
    for nodes in groups.values():
        if len(nodes) < 2:
            continue
        kept = next((n for n in nodes if n.output[0] in outputs), nodes[0])
        for node in nodes:
            if node is kept:
                continue
            if node.output[0] in outputs:  # two graph outputs from one cast: keep both
                continue
            rename[node.output[0]] = kept.output[0]
            drop.add(id(node))
    if not drop:
        return 0
    kept_nodes = [n for n in graph.node if id(n) not in drop]
    for node in kept_nodes:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    return len(drop)


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (stable).

    Inputs of nested subgraphs (If/Loop bodies) that come from the outer graph count as inputs
    of the node holding them. Raises :class:`ExportError` on a cycle or a dangling input.
    """
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    available |= {t.name for t in graph.sparse_initializer} | {""}
    producer: dict[str, int] = {}
    for idx, node in enumerate(graph.node):
        for out in node.output:
            if out:
                producer[out] = idx
    needs: list[set[int]] = []
    users: dict[int, list[int]] = defaultdict(list)
    for idx, node in enumerate(graph.node):
        deps = set()
        for name in (*node.input, *_subgraph_inputs(node)):
            if name in available:
                continue
            if name not in producer:
                if name in _subgraph_locals(node):
                    continue
                raise ExportError(
                    f"ONNX graph is broken: input {name!r} of node {node.name or node.op_type} "
                    "is produced by no node"
                )
            if producer[name] != idx:
                deps.add(producer[name])
        needs.append(deps)
        for dep in deps:
            users[dep].append(idx)
    remaining = [len(d) for d in needs]
    ready = deque(i for i, n in enumerate(remaining) if n == 0)
    order: list[int] = []
    while ready:
        idx = ready.popleft()
        order.append(idx)
        for user in sorted(users[idx]):
            remaining[user] -= 1
            if remaining[user] == 0:
                ready.append(user)
    if len(order) != len(graph.node):
        raise ExportError("ONNX graph has a cycle; it cannot be sorted topologically")
    nodes = [graph.node[i] for i in order]
    copies = [onnx.NodeProto() for _ in nodes]
    for copy, node in zip(copies, nodes):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _subgraphs(node: onnx.NodeProto) -> Iterable[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _subgraph_locals(node: onnx.NodeProto) -> set[str]:
    names: set[str] = set()
    for g in _subgraphs(node):
        names |= {i.name for i in g.input} | {t.name for t in g.initializer}
        for n in g.node:
            names |= set(n.output)
            names |= _subgraph_locals(n)
    return names


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope."""
    used: set[str] = set()
    for g in _subgraphs(node):
        local = _subgraph_locals(node)
        for n in g.node:
            used |= {name for name in n.input if name and name not in local}
            used |= _subgraph_inputs(n) - local
    return used


def duplicate_casts(graph: onnx.GraphProto) -> list[tuple[str, int | None]]:
    """``(input, to)`` pairs cast more than once (empty for a clean graph)."""
    seen: dict[tuple[str, int | None], int] = defaultdict(int)
    for node in graph.node:
        if node.op_type == "Cast" and len(node.input) == 1:
            seen[(node.input[0], _cast_to(node))] += 1
    return [key for key, count in seen.items() if count > 1]


def is_topologically_sorted(graph: onnx.GraphProto) -> bool:
    """Whether every node's inputs are graph inputs, initializers or outputs of earlier nodes."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    for node in graph.node:
        local = _subgraph_locals(node)
        for name in (*node.input, *(_subgraph_inputs(node) - local)):
            if name not in known:
                return False
        known |= set(node.output)
    return True


def fix_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """De-duplicate Cast nodes, sort the graph topologically and run ``onnx.checker`` (in place)."""
    dedupe_casts(model.graph)
    topological_sort(model.graph)
    onnx.checker.check_model(model)
    return model


def convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float16 copy of ``model`` with float32 inputs and outputs, Casts cleaned and checked.

    Uses onnxruntime's float16 converter (``keep_io_types=True``: callers keep feeding float32 and
    get float32 scores) and then :func:`fix_graph`, since the converter may emit unsorted or
    duplicated Cast nodes.
    """
    import_onnxruntime("fp16 conversion")
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:  # pragma: no cover - stripped-down onnxruntime builds
        raise ExportError(
            f"fp16 export needs onnxruntime's float16 converter (onnxruntime.transformers): {exc}"
        ) from None
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    converted = convert_float_to_float16(copy, keep_io_types=True, disable_shape_infer=False)
    return fix_graph(converted)


def ancestors(graph: onnx.GraphProto, name: str) -> set[str]:
    """Every tensor name ``name`` is computed from (graph inputs and initializers included)."""
    producer = {out: node for node in graph.node for out in node.output if out}
    seen: set[str] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        node = producer.get(current)
        if node is None:
            continue
        for dep in (*node.input, *_subgraph_inputs(node)):
            if dep and dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen


__all__ = [
    "ancestors",
    "convert_fp16",
    "dedupe_casts",
    "duplicate_casts",
    "fix_graph",
    "is_topologically_sorted",
    "topological_sort",
]
