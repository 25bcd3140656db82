"""Model signatures: what input a model takes, inferred from an example and enforced.

Two kinds of schema:

* :class:`ColumnSchema`, named 1-D columns, inferred from a DataFrame, a dict of 1-D
  arrays or a list of records;
* :class:`TensorSchema`, one or more (named) arrays with a shape whose first dimension,
  the batch, is ``-1``, inferred from an ndarray or a dict of N-d arrays.

Enforcement (:meth:`Signature.conform`) accepts every input shape for either kind (a
DataFrame, an ndarray, a dict of columns, a list of records) and either returns the input
in the exact dtypes and order of the signature or raises :class:`~gyre.errors.SchemaMismatch`
with one precise message. The rules:

* Columns are taken in signature order. Extra columns are ignored (logged at DEBUG on the
  ``gyre.models`` logger): a client may send more than the model reads.
* Safe conversions only: int → float, float64 → float32, a float holding an integral value
  → int. Strings in a numeric column, floats with a fraction in an int column, bools in a
  numeric column are errors naming the first bad value and its row (counted from 0).
* A column or tensor is *nullable* only when the example it was inferred from (or the
  reference data saved with the model) had missing values there. Missing values in a
  column that is not nullable are an error naming column and row. A nullable int column
  arrives as float64 (NaN cannot be an int).
* A column with missing values in the example is also *optional*: it may be absent at
  predict time, and is then filled with missing values.
"""

from __future__ import annotations

import difflib
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gyre.errors import InvalidArgument, SchemaMismatch
from gyre.models._table import Table, as_array, as_table, describe_value, missing_mask

__all__ = [
    "ColumnSchema",
    "ColumnSpec",
    "Schema",
    "Signature",
    "TensorSchema",
    "TensorSpec",
    "infer_signature",
]

logger = logging.getLogger("gyre.models")

_FLOATS = ("float16", "float32", "float64")
_INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_OTHERS = ("bool", "string", "object")


def _check_dtype(dtype: str) -> str:
    if dtype in _FLOATS or dtype in _INTS or dtype in _OTHERS or dtype.startswith("datetime64"):
        return dtype
    raise InvalidArgument(
        f"dtype {dtype!r} is not a signature dtype",
        hint=f"use one of: {', '.join(_FLOATS + _INTS + _OTHERS)}, datetime64[<unit>]",
    )


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One named column: its dtype, whether it may hold missing values, may be absent."""

    name: str
    dtype: str
    nullable: bool = False
    optional: bool = False

    def __post_init__(self) -> None:
        _check_dtype(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "nullable": self.nullable,
            "optional": self.optional,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnSpec:
        return cls(
            str(d["name"]),
            str(d["dtype"]),
            bool(d.get("nullable", False)),
            bool(d.get("optional", False)),
        )


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One array: dtype and shape, ``-1`` for a free dimension (always the batch)."""

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None
    nullable: bool = False

    def __post_init__(self) -> None:
        _check_dtype(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "nullable": self.nullable,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        name = d.get("name")
        return cls(
            str(d["dtype"]),
            tuple(int(n) for n in d["shape"]),
            None if name is None else str(name),
            bool(d.get("nullable", False)),
        )


# -- conversion of one array to a signature dtype ---------------------------------------

Locate = Callable[[int], str]


def _first(mask: NDArray[np.bool_]) -> int:
    return int(np.argmax(mask.ravel()))


def _wrong(subject: str, target: str, arr: NDArray[Any], i: int, locate: Locate) -> SchemaMismatch:
    value = arr.ravel()[i]
    return SchemaMismatch(
        f"{subject} expects {target}, got {describe_value(value)} at {locate(i)}",
        hint=f"send {target} values" + (" (numbers, not strings)" if target != "string" else ""),
    )


def _out_of_range(subject: str, target: str, value: Any, where: str) -> SchemaMismatch:
    info = np.iinfo(target) if target not in _FLOATS else np.finfo(target)
    return SchemaMismatch(
        f"{subject} expects {target}, got {describe_value(value)} at {where}, "
        f"outside {target}'s range",
        hint=f"send values between {info.min} and {info.max}",
    )


def _numbers_from_objects(
    arr: NDArray[Any], missing: NDArray[np.bool_], subject: str, target: str, locate: Locate
) -> NDArray[Any]:
    """Python numbers as ``target`` takes them. An integer target takes them exactly: a whole
    float is that integer (1.0 beside 9007199254740993 must not turn the latter into a
    float), each checked against the range as the integer it is (numpy refuses Python ints
    past int64 with OverflowError); with a missing value, as floats with NaN (NaN has no
    int; see the module docstring). A float target takes them as float64."""
    flat = arr.ravel()
    info = np.iinfo(target) if target not in _FLOATS else None
    values: list[Any] = []
    for i, value in enumerate(flat):
        if missing.flat[i]:
            values.append(np.nan)
            continue
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
            raise _wrong(subject, target, arr, i, locate)
        if info is None:  # a float target
            try:
                values.append(float(value))
            except OverflowError:  # an int past any float
                raise _out_of_range(subject, target, value, locate(i)) from None
            continue
        if not isinstance(value, numbers.Integral):
            as_float = float(value)
            if not (math.isfinite(as_float) and as_float == math.trunc(as_float)):
                raise _wrong(subject, target, arr, i, locate)
        whole = int(flat[i])
        if not info.min <= whole <= info.max:
            raise _out_of_range(subject, target, flat[i], locate(i))
        values.append(whole)
    dtype = target if info is not None and not missing.any() else np.float64
    return np.array(values, dtype=dtype).reshape(arr.shape)


def _to_number(
    arr: NDArray[Any],
    missing: NDArray[np.bool_],
    subject: str,
    target: str,
    locate: Locate,
) -> NDArray[Any]:
    kind = arr.dtype.kind
    if kind == "O":
        arr = _numbers_from_objects(arr, missing, subject, target, locate)
        kind = arr.dtype.kind
    if kind not in "iuf":
        bad = ~missing
        raise _wrong(subject, target, arr, _first(bad) if bad.any() else 0, locate)
    if target in _FLOATS:
        return arr.astype(target, copy=False)
    if kind == "f":
        finite = np.isfinite(arr)
        bad = ~missing & (~finite | (arr != np.trunc(np.where(finite, arr, 0))))
        if bad.any():
            raise _wrong(subject, target, arr, _first(bad), locate)
    info = np.iinfo(target)
    out_of_range = ~missing & ((arr < info.min) | (arr > info.max))
    if out_of_range.any():
        i = _first(out_of_range)
        raise _out_of_range(subject, target, arr.ravel()[i], locate(i))
    if missing.any():
        return arr.astype(np.float64, copy=False)  # NaN has no int; see module docstring
    return arr.astype(target, copy=False)


def _to_string(
    arr: NDArray[Any], missing: NDArray[np.bool_], subject: str, locate: Locate
) -> NDArray[Any]:
    kind = arr.dtype.kind
    if kind == "U":
        return arr.astype(object)
    if kind == "O":
        for i, value in enumerate(arr.ravel()):
            if not missing.flat[i] and not isinstance(value, str):
                raise _wrong(subject, "string", arr, i, locate)
        return arr
    bad = ~missing
    raise _wrong(subject, "string", arr, _first(bad) if bad.any() else 0, locate)


def _to_bool(
    arr: NDArray[Any], missing: NDArray[np.bool_], subject: str, locate: Locate
) -> NDArray[Any]:
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind == "O":
        for i, value in enumerate(arr.ravel()):
            if not missing.flat[i] and not isinstance(value, bool | np.bool_):
                raise _wrong(subject, "bool", arr, i, locate)
        return arr if missing.any() else arr.astype(bool)
    bad = ~missing
    raise _wrong(subject, "bool", arr, _first(bad) if bad.any() else 0, locate)


def _to_datetime(
    arr: NDArray[Any], missing: NDArray[np.bool_], subject: str, target: str, locate: Locate
) -> NDArray[Any]:
    if arr.dtype.kind == "M":
        return arr.astype(target, copy=False)
    if arr.dtype.kind not in "OU":
        raise _wrong(subject, target, arr, 0, locate)
    out = np.empty(arr.size, dtype=target)
    for i, value in enumerate(arr.ravel()):
        if missing.flat[i]:
            out[i] = np.datetime64("NaT")
            continue
        if not isinstance(value, str | date | datetime | np.datetime64):
            raise _wrong(subject, target, arr, i, locate)
        try:
            out[i] = np.datetime64(value)
        except ValueError:
            raise _wrong(subject, target, arr, i, locate) from None
    return out.reshape(arr.shape)


def _convert(
    arr: NDArray[Any], target: str, nullable: bool, subject: str, locate: Locate
) -> NDArray[Any]:
    if target == "object":
        return arr
    missing = missing_mask(arr)
    if not nullable and missing.any():
        raise SchemaMismatch(
            f"{subject} has a missing value at {locate(_first(missing))}, "
            "and the signature does not allow missing values there",
            hint="fill it in, or save the model with an input example or reference data "
            "that has missing values there (that makes it nullable)",
        )
    if target == "string":
        return _to_string(arr, missing, subject, locate)
    if target == "bool":
        return _to_bool(arr, missing, subject, locate)
    if target.startswith("datetime64"):
        return _to_datetime(arr, missing, subject, target, locate)
    return _to_number(arr, missing, subject, target, locate)


def _no_rows() -> SchemaMismatch:
    return SchemaMismatch("input has no rows", hint="send at least one row")


# -- schemas -----------------------------------------------------------------------------


def _row(i: int) -> str:
    return f"row {i}"


@dataclass(frozen=True, slots=True)
class ColumnSchema:
    """Named columns, in the order the model reads them."""

    columns: tuple[ColumnSpec, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [c.to_dict() for c in self.columns]}

    def conform(self, data: Any) -> Table:
        """``data`` as a Table holding exactly the signature's columns, converted."""
        table = as_table(data)
        if table is None:
            table = self._table_from_array(as_array(data))
        if table.n_rows == 0:
            raise _no_rows()
        absent = [c.name for c in self.columns if c.name not in table.columns and not c.optional]
        if absent:
            raise self._missing_columns(absent, list(table.columns))
        extra = [name for name in table.columns if name not in set(self.names)]
        if extra:
            logger.debug("ignoring input columns not in the signature: %s", extra)
        out: dict[str, NDArray[Any]] = {}
        for spec in self.columns:
            col = table.columns.get(spec.name)
            if col is None:  # an optional column: present, all missing
                dtype: Any = np.float64 if spec.dtype in _FLOATS + _INTS else object
                col = np.full(table.n_rows, np.nan if dtype is np.float64 else None, dtype=dtype)
            nullable = spec.nullable or spec.optional
            out[spec.name] = _convert(col, spec.dtype, nullable, f"column {spec.name!r}", _row)
        return Table(out, table.n_rows)

    def _table_from_array(self, arr: NDArray[Any]) -> Table:
        # An unnamed array fills the columns by position.
        if arr.ndim >= 1 and arr.shape[0] == 0:
            raise _no_rows()
        if arr.ndim == 1 and len(self.columns) == 1:
            return Table({self.columns[0].name: arr}, len(arr))
        if arr.ndim != 2:
            raise SchemaMismatch(
                f"expected a table of {len(self.columns)} columns ({', '.join(self.names)}), "
                f"got an array of shape {arr.shape}",
                hint="send a DataFrame, a dict of columns, a list of records or a 2-D array",
            )
        if arr.shape[1] != len(self.columns):
            raise SchemaMismatch(
                f"expected {len(self.columns)} features, got {arr.shape[1]}",
                hint=f"columns, in order: {', '.join(self.names)}",
            )
        return Table({name: arr[:, j] for j, name in enumerate(self.names)}, arr.shape[0])

    def _missing_columns(self, absent: list[str], given: list[str]) -> SchemaMismatch:
        if len(absent) == 1:
            message = f"column {absent[0]!r} is missing"
        else:
            message = f"columns {', '.join(map(repr, absent))} are missing"
        close = difflib.get_close_matches(absent[0], given, n=1)
        hint = (
            f"did you mean {close[0]!r}?" if close else f"the model reads: {', '.join(self.names)}"
        )
        return SchemaMismatch(message, hint=hint)


def _locate_in(shape: tuple[int, ...]) -> Locate:
    def locate(i: int) -> str:
        index = [int(n) for n in np.unravel_index(i, shape)]
        if len(index) == 1:
            return f"row {index[0]}"
        if len(index) == 2:
            return f"row {index[0]}, feature {index[1]}"
        return f"row {index[0]}, index {tuple(index[1:])}"

    return locate


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


@dataclass(frozen=True, slots=True)
class TensorSchema:
    """One unnamed array, or several named ones."""

    tensors: tuple[TensorSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"tensors": [t.to_dict() for t in self.tensors]}

    def conform(self, data: Any) -> NDArray[Any] | dict[str, NDArray[Any]]:
        """``data`` as one array (or a dict of them) with the signature's dtype and shape."""
        if len(self.tensors) == 1:
            spec = self.tensors[0]
            if isinstance(data, Mapping) and spec.name is not None and spec.name in data:
                data = data[spec.name]
            return self._conform_one(spec, data)
        if not isinstance(data, Mapping):
            names = [t.name for t in self.tensors]
            raise SchemaMismatch(
                f"expected a dict of {len(names)} inputs {names}, got {type(data).__name__}",
                hint="send one array per input name",
            )
        out = {}
        for spec in self.tensors:
            name = str(spec.name)
            if name not in data:
                raise SchemaMismatch(f"input {name!r} is missing", hint=f"send {name!r}")
            out[name] = self._conform_one(spec, data[name])
        return out

    @staticmethod
    def _conform_one(spec: TensorSpec, data: Any) -> NDArray[Any]:
        subject = "input" if spec.name is None else f"input {spec.name!r}"
        table = as_table(data)
        if table is not None:
            if table.n_rows == 0:
                raise _no_rows()
            cols = list(table.columns.values())
            numeric = all(c.dtype.kind in "biuf" for c in cols)
            arr = (
                np.column_stack(cols)
                if numeric
                else np.column_stack([c.astype(object) for c in cols])
            )
        else:
            arr = as_array(data)
        want = spec.shape
        if arr.ndim == 0:
            raise SchemaMismatch(
                f"{subject} expects an array of shape {_fmt_shape(want)}, got a scalar",
                hint="send a batch of rows",
            )
        if arr.shape[0] == 0:
            raise _no_rows()
        if arr.ndim != len(want):
            if len(want) == 2 and arr.ndim == 1:
                raise SchemaMismatch(
                    f"{subject} expects a 2-D array of shape {_fmt_shape(want)}, "
                    f"got a 1-D array of length {arr.shape[0]}",
                    hint="send one row as [[...]]",
                )
            raise SchemaMismatch(
                f"{subject} expects shape {_fmt_shape(want)}, got {_fmt_shape(arr.shape)}",
                hint="reshape the input",
            )
        for axis, (expected, got) in enumerate(zip(want, arr.shape, strict=True)):
            if expected not in (-1, got):
                if len(want) == 2 and axis == 1:
                    raise SchemaMismatch(
                        f"expected {expected} features, got {got}",
                        hint=f"send rows of {expected} values",
                    )
                raise SchemaMismatch(
                    f"{subject} expects shape {_fmt_shape(want)}, got {_fmt_shape(arr.shape)}",
                    hint="reshape the input",
                )
        return _convert(arr, spec.dtype, spec.nullable, subject, _locate_in(arr.shape))


Schema = ColumnSchema | TensorSchema


def _schema_from_dict(d: Mapping[str, Any]) -> Schema:
    if "columns" in d:
        return ColumnSchema(tuple(ColumnSpec.from_dict(c) for c in d["columns"]))
    if "tensors" in d:
        return TensorSchema(tuple(TensorSpec.from_dict(t) for t in d["tensors"]))
    raise InvalidArgument(
        f"schema {dict(d)!r} has neither 'columns' nor 'tensors'",
        hint="the package's manifest is damaged or from a newer gyre",
    )


@dataclass(frozen=True, slots=True)
class Signature:
    """What a model takes (``inputs``) and, optionally, what it returns (``outputs``).

    >>> import numpy as np
    >>> sig = infer_signature(np.zeros((4, 3), dtype=np.float32))
    >>> sig.inputs.tensors[0].shape
    (-1, 3)
    """

    inputs: Schema
    outputs: Schema | None = None

    def conform(self, data: Any) -> Table | NDArray[Any] | dict[str, NDArray[Any]]:
        """``data`` checked and converted to the input schema, or SchemaMismatch."""
        return self.inputs.conform(data)

    def allow_missing(self, names: Iterable[str]) -> Signature:
        """This signature with the named input columns nullable."""
        wanted = set(names)
        if not isinstance(self.inputs, ColumnSchema) or not wanted:
            return self
        columns = tuple(
            replace(c, nullable=True) if c.name in wanted else c for c in self.inputs.columns
        )
        return replace(self, inputs=ColumnSchema(columns))

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs.to_dict(),
            "outputs": None if self.outputs is None else self.outputs.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Signature:
        outputs = d.get("outputs")
        return cls(
            _schema_from_dict(d["inputs"]), None if outputs is None else _schema_from_dict(outputs)
        )


# -- inference ---------------------------------------------------------------------------


def _object_dtype(values: NDArray[Any], missing: NDArray[np.bool_]) -> str:
    present = [v for v, m in zip(values.ravel(), missing.ravel(), strict=True) if not m]
    if not present:
        return "object"
    if all(isinstance(v, str) for v in present):
        return "string"
    if all(isinstance(v, bool | np.bool_) for v in present):
        return "bool"
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in present):
        return "float64" if missing.any() else "int64"
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        return "float64"
    if all(isinstance(v, date | np.datetime64) for v in present):
        return "datetime64[ns]"
    return "object"


def _dtype_of(arr: NDArray[Any], missing: NDArray[np.bool_]) -> str:
    kind = arr.dtype.kind
    if kind in "iuf":
        return "float64" if kind == "f" and arr.dtype.itemsize > 8 else str(arr.dtype)
    if kind == "b":
        return "bool"
    if kind == "U":
        return "string"
    if kind == "M":
        return str(arr.dtype)
    if kind == "O":
        return _object_dtype(arr, missing)
    return "object"


def _tensor_spec(arr: NDArray[Any], name: str | None) -> TensorSpec:
    if arr.ndim == 0:
        raise InvalidArgument(
            f"cannot infer a signature from a scalar ({arr.item()!r})",
            hint="pass a batch: an array whose first dimension is the rows",
        )
    missing = missing_mask(arr)
    return TensorSpec(_dtype_of(arr, missing), (-1, *arr.shape[1:]), name, bool(missing.any()))


def _infer_schema(data: Any, optional: Iterable[str] = ()) -> Schema:
    table = as_table(data)
    wanted = set(optional)
    if table is not None:
        unknown = wanted - set(table.columns)
        if unknown:
            raise InvalidArgument(
                f"optional column(s) {sorted(unknown)} are not in the example",
                hint=f"the example has: {', '.join(table.columns)}",
            )
        specs = []
        for name, col in table.columns.items():
            missing = missing_mask(col)
            loose = bool(missing.any()) or name in wanted
            specs.append(ColumnSpec(name, _dtype_of(col, missing), loose, loose))
        return ColumnSchema(tuple(specs))
    if wanted:
        raise InvalidArgument(
            f"optional={sorted(wanted)} needs named columns, got {type(data).__name__}",
            hint="pass a DataFrame, a dict of columns or a list of records",
        )
    if isinstance(data, Mapping):
        return TensorSchema(tuple(_tensor_spec(as_array(v), str(k)) for k, v in data.items()))
    return TensorSchema((_tensor_spec(as_array(data), None),))


def infer_signature(inputs: Any, outputs: Any = None, *, optional: Iterable[str] = ()) -> Signature:
    """The signature of ``inputs`` (and ``outputs``) from an example of each.

    DataFrames, dicts of 1-D arrays and lists of records give named columns; ndarrays and
    dicts of N-d arrays give tensors with the batch dimension as ``-1``. Columns with
    missing values become nullable and optional; ``optional`` marks more columns so.

    >>> import pandas as pd
    >>> sig = infer_signature(pd.DataFrame({"age": [31.0, None], "city": ["Oslo", "Rome"]}))
    >>> [(c.name, c.dtype, c.optional) for c in sig.inputs.columns]
    [('age', 'float64', True), ('city', 'string', False)]
    """
    return Signature(
        _infer_schema(inputs, optional), None if outputs is None else _infer_schema(outputs)
    )
