"""Score a file in chunks with bounded memory: what ``gyre predict`` and ``POST /batch`` run.

CSV, JSON Lines and Parquet, read ``batch_size`` rows at a time (pandas chunked readers for
CSV and JSON Lines, pyarrow's record-batch reader for Parquet), scored, and written out in
the same format as they go, so memory holds one chunk, never the file. The output is the
input's columns plus ``prediction`` (``prediction_<i>`` / ``prediction_<key>`` for a model
returning several values per row) and, with ``proba=True``, one ``proba_<class>`` column per
class. A Parquet output gets one row group per chunk and keeps the input's column types.

>>> from gyre.models import load_model
>>> stats = score_file(load_model("churn-model"), "in.parquet", "out.parquet")  # doctest: +SKIP
>>> stats.rows, round(stats.rows_per_second)  # doctest: +SKIP
(250000, 180000)
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from gyre.errors import GyreError, InvalidArgument, SchemaMismatch
from gyre.models._scoring import prediction_columns as _prediction_columns
from gyre.serving import _json

if TYPE_CHECKING:
    from gyre.models import Model

__all__ = [
    "CONTENT_TYPES",
    "BatchStats",
    "Format",
    "ModelFailed",
    "format_for_content_type",
    "format_for_path",
    "score_chunks",
    "score_file",
]

Format = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")

CONTENT_TYPES: dict[Format, str] = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
_TYPE_ALIASES: dict[str, Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/jsonlines": "jsonl",
    "application/json-lines": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
}
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def format_for_path(path: str | os.PathLike[str]) -> Format:
    """The format a file name's suffix names (``.csv``, ``.jsonl``/``.ndjson``, ``.parquet``)."""
    suffix = Path(path).suffix.lower()
    found = _SUFFIXES.get(suffix)
    if found is None:
        raise InvalidArgument(
            f"cannot tell the format of {str(path)!r} from its suffix {suffix!r}",
            hint="name it .csv, .jsonl (or .ndjson) or .parquet",
        )
    return found


def format_for_content_type(content_type: str | None) -> Format | None:
    """The format a Content-Type names, or None."""
    if not content_type:
        return None
    return _TYPE_ALIASES.get(content_type.split(";", 1)[0].strip().lower())


def check_format(name: str) -> Format:
    lowered = name.lower()
    for fmt in FORMATS:
        if lowered == fmt:
            return fmt
    raise InvalidArgument(
        f"format {name!r} is not supported", hint=f"use one of: {', '.join(FORMATS)}"
    )


@dataclass(frozen=True, slots=True)
class BatchStats:
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


# -- reading -----------------------------------------------------------------------------


def _string_columns(model: Model) -> dict[str, str]:
    from gyre.models import ColumnSchema

    signature = model.signature
    if signature is None or not isinstance(signature.inputs, ColumnSchema):
        return {}
    # Read string columns as objects: a chunk whose values are all missing would
    # otherwise arrive as floats and fail the signature's string check.
    return {c.name: "object" for c in signature.inputs.columns if c.dtype in ("string", "object")}


def _read_chunks(
    source: str | os.PathLike[str] | BinaryIO, fmt: Format, batch_size: int, model: Model
) -> Iterator[Any]:
    """Chunks of at most ``batch_size`` rows: DataFrames, or pyarrow record batches."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # pre_buffer (pyarrow's default) would keep every column chunk read so far.
        with pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20) as parquet:
            yield from parquet.iter_batches(batch_size=batch_size, use_threads=False)
        return
    import pandas as pd

    dtypes = _string_columns(model)
    if fmt == "csv":
        with pd.read_csv(source, chunksize=batch_size, dtype=dtypes or None) as reader:
            for chunk in reader:
                if not isinstance(chunk.index, pd.RangeIndex):
                    # pandas makes the first field of every row the index when the rows
                    # hold one field more than the header: the columns would be shifted
                    header = ",".join(map(str, chunk.columns))
                    raise InvalidArgument(
                        f"the CSV rows have {len(chunk.columns) + 1} fields but its header "
                        f"names {len(chunk.columns)} ({header}): the values would land under "
                        "the wrong columns",
                        hint="name every column in the header (an unnamed first column "
                        "needs a name too), or remove the extra field from the rows",
                    )
                yield chunk
    else:
        with pd.read_json(
            source, lines=True, chunksize=batch_size, dtype=dtypes or True, precise_float=True
        ) as json_reader:
            yield from json_reader


class ModelFailed(Exception):
    """The model's predict raised on rows ``first`` to ``last`` of the input (counted from
    its first data row, 0); the exception it raised is the ``__cause__``. The message names
    only its type: what a model says about its input is for its owner, not for a client.
    (Not a GyreError: each caller says it its own way, ``gyre predict`` with the model's
    words, ``POST /batch`` as a 500 with the request id.)"""

    def __init__(self, first: int, last: int, cause: BaseException) -> None:
        self.message = (
            f"the model failed on rows {first}-{last} of the input ({type(cause).__name__})"
        )
        super().__init__(self.message)
        self.first, self.last = first, last


def _readable(chunks: Iterator[Any], fmt: Format, source: Any, upload: bool) -> Iterator[Any]:
    """``chunks``, with the reader's own errors turned into one clear InvalidArgument."""
    if not upload and isinstance(source, str | os.PathLike):  # a file: its suffix says
        hint = f"check that {os.fspath(source)!r} is a {fmt} file (its suffix says it is)"
    else:
        hint = (f"check that it is a {fmt} file (the format comes from Content-Type or "
                "?format= on POST /batch)")  # fmt: skip
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except GyreError:
            raise
        except Exception as exc:  # pandas / pyarrow: whatever the bytes made them raise
            raise InvalidArgument(
                f"cannot read the input as {fmt}: {type(exc).__name__}: {exc}", hint=hint
            ) from None
        yield chunk


# -- scoring -----------------------------------------------------------------------------


def score_chunks(
    model: Model,
    source: str | os.PathLike[str] | BinaryIO,
    fmt: Format,
    *,
    batch_size: int = 10_000,
    proba: bool = False,
    out_format: Format | None = None,
    on_chunk: Callable[[int, Any, dict[str, Any]], None] | None = None,
    upload: bool = False,
) -> Generator[tuple[int, bytes], None, None]:
    """``(rows, encoded output bytes)`` per chunk, then ``(0, trailer)`` at the end.

    Joined, the bytes are the complete output file (in ``out_format``, default ``fmt``).
    ``on_chunk(first_row, frame, prediction_columns)`` is called for each chunk once it is
    scored (the server logs the rows with it). Errors name rows counted from the file's
    first data row (0); the model raising is :class:`ModelFailed`. ``upload``: ``source``
    is a file a client uploaded (errors speak of Content-Type, not of its suffix).
    """
    if batch_size < 1:
        raise InvalidArgument(f"batch size must be at least 1, got {batch_size}")
    writer = _Writer(out_format or fmt)
    offset = 0  # rows of the file before this chunk
    for chunk in _readable(_read_chunks(source, fmt, batch_size, model), fmt, source, upload):
        if fmt == "parquet":
            frame = chunk.to_pandas()
            rows = chunk.num_rows
        else:
            frame, rows = chunk, len(chunk)
        if rows == 0:
            continue
        try:
            if fmt == "csv":
                _check_csv_numbers(model, frame)
            columns = _prediction_columns(model, frame, proba)
        except SchemaMismatch as exc:
            raise _in_file(exc, offset) from None
        except GyreError:
            raise
        except Exception as exc:  # the model's own predict
            raise ModelFailed(offset, offset + rows - 1, exc) from exc
        if on_chunk is not None:
            on_chunk(offset, frame, columns)
        yield rows, writer.write(chunk, frame, columns)
        offset += rows
    if not offset:
        raise InvalidArgument(
            f"the {fmt} input holds no rows", hint="score a file with at least one row"
        )
    yield 0, writer.close()


_ROW = re.compile(r"\bat row (\d+)")


def _in_file(exc: SchemaMismatch, offset: int) -> SchemaMismatch:
    """``exc`` with its row numbers counted from the file's first row, not the chunk's."""
    if not offset:
        return exc
    message = _ROW.sub(lambda m: f"at row {int(m.group(1)) + offset}", exc.message)
    return SchemaMismatch(message, hint=exc.hint)


def _check_csv_numbers(model: Model, frame: Any) -> None:
    """A CSV column the model reads as numbers holds text where pandas found a value it
    could not read as one: name that value, not the first of the column's texts."""
    from gyre.models import ColumnSchema

    signature = model.signature
    if signature is None or not isinstance(signature.inputs, ColumnSchema):
        return
    import numpy as np
    import pandas as pd

    for spec in signature.inputs.columns:
        if spec.name not in frame.columns or not spec.dtype.startswith(("int", "uint", "float")):
            continue
        column = frame[spec.name]
        if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
            continue  # (text columns are object or string dtype, by pandas version)
        parsed = pd.to_numeric(column, errors="coerce")
        bad = (parsed.isna() & column.notna()).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise SchemaMismatch(
                f"column {spec.name!r} expects {spec.dtype}, got {column.iloc[i]!r} at row {i}, "
                "which is not a number",
                hint="fix the value, or leave the field empty for a missing value",
            )


def score_file(
    model: Model,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    batch_size: int = 10_000,
    proba: bool = False,
    in_format: Format | None = None,
    out_format: Format | None = None,
    progress: Callable[[int], None] | None = None,
) -> BatchStats:
    """Score ``source`` into ``output`` chunk by chunk; formats default to the suffixes.

    ``progress(rows)`` is called after each chunk with the rows it held. The output is
    written to a temporary name beside ``output`` and renamed when complete.
    """
    fmt_in = in_format or format_for_path(source)
    fmt_out = out_format or format_for_path(output)
    target = Path(output)
    partial = target.with_name(f".{target.name}.partial")
    started = time.perf_counter()
    total = 0
    try:
        sink_file = partial.open("wb")
    except OSError as exc:
        raise InvalidArgument(
            f"cannot write the output {str(output)!r}: {exc.strerror or exc}",
            hint="create its folder first, or choose a path you can write to",
        ) from None
    try:
        with sink_file as sink:
            chunks = score_chunks(
                model, source, fmt_in, batch_size=batch_size, proba=proba, out_format=fmt_out
            )
            for rows, data in chunks:
                sink.write(data)
                total += rows
                if progress is not None and rows:
                    progress(rows)
        os.replace(partial, target)
    except OSError as exc:  # the output's side: a full disk, a folder in the way
        partial.unlink(missing_ok=True)
        raise InvalidArgument(
            f"cannot write the output {str(output)!r}: {exc.strerror or exc}",
            hint="check the free space, and that the path is not a folder",
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BatchStats(total, time.perf_counter() - started)


# -- writing -----------------------------------------------------------------------------


class _Drain:
    """A write-only file that hands back what was written since the last :meth:`take`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        raw = bytes(data)
        self._parts.append(raw)
        self._position += len(raw)
        return len(raw)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class _Writer:
    """Encodes scored chunks in one format, incrementally."""

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt
        self._first = True
        self._drain = _Drain()
        self._parquet: Any = None
        self._schema: Any = None

    def write(self, chunk: Any, frame: Any, columns: dict[str, Any]) -> bytes:
        if self.fmt == "parquet":
            return self._write_parquet(chunk, frame, columns)
        out = frame.assign(**columns) if columns else frame
        first, self._first = self._first, False
        if self.fmt == "csv":
            text: str = out.to_csv(index=False, header=first)
            return text.encode()
        # Not DataFrame.to_json: it keeps at most 15 significant digits, which does not
        # round-trip a float64; orjson writes the shortest exact representation.
        return b"".join(_json.dumps(r) + b"\n" for r in out.to_dict(orient="records"))

    def _write_parquet(self, chunk: Any, frame: Any, columns: dict[str, Any]) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if isinstance(chunk, pa.RecordBatch):
            table = pa.Table.from_batches([chunk])
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        for name, values in columns.items():
            array = pa.array(values.tolist() if values.dtype.kind == "O" else values)
            if name in table.column_names:
                table = table.drop_columns([name])
            table = table.append_column(name, array)
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self._drain, self._schema)
        elif table.schema != self._schema:
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, ValueError) as exc:
                raise InvalidArgument(
                    f"a chunk's columns differ in type from the first chunk's: {exc}",
                    hint="give every column one type throughout the file",
                ) from None
        self._parquet.write_table(table)
        return self._drain.take()

    def close(self) -> bytes:
        if self.fmt != "parquet":
            return b""
        if self._parquet is None:
            # No rows at all: still a valid (empty) Parquet file.
            import pyarrow as pa
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(self._drain, pa.schema([]))
        self._parquet.close()
        return self._drain.take()
