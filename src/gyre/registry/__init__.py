"""The model registry: versions, aliases, validation gates, lineage and packaging."""

from gyre.registry._packaging import TARGETS, build
from gyre.registry._registry import Registry, current_actor
from gyre.registry._uris import ModelRef, parse_model_uri, parse_version_ref

__all__ = [
    "TARGETS",
    "ModelRef",
    "Registry",
    "build",
    "current_actor",
    "parse_model_uri",
    "parse_version_ref",
]
