"""The metadata an ONNX file carries (`ModelProto.metadata_props`), read without `onnx` or a session.

Why not the `onnx` package: importing it pulls in protobuf's generated classes
and ml_dtypes, 0.3-1.5 s on the project's VM (longer on a Raspberry Pi 4) at
every `jamd run`, and plain `jamd[cpu]` does not install it.  Why not ONNX
Runtime: its only way to the metadata is a whole `InferenceSession`, which
would be a second session for one model (and a second "runs on" log line).
The ONNX file is a protobuf message, and the few fields wanted here are found
by walking its wire format (https://protobuf.dev/programming-guides/encoding/):
every other field, the graph's weights included, is skipped by its length.
The walk also proves the file is a well-formed ONNX model with a graph of at
least one node, which a truncated or foreign file is not.
"""

from __future__ import annotations

from pathlib import Path

# Field numbers from onnx.proto (ONNX IR version 3 onwards: unchanged since).
MODEL_GRAPH, MODEL_METADATA_PROPS = 7, 14
GRAPH_NODE = 1
ENTRY_KEY, ENTRY_VALUE = 1, 2

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class NotOnnx(ValueError):
    """The bytes are not a well-formed ONNX model; the message says where it broke off."""


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise NotOnnx("cut off inside a number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise NotOnnx("a number longer than 10 bytes")


def fields(data: memoryview):
    """(field number, wire type, value) of each field of one protobuf message: an int for
    numbers, a memoryview for length-delimited fields.  Raises `NotOnnx` on malformed bytes."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise NotOnnx(f"field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire in (_FIXED64, _FIXED32):
            end = pos + (8 if wire == _FIXED64 else 4)
            if end > len(data):
                raise NotOnnx("cut off inside a fixed-size field")
            value, pos = int.from_bytes(data[pos:end], "little"), end
        elif wire == _LENGTH:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise NotOnnx(f"field {number} runs {pos + size - len(data)} bytes past the end")
            value, pos = data[pos:pos + size], pos + size
        else:  # 3 and 4 (groups) are not used by ONNX; 6 and 7 do not exist
            raise NotOnnx(f"wire type {wire} at byte {pos}")
        yield number, wire, value


def read_metadata_props(path: str | Path) -> dict[str, str]:
    """`metadata_props` of the ONNX model at `path` as {key: value}.

    Raises `NotOnnx` when the file is not a well-formed ONNX model with a graph
    of at least one node (truncated, foreign or empty), and `OSError` when it
    cannot be read.
    """
    data = memoryview(Path(path).read_bytes())
    props: dict[str, str] = {}
    has_node = False
    try:
        for number, wire, value in fields(data):
            if number == MODEL_GRAPH and wire == _LENGTH:
                has_node = has_node or any(n == GRAPH_NODE and w == _LENGTH for n, w, _v in fields(value))
            elif number == MODEL_METADATA_PROPS and wire == _LENGTH:
                entry = {n: bytes(v).decode("utf-8") for n, w, v in fields(value) if w == _LENGTH}
                props[entry.get(ENTRY_KEY, "")] = entry.get(ENTRY_VALUE, "")
    except UnicodeDecodeError:
        raise NotOnnx("a metadata entry is not UTF-8") from None
    if not has_node:
        raise NotOnnx("no graph")
    return props
