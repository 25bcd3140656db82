"""Which flavors exist: the ``gyre.flavors`` entry points, then the built-in table.

Built-ins register through the same entry-point group a third party uses. The built-in
table is a fallback for an install whose metadata lacks the entry points (an editable
checkout before they were added); an entry point of the same name always wins.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from gyre.errors import InvalidArgument, NotFound
from gyre.models._flavor import Flavor

__all__ = ["BUILTIN_FLAVORS", "ENTRY_POINT_GROUP", "detect_flavor", "flavor_names", "get_flavor"]

ENTRY_POINT_GROUP = "gyre.flavors"

BUILTIN_FLAVORS: dict[str, str] = {
    name: f"gyre.models.flavors.{name}:FLAVOR"
    for name in ("sklearn", "xgboost", "lightgbm", "torch", "onnx", "python")
}


@cache
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _targets() -> dict[str, str]:
    return {**BUILTIN_FLAVORS, **_entry_points()}


def flavor_names() -> list[str]:
    """Names of every registered flavor, sorted.

    >>> "sklearn" in flavor_names()
    True
    """
    return sorted(_targets())


@cache
def get_flavor(name: str) -> Flavor:
    """The flavor registered as ``name``.

    >>> get_flavor("onnx").name
    'onnx'
    """
    target = _targets().get(name)
    if target is None:
        raise NotFound(
            f"flavor {name!r} is not registered",
            hint=f"use one of: {', '.join(flavor_names())}, or install the plugin that provides it",
        )
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in (attr or "FLAVOR").split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Flavor) or obj.name != name:
        raise InvalidArgument(
            f"entry point {name!r} ({target!r}) does not provide a flavor named {name!r}",
            hint="a flavor module exposes FLAVOR with name, can_save, save, task, load, "
            "predict, predict_proba and requirements",
        )
    return obj


def detect_flavor(model: Any) -> Flavor:
    """The one flavor that can save ``model``.

    When several can (an ``XGBClassifier`` is also a scikit-learn estimator), the flavor
    named like the top-level module of the model's class wins.
    """
    candidates = [f for f in map(get_flavor, flavor_names()) if f.can_save(model)]
    cls = model if isinstance(model, type) else type(model)
    kind = f"{cls.__module__}.{cls.__qualname__}"
    if len(candidates) == 1:
        return candidates[0]
    root = cls.__module__.split(".")[0]
    for flavor in candidates:
        if flavor.name == root:
            return flavor
    if not candidates:
        raise InvalidArgument(
            f"no registered flavor can save a model of type {kind!r}",
            hint=f"pass flavor= (one of: {', '.join(flavor_names())}), or wrap the model in a "
            "class with load_context(context) and predict(context, model_input) (python flavor)",
        )
    names = ", ".join(repr(f.name) for f in candidates)
    raise InvalidArgument(
        f"a model of type {kind!r} could be saved by flavors {names}",
        hint="pass flavor= to choose one",
    )
