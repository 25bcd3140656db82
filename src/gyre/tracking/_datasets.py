"""Turning data into a dataset version: a content digest, a schema and a row count.

The digest is a sha256 over the content (and the column names and types), so the same data
logged twice, from any process, is the same dataset version; a changed cell is a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gyre.entities import Dataset
from gyre.errors import InvalidArgument, NotFound

__all__ = ["describe"]

_CHUNK = 1 << 20


def describe(data: Any, name: str) -> Dataset:
    """A Dataset for a DataFrame, ndarray, dict of columns, or a file/folder path."""
    if not isinstance(name, str) or not name or len(name) > 256:
        raise InvalidArgument(f"dataset name {name!r} must be 1 to 256 characters")
    if isinstance(data, str | os.PathLike):
        return _from_path(Path(data), name)
    module = type(data).__module__.split(".", 1)[0]
    if module == "pandas" and type(data).__name__ == "DataFrame":
        return _from_frame(data, name)
    if module == "numpy" and type(data).__name__ == "ndarray":
        return _from_columns({"tensor": data}, name, "ndarray")
    if isinstance(data, dict) and data:
        return _from_columns(data, name, "dict")
    raise InvalidArgument(
        f"cannot log {type(data).__name__!r} as dataset {name!r}",
        hint="pass a pandas DataFrame, a numpy array, a dict of columns, or a file path",
    )


def _from_frame(df: Any, name: str) -> Dataset:
    import pandas as pd

    schema = [{"name": str(c), "type": str(t)} for c, t in df.dtypes.items()]
    h = hashlib.sha256(json.dumps(schema).encode())
    if len(df):
        # One vectorised 64-bit hash per row: fast, and independent of memory layout.
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return Dataset(name, h.hexdigest(), len(df), schema, "memory", "dataframe")


def _from_columns(columns: dict[str, Any], name: str, kind: str) -> Dataset:
    import numpy as np

    h = hashlib.sha256()
    schema: list[dict[str, str]] = []
    rows: int | None = None
    for col, values in columns.items():
        arr = np.ascontiguousarray(np.asarray(values))
        if arr.dtype == object:
            raise InvalidArgument(
                f"dataset {name!r}: column {col!r} holds Python objects",
                hint="convert it to numbers or strings first (e.g. a pandas DataFrame)",
            )
        entry = {"name": str(col), "type": arr.dtype.str, "shape": json.dumps(list(arr.shape))}
        schema.append(entry)
        h.update(json.dumps(entry).encode())
        h.update(arr.tobytes())
        length = arr.shape[0] if arr.ndim else 1
        if rows is not None and rows != length:
            raise InvalidArgument(
                f"dataset {name!r}: column {col!r} has {length} rows, others have {rows}"
            )
        rows = length
    return Dataset(name, h.hexdigest(), rows, schema, "memory", kind)


def _file_digest(path: Path, h: Any) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)


def _from_path(path: Path, name: str) -> Dataset:
    if not path.exists():
        raise NotFound(f"dataset path {str(path)!r} does not exist")
    h = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            _file_digest(f, h)
        return Dataset(name, h.hexdigest(), None, [], str(path.resolve()), "directory")
    _file_digest(path, h)
    rows, schema = _inspect_file(path)
    return Dataset(name, h.hexdigest(), rows, schema, str(path.resolve()), "file")


def _inspect_file(path: Path) -> tuple[int | None, list[dict[str, str]]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            return None, []
        meta = pq.ParquetFile(path)
        schema = [{"name": f.name, "type": str(f.type)} for f in meta.schema_arrow]
        rows = meta.metadata.num_rows
        meta.close()
        return rows, schema
    if suffix in (".csv", ".tsv"):
        with path.open("rb") as fh:
            header = fh.readline().decode("utf-8", "replace").rstrip("\r\n")
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(_CHUNK), b""))
        sep = "\t" if suffix == ".tsv" else ","
        return lines, [{"name": c.strip('"'), "type": "unknown"} for c in header.split(sep)]
    return None, []
