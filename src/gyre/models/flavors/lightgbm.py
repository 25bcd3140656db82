"""LightGBM models (scikit-learn API classes and Boosters), saved as native text.

Loading gives a Booster; for a classifier the manifest keeps the class labels, so
``predict`` returns labels and ``predict_proba`` one column per class, as the
scikit-learn API did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gyre.models._flavor import TaskInfo, import_library, inherits, plain_list

__all__ = ["FLAVOR", "LightGBMFlavor"]


@dataclass(frozen=True, slots=True)
class _Loaded:
    booster: Any
    classes: list[Any] | None


def _is_classifier(model: Any) -> bool:
    return inherits(model, "lightgbm", "LGBMClassifier")


class LightGBMFlavor:
    name = "lightgbm"

    def can_save(self, model: Any) -> bool:
        return not isinstance(model, type) and inherits(model, "lightgbm", "LGBMModel", "Booster")

    def requirements(self) -> list[str]:
        return ["lightgbm", "numpy", "scipy"]

    def save(
        self, model: Any, path: Path, *, allow_pickle: bool, input_example: Any
    ) -> dict[str, Any]:
        booster = model if inherits(model, "lightgbm", "Booster") else model.booster_
        booster.save_model(str(path / "model.txt"))
        info: dict[str, Any] = {"file": "model.txt", "class": type(model).__name__}
        if _is_classifier(model):
            info["classes"] = plain_list(model.classes_)
        return info

    def task(self, model: Any) -> TaskInfo:
        if _is_classifier(model):
            return TaskInfo("classifier", plain_list(model.classes_), True)
        kind = "regressor" if inherits(model, "lightgbm", "LGBMRegressor") else "unknown"
        return TaskInfo(kind, None, False)

    def load(self, path: Path, info: Mapping[str, Any]) -> Any:
        lgb = import_library("lightgbm", extra="lightgbm")
        booster = lgb.Booster(model_file=str(path / str(info["file"])))
        classes = info.get("classes")
        return _Loaded(booster, None if classes is None else list(classes))

    def predict(self, obj: Any, data: Any) -> Any:
        out = obj.booster.predict(data)
        if obj.classes is None:
            return out
        index = (out > 0.5).astype(int) if out.ndim == 1 else np.argmax(out, axis=1)
        return np.asarray(obj.classes)[index]

    def predict_proba(self, obj: Any, data: Any) -> Any | None:
        if obj.classes is None:
            return None
        out = obj.booster.predict(data)
        return np.vstack((1.0 - out, out)).T if out.ndim == 1 else out


FLAVOR = LightGBMFlavor()
