"""Module-level functions that join tracking and the registry for ``import gyre`` users.

They live above both layers, so the registry always uses the store the tracking API points
at (``gyre.set_tracking_uri`` or GYRE_TRACKING_URI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gyre.tracking import get_tracking_uri

if TYPE_CHECKING:
    from gyre.entities import ModelVersion
    from gyre.models import Model
    from gyre.registry import Registry

__all__ = ["get_registry", "load_model", "register_model"]


def get_registry() -> Registry:
    from gyre.registry import Registry

    return Registry(get_tracking_uri())


def register_model(
    uri: str, name: str, *, description: str = "", tags: dict[str, str] | None = None
) -> ModelVersion:
    """Register a model logged in a run as the next version of ``name``.

    >>> v = gyre.register_model(f"runs:/{run.run_id}/model", "churn")
    >>> v.version
    1
    """
    registry = get_registry()
    try:
        return registry.register_model(uri, name, description=description, tags=tags)
    finally:
        registry.close()


def load_model(uri: str) -> Model:
    """Load ``runs:/<run_id>/model``, ``models:/name/3``, ``models:/name@champion`` or a
    local folder; the package's digests are verified before anything is deserialised.

    >>> model = gyre.load_model("models:/churn@champion")
    >>> model.predict(frame)
    """
    registry = get_registry()
    try:
        return registry.load_model(uri)
    finally:
        registry.close()
