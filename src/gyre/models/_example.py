"""The input example file of a package: JSON for columns, .npy/.npz for tensors.

Columns are stored as ``{"columns": [...], "data": [[...], ...]}`` with ``null`` for a
missing value and ISO strings for datetimes, readable without pandas and by a human.
Tensors are stored with numpy's own format (never pickled: string arrays are stored as
fixed-width unicode).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gyre.models._table import Table, as_array, as_table, is_missing

__all__ = ["read_example", "write_example"]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if is_missing(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _storable(arr: NDArray[Any]) -> NDArray[Any]:
    return arr.astype(str) if arr.dtype.kind == "O" else arr


def write_example(data: Any, directory: Path) -> str:
    """Write ``data`` into ``directory``; the file's name, relative to it."""
    table = data if isinstance(data, Table) else as_table(data)
    if table is not None:
        names = list(table.columns)
        cols = [[_plain(v) for v in table.columns[n].tolist()] for n in names]
        rows = [list(row) for row in zip(*cols, strict=True)] if cols else []
        (directory / "input_example.json").write_text(
            json.dumps({"columns": names, "data": rows}, allow_nan=False) + "\n"
        )
        return "input_example.json"
    if isinstance(data, dict):
        arrays: dict[str, Any] = {str(k): _storable(as_array(v)) for k, v in data.items()}
        np.savez(directory / "input_example.npz", **arrays)
        return "input_example.npz"
    np.save(directory / "input_example.npy", _storable(as_array(data)), allow_pickle=False)
    return "input_example.npy"


def read_example(path: Path) -> Any:
    """What :func:`write_example` wrote: a dict of column lists, an array or dict of arrays."""
    if path.suffix == ".json":
        doc = json.loads(path.read_text())
        names = doc["columns"]
        return {n: [row[j] for row in doc["data"]] for j, n in enumerate(names)}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    return np.load(path, allow_pickle=False)
