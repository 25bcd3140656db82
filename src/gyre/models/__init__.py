"""Model packages: save a trained model with its signature and reference profile, load it
anywhere, predict with checked input.

>>> from gyre.models import save_model, load_model
>>> save_model(pipeline, "churn-model", input_example=X[:5], reference_data=X)  # doctest: +SKIP
>>> model = load_model("churn-model")  # doctest: +SKIP
>>> model.predict([{"age": 41, "plan": "pro"}])  # doctest: +SKIP

``import gyre.models`` is cheap: numpy, the package code and every ML library load on first
use of a name that needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gyre.models._flavor import Flavor, TaskInfo
from gyre.models._registry import flavor_names, get_flavor
from gyre.models._warnings import LibraryVersionWarning, UnsafeSerializationWarning

if TYPE_CHECKING:
    from gyre.models._manifest import ModelManifest
    from gyre.models._package import Model, load_model, save_model
    from gyre.models._profile import ReferenceProfile, merge_profiles, profile_frame
    from gyre.models._signature import (
        ColumnSchema,
        ColumnSpec,
        Signature,
        TensorSchema,
        TensorSpec,
        infer_signature,
    )

__all__ = [
    "ColumnSchema",
    "ColumnSpec",
    "Flavor",
    "LibraryVersionWarning",
    "Model",
    "ModelManifest",
    "ReferenceProfile",
    "Signature",
    "TaskInfo",
    "TensorSchema",
    "TensorSpec",
    "UnsafeSerializationWarning",
    "flavor_names",
    "get_flavor",
    "infer_signature",
    "load_model",
    "merge_profiles",
    "profile_frame",
    "save_model",
]

_LAZY = {
    "ModelManifest": "gyre.models._manifest",
    "Model": "gyre.models._package",
    "load_model": "gyre.models._package",
    "save_model": "gyre.models._package",
    "ReferenceProfile": "gyre.models._profile",
    "merge_profiles": "gyre.models._profile",
    "profile_frame": "gyre.models._profile",
    "ColumnSchema": "gyre.models._signature",
    "ColumnSpec": "gyre.models._signature",
    "Signature": "gyre.models._signature",
    "TensorSchema": "gyre.models._signature",
    "TensorSpec": "gyre.models._signature",
    "infer_signature": "gyre.models._signature",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gyre.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
