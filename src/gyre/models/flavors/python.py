"""Custom Python models: a class with ``load_context(context)`` and
``predict(context, model_input)`` (the shape of MLflow's PythonModel), stored without pickle.

The package keeps the class's import path (``module:qualname``), the files named in the
model's ``artifacts`` attribute (copied into the package) and its ``config`` attribute
(JSON). Loading imports the class, makes an instance with no arguments and calls
``load_context`` with a :class:`PythonModelContext` (``.artifacts``: name → path inside
the package, ``.config``). The class must be importable where the model is loaded.

>>> class Doubler:
...     config = {"factor": 2}
...     def load_context(self, context): self.factor = context.config["factor"]
...     def predict(self, context, model_input): return model_input * self.factor
"""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gyre.errors import InvalidArgument, NotFound
from gyre.models._flavor import TaskInfo, class_path

__all__ = ["FLAVOR", "PythonFlavor", "PythonModelContext"]


@dataclass(frozen=True, slots=True)
class PythonModelContext:
    """What ``load_context`` and ``predict`` receive: artifact paths and the config."""

    artifacts: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Loaded:
    instance: Any
    context: PythonModelContext


def _resolve(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise NotFound(
            f"cannot import module {module_name!r} for python model class {path!r} ({exc})",
            hint="install the package that defines the class, or put it on PYTHONPATH",
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise NotFound(
                f"module {module_name!r} has no {qualname!r} (python model class {path!r})",
                hint="the class was renamed or moved since the model was saved",
            ) from None
    return obj


class PythonFlavor:
    name = "python"

    def can_save(self, model: Any) -> bool:
        return callable(getattr(model, "load_context", None)) and callable(
            getattr(model, "predict", None)
        )

    def requirements(self) -> list[str]:
        return []

    def save(
        self, model: Any, path: Path, *, allow_pickle: bool, input_example: Any
    ) -> dict[str, Any]:
        where = class_path(model)
        module_name, _, qualname = where.partition(":")
        if module_name == "__main__" or "<locals>" in qualname:
            place = "__main__" if module_name == "__main__" else "a function"
            raise InvalidArgument(
                f"python model class {qualname!r} is defined in {place}, so it cannot be "
                "imported when the model is loaded",
                hint="define the class at the top level of an importable module",
            )
        cls = model if isinstance(model, type) else type(model)
        if _resolve(where) is not cls:
            raise InvalidArgument(
                f"importing {where!r} does not give back the class being saved",
                hint="define the class at the top level of its module",
            )
        config = dict(getattr(model, "config", None) or {})
        try:
            json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"python model config is not JSON-serialisable: {exc}",
                hint="keep config to str, int, float, bool, list and dict values",
            ) from None
        artifacts = {}
        for name, source in dict(getattr(model, "artifacts", None) or {}).items():
            src = Path(source)
            if not name or "/" in name or "\\" in name or name.startswith("."):
                raise InvalidArgument(f"artifact name {name!r} is not a plain name", hint="")
            if not src.exists():
                raise NotFound(f"artifact {name!r} points to {str(src)!r}, which does not exist")
            dest = path / "artifacts" / name / src.name
            dest.parent.mkdir(parents=True)
            if src.is_dir():
                shutil.copytree(src, dest)
            else:
                shutil.copy2(src, dest)
            artifacts[name] = dest.relative_to(path).as_posix()
        return {"class": where, "artifacts": artifacts, "config": config}

    def task(self, model: Any) -> TaskInfo:
        has_proba = callable(getattr(model, "predict_proba", None))
        classes = getattr(model, "classes", None)
        kind = "classifier" if has_proba else "unknown"
        return TaskInfo(kind, None if classes is None else list(classes), has_proba)

    def load(self, path: Path, info: Mapping[str, Any]) -> Any:
        cls = _resolve(str(info["class"]))
        artifacts = {name: str(path / rel) for name, rel in dict(info["artifacts"]).items()}
        context = PythonModelContext(artifacts, dict(info.get("config") or {}))
        instance = cls()
        instance.load_context(context)
        return _Loaded(instance, context)

    def predict(self, obj: Any, data: Any) -> Any:
        return obj.instance.predict(obj.context, data)

    def predict_proba(self, obj: Any, data: Any) -> Any | None:
        method = getattr(obj.instance, "predict_proba", None)
        return None if method is None else method(obj.context, data)


FLAVOR = PythonFlavor()
