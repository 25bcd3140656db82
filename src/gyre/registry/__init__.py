"""The model registry: versions, aliases, validation gates, lineage and packaging."""

from gyre.registry._registry import Registry, current_actor
from gyre.registry._uris import ModelRef, parse_model_uri, parse_version_ref

__all__ = ["ModelRef", "Registry", "current_actor", "parse_model_uri", "parse_version_ref"]
