"""Reference profiles: a compact, mergeable summary of the data a model was trained on.

Per numeric column: count, missing, min, max, mean, variance (population, ddof=0) and
counts over quantile bins. The bin *edges* are interior cut points: with edges
``e1 < … < ek`` there are ``k + 1`` bins ``(-inf, e1), [e1, e2), …, [ek, +inf)``, so any
later value lands in some bin. Per categorical column (strings, bools, anything not
numeric): frequencies of the 100 most common categories plus ``__other__``, and missing.
Non-finite numbers (NaN, ±inf) count as missing.

Profiles merge (:func:`merge_profiles`): counts add, moments combine with the parallel
variance formula. Merging needs the same bin edges, so profile production windows *like*
the reference (``profile_frame(window, like=reference)``): they then share its edges and
categories, and hour profiles merge into exactly the day's profile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gyre.errors import InvalidArgument
from gyre.models._table import Table, as_array, as_table, missing_mask

__all__ = [
    "OTHER",
    "CategoricalProfile",
    "NumericProfile",
    "ReferenceProfile",
    "merge_profiles",
    "profile_frame",
]

OTHER = "__other__"
FORMAT_VERSION = 1
DEFAULT_BINS = 20
DEFAULT_TOP = 100


@dataclass(frozen=True, slots=True)
class NumericProfile:
    count: int
    missing: int
    min: float | None
    max: float | None
    mean: float | None
    variance: float | None
    edges: list[float]
    counts: list[int]

    kind = "numeric"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "missing": self.missing,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "variance": self.variance,
            "edges": self.edges,
            "counts": self.counts,
        }


@dataclass(frozen=True, slots=True)
class CategoricalProfile:
    count: int
    missing: int
    frequencies: dict[str, int] = field(default_factory=dict)

    kind = "categorical"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "missing": self.missing,
            "frequencies": self.frequencies,
        }


ColumnProfile = NumericProfile | CategoricalProfile


def _column_from_dict(d: Mapping[str, Any]) -> ColumnProfile:
    if d.get("kind") == "numeric":
        return NumericProfile(
            count=int(d["count"]),
            missing=int(d["missing"]),
            min=d.get("min"),
            max=d.get("max"),
            mean=d.get("mean"),
            variance=d.get("variance"),
            edges=[float(e) for e in d["edges"]],
            counts=[int(c) for c in d["counts"]],
        )
    if d.get("kind") == "categorical":
        freqs = {str(k): int(v) for k, v in d["frequencies"].items()}
        return CategoricalProfile(int(d["count"]), int(d["missing"]), freqs)
    raise InvalidArgument(f"unknown column profile kind {d.get('kind')!r}", hint="a newer gyre?")


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    """Row count and one profile per column.

    >>> import numpy as np
    >>> p = profile_frame({"x": np.arange(10.0)})
    >>> p.rows, p.columns["x"].mean
    (10, 4.5)
    """

    rows: int
    columns: dict[str, ColumnProfile]

    def merge(self, other: ReferenceProfile) -> ReferenceProfile:
        """The profile of both windows' rows together (see :func:`merge_profiles`)."""
        return merge_profiles(self, other)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "rows": self.rows,
            "columns": {name: col.to_dict() for name, col in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceProfile:
        return cls(int(d["rows"]), {str(k): _column_from_dict(v) for k, v in d["columns"].items()})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        return cls.from_dict(json.loads(Path(path).read_text()))


# -- profiling ---------------------------------------------------------------------------


def _finite_values(col: NDArray[Any], name: str) -> NDArray[np.float64]:
    kind = col.dtype.kind
    if kind == "M":
        col = col.astype("datetime64[ns]")
        values = col[~np.isnat(col)].astype(np.int64) / 1e9  # seconds since the epoch
    elif kind in "iuf":
        values = col.astype(np.float64, copy=False)
    else:
        present = col[~missing_mask(col)]
        try:
            values = present.astype(np.float64)
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"column {name!r} is numeric in the reference, but holds {present[:1].tolist()}",
                hint="send numbers in numeric columns",
            ) from None
    return np.asarray(values[np.isfinite(values)], dtype=np.float64)


def _numeric(col: NDArray[Any], name: str, edges: list[float] | None, bins: int) -> NumericProfile:
    values = _finite_values(col, name)
    n = int(values.size)
    if edges is None:
        if n:
            cuts = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
            edges = [float(e) for e in np.unique(cuts)]
        else:
            edges = []
    counts = np.bincount(
        np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1
    )
    if not n:
        return NumericProfile(0, len(col), None, None, None, None, edges, counts.tolist())
    return NumericProfile(
        count=n,
        missing=len(col) - n,
        min=float(values.min()),
        max=float(values.max()),
        mean=float(values.mean()),
        variance=float(values.var()),
        edges=edges,
        counts=[int(c) for c in counts],
    )


def _top(freqs: dict[str, int], top: int) -> dict[str, int]:
    other = freqs.get(OTHER, 0)
    ranked = sorted(
        ((k, v) for k, v in freqs.items() if k != OTHER), key=lambda kv: (-kv[1], kv[0])
    )
    kept = dict(ranked[:top])
    kept[OTHER] = other + sum(v for _, v in ranked[top:])
    return kept


def _categorical(col: NDArray[Any], categories: list[str] | None, top: int) -> CategoricalProfile:
    missing = missing_mask(col)
    present = col[~missing]
    keys, counts = np.unique(present.astype(str), return_counts=True)
    seen = dict(zip(keys.tolist(), counts.tolist(), strict=True))
    if categories is None:
        freqs = _top(seen, top)
    else:
        known = set(categories)
        freqs = {c: seen.get(c, 0) for c in categories}
        freqs[OTHER] = sum(v for k, v in seen.items() if k not in known)
    return CategoricalProfile(int(present.size), int(missing.sum()), freqs)


def _is_numeric(col: NDArray[Any]) -> bool:
    if col.dtype.kind in "iufM":
        return True
    if col.dtype.kind != "O":
        return False
    present = col[~missing_mask(col)]
    return bool(present.size) and all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
        for v in present
    )


def _table(data: Any) -> Table:
    table = as_table(data)
    if table is not None:
        return table
    arr = as_array(data)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InvalidArgument(
            f"cannot profile an array of shape {arr.shape}",
            hint="profile 1-D or 2-D data (rows × features)",
        )
    return Table({str(j): arr[:, j] for j in range(arr.shape[1])}, arr.shape[0])


def profile_frame(
    data: Any,
    *,
    like: ReferenceProfile | None = None,
    bins: int = DEFAULT_BINS,
    top: int = DEFAULT_TOP,
) -> ReferenceProfile:
    """Summarise ``data`` (DataFrame, ndarray, dict of columns, records).

    With ``like``, the columns, kinds, bin edges and categories are the reference's, so
    the result merges with other windows profiled like it; columns absent from ``data``
    count as all missing and extra columns are left out. An unnamed array's columns are
    called ``"0"``, ``"1"``, … .

    >>> import numpy as np
    >>> ref = profile_frame({"x": np.arange(100.0)})
    >>> window = profile_frame({"x": np.array([5.0, 500.0])}, like=ref)
    >>> window.columns["x"].counts[-1]  # 500 is past the reference's last edge
    1
    """
    table = _table(data)
    columns: dict[str, ColumnProfile] = {}
    if like is None:
        for name, col in table.columns.items():
            if _is_numeric(col):
                columns[name] = _numeric(col, name, None, bins)
            else:
                columns[name] = _categorical(col, None, top)
        return ReferenceProfile(table.n_rows, columns)
    for name, ref in like.columns.items():
        present = table.columns.get(name)
        col = np.full(table.n_rows, None, dtype=object) if present is None else present
        if isinstance(ref, NumericProfile):
            columns[name] = _numeric(col, name, ref.edges, bins)
        else:
            categories = [k for k in ref.frequencies if k != OTHER]
            columns[name] = _categorical(col, categories, top)
    return ReferenceProfile(table.n_rows, columns)


# -- merging -----------------------------------------------------------------------------


def _merge_numeric(name: str, a: NumericProfile, b: NumericProfile) -> NumericProfile:
    if a.edges != b.edges:
        raise InvalidArgument(
            f"cannot merge profiles: column {name!r} has different bin edges",
            hint="profile every window with profile_frame(data, like=reference)",
        )
    counts = [x + y for x, y in zip(a.counts, b.counts, strict=True)]
    if not a.count or not b.count:
        only = a if a.count else b
        return NumericProfile(
            only.count,
            a.missing + b.missing,
            only.min,
            only.max,
            only.mean,
            only.variance,
            a.edges,
            counts,
        )
    assert a.mean is not None and b.mean is not None
    assert a.variance is not None and b.variance is not None
    assert a.min is not None and b.min is not None and a.max is not None and b.max is not None
    n = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * b.count / n
    m2 = a.variance * a.count + b.variance * b.count + delta * delta * a.count * b.count / n
    return NumericProfile(
        count=n,
        missing=a.missing + b.missing,
        min=min(a.min, b.min),
        max=max(a.max, b.max),
        mean=mean,
        variance=m2 / n,
        edges=a.edges,
        counts=counts,
    )


def _merge_categorical(
    a: CategoricalProfile, b: CategoricalProfile, top: int
) -> CategoricalProfile:
    freqs = dict(a.frequencies)
    for key, value in b.frequencies.items():
        freqs[key] = freqs.get(key, 0) + value
    return CategoricalProfile(a.count + b.count, a.missing + b.missing, _top(freqs, top))


def merge_profiles(
    first: ReferenceProfile, *others: ReferenceProfile, top: int = DEFAULT_TOP
) -> ReferenceProfile:
    """One profile for the rows of all the given ones (e.g. 24 hours → one day).

    Counts add exactly; mean and variance combine with the parallel variance formula.
    Categorical frequencies add; beyond ``top`` categories the rarest fold into
    ``__other__`` (exact when windows are profiled ``like`` one reference).

    >>> import numpy as np
    >>> ref = profile_frame({"x": np.arange(10.0)})
    >>> hours = [profile_frame({"x": [v]}, like=ref) for v in (1.0, 3.0)]
    >>> day = merge_profiles(*hours)
    >>> day.rows, day.columns["x"].mean
    (2, 2.0)
    """
    result = first
    for other in others:
        if list(result.columns) != list(other.columns):
            raise InvalidArgument(
                f"cannot merge profiles of different columns: {list(result.columns)} "
                f"and {list(other.columns)}",
                hint="profile every window with profile_frame(data, like=reference)",
            )
        columns: dict[str, ColumnProfile] = {}
        for name, a in result.columns.items():
            b = other.columns[name]
            if isinstance(a, NumericProfile) and isinstance(b, NumericProfile):
                columns[name] = _merge_numeric(name, a, b)
            elif isinstance(a, CategoricalProfile) and isinstance(b, CategoricalProfile):
                columns[name] = _merge_categorical(a, b, top)
            else:
                raise InvalidArgument(
                    f"cannot merge profiles: column {name!r} is {a.kind} in one and {b.kind} "
                    "in the other",
                    hint="profile every window with profile_frame(data, like=reference)",
                )
        result = ReferenceProfile(result.rows + other.rows, columns)
    return result
