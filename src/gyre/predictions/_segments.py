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

Binary blocks (numpy arrays by now, see ``_record.decode_batch``) are put together with
numpy and handed to pyarrow whole: a column that only such blocks hold, all floats, all
integers or all booleans, is concatenated (column j of a 2-D input is ``block[:, j]``),
NaN and ±inf masked as null, and becomes a double, int64 or bool column (a 2-D output a
list column built from offsets), the very types and values pyarrow infers from the same
numbers as Python values. Any other column (one that mixes blocks with JSON values or with
``"p"`` records, integers with floats, ...) takes the Python path every column took before
binary blocks: its values as Python objects, typed by ``_typed``. The per-line fields
(ids, timestamps, ...) are built once per line and repeated per row by ``take``.

Parquet: dictionary encoding only for columns whose first values repeat (a model name, a
category); a column of distinct floats is written plain, which is both smaller and several
times faster to write.

Feedback segments hold ``request_id``, ``model``, ``label`` (typed the same way),
``timestamp`` (when the label was given) and ``_arrival`` (spool id and line: which of two
labels for one request with equal timestamps came last).

pyarrow is imported here, on first compaction, never on the request path.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from gyre.predictions._layout import Partition, day_of_ms
from gyre.predictions._record import plain_values

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["build_segments", "parquet_bytes"]

_DAY_MS = 86_400_000
_BASE = ("request_id", "timestamp", "model", "version", "variant", "latency_ms")


def build_segments(
    spool_id: str, lines: Iterable[dict[str, Any]]
) -> list[tuple[Partition, pa.Table]]:
    """The records of one spool file, split by partition, as tables; partitions sorted.

    ``lines``: decoded ``"p"``, ``"b"`` and ``"f"`` lines (batch lines checked already)."""
    groups: dict[Partition, list[dict[str, Any]]] = {}
    # (kind, model, version, UTC day number) -> the lines of that partition, for lines
    # whose fields have the types this module writes (the others are looked at one by one)
    known: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for line in lines:
        label = line["k"] == "f"
        model, version = line.get("m"), line.get("v")
        ts: Any = line.get("ts")
        if type(ts) is list:  # a group line: its requests share a UTC day (checked)
            ts = ts[0]
        fast = type(model) is str and type(ts) is int and (label or type(version) is int)
        if fast:
            memo = (label, model, None if label else version, ts // _DAY_MS)
            found = known.get(memo)
            if found is not None:
                found.append(line)
                continue
        try:
            if not label:
                key = Partition("predictions", str(line["m"]), int(line["v"]), day_of_ms(ts))
            else:
                key = Partition("feedback", str(line["m"]), None, day_of_ms(ts))
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            continue  # not a record this version wrote; never seen in practice
        found = groups.setdefault(key, [])
        found.append(line)
        if fast:
            known[memo] = found
    return [
        (part, _predictions(rows) if part.kind == "predictions" else _feedback(spool_id, rows))
        for part, rows in sorted(groups.items())
    ]


def parquet_bytes(table: pa.Table) -> bytes:
    """The segment's file: snappy-compressed, statistics for the columns queries filter
    on (the ids, times, model, version and variant), not for every input and output.

    Compaction runs on the serving machine's cores, so what it costs comes off the
    server's throughput: with zstd, writing a segment of 64-row requests of 20 floats took
    twice as long as with snappy for files ~10% smaller, and was half of compacting them."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    names = table.column_names
    pq.write_table(
        table,
        buffer,
        compression="snappy",
        use_dictionary=_repeating(table),
        write_statistics=[n for n in names if not n.startswith(("in_", "out_"))],
    )
    return buffer.getvalue()


_SAMPLE = 2048  # values looked at to tell whether a column repeats itself


def _repeating(table: pa.Table) -> list[str]:
    """The columns worth a Parquet dictionary: flat ones whose first values are at most a
    quarter distinct. (A dictionary of distinct values only costs: its hash table is
    filled and then thrown away, several times slower than writing the values plain.)"""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        t = column.type
        if pa.types.is_nested(t):
            continue
        sample = column.slice(0, _SAMPLE)
        if len(sample) and pc.count_distinct(sample).as_py() * 4 <= len(sample):
            names.append(name)
    return names


def _predictions(lines: list[dict[str, Any]]) -> pa.Table:
    """One row per ``"p"`` line, ``n`` per ``"b"`` line, in the order of the lines."""
    import numpy as np
    import pyarrow as pa

    count = len(lines)
    counts = np.fromiter((line["n"] if line["k"] == "b" else 1 for line in lines), np.int64, count)
    starts = np.zeros(count, np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    total = int(counts.sum())
    # line_of[row]: the line a row comes from (None: one row per line)
    line_of = None if total == count else pa.array(np.repeat(np.arange(count), counts))
    # The requests, one per line but a group line's several: their ids, timestamps,
    # latencies and rows; request_of[row]: the request a row comes from (None: one each).
    ids, ts, lat, rows = _requests(lines)
    requests = len(ids)
    rows_of = counts if rows is None else np.array(rows, np.int64)
    firsts = starts
    if rows is not None:
        firsts = np.zeros(requests, np.int64)
        np.cumsum(rows_of[:-1], out=firsts[1:])
    request_of = None if total == requests else pa.array(np.repeat(np.arange(requests), rows_of))

    def per_row(values: pa.Array, of: pa.Array | None) -> pa.Array:
        """``values`` (one per line or request) as one per row."""
        return values if of is None else values.take(of)

    columns: dict[str, pa.Array] = {
        "request_id": _request_ids(ids, rows_of, firsts, request_of),
        "timestamp": per_row(pa.array(ts, pa.timestamp("ms", tz="UTC")), request_of),
        "model": per_row(pa.array([r["m"] for r in lines], pa.string()), line_of),
        "version": per_row(pa.array([r["v"] for r in lines], pa.int64()), line_of),
        "variant": per_row(
            pa.array([r.get("var", "primary") for r in lines], pa.string()), line_of
        ),
        "latency_ms": per_row(_floats(lat), request_of),
    }
    starts_of = starts.tolist()
    for prefix, field in (("in_", "in"), ("out_", "out")):
        pieces = _pieces(lines, starts_of, field)
        for key in sorted(pieces):
            array = _column(pieces[key], total)
            if array is not None:
                columns[prefix + key] = array
    return pa.table(columns)


def _requests(lines: list[dict[str, Any]]) -> tuple[list[Any], list[Any], list[Any], Any]:
    """The ids, timestamps and latencies of the requests ``lines`` hold, one per line but
    a group line's (see ``_record.encode_records``) one per request; and the rows of each
    request, or None when there is no group line (then a line is a request)."""
    ids = [line["id"] for line in lines]
    ts = [line["ts"] for line in lines]
    lat = [line.get("lat") for line in lines]
    if list not in set(map(type, ids)):
        return ids, ts, lat, None
    rows: list[int] = []
    ids, ts, lat = [], [], []
    for line in lines:
        rid = line["id"]
        if type(rid) is list:
            ids += rid
            ts += line["ts"]
            lat += line["lat"]
            rows += line.get("rq") or [1] * len(rid)
        else:
            ids.append(rid)
            ts.append(line["ts"])
            lat.append(line.get("lat"))
            rows.append(line["n"] if line["k"] == "b" else 1)
    return ids, ts, lat, rows


_suffixes: list[Any] = []  # [pa.array(["", ":0", ":1", ...])], as long as needed so far


def _request_ids(ids: list[str], counts: Any, starts: Any, request_of: pa.Array | None) -> pa.Array:
    """Each row's id: its request's, and ``:<i>`` after it for row i of a request of
    several (``counts`` rows each, the first of which is row ``starts``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(ids, pa.string())
    if request_of is None:
        return array
    longest = int(counts.max())
    if not _suffixes or len(_suffixes[0]) <= longest:
        _suffixes[:] = [pa.array(["", *(f":{i}" for i in range(max(longest, 1024)))])]
    row_of = np.arange(int(counts.sum())) - np.repeat(starts, counts)  # the row in its request
    suffix = np.where(np.repeat(counts > 1, counts), row_of + 1, 0)  # 0: none
    return pc.binary_join_element_wise(array.take(request_of), _suffixes[0].take(suffix), "")


# A piece of a column: ("a", first row, array): an array's values for consecutive rows;
# ("i", rows, array): for the rows an index array lists; ("l", first row, values): Python
# values for consecutive rows; ("s", row, value): one row's value.
Piece = tuple[str, Any, Any]


def _pieces(lines: list[dict[str, Any]], starts: list[int], field: str) -> dict[str, list[Piece]]:
    """Every key of ``field`` (``"in"`` or ``"out"``) in ``lines`` -> the pieces that hold
    its values: Python values in the order of the lines, then the arrays, stacked by key,
    dtype and shape (a 2-D input block's by column list and dtype)."""
    import numpy as np

    ndarray = np.ndarray
    pieces: dict[str, list[Piece]] = {}
    # 2-D input blocks by column list (lines of one list share its object) and dtype:
    # (the column names, [(first row, block)])
    blocks: dict[tuple[Any, Any], tuple[list[str], list[tuple[int, Any]]]] = {}
    last: tuple[Any, Any, list[tuple[int, Any]]] = (None, None, [])  # the last block's group
    # the arrays of a dict, by key, dtype and shape but the rows: (key, [(first row, array)])
    arrays: dict[tuple[str, Any, tuple[int, ...]], tuple[str, list[tuple[int, Any]]]] = {}
    for line, start in zip(lines, starts, strict=True):
        data: Any = line.get(field)
        kind = type(data)
        if kind is ndarray:  # a 2-D input block
            names, dtype = line["cols"], data.dtype
            if names is last[0] and dtype is last[1]:
                last[2].append((start, data))
                continue
            # (by the names, not the list: lines of several column lists take turns)
            found = blocks.get((tuple(names), dtype))
            if found is None:
                found = blocks[tuple(names), dtype] = (names, [])
            found[1].append((start, data))
            last = (names, dtype, found[1])
        elif kind is dict:
            record = line["k"] == "p"
            for key, values in data.items():
                if type(values) is ndarray:
                    like = (key, values.dtype, values.shape[1:])
                    stack = arrays.get(like)
                    if stack is None:
                        stack = arrays[like] = (key, [])
                    stack[1].append((start, values))
                    continue
                piece = ("s" if record else "l", start, values)
                found_pieces = pieces.get(key)
                if found_pieces is None:
                    pieces[key] = [piece]
                else:
                    found_pieces.append(piece)
        elif data and line["k"] == "b":  # a 2-D input as JSON rows
            for key, values in zip(line["cols"], zip(*data, strict=True), strict=True):
                pieces.setdefault(key, []).append(("l", start, values))
    for names, group in blocks.values():
        for key, piece in zip(names, _block_columns(group), strict=True):
            pieces.setdefault(key, []).append(piece)
    for key, group in arrays.values():
        where, rows = _where(group)
        pieces.setdefault(key, []).append((where, rows, _concatenated([a for _, a in group])))
    return pieces


def _where(group: list[tuple[int, Any]]) -> tuple[str, Any]:
    """Where the arrays of ``group`` (in row order) go: ``("a", first row)`` if their rows
    follow each other, else ``("i", the row numbers)``."""
    import numpy as np

    first = group[0][0]
    if len(group) == 1:
        return "a", first
    starts = np.fromiter((start for start, _ in group), np.int64, len(group))
    rows = np.fromiter((len(a) for _, a in group), np.int64, len(group))
    if (starts[1:] == starts[:-1] + rows[:-1]).all():
        return "a", first
    return "i", _rows_of(starts, rows)


def _concatenated(arrays: list[Any], dtype: Any = None) -> Any:
    """Arrays of one shape but the rows, one after the other (C-contiguous), as ``dtype``
    (default: theirs, which they share then)."""
    import numpy as np

    first = arrays[0]
    if len(arrays) == 1:
        return first if dtype is None else first.astype(dtype, copy=False)
    if dtype is not None and any(a.dtype != dtype for a in arrays):
        arrays = [a.astype(dtype, copy=False) for a in arrays]
    elif len(arrays) > 256:  # many small ones: joining their bytes costs less than concatenate
        return np.frombuffer(b"".join(arrays), first.dtype).reshape(-1, *first.shape[1:])
    return np.concatenate(arrays)


def _block_columns(group: list[tuple[int, Any]]) -> list[Piece]:
    """One piece per column of a group of 2-D blocks of one column list and dtype."""
    import numpy as np

    tag, where = _where(group)
    rows = _concatenated([block for _, block in group])  # rows x columns, C order
    # Column-major, each column contiguous: transposed a slab of rows at a time, which
    # stays in the cache (four times faster than transposing the whole at once).
    count, width = rows.shape
    by_column = np.empty((width, count), rows.dtype)
    for first in range(0, count, _SLAB):
        by_column[:, first : first + _SLAB] = rows[first : first + _SLAB].T
    return [(tag, where, column) for column in by_column]


_SLAB = 2048  # rows transposed at a time


def _rows_of(starts: Any, rows: Any) -> Any:
    """The row numbers of pieces starting at ``starts`` and ``rows`` long, in order."""
    import numpy as np

    before = np.zeros(len(rows), np.int64)
    np.cumsum(rows[:-1], out=before[1:])
    return np.repeat(starts - before, rows) + np.arange(int(rows.sum()))


def _column(pieces: list[Piece], total: int) -> pa.Array | None:
    """One column of ``total`` rows from its ``pieces``; None if it is null in every row."""
    if all(tag == "a" or tag == "i" for tag, _, _ in pieces):
        array = _numeric(pieces, total)
        if array is not _MIXED:
            return array
    return _typed(_python_values(pieces, total))


_MIXED: Any = object()  # what _numeric answers for arrays it leaves to the Python path
_INT64_MAX = 2**63 - 1


def _numeric(pieces: list[Piece], total: int) -> pa.Array | None:
    """The column the arrays of ``pieces`` make, typed as pyarrow types the same numbers
    as Python values: double, int64, bool (or a list of them for 2-D arrays, one vector
    per row); None if null in every row; _MIXED for anything else."""
    import numpy as np
    import pyarrow as pa

    arrays = [values for _, _, values in pieces]
    kinds = {values.dtype.kind for values in arrays}
    ndims = {values.ndim for values in arrays}
    if len(ndims) != 1:
        return _MIXED
    if kinds == {"f"}:
        dtype: Any = np.float64
    elif kinds <= {"i", "u"}:
        if any(v.dtype == np.uint64 and v.size and v.max() > _INT64_MAX for v in arrays):
            return _MIXED  # pyarrow cannot hold it as int64 either
        dtype = np.int64
    elif kinds == {"b"}:
        dtype = np.bool_
    else:
        return _MIXED
    if ndims == {1}:
        values, present = _gather(pieces, total, dtype)
        null = None if present is None else ~present
        if dtype is np.float64 and not np.isfinite(values.sum()):  # NaN or ±inf in it
            bad = ~np.isfinite(values)
            null = bad if null is None else null | bad
        if null is None or not null.any():
            return pa.array(values)
        if null.all():
            return None
        return pa.array(values, mask=null)
    # 2-D: a vector per row, its pieces one after the other (or a single one)
    pieces = sorted(pieces, key=lambda piece: piece[1] if piece[0] == "a" else piece[1][0])
    if len(pieces) > 1 and any(tag != "a" for tag, _, _ in pieces):
        return _MIXED
    if any(not values.shape[1] for values in arrays):
        return _MIXED  # [] in every row: pyarrow infers list<null>
    arrays = [values for _, _, values in pieces]
    rows = np.fromiter((len(v) for v in arrays), np.int64, len(arrays))
    if pieces[0][0] == "i":
        where = pieces[0][1]
    else:
        starts = np.fromiter((start for _, start, _ in pieces), np.int64, len(pieces))
        if not (starts[1:] >= starts[:-1] + rows[:-1]).all():
            return _MIXED  # overlapping pieces: not written by this module
        where = None if rows.sum() == total else _rows_of(starts, rows)
    flat = _concatenated([v.reshape(-1) for v in arrays], dtype)
    if flat.size >= 2**31:
        return _MIXED  # more than a list<> column's offsets hold
    items = pa.array(flat)
    if dtype is np.float64 and not np.isfinite(flat.sum()):
        bad = ~np.isfinite(flat)
        if bad.all():
            return _MIXED  # pyarrow infers list<null> from lists of None
        items = pa.array(flat, mask=bad)
    sizes = np.repeat(np.fromiter((v.shape[1] for v in arrays), np.int64, len(arrays)), rows)
    present = None
    if where is not None:  # rows without the key hold null
        sizes_of_all = np.zeros(total, np.int64)
        sizes_of_all[where] = sizes
        sizes = sizes_of_all
        present = np.zeros(total, np.bool_)
        present[where] = True
    offsets = np.zeros(total + 1, np.int32)
    np.cumsum(sizes, out=offsets[1:])
    mask = None if present is None else pa.array(~present)
    return pa.ListArray.from_arrays(pa.array(offsets), items, mask=mask)


def _gather(pieces: list[Piece], total: int, dtype: Any) -> tuple[Any, Any]:
    """The 1-D arrays of ``pieces`` as one array of ``total`` rows of ``dtype``, and which
    rows hold a value (None: all)."""
    import numpy as np

    arrays = [values for _, _, values in pieces]
    if all(tag == "a" for tag, _, _ in pieces):
        starts = np.fromiter((start for _, start, _ in pieces), np.int64, len(pieces))
        rows = np.fromiter((len(v) for v in arrays), np.int64, len(arrays))
        in_order = (starts[1:] == starts[:-1] + rows[:-1]).all()
        if in_order and starts[0] == 0 and rows.sum() == total:  # every row, in order
            return _concatenated(arrays, dtype), None
    where = np.concatenate(
        [
            np.arange(start, start + len(values)) if tag == "a" else start
            for tag, start, values in pieces
        ]
        if len(pieces) < 64
        else _where_of(pieces)
    )
    values = np.zeros(total, dtype)
    values[where] = _concatenated(arrays, dtype)
    present = np.zeros(total, np.bool_)
    present[where] = True
    return values, present


def _where_of(pieces: list[Piece]) -> list[Any]:
    """The rows of many pieces: those of consecutive ``"a"`` pieces computed at once."""
    import numpy as np

    parts: list[Any] = []
    run: list[Piece] = []

    def close_run() -> None:
        if run:
            starts = np.fromiter((start for _, start, _ in run), np.int64, len(run))
            rows = np.fromiter((len(v) for _, _, v in run), np.int64, len(run))
            parts.append(_rows_of(starts, rows))
            run.clear()

    for piece in pieces:
        if piece[0] == "a":
            run.append(piece)
        else:
            close_run()
            parts.append(piece[1])
    close_run()
    return parts


def _python_values(pieces: list[Piece], total: int) -> list[Any]:
    """The column as Python values, None where no piece has a value; what the JSON of the
    same values would parse to (NaN as None)."""
    column: list[Any] = [None] * total
    for tag, where, values in pieces:
        if tag == "s":
            column[where] = values
        elif tag == "l":
            column[where : where + len(values)] = values
        elif tag == "a":
            column[where : where + len(values)] = plain_values(values)
        else:
            for row, value in zip(where.tolist(), plain_values(values), strict=True):
                column[row] = value
    return column


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
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return _strings(values)  # (OverflowError: an integer beyond int64 and uint64 both)
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
