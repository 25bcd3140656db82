"""The prediction record, the feedback result, and their one-line spool encoding.

A spool line is one JSON object ending in ``\\n`` (JSON Lines, written with orjson):

    {"k":"h","format":1,...}                                   first line: the file header
    {"k":"p","id":..,"ts":..,"m":..,"v":..,"var":..,"lat":..,"in":{..},"out":{..}}
    {"k":"f","id":..,"ts":..,"m":..,"label":..}                 a ground-truth label

Records are encoded when they are appended, on the caller's thread (about 2 µs
each): a bad value fails the call that brought it, naming it, and a caller that reuses its
``inputs`` dict afterwards cannot change what was logged.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

from gyre.errors import InvalidArgument

__all__ = [
    "FORMAT",
    "VARIANTS",
    "FeedbackResult",
    "PredictionRecord",
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
class FeedbackResult:
    """What :meth:`PredictionLog.append_feedback` did with a batch of labels.

    ``accepted`` labels were spooled. Of those, ``matched`` name a request id this log
    recorded among its last 100,000 predictions; the ``unmatched`` rest may still belong
    to an older prediction or to another worker's, which only a query can tell:
    :func:`gyre.predictions.feedback_coverage` counts the labels that never match.
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
            f"{r!r} is not a PredictionRecord", hint="append PredictionRecord instances"
        )
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
    if not isinstance(r.inputs, dict) or not isinstance(r.outputs, dict):
        raise InvalidArgument(
            f"inputs and outputs of request {r.request_id!r} must be dicts, got "
            f"{type(r.inputs).__name__} and {type(r.outputs).__name__}",
            hint='one row, e.g. inputs={"age": 42}, outputs={"prediction": 1}',
        )
    if r.variant not in VARIANTS:
        raise InvalidArgument(
            f"variant {r.variant!r} of request {r.request_id!r} is not one of "
            f"{', '.join(sorted(VARIANTS))}"
        )
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


def encode_feedback(model: str, request_id: str, label: Any, timestamp_ms: int) -> bytes:
    if type(request_id) is not str or not request_id:
        raise InvalidArgument(f"request_id {request_id!r} of a label must be a non-empty string")
    return _dumps(
        {"k": "f", "id": request_id, "ts": timestamp_ms, "m": model, "label": label}, request_id
    )


def _dumps(line: dict[str, Any], request_id: str) -> bytes:
    try:
        return orjson.dumps(line, option=_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise InvalidArgument(
            f"request {request_id!r} holds a value that is not JSON-able: {exc}",
            hint="log numbers, strings, booleans, None, lists and dicts of them",
        ) from None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
