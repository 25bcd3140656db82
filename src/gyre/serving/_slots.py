"""What the server serves: a slot per model name, pointing at the deployed version(s).

* :class:`ServedModel`: a loaded model under a name and version (what ``create_app`` takes).
* :class:`ModelSpec`: the same, not loaded yet (a local package folder); the app loads it
  at start-up, once per worker process.
* :class:`Deployment`: one served version at run time: the model, its micro-batcher and
  predict thread, and the per-request validation and per-batch prediction.
* :class:`ModelSlot`: the name → deployment mapping a request resolves *once*, at its
  start. :meth:`ModelSlot.deploy` swaps the primary version atomically: requests already
  holding the old deployment finish on it (its queue drains before it stops), new ones go
  to the new one. A slot may also hold a *challenger* deployment (:class:`Challenger`):
  a canary gets a share of the requests (:meth:`ModelSlot.pick`, by a hash of the request
  id), a shadow gets a copy of every request and its answers are only logged. Reloading
  on an alias move (:mod:`gyre.serving._reload`) is a :meth:`ModelSlot.deploy` of the
  version the alias points to now, into the role the alias serves.

Versions are strings on the wire (``X-Gyre-Model-Version``, OIP ``model_version``) and
whole numbers in the prediction log: :func:`log_version` maps one to the other. A registry
version is its number; a package served from a folder, a run or a bundle without a
registry version is versioned by its digest (:func:`digest_version`), unless a version is
given explicitly.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from gyre.errors import BackendUnavailable, GyreError, InvalidArgument, NotFound
from gyre.models import ColumnSchema, TensorSchema
from gyre.serving._batcher import Job, MicroBatcher

if TYPE_CHECKING:
    from gyre.models import Model
    from gyre.registry import Registry
    from gyre.serving._telemetry import Telemetry

__all__ = [
    "Batching",
    "Challenger",
    "Deployment",
    "ModelSlot",
    "ModelSpec",
    "NumericInput",
    "Prepared",
    "ServedModel",
    "digest_version",
    "in_canary",
    "log_version",
    "resolve_model",
]

logger = logging.getLogger("gyre.serving")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
PROBA = "proba"


@dataclass(frozen=True, slots=True)
class Batching:
    """Micro-batching of one model: see :mod:`gyre.serving._batcher`.

    ``max_batch_size=1`` turns coalescing off (every request is its own predict call).
    """

    max_batch_size: int = 64
    max_latency_ms: float = 2.0
    max_queue_rows: int = 4096


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument(
            f"model name {name!r} cannot be served",
            hint="use letters, digits, '_', '.' and '-' (it appears in URLs)",
        )
    return name


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A loaded model served as ``name`` at ``version``.

    >>> from gyre.models import load_model
    >>> ServedModel("churn", "3", load_model("churn-model"))  # doctest: +SKIP
    """

    name: str
    version: str
    model: Model
    source: str = ""
    batching: Batching = field(default_factory=Batching)

    def __post_init__(self) -> None:
        check_name(self.name)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model package folder to load at start-up as ``name`` at ``version``."""

    name: str
    version: str
    path: str
    source: str = ""
    batching: Batching = field(default_factory=Batching)

    def load(self) -> ServedModel:
        from gyre.models import load_model

        return ServedModel(
            self.name, self.version, load_model(self.path), self.source, self.batching
        )


Mode = Literal["canary", "shadow"]


@dataclass(frozen=True, slots=True)
class Challenger:
    """A second version served under the same name as a primary model.

    ``mode="canary"``: ``percent`` of the requests (0-100, chosen by a hash of the request
    id, see :func:`in_canary`) are answered by the challenger. ``mode="shadow"``: every
    request is also sent to the challenger after the primary answered; its answers go to
    the prediction log (variant ``shadow``) and are never returned.

    >>> Challenger(ServedModel("churn", "4", model), "canary", 10)  # doctest: +SKIP
    """

    model: ServedModel | ModelSpec
    mode: Mode = "canary"
    percent: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("canary", "shadow"):
            raise InvalidArgument(
                f"challenger mode {self.mode!r} is not 'canary' or 'shadow'",
                hint="route a share of the traffic (canary) or mirror it (shadow)",
            )
        if self.mode == "canary" and not 0 <= self.percent <= 100:
            raise InvalidArgument(
                f"canary percent {self.percent!r} is not between 0 and 100",
                hint="e.g. --canary challenger:10 sends 10% of the requests to it",
            )


def in_canary(request_id: str, percent: float) -> bool:
    """Whether the request ``request_id`` goes to a canary that gets ``percent`` % of them.

    Deterministic: a hash of the id (blake2b) picks one of 10,000 buckets, so a client that
    retries with the same ``X-Request-ID`` lands on the same version, every worker agrees,
    and random ids split the traffic in the stated proportion (to 0.01 %).
    """
    if percent <= 0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 < round(percent * 100)


def digest_version(sha256_hex: str) -> str:
    """The version of a package that has no registry version: the first 48 bits of its
    manifest's sha256, in decimal (at most 15 digits). Identical packages get the same
    version; a whole number, so the prediction log can partition by it."""
    return str(int(sha256_hex[:12], 16))


def log_version(version: str) -> int:
    """The whole number the prediction log records for a served ``version`` string.

    Decimal versions (registry versions, :func:`digest_version`) are themselves; any other
    label (``ServedModel("churn", "v2-beta", ...)``) is logged as the number
    :func:`digest_version` makes of the sha256 of the label.
    """
    if version.isascii() and version.isdigit():
        return int(version)
    return int(digest_version(hashlib.sha256(version.encode()).hexdigest()))


def _package_digest(path: Path) -> str:
    from gyre.models._manifest import MANIFEST_FILE

    manifest = path / MANIFEST_FILE
    if not manifest.is_file():
        raise NotFound(
            f"no model package at {str(path)!r} ({MANIFEST_FILE} not found)",
            hint="serve a models:/, runs:/ URI or a folder save_model wrote",
        )
    # The manifest records every file's sha256, so its own digest names the exact package.
    return hashlib.sha256(manifest.read_bytes()).hexdigest()


def _check_version(version: int | None, uri: str) -> str | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InvalidArgument(
            f"version {version!r} for {uri!r} is not a whole number >= 0",
            hint="e.g. --version 7",
        )
    return str(version)


def resolve_bundle(path: str | Path, *, name: str | None = None,
                   version: int | None = None) -> ModelSpec:  # fmt: skip
    """A ``.gyre`` bundle file extracted (verified) into the local cache, to serve alone:
    no tracking server, no network. Served as the name and version the bundle records
    (a bundle built from the registry records both), else as the file's stem at
    :func:`digest_version` of its package."""
    from gyre.models._bundle import extract_bundle, read_bundle_info

    file = Path(path)
    if file.is_dir():
        raise InvalidArgument(
            f"bundle {str(file)!r} is a folder; --bundle takes a .gyre file",
            hint="serve a package folder as a model URI: gyre serve ./folder",
        )
    if not file.is_file():
        raise NotFound(
            f"bundle {str(file)!r} does not exist",
            hint="build one with `gyre models build URI --target bundle`",
        )
    info = read_bundle_info(file)
    folder = extract_bundle(file)
    chosen = _check_version(version, str(file))
    if chosen is None:
        chosen = (
            str(info.model_version)
            if info.model_version is not None
            else digest_version(info.manifest_sha256)
        )
    served_name = check_name(name or info.model_name or file.name.split(".", 1)[0])
    return ModelSpec(served_name, chosen, str(folder), str(file))


def resolve_model(
    uri: str,
    *,
    name: str | None = None,
    registry: Registry | None = None,
    version: int | None = None,
) -> ModelSpec:
    """Where ``uri`` is on this machine, and the name and version to serve it as.

    ``models:/churn@champion`` is served as ``churn`` at the version the alias points to;
    a ``.gyre`` bundle as :func:`resolve_bundle` says; ``runs:/<id>/model`` and a local
    folder as the folder's name, at ``version`` if given, else at :func:`digest_version` of
    the package (identical bytes get the same version).
    """
    from gyre.registry import Registry, parse_model_uri

    ref = parse_model_uri(uri)
    if ref.kind == "path" and Path(ref.path or "").is_file():
        return resolve_bundle(ref.path or "", name=name, version=version)
    reg = registry or Registry()
    if ref.kind == "registry":
        if version is not None:
            raise InvalidArgument(
                f"{uri!r} is served at its registry version; a version cannot be given",
                hint="drop --version, or name the version: models:/NAME/VERSION",
            )
        mv = reg.resolve_version(ref)
        path = reg.download(mv.source)
        return ModelSpec(check_name(name or mv.name), str(mv.version), str(path), uri)
    path = reg.download(uri)
    default = (ref.artifact_path or "").rstrip("/").rsplit("/", 1)[-1] or Path(path).name
    if ref.kind == "path":
        default = Path(ref.path or path).resolve().name
    chosen = _check_version(version, uri) or digest_version(_package_digest(Path(path)))
    return ModelSpec(check_name(name or default), chosen, str(path), uri)


# -- run time ----------------------------------------------------------------------------


@dataclass(slots=True)
class Prepared:
    """A request's input, ready to batch.

    Either checked against the signature already (``raw_key`` None), or only checked for
    shape (``raw_key`` says which other raw inputs it merges with exactly): the batch is
    then validated once, as a whole, and member by member only if that fails.

    ``matrix``: set by the predict that turned raw records or columns into the model's
    float64 matrix (see :class:`NumericInput`): this request's rows of it and the names of
    its columns, which the prediction log takes instead of reading the records again.

    ``answered``: set by the predict call that answered this request together with others:
    that call's :class:`Answered` and this request's place in it.
    """

    data: Any
    rows: int
    mergeable: bool = True
    raw_key: tuple[Any, ...] | None = None
    matrix: tuple[NDArray[Any], list[str]] | None = None
    answered: tuple[Answered, int] | None = None


Outputs = dict[str, NDArray[Any]]


@dataclass(slots=True, eq=False)
class Answered:
    """What one predict call of several requests saw and returned, whole: its input as the
    prediction log takes it (the matrix the fast path made, with its column names, or the
    requests' inputs joined; ``names`` None then) and its outputs, one row per input row.
    When every request of the call is logged at once, in order, the log takes these as they
    are instead of joining the requests' rows again (see ``_app._log_group``)."""

    inputs: Any
    names: list[str] | None
    outputs: Outputs
    requests: int


class Retired(Exception):
    """The deployment a request resolved was swapped out before the request was queued."""


def _rows_of(value: Any) -> int:
    shape = getattr(value, "shape", None)
    if shape:
        return int(shape[0])
    try:
        return len(value)
    except TypeError:
        return 1


def _merge(parts: Sequence[Any]) -> Any:
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    if isinstance(first, list):
        return [item for part in parts for item in part]
    return {
        key: (
            [v for p in parts for v in p[key]]
            if isinstance(first[key], list)
            else np.concatenate([p[key] for p in parts])
        )
        for key in first
    }


def _raw_key(data: Any) -> tuple[tuple[Any, ...] | None, int]:
    """How ``data`` merges with other unchecked inputs, and its rows (None: it does not).

    Inputs merge only with inputs of the same structure (dtype and trailing shape of an
    array, the key set of records, names and kinds of columns), so that checking the
    merged batch accepts and rejects exactly what checking each input alone would.
    """
    if isinstance(data, np.ndarray):
        if data.ndim >= 1 and data.shape[0] > 0 and data.dtype.kind in "biufO":
            return ("array", data.dtype.str, data.shape[1:]), int(data.shape[0])
        return None, 0
    if isinstance(data, list):
        if not data:
            return None, 0
        if all(isinstance(r, dict) for r in data):
            keys: set[str] = set()
            for record in data:
                keys.update(record)
            return ("records", frozenset(keys)), len(data)
        return None, 0
    if isinstance(data, dict) and data:
        kinds = []
        length = -1
        for name, value in data.items():
            if isinstance(value, list):
                kind: Any = "list"
                n = len(value)
            elif isinstance(value, np.ndarray) and value.ndim >= 1:
                kind = (value.dtype.str, value.shape[1:])
                n = value.shape[0]
            else:
                return None, 0
            if n == 0 or length not in (-1, n):
                return None, 0
            length = n
            kinds.append((name, kind))
        return ("columns", tuple(sorted(kinds))), length
    return None, 0


_NUMBERS = frozenset({float, int})
_FLOATS = frozenset({float})
_F64 = np.dtype(np.float64)


class NumericInput:
    """The batch as the model takes it, built in a few vectorised steps, for models whose
    input is a float64 matrix: a column signature of float64 columns, or one float64
    tensor of shape ``(-1, n)``, served by a flavor that takes an ndarray.

    :meth:`convert` turns a 2-D float64 array, a list of records or a dict of columns of
    plain JSON numbers into exactly what ``Signature.conform`` and ``Model.prepare_input``
    make of it (the same values, in the signature's column order), or returns None for
    anything else: strings, bools, nulls, NaN where the signature allows none, a missing
    column, another dtype. The caller then takes the checked path, which accepts or
    rejects it with the same answer or error as always.

    What the model gets: the ndarray when the flavor is scikit-learn and the estimator
    was fitted without feature names (a DataFrame only makes scikit-learn warn then), a
    DataFrame of the signature's columns built from that one array otherwise (no
    per-column copies): the same values, names and dtypes as the checked path gives.
    """

    def __init__(self, names: list[str] | None, width: int, nullable: bool, frame: bool) -> None:
        self.names = names  # None: a tensor (records keep the order their keys come in)
        self.width = width
        self.nullable = nullable
        self.frame = frame

    @classmethod
    def of(cls, model: Model) -> NumericInput | None:
        """The fast path for ``model``, or None when its input is not a float64 matrix."""
        signature = model.signature
        if signature is None:
            return None
        inputs = signature.inputs
        if isinstance(inputs, ColumnSchema):
            columns = inputs.columns
            if model.flavor != "sklearn" or not columns:
                return None
            if any(c.dtype != "float64" or c.optional for c in columns):
                return None
            names = [c.name for c in columns]
            fitted = getattr(model.raw, "feature_names_in_", None)
            return cls(names, len(names), any(c.nullable for c in columns), fitted is not None)
        if isinstance(inputs, TensorSchema) and len(inputs.tensors) == 1:
            spec = inputs.tensors[0]
            if spec.dtype != "float64" or len(spec.shape) != 2 or spec.shape[1] < 1:
                return None
            return cls(None, spec.shape[1], spec.nullable, False)
        return None

    def convert(self, data: Any) -> tuple[Any, NDArray[Any], list[str] | None] | None:
        """What the model takes for ``data``, the float64 matrix it is made of and, when
        ``data`` named exactly the matrix's columns (records or columns holding no other
        keys), their names; None when ``data`` needs the checked path."""
        found = self._matrix(data)
        if found is None:
            return None
        arr, names = found
        if arr.shape[0] == 0:
            return None
        if not self.nullable and np.isnan(arr).any():
            return None  # the checked path names the first missing value
        if self.frame:
            import pandas as pd

            return pd.DataFrame(arr, columns=self.names, copy=False), arr, names
        return arr, arr, names

    def _matrix(self, data: Any) -> tuple[NDArray[Any], list[str] | None] | None:
        if isinstance(data, np.ndarray):
            if data.dtype == _F64 and data.ndim == 2 and data.shape[1] == self.width:
                return data, None
            return None
        if isinstance(data, list):
            names = self.names
            if names is None:  # a tensor: columns in the records' key order, as conform
                if not data or not isinstance(data[0], dict):
                    return None
                names = list(data[0])
                if len(names) != self.width:
                    return None
                try:
                    if any(list(r) != names for r in data):
                        return None
                except TypeError:  # not all records
                    return None
            try:
                get = operator.itemgetter(*names)
                rows = [get(r) for r in data]
            except (KeyError, TypeError):
                return None
            if self.width == 1:
                rows = [(value,) for value in rows]
            arr = _numbers(rows, len(data))
            if arr is None:
                return None
            width = len(names)
            return arr, names if all(len(r) == width for r in data) else None
        if isinstance(data, dict) and self.names is not None:
            try:
                columns = [data[n] for n in self.names]
            except KeyError:
                return None
            if not all(type(c) is list for c in columns):
                return None
            arr = _numbers(columns, len(columns[0]) if columns else 0)
            if arr is None or arr.shape != (len(self.names), len(columns[0])):
                return None
            return arr.T, self.names if len(data) == len(self.names) else None
        return None


def _numbers(rows: list[Any], n: int) -> NDArray[Any] | None:
    """``rows`` (lists or tuples of equal length) as float64, when every value is a JSON
    number (``float`` or ``int``; bools and strings are not); None otherwise."""
    if any(type(row) is not list and type(row) is not tuple for row in rows) or not n:
        return None
    kinds = set(map(type, itertools.chain.from_iterable(rows)))
    if not kinds <= _NUMBERS:
        return None
    if kinds == _FLOATS:  # floats alone (what clients send): one pass, no type discovery
        width = len(rows[0])
        if not width or any(len(row) != width for row in rows):
            return None  # ragged, or no columns: the checked path says what is wrong
        values = itertools.chain.from_iterable(rows)
        return np.fromiter(values, np.float64, len(rows) * width).reshape(len(rows), width)
    try:
        raw = np.array(rows)
    except (OverflowError, ValueError):
        return None
    # ints alone make int64 (as the checked path does per column), with floats float64;
    # anything else (ragged rows, ints past int64) is left to the checked path
    if raw.ndim != 2 or raw.dtype not in (_F64, np.dtype(np.int64)):
        return None
    return raw.astype(np.float64, copy=False)


def _shape_key(data: Any) -> Any:
    if isinstance(data, np.ndarray):
        return (data.dtype.str, data.shape[1:])
    if isinstance(data, dict):
        return tuple(sorted(data))
    return id(data)  # never merged


def _named(value: Any) -> Outputs:
    if isinstance(value, dict):
        return {str(k): np.asarray(v) for k, v in value.items()}
    to_numpy = getattr(value, "to_numpy", None)  # a pandas Series or DataFrame
    if callable(to_numpy):
        return {"predict": np.asarray(to_numpy())}
    return {"predict": np.asarray(value)}


def _check_rows(outputs: Outputs, rows: int, *, whole: bool = False) -> None:
    """ValueError unless every output has one row per input row (``whole``: or is 0-d, one
    answer for all of them, which a lone request may have but a batch cannot split)."""
    for name, arr in outputs.items():
        if (arr.ndim == 0 and not whole) or (arr.ndim and arr.shape[0] != rows):
            raise ValueError(
                f"output {name!r} has shape {arr.shape}, not one row per input row ({rows})"
            )


def _split(outputs: Outputs, rows: Sequence[int]) -> list[Outputs]:
    _check_rows(outputs, sum(rows))
    out: list[Outputs] = []
    start = 0
    for n in rows:
        out.append({name: arr[start : start + n] for name, arr in outputs.items()})
        start += n
    return out


class Deployment:
    """One version of a model being served: validation, batching, prediction."""

    def __init__(self, served: ServedModel, telemetry: Telemetry | None = None) -> None:
        self.name = served.name
        self.version = served.version
        self.model = served.model
        self.source = served.source
        self.signature = served.model.signature
        task = served.model.task
        self.classes: list[Any] | None = list(task.classes) if task.classes is not None else None
        self.has_proba = bool(task.has_predict_proba)
        # the OIP output parameters of every answer (the class order of probabilities)
        self.output_parameters: dict[str, dict[str, Any]] = (
            {"predict_proba": {"classes": self.classes}} if self.classes else {}
        )
        inputs = self.signature.inputs if self.signature is not None else None
        self.column_names: list[str] | None = (
            [c.name for c in inputs.columns] if isinstance(inputs, ColumnSchema) else None
        )
        self._required = frozenset(
            c.name for c in inputs.columns if not c.optional
        ) if isinstance(inputs, ColumnSchema) else frozenset()  # fmt: skip
        self.log_version = log_version(self.version)  # what the prediction log records
        self.numeric = NumericInput.of(served.model)
        batching = served.batching
        if self.signature is None:  # unchecked input cannot be merged safely
            batching = Batching(1, 0.0, batching.max_queue_rows)
        self._telemetry = telemetry
        self.batcher: MicroBatcher[Prepared] = MicroBatcher(
            self._run_batch,
            name=f"{self.name}-{self.version}",
            label=f"model {self.name!r} version {self.version}",
            max_batch_size=batching.max_batch_size,
            max_latency_ms=batching.max_latency_ms,
            max_queue_rows=batching.max_queue_rows,
            # a python-flavor model is code of its own, which may sleep or wait on I/O
            # (which CPU time does not show): never predicted on the event loop
            inline_below_ms=0.0 if served.model.flavor == "python" else 1.0,
            on_batch=self._observe_batch,
            on_queue=self._observe_queue,
        )
        self.output_shapes: dict[str, tuple[str, list[int]]] = {}
        self.ready = False
        self.retired = False

    def __repr__(self) -> str:
        return f"Deployment({self.name!r}, version={self.version!r})"

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, *, strict: bool = False) -> None:
        """Start the batcher and predict the input example once. ``strict``: a model that
        fails on its own input example is not started (the error is raised); otherwise
        that is only logged."""
        self.batcher.start()
        try:
            failure = await self.batcher.warm(self._warm_up)
            if strict and failure is not None:
                raise GyreError(
                    f"model {self.name!r} version {self.version} failed to predict its own "
                    f"input example ({type(failure).__name__}: {failure})",
                    hint="fix the model and register a new version",
                ) from failure
        except BaseException:
            await self.stop()
            raise
        self.ready = True

    async def stop(self) -> None:
        self.retired = True
        self.ready = False
        await self.batcher.stop()

    def _warm_up(self) -> Exception | None:
        """Predict the saved input example once: loads lazy state, learns output shapes."""
        try:
            example = self.model.input_example
            if example is None:
                return None
            outputs = _named(self.model.predict(example))
        except Exception as exc:
            logger.warning(
                "model %r version %s failed to predict its own input example",
                self.name,
                self.version,
                exc_info=True,
            )
            return exc
        from gyre.serving._oip import datatype_of, output_array

        for key, arr in outputs.items():
            arr = output_array(arr)
            self.output_shapes[key] = (datatype_of(arr.dtype), [-1, *arr.shape[1:]])
        return None

    # -- per request --------------------------------------------------------------------

    def admit(self, data: Any) -> Prepared:
        """``data`` as a batch member: only shape-checked when it can be validated with its
        batch (see :class:`Prepared`), fully checked now otherwise (SchemaMismatch)."""
        if self.signature is not None and self.batcher.max_batch_size > 1:
            key, rows = _raw_key(data)
            if key is not None and self._plausible(key):
                return Prepared(data, rows, raw_key=key)
        return self.prepare(data)

    def _plausible(self, key: tuple[Any, ...]) -> bool:
        """Cheap structural checks, so an obviously wrong input never joins a batch."""
        if self.column_names is None:
            return True
        if key[0] == "array":
            return len(key[2]) == 1 and key[2][0] == len(self.column_names)
        names = key[1] if key[0] == "records" else {name for name, _ in key[1]}
        return self._required <= names

    def prepare(self, data: Any) -> Prepared:
        """``data`` checked against the signature (SchemaMismatch naming column and row)."""
        if self.signature is None:
            return Prepared(data, _rows_of(data), mergeable=False)
        conformed = self.signature.conform(data)
        if isinstance(conformed, np.ndarray):
            return Prepared(conformed, int(conformed.shape[0]))
        if isinstance(conformed, dict):
            rows = {int(arr.shape[0]) for arr in conformed.values()}
            if len(rows) != 1:
                raise InvalidArgument(
                    f"input tensors have different numbers of rows: "
                    f"{ {k: int(v.shape[0]) for k, v in conformed.items()} }",
                    hint="send the same number of rows in every input",
                )
            return Prepared(conformed, rows.pop())
        return Prepared(conformed.columns, conformed.n_rows)

    async def predict(self, prepared: Prepared, request_id: str, *, proba: bool) -> Outputs:
        """Queue ``prepared`` for the next batch and wait for its outputs."""
        if self.retired:
            raise Retired
        options = frozenset({PROBA}) if proba else frozenset()
        future = self.batcher.submit(prepared, prepared.rows, request_id, options)
        try:
            result: Outputs = await future
        except asyncio.CancelledError:  # timed out or went away: give its place back now
            self.batcher.forget_cancelled()
            raise
        return result

    # -- per batch (predict thread) -----------------------------------------------------

    def _predict(
        self, data: Any, proba: bool, jobs: Sequence[Job[Prepared]] = ()
    ) -> tuple[Outputs, tuple[NDArray[Any], list[str]] | None]:
        """The outputs for ``data``, the merged input of ``jobs``, and the matrix the fast
        path made of raw records or columns with its column names (None: it made none);
        each job is given its rows of that matrix."""
        model = self.model
        fast = self.numeric.convert(data) if self.numeric is not None else None
        if fast is not None:  # checked in a few vectorised steps (see NumericInput)
            x, matrix, names = fast
            outputs = _named(model.predict(x, checked=True))
            if proba:
                outputs["predict_proba"] = np.asarray(model.predict_proba(x, checked=True))
            if names is None:
                return outputs, None
            start = 0
            for job in jobs:
                job.payload.matrix = (matrix[start : start + job.rows], names)
                start += job.rows
            return outputs, (matrix, names)
        outputs = _named(model.predict(data))
        if proba:
            outputs["predict_proba"] = np.asarray(model.predict_proba(data))
        return outputs, None

    def _run_one(self, job: Job[Prepared]) -> Outputs | GyreError:
        try:
            outputs, _ = self._predict(job.payload.data, PROBA in job.options, (job,))
            if self.signature is not None:  # (without one, a dict's rows are not known)
                _check_rows(outputs, job.rows, whole=True)
            return outputs
        except InvalidArgument as exc:
            if job.payload.raw_key is not None and self.signature is not None:
                try:  # was it the input (a 400 for this request) or the model?
                    self.signature.conform(job.payload.data)
                except InvalidArgument as invalid:
                    return invalid
            return self._failed(job, exc)
        except Exception as exc:
            return self._failed(job, exc)

    def _failed(self, job: Job[Prepared], exc: Exception) -> GyreError:
        logger.error(
            "predict failed for request %s (model %r version %s)",
            job.request_id,
            self.name,
            self.version,
            exc_info=exc,
            extra={"request_id": job.request_id, "model": self.name, "version": self.version},
        )
        return GyreError(
            f"model {self.name!r} version {self.version} failed on request "
            f"{job.request_id} ({type(exc).__name__})",
            hint="the server log has the details under this request id",
        )

    def _run_batch(self, jobs: list[Job[Prepared]]) -> list[Outputs | GyreError]:
        """One predict call per group of exactly mergeable jobs; failures isolated."""
        outcomes: list[Outputs | GyreError | None] = [None] * len(jobs)
        groups: dict[Any, list[int]] = {}
        for i, job in enumerate(jobs):
            key = job.payload.raw_key
            if key is None:
                key = ("checked", type(job.payload.data).__name__, _shape_key(job.payload.data))
            groups.setdefault(key, []).append(i)
        for key, members in groups.items():
            self._run_group([jobs[i] for i in members], raw=key[0] != "checked", into=outcomes,
                            at=members)  # fmt: skip
        return [o if o is not None else GyreError("no outcome") for o in outcomes]

    def _run_group(
        self,
        jobs: list[Job[Prepared]],
        *,
        raw: bool,
        into: list[Outputs | GyreError | None],
        at: list[int],
    ) -> None:
        if len(jobs) == 1:
            into[at[0]] = self._run_one(jobs[0])
            return
        proba = any(PROBA in job.options for job in jobs)
        try:
            merged = _merge([job.payload.data for job in jobs])
            outputs, seen = self._predict(merged, proba, jobs)
            parts = _split(outputs, [job.rows for job in jobs])
            logged, names = (merged, None) if seen is None else seen
            answered = Answered(logged, names, outputs, len(jobs))
            for place, (i, part, job) in enumerate(zip(at, parts, jobs, strict=True)):
                into[i] = part
                job.payload.answered = (answered, place)
            return
        except InvalidArgument:
            if not raw:
                pass  # checked input: the model raised it; isolate below
            else:
                self._check_members(jobs, into, at)
                return
        except Exception:
            pass
        # Someone in the group broke the call: find out who, so only they fail.
        logger.warning(
            "a batch of %d requests failed; predicting them one by one",
            len(jobs),
            extra={"model": self.name, "version": self.version},
        )
        for i, job in zip(at, jobs, strict=True):
            into[i] = self._run_one(job)

    def _check_members(
        self, jobs: list[Job[Prepared]], into: list[Outputs | GyreError | None], at: list[int]
    ) -> None:
        """The merged batch failed validation: check each member, predict the good ones."""
        good: list[Job[Prepared]] = []
        good_at: list[int] = []
        for i, job in zip(at, jobs, strict=True):
            try:
                checked = self.prepare(job.payload.data)
            except InvalidArgument as invalid:
                into[i] = invalid
                continue
            good.append(Job(checked, job.rows, job.request_id, job.future, job.enqueued,
                            job.options))  # fmt: skip
            good_at.append(i)
        if good:
            self._run_group(good, raw=False, into=into, at=good_at)

    def _observe_batch(self, rows: int) -> None:
        if self._telemetry is not None:
            self._telemetry.batch(self.name, self.version, rows)

    def _observe_queue(self, rows: int) -> None:
        if self._telemetry is not None:
            self._telemetry.queue(self.name, self.version, rows)

    # -- metadata -----------------------------------------------------------------------

    def output_metadata(self) -> list[dict[str, Any]]:
        from gyre.serving._oip import datatype_of

        outputs: list[dict[str, Any]] = []
        if self.output_shapes:
            for key, (datatype, shape) in self.output_shapes.items():
                outputs.append({"name": key, "datatype": datatype, "shape": shape})
        else:
            datatype = "FP64"
            if self.classes:
                datatype = datatype_of(np.asarray(self.classes).dtype)
            outputs.append({"name": "predict", "datatype": datatype, "shape": [-1]})
        if self.has_proba:
            proba: dict[str, Any] = {
                "name": "predict_proba",
                "datatype": "FP64",
                "shape": [-1, len(self.classes) if self.classes else -1],
            }
            if self.classes:
                proba["parameters"] = {"classes": self.classes}
            outputs.append(proba)
        return outputs


Role = Literal["primary", "challenger"]


class ModelSlot:
    """The deployments served under one name: a primary and, optionally, a challenger
    (canary or shadow). Requests resolve through :meth:`pick` (or :meth:`route`) once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._primary: Deployment | None = None
        self._challenger: Deployment | None = None
        self.mode: Mode | None = None
        self.percent = 0.0

    @property
    def primary(self) -> Deployment | None:
        return self._primary

    @property
    def challenger(self) -> Deployment | None:
        return self._challenger

    def _by_version(self) -> dict[str, Deployment]:
        found: dict[str, Deployment] = {}
        for dep in (self._primary, self._challenger):
            if dep is not None:
                found.setdefault(dep.version, dep)
        return found

    @property
    def versions(self) -> list[str]:
        return list(self._by_version())

    @property
    def ready(self) -> bool:
        return self._primary is not None and self._primary.ready

    @property
    def active_challenger(self) -> Deployment | None:
        """The challenger, when it is ready and another version than the primary (both
        aliases on one version: everything is primary, nothing is mirrored)."""
        dep = self._challenger
        if dep is None or not dep.ready or self._primary is None:
            return None
        return dep if dep.version != self._primary.version else None

    @property
    def shadow(self) -> Deployment | None:
        """The deployment every request is mirrored to, if any."""
        return self.active_challenger if self.mode == "shadow" else None

    def pick(self, request_id: str, version: str | None = None) -> tuple[Deployment, str]:
        """The deployment answering request ``request_id`` and its prediction-log variant:
        ``"canary"`` for the canary's share of the requests (:func:`in_canary`), else
        ``"primary"``. A request pinning a ``version`` gets that version (``"canary"``
        when that is the challenger's: its answer is returned, unlike a shadow's)."""
        if version is None and self.mode == "canary":
            canary = self.active_challenger
            if canary is not None and in_canary(request_id, self.percent):
                return canary, "canary"
        dep = self.route(version)
        variant = "primary"
        if version is not None and dep is self._challenger and dep is not self._primary:
            variant = "canary"
        return dep, variant

    def route(self, version: str | None = None) -> Deployment:
        """The primary deployment (or the one serving ``version``, if it names one)."""
        if version is None:
            chosen = self._primary
            if chosen is None:
                raise BackendUnavailable(
                    f"model {self.name!r} is not loaded yet", hint="retry in a moment"
                )
        else:
            versions = self._by_version()
            found = versions.get(version)
            if found is None:
                raise NotFound(
                    f"model {self.name!r} has no version {version!r} served here",
                    hint=f"served versions: {', '.join(versions) or 'none'}",
                )
            chosen = found
        if not chosen.ready:
            raise BackendUnavailable(
                f"model {self.name!r} version {chosen.version} is not ready",
                hint="retry in a moment",
            )
        return chosen

    def configure(self, mode: Mode | None, percent: float = 0.0) -> None:
        """How the challenger takes part: ``"canary"`` (``percent`` of the requests),
        ``"shadow"`` (a copy of every request) or None (not at all)."""
        self.mode, self.percent = mode, percent

    async def deploy(
        self, deployment: Deployment, role: Role = "primary", *, strict: bool = False
    ) -> Deployment | None:
        """Start ``deployment`` and make it the ``role`` (primary or challenger); the one it
        replaces drains (requests holding it finish on it) and stops. ``strict``: see
        :meth:`Deployment.start`; on failure nothing changes."""
        if role == "challenger":  # a shadow must never take the event loop from the primary
            deployment.batcher.inline_below = 0.0
        await deployment.start(strict=strict)
        # One assignment: the swap is atomic for new requests.
        if role == "primary":
            old, self._primary = self._primary, deployment
        else:
            old, self._challenger = self._challenger, deployment
        if old is not None and old is not deployment:
            await old.stop()
        return old

    async def close(self) -> None:
        deployments = [d for d in (self._primary, self._challenger) if d is not None]
        self._primary = self._challenger = None
        await asyncio.gather(*(d.stop() for d in deployments))
