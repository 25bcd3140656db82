"""Spool lines -> typed Parquet segments, one per partition (kind, model, version, UTC day).

Prediction segments hold ``request_id``, ``timestamp`` (timestamp[ms, UTC]), ``model``,
``version``, ``variant``, ``latency_ms``, then one ``in_<feature>`` column per input and one
``out_<key>`` column per output, each typed by what the segment holds (a probability vector
becomes a list column). A column whose values do not share a type (``1`` in one row, ``"a"``
in another) is stored as strings, JSON for non-strings; a column that is null in every row
is left out. Readers line segments up by column name (DuckDB ``union_by_name``), so inputs
may come and go, and change type, from one segment to the next.

A batch line (one request's rows, column-wise) becomes its ``n`` rows here: its columns are
spliced into the segment's columns as they are, never re-encoded row by row. Its rows get
the ids ``<request id>:<i>`` (the request id alone when ``n`` is 1) and share its
timestamp, model, version, variant and latency, exactly as ``n`` records would.

Feedback segments hold ``request_id``, ``model``, ``label`` (typed the same way),
``timestamp`` (when the label was given) and ``_arrival`` (spool id and line: which of two
labels for one request with equal timestamps came last).

pyarrow is imported here, on first compaction, never on the request path.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from gyre.predictions._layout import Partition, day_of_ms

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["build_segments", "parquet_bytes"]

_BASE = ("request_id", "timestamp", "model", "version", "variant", "latency_ms")


def build_segments(
    spool_id: str, lines: Iterable[dict[str, Any]]
) -> list[tuple[Partition, pa.Table]]:
    """The records of one spool file, split by partition, as tables; partitions sorted.

    ``lines``: decoded ``"p"``, ``"b"`` and ``"f"`` lines (batch lines checked already)."""
    groups: dict[Partition, list[dict[str, Any]]] = {}
    for line in lines:
        try:
            if line["k"] in ("p", "b"):
                key = Partition(
                    "predictions", str(line["m"]), int(line["v"]), day_of_ms(line["ts"])
                )
            else:
                key = Partition("feedback", str(line["m"]), None, day_of_ms(line["ts"]))
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            continue  # not a record this version wrote; never seen in practice
        groups.setdefault(key, []).append(line)
    return [
        (part, _predictions(rows) if part.kind == "predictions" else _feedback(spool_id, rows))
        for part, rows in sorted(groups.items())
    ]


def parquet_bytes(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _predictions(lines: list[dict[str, Any]]) -> pa.Table:
    """One row per ``"p"`` line, ``n`` per ``"b"`` line, in the order of the lines."""
    import pyarrow as pa

    counts = [line["n"] if line["k"] == "b" else 1 for line in lines]
    total = sum(counts)
    ids: list[str] = []
    for line, n in zip(lines, counts, strict=True):
        if n == 1:
            ids.append(line["id"])
        else:
            rid = line["id"]
            ids += [f"{rid}:{i}" for i in range(n)]

    def repeated(values: list[Any]) -> list[Any]:
        """``values`` (one per line) as one per row."""
        if total == len(lines):
            return values
        return list(itertools.chain.from_iterable(map(itertools.repeat, values, counts)))

    columns: dict[str, pa.Array] = {
        "request_id": pa.array(ids, pa.string()),
        "timestamp": pa.array(repeated([r["ts"] for r in lines]), pa.timestamp("ms", tz="UTC")),
        "model": pa.array(repeated([r["m"] for r in lines]), pa.string()),
        "version": pa.array(repeated([r["v"] for r in lines]), pa.int64()),
        "variant": pa.array(repeated([r.get("var", "primary") for r in lines]), pa.string()),
        "latency_ms": _floats(repeated([r.get("lat") for r in lines])),
    }
    for prefix, field in (("in_", "in"), ("out_", "out")):
        values_of = _columns(lines, counts, total, field)
        for key in sorted(values_of):
            array = _typed(values_of[key])
            if array is not None:
                columns[prefix + key] = array
    return pa.table(columns)


def _columns(
    lines: list[dict[str, Any]], counts: list[int], total: int, field: str
) -> dict[str, list[Any]]:
    """Every key of ``field`` (``"in"`` or ``"out"``) in ``lines`` -> its value in each of
    the ``total`` rows, None where a line lacks it."""
    values_of: dict[str, list[Any]] = {}
    start = 0
    for line, n in zip(lines, counts, strict=True):
        for key, values in _line_columns(line, field):
            column = values_of.get(key)
            if column is None:
                column = values_of[key] = [None] * total
            if line["k"] == "p":
                column[start] = values
            else:
                column[start : start + n] = values
        start += n
    return values_of


def _line_columns(line: dict[str, Any], field: str) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of a ``"p"`` line's ``field``; ``(key, the n values)`` of a batch's."""
    data = line.get(field)
    if isinstance(data, dict):
        return iter(data.items())
    if line["k"] == "b" and data:  # a row-major 2-D input: one row per list
        return zip(line["cols"], zip(*data, strict=True), strict=True)
    return iter(())


def _feedback(spool_id: str, rows: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    label = _typed([r.get("label") for r in rows])
    return pa.table(
        {
            "request_id": pa.array([r["id"] for r in rows], pa.string()),
            "model": pa.array([r["m"] for r in rows], pa.string()),
            "label": label if label is not None else pa.nulls(len(rows), pa.string()),
            "timestamp": pa.array([r["ts"] for r in rows], pa.timestamp("ms", tz="UTC")),
            "_arrival": pa.array([f"{spool_id}:{r['_line']:010d}" for r in rows], pa.string()),
        }
    )


def _floats(values: list[Any]) -> pa.Array:
    import pyarrow as pa

    try:
        return pa.array(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([v if isinstance(v, int | float) else None for v in values], pa.float64())


def _typed(values: list[Any]) -> pa.Array | None:
    """``values`` as the array pyarrow infers, strings if they share no type, None if all
    are null."""
    import pyarrow as pa

    if all(v is None for v in values):
        return None
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return _strings(values)
    if pa.types.is_null(array.type) or _has_empty_struct(array.type):
        return _strings(values)
    return array


def _strings(values: list[Any]) -> pa.Array:
    import pyarrow as pa

    return pa.array(
        [
            None if v is None else v if isinstance(v, str) else orjson.dumps(v).decode()
            for v in values
        ],
        pa.string(),
    )


def _has_empty_struct(t: pa.DataType) -> bool:
    """Parquet cannot store a struct without fields (from ``{}`` values)."""
    import pyarrow as pa

    if pa.types.is_struct(t):
        return t.num_fields == 0 or any(
            _has_empty_struct(t.field(i).type) for i in range(t.num_fields)
        )
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _has_empty_struct(t.value_type)
    return False
