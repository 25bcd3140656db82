"""Reading the prediction log: DuckDB over the Parquet segments of a model.

Segments are found through the index and the per-day manifests (see ``_layout``), fetched
into a local content-addressed cache (``GYRE_HOME/cache/segments/<digest>.parquet``: a
segment never changes, so a cached copy is never stale), and read with DuckDB's
``read_parquet([...], union_by_name=true)``. Nothing is read over the network by DuckDB
itself: the artifact store fetches, DuckDB reads local files.

Queries see compacted segments only; ``PredictionLog.compact()`` first to include what is
still in a spool.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gyre import config
from gyre.artifacts import ArtifactStore, BlobRef
from gyre.errors import InvalidArgument
from gyre.predictions._layout import Kind, day_of_ms, partitions_in

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

__all__ = ["Coverage", "feedback_coverage", "query", "query_frame"]

Moment = datetime | int | None
_BASE = ("request_id", "timestamp", "model", "version", "variant", "latency_ms")
_WORKERS = 8  # manifests and blobs fetched at once from remote stores
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of a window's predictions have ground truth.

    ``predictions`` in the window, ``labelled`` of them with a label, ``coverage`` the
    ratio (None without predictions). ``unknown_labels``: request ids labelled in the
    window for which no prediction of the model exists in the window or in the
    ``max_label_delay`` before it; they are counted here, never silently dropped.
    """

    predictions: int
    labelled: int
    coverage: float | None
    unknown_labels: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "predictions": self.predictions,
            "labelled": self.labelled,
            "coverage": self.coverage,
            "unknown_labels": self.unknown_labels,
        }


def query(
    artifacts: ArtifactStore,
    model: str,
    *,
    version: int | None = None,
    since: Moment = None,
    until: Moment = None,
    with_feedback: bool = True,
    cache_dir: str | Path | None = None,
) -> pa.Table:
    """The logged predictions of ``model`` (one ``version``, or all) with ``since <=
    timestamp < until``, oldest first, and, ``with_feedback``, the latest label for each
    (``label``, ``label_timestamp``; null where none came).

    ``since``/``until``: aware datetimes (naive ones are read as UTC), or milliseconds since
    the epoch; None leaves that end open. Columns: ``request_id``, ``timestamp``
    (timestamp[ms, UTC]), ``model``, ``version``, ``variant``, ``latency_ms``, then the
    ``in_*`` and ``out_*`` columns of every segment read (null where a segment lacks one).

    >>> table = query(store, "churn", since=datetime.now(UTC) - timedelta(hours=1))
    """
    window = _Window.of(since, until)
    reader = _Reader(artifacts, model, cache_dir)
    predictions = reader.files("predictions", version, window.first_day, window.last_day)
    labels = reader.files("feedback", None, window.first_day, None) if with_feedback else []
    if not predictions:
        return _empty(with_feedback)
    import duckdb

    where, params = window.where(version)
    sql = f"SELECT * FROM {_source(predictions, 'p', params)} WHERE {where}"
    if with_feedback:
        sql = _with_labels(sql, _source(labels, "f", params) if labels else None)
    sql += " ORDER BY timestamp, request_id, variant"
    with _connect(duckdb) as con:
        table = con.sql(sql, params=params).to_arrow_table()
    return _tidy(table, with_feedback)


def query_frame(
    artifacts: ArtifactStore,
    model: str,
    *,
    version: int | None = None,
    since: Moment = None,
    until: Moment = None,
    with_feedback: bool = True,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """:func:`query` as a pandas DataFrame (needs pandas)."""
    table = query(
        artifacts,
        model,
        version=version,
        since=since,
        until=until,
        with_feedback=with_feedback,
        cache_dir=cache_dir,
    )
    frame: pd.DataFrame = table.to_pandas()
    return frame


def feedback_coverage(
    artifacts: ArtifactStore,
    model: str,
    *,
    version: int | None = None,
    since: Moment = None,
    until: Moment = None,
    max_label_delay: timedelta = timedelta(days=30),
    cache_dir: str | Path | None = None,
) -> Coverage:
    """Labelled / total predictions of ``model`` in the window, and the labels given in the
    window that match no prediction (see :class:`Coverage`).

    >>> feedback_coverage(store, "churn", since=yesterday)
    Coverage(predictions=1200, labelled=900, coverage=0.75, unknown_labels=3)
    """
    window = _Window.of(since, until)
    reader = _Reader(artifacts, model, cache_dir)
    lookback = window.minus(max_label_delay)
    predictions = reader.files("predictions", None, lookback.first_day, window.last_day)
    labels = reader.files("feedback", None, lookback.first_day, None)
    if not predictions and not labels:
        return Coverage(0, 0, None, 0)
    in_window, params = window.where(version, prefix="w_")
    labelled_in_window, label_params = window.where(None, prefix="l_")
    near_window, near_params = lookback.where(None, prefix="n_")
    params |= label_params | near_params
    p_src = (
        f"SELECT request_id, timestamp, version FROM {_source(predictions, 'p', params)}"
        if predictions
        else "SELECT NULL::VARCHAR AS request_id, NULL::TIMESTAMPTZ AS timestamp, 0 AS version "
        "WHERE false"
    )
    f_src = (
        f"SELECT request_id, timestamp FROM {_source(labels, 'f', params)}"
        if labels
        else "SELECT NULL::VARCHAR AS request_id, NULL::TIMESTAMPTZ AS timestamp WHERE false"
    )
    sql = f"""
        WITH p AS ({p_src}),
             f AS ({f_src}),
             latest AS (SELECT request_id, max(timestamp) AS timestamp FROM f GROUP BY ALL),
             w AS (SELECT request_id FROM p WHERE {in_window})
        SELECT
          (SELECT count(*) FROM w),
          (SELECT count(*) FROM w WHERE request_id IN (SELECT request_id FROM f)),
          (SELECT count(*) FROM latest WHERE {labelled_in_window}
             AND request_id NOT IN (SELECT request_id FROM p WHERE {near_window}))
    """
    import duckdb

    with _connect(duckdb) as con:
        (row,) = con.sql(sql, params=params).fetchall()
    total, labelled, unknown = (int(v) for v in row)
    return Coverage(total, labelled, labelled / total if total else None, unknown)


# -- windows -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Window:
    since_ms: int | None
    until_ms: int | None

    @classmethod
    def of(cls, since: Moment, until: Moment) -> _Window:
        start, end = _to_ms(since, "since"), _to_ms(until, "until")
        if start is not None and end is not None and end <= start:
            raise InvalidArgument(
                f"until {_show(end)} is not after since {_show(start)}",
                hint="the window is since <= timestamp < until",
            )
        return cls(start, end)

    @property
    def first_day(self) -> date | None:
        return None if self.since_ms is None else day_of_ms(self.since_ms)

    @property
    def last_day(self) -> date | None:
        # until is exclusive: a window ending at midnight does not reach into that day.
        return None if self.until_ms is None else day_of_ms(self.until_ms - 1)

    def minus(self, delay: timedelta) -> _Window:
        if self.since_ms is None:
            return self
        return _Window(max(0, self.since_ms - int(delay.total_seconds() * 1000)), self.until_ms)

    def where(self, version: int | None, prefix: str = "") -> tuple[str, dict[str, Any]]:
        """A SQL condition on ``timestamp`` (and ``version``) and its parameters, named
        with ``prefix`` so that several conditions can share one statement."""
        clauses = ["true"]
        params: dict[str, Any] = {}
        if self.since_ms is not None:
            clauses.append(f"timestamp >= ${prefix}since")
            params[f"{prefix}since"] = _datetime(self.since_ms)
        if self.until_ms is not None:
            clauses.append(f"timestamp < ${prefix}until")
            params[f"{prefix}until"] = _datetime(self.until_ms)
        if version is not None:
            clauses.append(f"version = ${prefix}version")
            params[f"{prefix}version"] = version
        return " AND ".join(clauses), params


def _to_ms(value: Moment, name: str) -> int | None:
    if value is None:
        return None
    # nothing is logged before 1970 (times are milliseconds since): earlier means from then
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return max(0, int(aware.timestamp() * 1000))
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    raise InvalidArgument(
        f"{name} {value!r} is not a datetime or milliseconds since the epoch",
        hint="e.g. datetime.now(UTC) - timedelta(hours=1)",
    )


def _datetime(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _show(ms: int) -> str:
    return _datetime(ms).isoformat()


# -- fetching segments ---------------------------------------------------------------------


class _Reader:
    """Finds a model's segments and fetches them into the local cache."""

    def __init__(self, store: ArtifactStore, model: str, cache_dir: str | Path | None) -> None:
        self.store = store
        self.model = model
        self.cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    def files(
        self, kind: Kind, version: int | None, first: date | None, last: date | None
    ) -> list[str]:
        partitions = partitions_in(
            self.store, kind, self.model, version=version, first=first, last=last
        )
        refs: dict[str, BlobRef] = {}
        for manifest in _map(self.store.read_manifest, [p.scope for p in partitions]):
            for ref in manifest.values():
                if ref.size > 0:
                    refs[ref.digest] = ref
        return sorted(_map(self._cached, list(refs.values())))

    def _cached(self, ref: BlobRef) -> str:
        target = self.cache / f"{ref.digest}.parquet"
        try:
            if target.stat().st_size == ref.size:
                return str(target)
        except FileNotFoundError:
            pass
        self.cache.mkdir(parents=True, exist_ok=True)
        partial = self.cache / f".{ref.digest}.{uuid.uuid4().hex[:12]}.part"
        try:
            with open(partial, "xb") as out, self.store.open_blob(ref.digest) as src:
                shutil.copyfileobj(src, out, _CHUNK)  # the stream verifies the digest at EOF
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return str(target)


def default_cache_dir() -> Path:
    return config.gyre_home() / "cache" / "segments"


def _map(fn: Any, items: list[Any]) -> Iterable[Any]:
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(_WORKERS, len(items))) as pool:
        return list(pool.map(fn, items))


# -- SQL -----------------------------------------------------------------------------------


def _connect(duckdb: Any) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        # Only local files are read; never fetch extensions (there may be no network).
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
    except BaseException:
        con.close()
        raise
    return con  # type: ignore[no-any-return]


def _source(files: list[str], name: str, params: dict[str, Any]) -> str:
    """SQL reading the Parquet ``files`` as one table, its parameters added to ``params``.

    ``union_by_name`` lines columns up by name and widens numbers; a column whose types
    cannot be reconciled (a number in one segment, a list or a string in another) is read
    as text instead: strings as they are, anything else as JSON, as compaction itself
    stores a column of mixed values. Only the files' footers are read to find out."""
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(f) for f in files]
    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for f in schema:
            types.setdefault(f.name, []).append(f.type)
    clashing = sorted(c for c, ts in types.items() if not _compatible(ts))
    if not clashing:
        params[name] = files
        return f"read_parquet(${name}, union_by_name=true)"
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for path, schema in zip(files, schemas, strict=True):
        key = tuple((c, str(schema.field(c).type)) for c in clashing if c in schema.names)
        groups.setdefault(key, []).append(path)
    selects = []
    for i, (key, group) in enumerate(sorted(groups.items())):
        params[f"{name}{i}"] = group
        as_json = [_ident(c) for c, t in key if t not in ("string", "large_string")]
        replace = ", ".join(f"to_json({c})::VARCHAR AS {c}" for c in as_json)
        selects.append(
            f"SELECT *{f' REPLACE ({replace})' if replace else ''} "
            f"FROM read_parquet(${name}{i}, union_by_name=true)"
        )
    return "(" + " UNION ALL BY NAME ".join(selects) + ")"


def _compatible(types: list[pa.DataType]) -> bool:
    import pyarrow as pa

    def numeric(t: pa.DataType) -> bool:
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t))

    def numeric_list(t: pa.DataType) -> bool:
        return bool(pa.types.is_list(t) or pa.types.is_large_list(t)) and numeric(t.value_type)

    distinct = set(types)
    return (
        len(distinct) == 1
        or all(numeric(t) for t in distinct)
        or all(numeric_list(t) for t in distinct)
        or all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in distinct)
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _with_labels(predictions_sql: str, labels_source: str | None) -> str:
    if labels_source is None:
        return (
            f"SELECT *, NULL::VARCHAR AS label, NULL::TIMESTAMPTZ AS label_timestamp "
            f"FROM ({predictions_sql})"
        )
    return f"""
        WITH p AS ({predictions_sql}),
             f AS (
               SELECT request_id, label, timestamp AS label_timestamp,
                      row_number() OVER (PARTITION BY request_id
                                         ORDER BY timestamp DESC, _arrival DESC) AS n
               FROM {labels_source}
             )
        SELECT p.*, f.label, f.label_timestamp
        FROM p LEFT JOIN f ON p.request_id = f.request_id AND f.n = 1
    """


def _tidy(table: pa.Table, with_feedback: bool) -> pa.Table:
    """Columns in a stable order and timestamps back to ms in UTC."""
    import pyarrow as pa

    names = table.column_names
    features = sorted(n for n in names if n.startswith("in_"))
    outputs = sorted(n for n in names if n.startswith("out_"))
    tail = ["label", "label_timestamp"] if with_feedback else []
    order = [n for n in _BASE if n in names] + features + outputs + tail
    table = table.select(order)
    for name in ("timestamp", "label_timestamp"):
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, table.column(name).cast(pa.timestamp("ms", tz="UTC")))
    return table


def _empty(with_feedback: bool) -> pa.Table:
    import pyarrow as pa

    fields = [
        pa.field("request_id", pa.string()),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("model", pa.string()),
        pa.field("version", pa.int64()),
        pa.field("variant", pa.string()),
        pa.field("latency_ms", pa.float64()),
    ]
    if with_feedback:
        fields += [
            pa.field("label", pa.string()),
            pa.field("label_timestamp", pa.timestamp("ms", tz="UTC")),
        ]
    return pa.schema(fields).empty_table()
