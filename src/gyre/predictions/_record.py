"""The prediction record and batch, the feedback result, and their one-line spool encoding.

A spool line is one JSON object ending in ``\\n`` (JSON Lines, written with orjson):

    {"k":"h","format":1,...}                                   first line: the file header
    {"k":"p","id":..,"ts":..,"m":..,"v":..,"var":..,"lat":..,"in":{..},"out":{..}}
    {"k":"b","id":..,"ts":..,"m":..,"v":..,"var":..,"lat":..,"n":3,
     "cols":["age","score"],"in":[[41,0.5],[42,0.7],[43,null]],"out":{"prediction":[1,0,1]}}
    {"k":"b",...,"n":3,"cols":null,"in":{"age":[41,42,43],"score":[0.5,0.7,null]},"out":{..}}
    {"k":"f","id":..,"ts":..,"m":..,"label":..}                 a ground-truth label

A ``"b"`` line is one :class:`PredictionBatch`: ``n`` rows, its inputs row-major under
``"cols"`` (from a 2-D array) or column-major (from a dict), every output a list of ``n``
values. Compaction expands it into ``n`` rows; nothing else reads it. Files written before
batches existed hold ``"p"`` and ``"f"`` lines only, and compact as they always did.

Records and batches are encoded when they are appended, on the caller's thread: about 2 µs
per record; a batch is one orjson call whatever its row count, numpy arrays passed as they
are, so about 2.5 µs plus the formatting of its numbers (64 rows of 20 floats: ~30 µs). A
bad value fails the call that brought it, naming it, and a caller that reuses its
``inputs`` afterwards cannot change what was logged.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gyre.errors import InvalidArgument

__all__ = [
    "FORMAT",
    "VARIANTS",
    "FeedbackResult",
    "PredictionBatch",
    "PredictionRecord",
    "batch_rows",
    "encode_batch",
    "encode_feedback",
    "encode_header",
    "encode_prediction",
]

FORMAT = 1
VARIANTS = frozenset({"primary", "canary", "shadow"})
# numpy scalars and arrays (what models return) encode as numbers and lists; NaN as null.
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One answered prediction.

    ``inputs`` is one row (column -> JSON-able scalar); ``outputs`` what the model answered,
    e.g. ``{"prediction": 1, "proba": [0.2, 0.8]}``. ``variant`` is ``"primary"``,
    ``"canary"`` or ``"shadow"``.

    >>> PredictionRecord("req-1", 1_700_000_000_000, "churn", 3, {"age": 42},
    ...                  {"prediction": 1}, latency_ms=1.7)  # doctest: +ELLIPSIS
    PredictionRecord(request_id='req-1', ...)
    """

    request_id: str
    timestamp_ms: int
    model: str
    version: int
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    latency_ms: float
    variant: str = "primary"


@dataclass(frozen=True, slots=True)
class PredictionBatch:
    """One request's rows, column-wise: logged as one spool line, whatever its row count.

    ``inputs`` is a 2-D numpy array (rows x columns) whose columns ``columns`` names, or a
    dict column -> sequence (or 1-D array) of the n values. ``outputs`` maps each key to a
    sequence or array whose first dimension is the n rows; a 2-D array is one vector per
    row (e.g. ``"proba"``). Compaction turns the batch into the n rows n
    :class:`PredictionRecord` s would give, with ids ``request_id`` when n is 1, else
    ``"<request_id>:<i>"`` for row i; every row shares the timestamp, model, version,
    variant and latency.

    >>> import numpy as np
    >>> PredictionBatch("req-2", 1_700_000_000_000, "churn", 3,
    ...                 np.array([[41, 0.5], [42, 0.7]]), {"prediction": np.array([1, 0])},
    ...                 latency_ms=2.1, columns=["age", "score"])  # doctest: +ELLIPSIS
    PredictionBatch(request_id='req-2', ...)
    """

    request_id: str
    timestamp_ms: int
    model: str
    version: int
    inputs: Any
    outputs: Mapping[str, Any]
    latency_ms: float
    variant: str = "primary"
    columns: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """What :meth:`PredictionLog.append_feedback` did with a batch of labels.

    ``accepted`` labels were spooled. Of those, ``matched`` name a request id this log
    recorded among its last 100,000 predictions (row i of a batch of several rows as
    ``"<request id>:<i>"``; a batch is remembered or forgotten whole); the ``unmatched``
    rest may still belong to an older prediction or to another worker's, which only a query
    can tell: :func:`gyre.predictions.feedback_coverage` counts the labels that never match.
    """

    accepted: int
    matched: int
    unmatched: int


def encode_header() -> bytes:
    header = {"k": "h", "format": FORMAT, "pid": os.getpid(), "created_ms": _now_ms()}
    return orjson.dumps(header, option=_OPTIONS)


def encode_prediction(r: PredictionRecord) -> bytes:
    """``r`` as one spool line; InvalidArgument naming the record and the bad field."""
    if not isinstance(r, PredictionRecord):
        raise InvalidArgument(
            f"{r!r} is neither a PredictionRecord nor a PredictionBatch",
            hint="append PredictionRecord or PredictionBatch instances",
        )
    _check_head(r)
    if not isinstance(r.inputs, dict) or not isinstance(r.outputs, dict):
        raise InvalidArgument(
            f"inputs and outputs of request {r.request_id!r} must be dicts, got "
            f"{type(r.inputs).__name__} and {type(r.outputs).__name__}",
            hint='one row, e.g. inputs={"age": 42}, outputs={"prediction": 1}',
        )
    _check_variant(r)
    line = {
        "k": "p",
        "id": r.request_id,
        "ts": r.timestamp_ms,
        "m": r.model,
        "v": r.version,
        "var": r.variant,
        "lat": r.latency_ms,
        "in": r.inputs,
        "out": r.outputs,
    }
    return _dumps(line, r.request_id)


def encode_batch(b: PredictionBatch) -> tuple[bytes, int]:
    """``b`` as one spool line, and its row count; InvalidArgument naming the request and
    the bad field.

    Arrays go to orjson as they are; only when it refuses one (not C-contiguous, or a dtype
    it has no native encoding for: strings, objects, ...) is that array copied or turned
    into a list."""
    _check_head(b)
    rid = b.request_id
    columns, inputs, n = _batch_inputs(b)
    outputs = b.outputs
    if type(outputs) is not dict:
        if not isinstance(outputs, Mapping):
            raise InvalidArgument(
                f"outputs of request {rid!r} must be a dict, got {type(outputs).__name__}",
                hint='key -> one value per row, e.g. {"prediction": [1, 0]}',
            )
        outputs = dict(outputs)
    for key, values in outputs.items():
        rows = _rows(values)
        if rows != n:
            raise InvalidArgument(
                f"output {key!r} of request {rid!r} "
                + (
                    f"is a {type(values).__name__}, not a sequence of values"
                    if rows is None
                    else f"holds {rows} rows, its inputs {n}"
                ),
                hint="give every output one value per input row, e.g. an array whose first "
                "dimension is the rows",
            )
    _check_variant(b)
    line = {
        "k": "b",
        "id": rid,
        "ts": b.timestamp_ms,
        "m": b.model,
        "v": b.version,
        "var": b.variant,
        "lat": b.latency_ms,
        "n": n,
        "cols": columns,
        "in": inputs,
        "out": outputs,
    }
    return _dumps(line, rid, _array_fallback), n


# Column lists already found to be distinct strings: a server passes the same few each time.
_CHECKED_COLUMNS: dict[tuple[Any, ...], None] = {}


def _batch_inputs(b: PredictionBatch) -> tuple[Sequence[str] | None, Any, int]:
    """The ``"cols"`` and ``"in"`` of ``b``'s line, and its row count, checked."""
    rid, inputs = b.request_id, b.inputs
    shape = None if type(inputs) is dict else getattr(inputs, "shape", None)
    if shape is None and isinstance(inputs, Mapping):
        return None, (inputs if type(inputs) is dict else dict(inputs)), _dict_rows(b)
    if shape is None or len(shape) != 2:
        raise InvalidArgument(
            f"inputs of request {rid!r} are a {type(inputs).__name__}"
            + (f" of shape {tuple(shape)}" if shape is not None else "")
            + ", not a 2-D array or a dict of columns",
            hint="pass a 2-D numpy array (rows x columns) with columns=[names], or a dict "
            "column -> values",
        )
    n, width = shape
    columns = b.columns
    if columns is None or isinstance(columns, str) or len(columns) != width:
        raise InvalidArgument(
            f"columns {columns!r} of request {rid!r} do not name the {width} columns of its "
            "inputs array",
            hint=f"pass columns= with {width} names, in the order of the array's columns",
        )
    key = columns if type(columns) is tuple else tuple(columns)
    if key not in _CHECKED_COLUMNS:
        if not all(isinstance(c, str) for c in key) or len(set(key)) != width:
            raise InvalidArgument(
                f"columns {list(key)!r} of request {rid!r} are not distinct strings",
                hint="name each column of the inputs array once",
            )
        if len(_CHECKED_COLUMNS) >= 256:
            _CHECKED_COLUMNS.clear()
        _CHECKED_COLUMNS[key] = None
    if n < 1:
        raise InvalidArgument(
            f"inputs of request {rid!r} hold no rows", hint="log a request with at least one row"
        )
    return columns, inputs, n


def _dict_rows(b: PredictionBatch) -> int:
    """The row count of ``b``'s dict of input columns: every column's."""
    rid = b.request_id
    if b.columns is not None:
        raise InvalidArgument(
            f"columns {b.columns!r} of request {rid!r} are given, but its inputs are a dict",
            hint="the dict's keys name the columns: leave columns=None",
        )
    n = -1
    for name, values in b.inputs.items():
        rows = _rows(values)
        if rows is None:
            raise InvalidArgument(
                f"input column {name!r} of request {rid!r} is a {type(values).__name__}, "
                "not a sequence of values",
                hint="map each column to a list or 1-D array with one value per row",
            )
        if n < 0:
            n = rows
        elif rows != n:
            raise InvalidArgument(
                f"input column {name!r} of request {rid!r} holds {rows} rows, the columns "
                f"before it {n}",
                hint="give every input column one value per row",
            )
    if n < 1:
        raise InvalidArgument(
            f"inputs of request {rid!r} hold no rows",
            hint="log a request with at least one row, e.g. inputs={'age': [42]}",
        )
    return n


def batch_rows(line: dict[str, Any]) -> int | None:
    """The row count of a decoded ``"b"`` line, None if it is not one this module wrote
    (then it is damaged: compaction skips it)."""
    n = line.get("n")
    if type(n) is not int or n < 1 or type(line.get("id")) is not str:
        return None
    outputs = line.get("out")
    if type(outputs) is not dict or not all(
        type(v) is list and len(v) == n for v in outputs.values()
    ):
        return None
    inputs = line.get("in")
    if type(inputs) is dict:
        ok = all(type(v) is list and len(v) == n for v in inputs.values())
    else:
        columns = line.get("cols")
        ok = (
            type(inputs) is list
            and len(inputs) == n
            and type(columns) is list
            and all(type(c) is str for c in columns)
            and all(type(row) is list and len(row) == len(columns) for row in inputs)
        )
    return n if ok else None


def encode_feedback(model: str, request_id: str, label: Any, timestamp_ms: int) -> bytes:
    if type(request_id) is not str or not request_id:
        raise InvalidArgument(f"request_id {request_id!r} of a label must be a non-empty string")
    return _dumps(
        {"k": "f", "id": request_id, "ts": timestamp_ms, "m": model, "label": label}, request_id
    )


def _check_head(r: PredictionRecord | PredictionBatch) -> None:
    """The fields records and batches share, but the variant (checked last, as before)."""
    if type(r.request_id) is not str or not r.request_id:
        raise InvalidArgument(f"request_id {r.request_id!r} must be a non-empty string")
    if type(r.model) is not str or not r.model:
        raise InvalidArgument(f"model {r.model!r} of request {r.request_id!r} is empty")
    if type(r.version) is not int or r.version < 0:
        raise InvalidArgument(
            f"version {r.version!r} of request {r.request_id!r} is not a version number"
        )
    if type(r.timestamp_ms) is not int:
        raise InvalidArgument(
            f"timestamp_ms {r.timestamp_ms!r} of request {r.request_id!r} is not an int",
            hint="milliseconds since the epoch, e.g. time.time_ns() // 1_000_000",
        )


def _check_variant(r: PredictionRecord | PredictionBatch) -> None:
    if r.variant not in VARIANTS:
        raise InvalidArgument(
            f"variant {r.variant!r} of request {r.request_id!r} is not one of "
            f"{', '.join(sorted(VARIANTS))}"
        )


def _rows(values: Any) -> int | None:
    """How many rows a column or output holds: its first dimension; None for a scalar."""
    shape = getattr(values, "shape", None)
    if shape is not None:
        return shape[0] if len(shape) else None
    if isinstance(values, str | bytes | Mapping):
        return None
    try:
        return len(values)
    except TypeError:
        return None


def _array_fallback(value: Any) -> Any:
    """orjson's ``default`` for what it refuses: a numpy array that is not C-contiguous is
    copied (once: the copy comes back only if its dtype is refused too); an array of a dtype
    it cannot encode natively, a pandas Series or a numpy scalar becomes Python values."""
    np = sys.modules.get("numpy")  # an array here means numpy is imported already
    if np is not None and isinstance(value, np.ndarray) and not value.flags.c_contiguous:
        return np.ascontiguousarray(value)
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
    return tolist()


def _dumps(
    line: dict[str, Any], request_id: str, default: Callable[[Any], Any] | None = None
) -> bytes:
    try:
        encoded = orjson.dumps(line, default, _OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise InvalidArgument(
            f"request {request_id!r} holds a value that is not JSON-able: {exc}",
            hint="log numbers, strings, booleans, None, lists and dicts of them",
        ) from None
    # An exact-size copy: a line waits in the queue, and keeping orjson's own result alive
    # (an over-allocated buffer shrunk in place) slows the allocations after it. With glibc,
    # encoding and keeping a 600-byte record line took ~6 µs that way, ~2.3 µs with the copy.
    return bytes(memoryview(encoded))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
