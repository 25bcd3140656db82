"""The Open Inference Protocol (KServe v2) REST codec: typed tensors to model input and back.

What is followed, field by field (KServe "Open Inference Protocol" REST spec):

* inference request ``{"id"?, "parameters"?, "inputs": [$request_input], "outputs"?:
  [$request_output]}``; ``$request_input`` is ``{"name", "shape", "datatype",
  "parameters"?, "data"}``, ``data`` in row-major order, flat or nested; datatypes
  ``BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES`` (BYTES as JSON strings);
* inference response ``{"model_name", "model_version", "id", "parameters"?, "outputs":
  [{"name", "shape", "datatype", "parameters"?, "data"}]}``, ``id`` echoing the request's;
* model metadata ``{"name", "versions", "platform", "inputs", "outputs"}`` of
  ``$metadata_tensor`` ``{"name", "datatype", "shape"}`` with ``-1`` for a free dimension;
* errors ``{"error": "<message>"}``.

The ``binary_tensor_data`` extension (Triton's; what ``tritonclient`` sends by default) is
supported both ways: a request whose ``Inference-Header-Content-Length`` header splits the
body into a JSON header and raw tensor bytes (``parameters.binary_data_size`` per input),
and binary outputs when asked (``parameters.binary_data_output`` on the request or
``parameters.binary_data`` on a requested output). BYTES elements in binary form are a
4-byte little-endian length followed by the bytes.

**How a column signature is shown and read.** When every column is numeric, the model
advertises a single tensor ``input-0`` of shape ``[-1, n_columns]`` (what KServe's sklearn,
xgboost and lightgbm runtimes, Triton's FIL backend and most clients send: the feature
matrix), with the column order in its ``parameters.columns``. With a string, bool or date
column it advertises one tensor per column, shape ``[-1]``, named after the column (the
convention of MLServer's pandas codec). Either layout is accepted for any model: one 2-D
tensor whose columns are taken in signature order, or one 1-D (or ``[N, 1]``) tensor per
column named after it. Outputs are ``predict`` (shape ``[-1]`` for one prediction per row)
and, for classifiers with probabilities, ``predict_proba`` (``[-1, n_classes]``, class order
in ``parameters.classes``); by default only ``predict`` is returned.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gyre.errors import InvalidArgument, SchemaMismatch
from gyre.models import ColumnSchema, TensorSchema

Schema = ColumnSchema | TensorSchema

__all__ = [
    "DATATYPES",
    "InferRequest",
    "Tensor",
    "datatype_of",
    "decode_request",
    "encode_outputs",
    "input_metadata",
    "model_input",
    "signature_datatype",
]

logger = logging.getLogger("gyre.serving")

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_HINT_TYPES = "use one of: " + ", ".join(DATATYPES)
_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in DATATYPES.items() if name != "BYTES"}

BINARY_HEADER = "inference-header-content-length"


@dataclass(slots=True)
class Tensor:
    """One decoded input tensor."""

    name: str
    datatype: str
    shape: list[int]
    array: NDArray[Any]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: list[Tensor]
    outputs: list[tuple[str, dict[str, Any]]] | None  # None: the default outputs


# -- datatypes ---------------------------------------------------------------------------


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol datatype of a numpy dtype (objects, strings and dates are BYTES)."""
    return _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize), "BYTES")


def signature_datatype(dtype: str) -> str:
    """The protocol datatype of a signature dtype (``float64`` → ``FP64``)."""
    if dtype in ("string", "object") or dtype.startswith("datetime64"):
        return "BYTES"
    return datatype_of(np.dtype(dtype))


# -- request decoding --------------------------------------------------------------------


def _bad(message: str, hint: str | None = None) -> InvalidArgument:
    return InvalidArgument(message, hint=hint)


def _shape(name: str, raw: Any) -> list[int]:
    if not isinstance(raw, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in raw
    ):
        raise _bad(
            f"input {name!r}: shape {raw!r} is not a list of non-negative integers",
            hint='e.g. "shape": [1, 20] for one row of 20 features',
        )
    return raw


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    for v in data:
        out.extend(_flatten(v))
    return out


def _first_bad(flat: Sequence[Any], ok: Any) -> int:
    return next(i for i, v in enumerate(flat) if not ok(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _describe(v: Any) -> str:
    if isinstance(v, str):
        return f"string {v!r}"
    if v is None:
        return "null"
    return f"{type(v).__name__} {v!r}"


def _wrong_value(name: str, datatype: str, flat: Sequence[Any], ok: Any) -> InvalidArgument:
    i = _first_bad(flat, ok)
    return _bad(
        f"input {name!r} has datatype {datatype} but holds {_describe(flat[i])} at flat index {i}",
        hint=f"send {datatype} values, or declare the datatype the data has",
    )


def _decode_json_data(name: str, datatype: str, shape: list[int], data: Any) -> NDArray[Any]:
    count = math.prod(shape)
    target = DATATYPES[datatype]
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = _flatten(data)
        if not all(isinstance(v, str) for v in flat):
            raise _wrong_value(name, datatype, flat, lambda v: isinstance(v, str))
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
    else:
        try:
            arr = np.asarray(data)
        except ValueError:
            raise _bad(
                f"input {name!r}: data is ragged (nested lists of different lengths)",
                hint=f"send {count} values for shape {shape}, flat or nested",
            ) from None
        kind = arr.dtype.kind
        if target.kind == "b":
            if kind != "b":
                raise _wrong_value(name, datatype, _flatten(data), lambda v: isinstance(v, bool))
        elif target.kind == "f":
            if kind == "O":  # null stands for a missing value in a float tensor
                flat = _flatten(data)
                if not all(v is None or _is_number(v) for v in flat):
                    raise _wrong_value(name, datatype, flat, lambda v: v is None or _is_number(v))
                arr = np.array([math.nan if v is None else v for v in flat], dtype=np.float64)
            elif kind not in "iuf":
                raise _wrong_value(name, datatype, _flatten(data), _is_number)
        elif kind in "fO":  # integers, some sent as floats or past what numpy holds exactly
            arr = _whole_numbers(name, datatype, target, data)
        else:  # integers
            if kind not in "iu":
                raise _wrong_value(
                    name, datatype, _flatten(data), lambda v: isinstance(v, int) and v is not True
                )
            if arr.size:
                info = np.iinfo(target)
                low, high = arr.min(), arr.max()
                if low < info.min or high > info.max:
                    bad = low if low < info.min else high
                    raise _bad(
                        f"input {name!r}: value {bad.item()!r} is outside {datatype}'s range "
                        f"[{info.min}, {info.max}]",
                        hint="declare a wider datatype",
                    )
        arr = arr.astype(target, copy=False)
    if arr.size != count:
        raise _bad(
            f"input {name!r}: shape {shape} holds {count} values, but data has {arr.size}",
            hint="make shape and data agree (data may be flat or nested, row-major)",
        )
    return arr.reshape(shape)


def _whole_numbers(name: str, datatype: str, target: Any, data: Any) -> NDArray[Any]:
    """The integer tensor ``data`` holds, value by value: for data numpy reads as floats
    (whole numbers sent as ``1.0``, or integers past int64 beside smaller ones, which as
    float64 would lose their low digits: 2**64 - 1 would become 0 in a UINT64 tensor) or
    as objects (integers past uint64). Exact, or InvalidArgument naming the first value
    that is not a whole number or is out of ``datatype``'s range."""
    flat = _flatten(data)
    values: list[int] = []
    for i, v in enumerate(flat):
        if type(v) is float:
            if not v.is_integer():  # a fraction, NaN or an infinity
                raise _bad(
                    f"input {name!r} has datatype {datatype} but holds {_describe(v)} at "
                    f"flat index {i}",
                    hint="send whole numbers, or declare an FP datatype",
                )
            v = int(v)
        elif type(v) is not int:
            raise _wrong_value(name, datatype, flat, lambda v: type(v) in (int, float))
        values.append(v)
    if values:
        info = np.iinfo(target)
        low, high = min(values), max(values)
        if low < info.min or high > info.max:
            raise _bad(
                f"input {name!r}: value {low if low < info.min else high!r} is outside "
                f"{datatype}'s range [{info.min}, {info.max}]",
                hint="declare a wider datatype",
            )
    return np.array(values, dtype=target)


def _decode_binary(name: str, datatype: str, shape: list[int], raw: bytes) -> NDArray[Any]:
    count = math.prod(shape)
    if datatype == "BYTES":
        values: list[str] = []
        offset = 0
        try:
            while offset < len(raw):
                (length,) = struct.unpack_from("<I", raw, offset)
                offset += 4
                if offset + length > len(raw):
                    raise struct.error("truncated")
                values.append(raw[offset : offset + length].decode("utf-8"))
                offset += length
        except struct.error:
            raise _bad(f"input {name!r}: binary BYTES data is truncated") from None
        except UnicodeDecodeError:
            raise _bad(
                f"input {name!r}: BYTES element {len(values)} is not UTF-8 text",
                hint="this server passes BYTES to models as strings",
            ) from None
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
    else:
        itemsize = DATATYPES[datatype].itemsize
        if len(raw) != count * itemsize:
            raise _bad(
                f"input {name!r}: shape {shape} of {datatype} needs {count * itemsize} bytes, "
                f"binary_data_size gives {len(raw)}"
            )
        arr = np.frombuffer(raw, dtype=DATATYPES[datatype]).copy()
    if arr.size != count:
        raise _bad(f"input {name!r}: shape {shape} holds {count} values, data has {arr.size}")
    return arr.reshape(shape)


def decode_request(body: bytes, header_length: int | None, loads: Any) -> InferRequest:
    """Parse an inference request body (JSON, or JSON + binary tensors)."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise _bad(
                f"Inference-Header-Content-Length {header_length} does not fit a body of "
                f"{len(body)} bytes"
            )
        head, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        head, binary = body, memoryview(b"")
    try:
        doc = loads(head)
    except ValueError as exc:
        raise _bad(f"malformed JSON body: {exc}", hint="send an inference request object") from None
    if not isinstance(doc, dict):
        raise _bad(
            f"the request body must be a JSON object, got {type(doc).__name__}",
            hint='send {"inputs": [{"name", "shape", "datatype", "data"}]}',
        )
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise _bad(
            "the request has no 'inputs' (a non-empty list of tensors)",
            hint='send {"inputs": [{"name", "shape", "datatype", "data"}]}',
        )
    request_id = doc.get("id")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _bad(f"'parameters' must be an object, got {parameters!r}")
    inputs: list[Tensor] = []
    offset = 0
    for index, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise _bad(f"inputs[{index}] is not an object: {raw!r}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"inputs[{index}] has no 'name'", hint="name every input tensor")
        datatype = raw.get("datatype")
        if datatype not in DATATYPES:
            raise _bad(
                f"input {name!r}: datatype {datatype!r} is not a protocol datatype",
                hint=_HINT_TYPES,
            )
        shape = _shape(name, raw.get("shape"))
        params = raw.get("parameters") or {}
        if not isinstance(params, dict):
            raise _bad(f"input {name!r}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise _bad(
                    f"input {name!r}: binary_data_size {size!r} is not a byte count",
                    hint="a whole number of bytes, at least 0",
                )
            if offset + size > len(binary):
                raise _bad(
                    f"input {name!r}: binary_data_size {size!r} runs past the body "
                    f"({len(binary) - offset} binary bytes left)"
                )
            array = _decode_binary(name, datatype, shape, bytes(binary[offset : offset + size]))
            offset += size
        else:
            if "data" not in raw:
                raise _bad(f"input {name!r} has no 'data'", hint="send the tensor's values")
            array = _decode_json_data(name, datatype, shape, raw["data"])
        inputs.append(Tensor(name, datatype, shape, array, params))
    if offset != len(binary):  # bytes no input claims: the sizes and the body disagree
        raise _bad(
            f"the body holds {len(binary) - offset} binary bytes past the inputs' "
            f"binary_data_size ({offset} in all)",
            hint="give each binary input its binary_data_size, and send no other bytes",
        )
    raw_outputs = doc.get("outputs")
    outputs: list[tuple[str, dict[str, Any]]] | None = None
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise _bad(f"'outputs' must be a list, got {raw_outputs!r}")
        outputs = []
        for index, raw in enumerate(raw_outputs):
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise _bad(f"outputs[{index}] must be an object with a 'name'")
            outputs.append((raw["name"], raw.get("parameters") or {}))
    return InferRequest(
        None if request_id is None else str(request_id), parameters, inputs, outputs
    )


# -- tensors to model input --------------------------------------------------------------


def _column_array(tensor: Tensor) -> NDArray[Any]:
    arr = tensor.array
    if arr.ndim == 2 and arr.shape[1] == 1:
        return arr[:, 0]
    if arr.ndim != 1:
        raise SchemaMismatch(
            f"input {tensor.name!r} has shape {tensor.shape}; a column tensor has shape [N]",
            hint="send one 1-D tensor per column, or one tensor of shape [N, n_columns]",
        )
    return arr


def model_input(schema: Schema | None, tensors: list[Tensor]) -> Any:
    """What to hand ``Signature.conform``: an array, a dict of columns or of tensors."""
    if schema is None:
        if len(tensors) == 1:
            return tensors[0].array
        return {t.name: t.array for t in tensors}
    if isinstance(schema, ColumnSchema):
        names = schema.names
        layout = (
            f"one tensor of shape [N, {len(names)}] (columns in order: "
            f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}) or one tensor per column"
        )
        if len(tensors) == 1 and tensors[0].name not in names:
            only = tensors[0]
            if only.array.ndim == 2:
                return only.array  # columns by position; conform checks their number
            if only.array.ndim == 1 and len(names) == 1:
                return {names[0]: only.array}
            raise SchemaMismatch(
                f"input {only.name!r} has shape {only.shape}, but model reads {len(names)} columns",
                hint=f"send {layout}",
            )
        columns: dict[str, NDArray[Any]] = {}
        for tensor in tensors:
            if tensor.name in columns:
                raise SchemaMismatch(f"input tensor {tensor.name!r} is sent twice")
            if tensor.name not in schema.names:
                logger.debug("ignoring input tensor %r: not a column of the model", tensor.name)
                continue
            columns[tensor.name] = _column_array(tensor)
        absent = [c.name for c in schema.columns if c.name not in columns and not c.optional]
        if absent:
            raise SchemaMismatch(
                f"input tensor {absent[0]!r} is missing"
                + (f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""),
                hint=f"send {layout}",
            )
        return columns
    assert isinstance(schema, TensorSchema)
    if len(schema.tensors) == 1:
        if len(tensors) != 1:
            raise SchemaMismatch(
                f"model takes 1 input tensor, got {len(tensors)}: "
                f"{', '.join(repr(t.name) for t in tensors)}",
                hint="send one tensor",
            )
        return tensors[0].array
    given = {t.name: t.array for t in tensors}
    for spec in schema.tensors:
        if spec.name not in given:
            raise SchemaMismatch(
                f"input tensor {spec.name!r} is missing",
                hint=f"send: {', '.join(repr(s.name) for s in schema.tensors)}",
            )
    return given


# -- metadata ----------------------------------------------------------------------------


def input_metadata(schema: Schema | None) -> list[dict[str, Any]]:
    """The ``inputs`` of the model metadata response (see the module docstring)."""
    if schema is None:
        return []
    if isinstance(schema, ColumnSchema):
        types = [signature_datatype(c.dtype) for c in schema.columns]
        numeric = all(t.startswith(("FP", "INT", "UINT")) for t in types)
        if numeric:
            if all(t == "FP32" for t in types):
                common = "FP32"
            elif any(t.startswith("FP") for t in types):
                common = "FP64"
            else:
                common = "INT64"
            return [
                {
                    "name": "input-0",
                    "datatype": common,
                    "shape": [-1, len(types)],
                    "parameters": {"columns": schema.names},
                }
            ]
        return [
            {"name": c.name, "datatype": t, "shape": [-1]}
            for c, t in zip(schema.columns, types, strict=True)
        ]
    return [
        {
            "name": spec.name or "input-0",
            "datatype": signature_datatype(spec.dtype),
            "shape": list(spec.shape),
        }
        for spec in schema.tensors
    ]


# -- response encoding -------------------------------------------------------------------


def output_array(value: Any) -> NDArray[Any]:
    """A model's output as an array the protocol can type (object arrays normalised)."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype.kind == "O":
        flat = arr.ravel().tolist()
        if flat and all(isinstance(v, str) for v in flat):
            return arr
        if flat and all(isinstance(v, bool) for v in flat):
            return arr.astype(bool)
        if flat and all(_is_number(v) for v in flat):
            return np.asarray(flat).reshape(arr.shape)
        out = np.empty(arr.shape, dtype=object)
        out.ravel()[:] = [v if isinstance(v, str) else str(v) for v in flat]
        return out
    if arr.dtype.kind in "UMm":
        return arr.astype(str).astype(object)
    return arr


def _binary(arr: NDArray[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in arr.ravel().tolist():
            raw = v.encode() if isinstance(v, str) else bytes(v)
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=DATATYPES[datatype]).tobytes()


def encode_outputs(
    outputs: Mapping[str, NDArray[Any]],
    parameters: Mapping[str, dict[str, Any]],
    binary: set[str],
    jsonable: Any,
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Response output objects, and the raw bytes of those sent binary (in order)."""
    encoded: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in outputs.items():
        arr = output_array(value)
        datatype = datatype_of(arr.dtype)
        out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        params = dict(parameters.get(name, {}))
        if name in binary:
            raw = _binary(arr, datatype)
            params["binary_data_size"] = len(raw)
            chunks.append(raw)
        else:
            out["data"] = jsonable(arr.ravel())
        if params:
            out["parameters"] = params
        encoded.append(out)
    return encoded, chunks
