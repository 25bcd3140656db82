"""The prediction log: what a model was asked, what it answered, and what turned out true.

A serving process appends :class:`PredictionRecord` s (one row each),
:class:`PredictionBatch` es (one request's rows, column-wise, numpy arrays as they are) or
:class:`PredictionGroup` s (several requests' rows, joined) to a :class:`PredictionLog`;
they are on disk (fsync'd) within ``sync_interval_ms`` of the append returning, then
compacted into Parquet segments in an artifact store, partitioned by model, version and
UTC day (a batch or group becomes one row per row). Labels that arrive later are logged
with :meth:`PredictionLog.append_feedback` and joined at query time. :func:`query` reads
the segments with DuckDB; :func:`sync` copies an edge's log into a central store;
:func:`compact_folder` compacts a spool folder from any process.

    >>> from gyre.predictions import PredictionBatch, PredictionLog, PredictionRecord, query
    >>> with PredictionLog(spool_dir, store) as log:  # doctest: +SKIP
    ...     log.append([PredictionRecord("r1", now_ms, "churn", 3, {"age": 42},
    ...                                  {"prediction": 1}, latency_ms=1.2)])
    ...     log.append([PredictionBatch("r2", now_ms, "churn", 3, np.array([[41], [43]]),
    ...                                 {"prediction": np.array([0, 1])}, latency_ms=1.9,
    ...                                 columns=["age"])])  # rows r2:0 and r2:1
    >>> query(store, "churn", since=now_ms - 3_600_000).num_rows  # doctest: +SKIP
    3

See ``docs/predictions.md`` for the durability contract and the layout in the store.
"""

from gyre.predictions._log import Compaction, PredictionLog, compact_folder
from gyre.predictions._query import Coverage, feedback_coverage, query, query_frame
from gyre.predictions._record import (
    FeedbackResult,
    PredictionBatch,
    PredictionGroup,
    PredictionRecord,
)
from gyre.predictions._sync import SyncReport, sync

__all__ = [
    "Compaction",
    "Coverage",
    "FeedbackResult",
    "PredictionBatch",
    "PredictionGroup",
    "PredictionLog",
    "PredictionRecord",
    "SyncReport",
    "compact_folder",
    "feedback_coverage",
    "query",
    "query_frame",
    "sync",
]
