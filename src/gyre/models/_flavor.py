"""The flavor protocol: how one ML library's models are saved, loaded and asked to predict.

A flavor is a small object (module ``gyre.models.flavors.<name>`` exposing ``FLAVOR``) that
knows one library. It never imports that library at module import time: only inside its
methods, through :func:`import_library`, so that asking every flavor ``can_save`` stays cheap.

>>> from gyre.models import get_flavor
>>> get_flavor("sklearn").requirements()
['scikit-learn', 'skops', 'scipy', 'numpy']
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from gyre.errors import NotFound

__all__ = [
    "ALTERNATIVE_DISTRIBUTIONS",
    "Flavor",
    "TaskInfo",
    "class_path",
    "distribution",
    "import_library",
    "inherits",
    "plain_list",
]

# Libraries published under several distribution names; any one of a group will do.
ALTERNATIVE_DISTRIBUTIONS: tuple[tuple[str, ...], ...] = (
    ("xgboost", "xgboost-cpu"),
    ("onnxruntime", "onnxruntime-gpu"),
)


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What kind of predictor a model is: ``kind`` is classifier, regressor or unknown."""

    kind: str = "unknown"
    classes: list[Any] | None = None
    has_predict_proba: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "has_predict_proba": self.has_predict_proba}
        if self.classes is not None:
            out["classes"] = list(self.classes)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskInfo:
        known = {"kind", "classes", "has_predict_proba"}
        classes = d.get("classes")
        return cls(
            kind=str(d.get("kind", "unknown")),
            classes=list(classes) if classes is not None else None,
            has_predict_proba=bool(d.get("has_predict_proba", False)),
            extra={k: v for k, v in d.items() if k not in known},
        )


@runtime_checkable
class Flavor(Protocol):
    """One library's way of saving, loading and running models.

    ``requirements()`` lists the distributions a *loaded* model needs, the flavor's own
    library first (its version is the package's ``flavor.library_version``).
    ``save`` writes files into an existing empty directory and returns JSON-like flavor
    info for the manifest; ``load`` gets that info back. ``predict``/``predict_proba``
    receive what ``load`` returned and input already checked against the signature: a
    pandas DataFrame for a column signature, a numpy array (or a dict of them) for a
    tensor signature. ``predict_proba`` returns ``None`` when the model has none.
    """

    name: str

    def can_save(self, model: Any) -> bool: ...

    def save(
        self, model: Any, path: Path, *, allow_pickle: bool, input_example: Any
    ) -> dict[str, Any]: ...

    def task(self, model: Any) -> TaskInfo: ...

    def load(self, path: Path, info: Mapping[str, Any]) -> Any: ...

    def predict(self, obj: Any, data: Any) -> Any: ...

    def predict_proba(self, obj: Any, data: Any) -> Any | None: ...

    def requirements(self) -> list[str]: ...


def import_library(module: str, *, extra: str) -> Any:
    """Import ``module``, or raise NotFound saying which gyre extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise NotFound(
            f"library {module.split('.')[0]!r} is not installed ({exc})",
            hint=f"pip install 'gyreml[{extra}]'",
        ) from exc


def distribution(name: str) -> str:
    """The installed distribution among ``name``'s alternatives (``name`` when none is)."""
    for group in ALTERNATIVE_DISTRIBUTIONS:
        if name in group:
            for candidate in group:
                try:
                    version(candidate)
                except PackageNotFoundError:
                    continue
                return candidate
    return name


def plain_list(values: Any) -> list[Any]:
    """Class labels and the like as plain Python values (YAML-safe)."""
    import numpy as np

    return list(np.asarray(values).tolist())


def inherits(obj: Any, module_prefix: str, *class_names: str) -> bool:
    """Whether ``obj``'s class derives from ``module_prefix``.<one of class_names>.

    Looks at the MRO by name, so a flavor can recognise a library's objects without
    importing the library: if the object exists, the library is already loaded.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    for base in getattr(cls, "__mro__", ()):
        module = getattr(base, "__module__", "") or ""
        if (module == module_prefix or module.startswith(module_prefix + ".")) and (
            not class_names or base.__name__ in class_names
        ):
            return True
    return False


def class_path(obj: Any) -> str:
    """``module:qualname`` of ``obj``'s class (or of ``obj`` when it is a class)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"
