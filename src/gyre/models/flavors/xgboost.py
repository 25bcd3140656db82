"""XGBoost models (scikit-learn API classes and Boosters), saved as native JSON."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gyre.errors import InvalidArgument
from gyre.models._flavor import TaskInfo, distribution, import_library, inherits, plain_list

__all__ = ["FLAVOR", "XGBoostFlavor"]

_SKLEARN_CLASSES = (
    "XGBClassifier",
    "XGBRegressor",
    "XGBRanker",
    "XGBRFClassifier",
    "XGBRFRegressor",
)


def _class_name(model: Any) -> str:
    if inherits(model, "xgboost", "Booster"):
        return "Booster"
    for base in type(model).__mro__:
        if base.__name__ in _SKLEARN_CLASSES and base.__module__.startswith("xgboost"):
            return base.__name__
    raise InvalidArgument(
        f"xgboost model type {type(model).__qualname__!r} is not supported",
        hint=f"use a Booster or one of: {', '.join(_SKLEARN_CLASSES)}",
    )


class XGBoostFlavor:
    name = "xgboost"

    def can_save(self, model: Any) -> bool:
        return not isinstance(model, type) and inherits(model, "xgboost", "XGBModel", "Booster")

    def requirements(self) -> list[str]:
        return [distribution("xgboost"), "numpy", "scipy"]

    def save(
        self, model: Any, path: Path, *, allow_pickle: bool, input_example: Any
    ) -> dict[str, Any]:
        kind = _class_name(model)
        model.save_model(str(path / "model.json"))
        return {"file": "model.json", "class": kind}

    def task(self, model: Any) -> TaskInfo:
        kind = _class_name(model)
        if "Classifier" in kind:
            return TaskInfo("classifier", plain_list(model.classes_), True)
        return TaskInfo("regressor" if "Regressor" in kind else "unknown", None, False)

    def load(self, path: Path, info: Mapping[str, Any]) -> Any:
        xgb = import_library("xgboost", extra="xgboost")
        kind = str(info["class"])
        if kind != "Booster" and kind not in _SKLEARN_CLASSES:
            raise InvalidArgument(f"unknown xgboost class {kind!r} in the manifest", hint="")
        model = getattr(xgb, kind)()
        model.load_model(str(path / str(info["file"])))
        return model

    def predict(self, obj: Any, data: Any) -> Any:
        if inherits(obj, "xgboost", "Booster"):
            xgb = import_library("xgboost", extra="xgboost")
            return obj.predict(xgb.DMatrix(data))
        return obj.predict(data)

    def predict_proba(self, obj: Any, data: Any) -> Any | None:
        if not hasattr(obj, "predict_proba"):
            return None
        return obj.predict_proba(data)


FLAVOR = XGBoostFlavor()
