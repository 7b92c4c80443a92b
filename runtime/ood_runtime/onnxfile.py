"""What an ONNX file declares, read from its protobuf bytes without onnx or onnxruntime.

Only the fields a consumer needs are decoded (IR version, opsets, producer, doc string, metadata
properties, graph inputs and outputs, node count); everything else is skipped by length. A
file that is not a well-formed ONNX model is a ``ValueError`` (never a crash or a hang).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: TensorProto.DataType numbers -> names (the ones a model's inputs and outputs use)
ELEM_TYPES = {
    1: "float",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "double",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)``: ints for varints, memoryviews for bytes fields."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise _Malformed("truncated fixed-width field")
            value, pos = int.from_bytes(buf[pos : pos + size], "little"), pos + size
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise _Malformed("a field runs past the end of its message")
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        yield number, wire, value


def _text(value: Any) -> str:
    if not isinstance(value, memoryview):
        raise _Malformed("a string field has the wrong wire type")
    return bytes(value).decode("utf-8", errors="replace")


def _message(value: Any) -> memoryview:
    if not isinstance(value, memoryview):
        raise _Malformed("a message field has the wrong wire type")
    return value


def _value_info(buf: memoryview) -> dict[str, Any]:
    """ValueInfoProto -> ``{"name", "dtype", "shape"}`` (dims: int, symbolic name or None)."""
    info: dict[str, Any] = {"name": "", "dtype": "?", "shape": None}
    for number, _, value in _fields(buf):
        if number == 1:
            info["name"] = _text(value)
        elif number == 2:  # TypeProto
            for n2, _, v2 in _fields(_message(value)):
                if n2 == 1:  # tensor_type
                    _tensor_type(_message(v2), info)
    return info


def _tensor_type(buf: memoryview, info: dict[str, Any]) -> None:
    for number, _, value in _fields(buf):
        if number == 1 and isinstance(value, int):
            info["dtype"] = ELEM_TYPES.get(value, f"type{value}")
        elif number == 2:  # TensorShapeProto
            dims: list[Any] = []
            for n2, _, dim in _fields(_message(value)):
                if n2 != 1:
                    continue
                entry: Any = None
                for n3, _, v3 in _fields(_message(dim)):
                    if n3 == 1 and isinstance(v3, int):
                        entry = v3
                    elif n3 == 2:
                        entry = _text(v3)
                dims.append(entry)
            info["shape"] = dims


def _graph(buf: memoryview) -> dict[str, Any]:
    graph: dict[str, Any] = {"name": "", "nodes": 0, "inputs": [], "outputs": [], "init": set()}
    for number, _, value in _fields(buf):
        if number == 1:
            graph["nodes"] += 1
        elif number == 2:
            graph["name"] = _text(value)
        elif number == 5:  # initializer: its name is field 8 of TensorProto
            for n2, _, v2 in _fields(_message(value)):
                if n2 == 8:
                    graph["init"].add(_text(v2))
        elif number == 11:
            graph["inputs"].append(_value_info(_message(value)))
        elif number == 12:
            graph["outputs"].append(_value_info(_message(value)))
    return graph


def _model(buf: memoryview) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ir_version": 0,
        "opsets": {},
        "producer_name": "",
        "producer_version": "",
        "doc_string": "",
        "metadata_props": {},
        "graph": None,
    }
    texts = {2: "producer_name", 3: "producer_version", 6: "doc_string"}
    for number, _, value in _fields(buf):
        if number == 1 and isinstance(value, int):
            out["ir_version"] = value
        elif number in texts:
            out[texts[number]] = _text(value)
        elif number == 8:  # OperatorSetIdProto: domain 1, version 2
            entry = dict((n, v) for n, _, v in _fields(_message(value)))
            domain = _text(entry[1]) if 1 in entry else ""
            out["opsets"][domain or "ai.onnx"] = int(entry.get(2, 0))
        elif number == 7:
            out["graph"] = _graph(_message(value))
        elif number == 14:  # StringStringEntryProto: key 1, value 2
            entry = dict((n, v) for n, _, v in _fields(_message(value)))
            out["metadata_props"][_text(entry.get(1, memoryview(b"")))] = _text(
                entry.get(2, memoryview(b""))
            )
    return out


def describe_onnx(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The declarations of the ONNX file ``path``: ``ir_version``, ``opsets``, ``producer_name``,
    ``producer_version``, ``doc_string``, ``metadata_props`` (raw strings), ``nodes``, ``inputs``
    and ``outputs`` (``{"name", "dtype", "shape"}``, initializers left out).

    Raises ``ValueError`` when the file is not a readable ONNX model (an empty file parses as an
    empty protobuf message: it has no IR version, graph or opset and is refused too).
    """
    p = Path(path)
    data = p.read_bytes()
    if not data:
        raise ValueError(f"{p} is not a readable ONNX file (it is empty)")
    try:
        model = _model(memoryview(data))
    except (_Malformed, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{p} is not a readable ONNX file: {exc}") from None
    graph = model.pop("graph")
    if not model["ir_version"] or graph is None or not model["opsets"]:
        raise ValueError(
            f"{p} is not a readable ONNX file (no IR version, graph or opset: empty or not ONNX)"
        )
    init = graph.pop("init")
    model["graph_name"] = graph["name"]
    model["nodes"] = graph["nodes"]
    model["inputs"] = [i for i in graph["inputs"] if i["name"] not in init]
    model["outputs"] = graph["outputs"]
    return model


__all__ = ["ELEM_TYPES", "describe_onnx"]
