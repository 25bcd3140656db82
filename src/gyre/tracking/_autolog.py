"""``gyre.autolog()``: every scikit-learn ``fit`` is tracked, with no other code change.

>>> import gyre
>>> gyre.autolog()
>>> LogisticRegression(C=0.5).fit(X, y)  # doctest: +SKIP
>>> gyre.autolog(disable=True)  # back to plain scikit-learn

A fit records, into the active run or else into a new run named after the estimator:

- params: ``get_params(deep=False)`` as strings (values over 500 characters are cut);
- metrics on the training data, with gyre's numpy metrics (scikit-learn's definitions):
  classifiers ``training_accuracy``, ``_precision``, ``_recall``, ``_f1`` (and ``_roc_auc``,
  ``_log_loss`` with ``predict_proba``), regressors ``training_mae``, ``_rmse``, ``_r2``;
  only finite values are logged;
- the model (``log_model``) with the first 5 rows as input example and the training X (a
  10,000-row sample when larger) as reference data.

A run autolog starts ends with the fit: FINISHED, or FAILED with the error's message when
fit raises (the exception propagates unchanged). Only the outermost fit logs: the steps a
Pipeline, a search or an ensemble fits inside it do not get runs of their own. Logging never
breaks a fit: when it fails, an :class:`AutologWarning` says what was not logged.

``fit`` is patched on the classes that define it (those of ``sklearn.utils.all_estimators()``
and ``Pipeline``), so subclasses are covered too; patching twice changes nothing, and
``autolog(disable=True)`` puts the original functions back.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import threading
import types
import warnings
from collections.abc import Callable
from typing import Any

from gyre.entities import RunStatus
from gyre.tracking import _fluent

__all__ = ["AutologWarning", "autolog"]

MAX_PARAM_CHARS = 500
EXAMPLE_ROWS = 5
REFERENCE_ROWS = 10_000
_METHOD = "fit"
_MARK = "__gyre_autolog__"

_lock = threading.Lock()
_originals: dict[type, Callable[..., Any]] = {}  # class defining fit -> its own fit
_log_models = True
_local = threading.local()  # .depth: 1 while this thread is inside an autologged fit
# Runs an outermost fit is logging into: a fit that joblib runs on a worker thread during it
# (depth 0 there) sees such a run active and stays quiet too.
_busy: set[str] = set()


class AutologWarning(UserWarning):
    """Autologging could not record something; the fit itself went ahead."""


def autolog(disable: bool = False, *, log_models: bool = True) -> None:
    """Track every scikit-learn ``fit`` from now on (``disable=True``: stop).

    ``log_models=False`` records params and metrics but no model package.
    scikit-learn is imported here, not by ``import gyre``.

    >>> gyre.autolog()
    >>> model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)  # doctest: +SKIP
    >>> gyre.search_runs(filter="name = 'Pipeline'")  # doctest: +SKIP

    Runs autolog starts carry the tag ``gyre.autolog = true``.
    """
    global _log_models
    with _lock:
        if disable:
            for cls, original in _originals.items():
                setattr(cls, _METHOD, original)
            _originals.clear()
            return
        _log_models = log_models
        for cls in _estimator_classes():
            owner = next(k for k in cls.__mro__ if _METHOD in vars(k))
            current = vars(owner)[_METHOD]
            if owner in _originals or getattr(current, _MARK, False):
                continue
            _originals[owner] = current
            setattr(owner, _METHOD, _patched(current))


def _estimator_classes() -> list[type]:
    from sklearn.pipeline import Pipeline
    from sklearn.utils import all_estimators

    classes: list[type] = [cls for _, cls in all_estimators()]
    return classes if Pipeline in classes else [*classes, Pipeline]


def _patched(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "depth", 0) or _inside_busy_run():
            return original(self, *args, **kwargs)
        _local.depth = 1
        try:
            return _fit_and_log(original, self, args, kwargs)
        finally:
            _local.depth = 0

    setattr(fit, _MARK, True)
    return fit


def _inside_busy_run() -> bool:
    if not _busy:
        return False
    active = _fluent.active_run()
    return active is not None and active.run_id in _busy


def _fit_and_log(
    original: Callable[..., Any], estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    X, y = _training_data(original, estimator, args, kwargs)
    run, owned = _open_run(estimator)
    if run is None:
        return original(estimator, *args, **kwargs)
    _busy.add(run.run_id)
    try:
        _attempt("params", lambda: run.client.log_params(run.run_id, _params(estimator)))
        try:
            result = original(estimator, *args, **kwargs)
        except BaseException as exc:
            if owned:
                _close(run, exc)
            raise
        _attempt("training metrics", lambda: _log_metrics(run, estimator, X, y))
        if _log_models:
            _attempt("the model", lambda: _log_model(run, estimator, X))
        if owned:
            _close(run, None)
        return result
    finally:
        _busy.discard(run.run_id)


def _training_data(
    original: Callable[..., Any], estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    """The data fit was called with: its first argument, and ``y`` when named so."""
    try:
        bound = inspect.signature(original).bind(estimator, *args, **kwargs)
    except (TypeError, ValueError):
        return None, None  # fit itself will reject the call, in its own words
    params = list(bound.signature.parameters.values())[1:]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    first = params[0].name if params and params[0].kind in positional else None
    X = bound.arguments.get(first) if first else None
    y = next((bound.arguments[n] for n in ("y", "Y") if n != first and n in bound.arguments), None)
    return X, y


def _open_run(estimator: Any) -> tuple[_fluent.ActiveRun | None, bool]:
    """The active run (not ours to end), or a new one named after the estimator (ours)."""
    active = _fluent.active_run()
    if active is not None:
        return active, False
    name = type(estimator).__name__
    try:
        return _fluent.start_run(name=name, tags={"gyre.autolog": "true"}), True
    except Exception as exc:
        _warn(
            f"could not start a run for {name}.fit ({type(exc).__name__}: {exc}); "
            "fitting without tracking"
        )
        return None, False


def _close(run: _fluent.ActiveRun, exc: BaseException | None) -> None:
    if exc is None:
        status, error = RunStatus.FINISHED, None
    elif isinstance(exc, KeyboardInterrupt):
        status, error = RunStatus.KILLED, "KeyboardInterrupt"
    else:
        status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
    _attempt("the run's end", lambda: _fluent.end_run(status, error=error, run=run))


def _attempt(what: str, action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as exc:
        _warn(f"autolog could not record {what}: {type(exc).__name__}: {exc}")


def _warn(message: str) -> None:
    # Point at the caller's fit(), the first frame outside this module.
    level = 2  # stacklevel 1 is this function, 2 its caller
    caller: types.FrameType | None = sys._getframe(1)
    while caller is not None and caller.f_globals.get("__name__") == __name__:
        level, caller = level + 1, caller.f_back
    warnings.warn(AutologWarning(message), stacklevel=level)


def _params(estimator: Any) -> dict[str, str]:
    out = {}
    for key, value in estimator.get_params(deep=False).items():
        text = value if isinstance(value, str) else " ".join(str(value).split())
        out[key] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 1] + "…"
    return out


def _log_metrics(run: _fluent.ActiveRun, estimator: Any, X: Any, y: Any) -> None:
    metrics = _training_metrics(estimator, X, y)
    if metrics:
        run.client.log_metrics(run.run_id, metrics)


def _training_metrics(estimator: Any, X: Any, y: Any) -> dict[str, float]:
    if X is None or y is None:
        return {}
    import numpy as np
    from sklearn.base import is_classifier, is_regressor

    from gyre._metrics import classification_metrics, regression_metrics

    truth = np.asarray(y)
    if truth.ndim == 2 and truth.shape[1] == 1:
        truth = truth.ravel()
    if truth.ndim != 1:  # multi-output: no single-number summary
        return {}
    if is_classifier(estimator):
        proba = None
        if hasattr(estimator, "predict_proba"):
            try:
                proba = estimator.predict_proba(X)
            except Exception:  # e.g. probabilities not enabled: the other metrics stand
                proba = None
        classes = getattr(estimator, "classes_", None)
        if classes is not None and np.asarray(classes).ndim != 1:
            return {}
        found = classification_metrics(truth, estimator.predict(X), proba, classes)
        keys: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
    elif is_regressor(estimator):
        found = dict(regression_metrics(truth, estimator.predict(X)))
        keys = ("mae", "rmse", "r2")
    else:
        return {}
    return {
        f"training_{k}": float(found[k])
        for k in keys
        if k in found and math.isfinite(float(found[k]))
    }


def _log_model(run: _fluent.ActiveRun, estimator: Any, X: Any) -> None:
    example = reference = None
    if X is not None and not type(X).__module__.startswith("scipy.sparse"):
        count = _length(X)
        example = _rows(X, slice(0, EXAMPLE_ROWS))
        if count is not None and count > REFERENCE_ROWS:
            import numpy as np

            picked = np.random.default_rng(0).choice(count, REFERENCE_ROWS, replace=False)
            reference = _rows(X, np.sort(picked))
        else:
            reference = X
    run.client.log_model(
        run.run_id, estimator, "model", input_example=example, reference_data=reference
    )


def _length(X: Any) -> int | None:
    shape = getattr(X, "shape", None)
    if shape:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        return None


def _rows(X: Any, index: Any) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[index]
    if hasattr(X, "shape"):
        return X[index]
    items = list(X)
    if isinstance(index, slice):
        return items[index]
    return [items[i] for i in index]
