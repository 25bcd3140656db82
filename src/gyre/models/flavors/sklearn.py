"""scikit-learn estimators, Pipelines and ColumnTransformers, saved with skops.

skops stores the object tree without pickle. On load, every type in the file must be
trusted: scikit-learn, numpy and scipy types, plus the types the saver found in the file
and recorded in the manifest (``trusted_types``). Anything else is refused, by name.

Pickle is used only when skops cannot save the model and ``allow_pickle=True``; it warns
(UnsafeSerializationWarning) when saving and again when loading.

Predictions on a float64 matrix go through a fast path for a few common estimators
(linear models, HistGradientBoosting), checked to answer exactly as the estimator does;
see :mod:`gyre.models.flavors._sklearn_fast` (``GYRE_FAST_PREDICT=0`` turns it off).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gyre.errors import InvalidArgument
from gyre.models._flavor import TaskInfo, import_library, inherits, plain_list
from gyre.models._warnings import UnsafeSerializationWarning
from gyre.models.flavors._sklearn_fast import fast_predictor

__all__ = ["FLAVOR", "SklearnFlavor"]

_TRUSTED_ROOTS = ("sklearn", "numpy", "scipy")


def _trusted(type_name: str) -> bool:
    return type_name.split(".")[0] in _TRUSTED_ROOTS


class SklearnFlavor:
    name = "sklearn"

    def can_save(self, model: Any) -> bool:
        return not isinstance(model, type) and inherits(model, "sklearn", "BaseEstimator")

    def requirements(self) -> list[str]:
        return ["scikit-learn", "skops", "scipy", "numpy"]

    def save(
        self, model: Any, path: Path, *, allow_pickle: bool, input_example: Any
    ) -> dict[str, Any]:
        sio = import_library("skops.io", extra="sklearn")
        file = path / "model.skops"
        try:
            sio.dump(model, file)
        except Exception as exc:
            file.unlink(missing_ok=True)
            if not allow_pickle:
                raise InvalidArgument(
                    f"skops cannot save this {type(model).__qualname__} "
                    f"({type(exc).__name__}: {exc})",
                    hint="pass allow_pickle=True to fall back to pickle; load such a package "
                    "only if you trust where it came from",
                ) from exc
            warnings.warn(
                UnsafeSerializationWarning(
                    f"saving {type(model).__qualname__} with pickle because skops cannot "
                    f"({type(exc).__name__}: {exc}); loading it can run arbitrary code"
                ),
                stacklevel=4,
            )
            with (path / "model.pkl").open("wb") as f:
                pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
            return {"file": "model.pkl", "serialization": "pickle"}
        found = sio.get_untrusted_types(file=file)
        return {
            "file": "model.skops",
            "serialization": "skops",
            "trusted_types": sorted(t for t in found if not _trusted(t)),
        }

    def task(self, model: Any) -> TaskInfo:
        base = import_library("sklearn.base", extra="sklearn")
        has_proba = hasattr(model, "predict_proba")
        if base.is_classifier(model):
            classes = getattr(model, "classes_", None)
            return TaskInfo(
                "classifier", None if classes is None else plain_list(classes), has_proba
            )
        kind = "regressor" if base.is_regressor(model) else "unknown"
        return TaskInfo(kind, None, has_proba)

    def load(self, path: Path, info: Mapping[str, Any]) -> Any:
        file = path / str(info["file"])
        if info.get("serialization") == "pickle":
            warnings.warn(
                UnsafeSerializationWarning(
                    f"loading {str(file)!r} with pickle, which can run arbitrary code; "
                    "load only packages you trust"
                ),
                stacklevel=4,
            )
            with file.open("rb") as f:
                return pickle.load(f)
        sio = import_library("skops.io", extra="sklearn")
        found = sio.get_untrusted_types(file=file)
        recorded = set(info.get("trusted_types") or ())
        refused = [t for t in found if not _trusted(t) and t not in recorded]
        if refused:
            raise InvalidArgument(
                f"{file.name!r} holds types that are not trusted: {', '.join(refused)}",
                hint="only scikit-learn, numpy and scipy types and those recorded when the "
                "model was saved are loaded; save the model again with gyre if you trust it",
            )
        return sio.load(file, trusted=found)

    def predict(self, obj: Any, data: Any) -> Any:
        fast = fast_predictor(obj, data)
        if fast is not None:
            out = fast.predict(data)
            if out is not None:
                return out
        return obj.predict(data)

    def predict_proba(self, obj: Any, data: Any) -> Any | None:
        if not hasattr(obj, "predict_proba"):
            return None
        fast = fast_predictor(obj, data)
        if fast is not None:
            out = fast.predict_proba(data)
            if out is not None:
                return out
        return obj.predict_proba(data)


FLAVOR = SklearnFlavor()
