"""``gyre-model.yaml``: everything a package says about itself.

The manifest lists the sha256 of every other file in the package, so it is the package's
root of trust: whoever stores a package (the artifact store) records the manifest's own
digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gyre.errors import InvalidArgument
from gyre.models._flavor import TaskInfo
from gyre.models._signature import Signature

__all__ = ["FORMAT_VERSION", "MANIFEST_FILE", "ModelManifest"]

FORMAT_VERSION = 1
MANIFEST_FILE = "gyre-model.yaml"


@dataclass(frozen=True, slots=True)
class ModelManifest:
    """The parsed ``gyre-model.yaml`` of a model package.

    >>> manifest = ModelManifest.read("model/gyre-model.yaml")  # doctest: +SKIP
    >>> manifest.flavor, manifest.requirements["scikit-learn"]  # doctest: +SKIP
    ('sklearn', '1.9.1')
    """

    flavor: str
    flavor_info: dict[str, Any]
    library: str | None
    library_version: str | None
    python_version: str
    gyre_version: str
    requirements: dict[str, str]
    task: TaskInfo
    files: dict[str, str]
    signature: Signature | None = None
    input_example: str | None = None
    reference_profile: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "created_at": self.created_at,
            "flavor": {
                "name": self.flavor,
                "library": self.library,
                "library_version": self.library_version,
                "info": self.flavor_info,
            },
            "python_version": self.python_version,
            "gyre_version": self.gyre_version,
            "requirements": dict(sorted(self.requirements.items())),
            "task": self.task.to_dict(),
            "signature": None if self.signature is None else self.signature.to_dict(),
            "input_example": self.input_example,
            "reference_profile": self.reference_profile,
            "metadata": self.metadata,
            "files": dict(sorted(self.files.items())),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelManifest:
        version = d.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise InvalidArgument(
                f"model package format_version {version!r} is not supported "
                f"(this gyre reads up to {FORMAT_VERSION})",
                hint="upgrade gyreml",
            )
        try:
            flavor = d["flavor"]
            signature = d.get("signature")
            return cls(
                flavor=str(flavor["name"]),
                flavor_info=dict(flavor.get("info") or {}),
                library=flavor.get("library"),
                library_version=flavor.get("library_version"),
                python_version=str(d["python_version"]),
                gyre_version=str(d.get("gyre_version", "")),
                requirements={str(k): str(v) for k, v in (d.get("requirements") or {}).items()},
                task=TaskInfo.from_dict(d.get("task") or {}),
                files={str(k): str(v) for k, v in d["files"].items()},
                signature=None if signature is None else Signature.from_dict(signature),
                input_example=d.get("input_example"),
                reference_profile=d.get("reference_profile"),
                metadata=dict(d.get("metadata") or {}),
                created_at=str(d.get("created_at", "")),
                format_version=version,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgument(
                f"model manifest is incomplete or malformed: {type(exc).__name__}: {exc}",
                hint=f"the package's {MANIFEST_FILE} was edited or damaged",
            ) from exc

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def read(cls, path: str | Path) -> ModelManifest:
        """Parse a ``gyre-model.yaml`` file."""
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            raise InvalidArgument(
                f"{str(path)!r} is not valid YAML: {exc}", hint="the manifest is damaged"
            ) from exc
        if not isinstance(doc, Mapping):
            raise InvalidArgument(
                f"{str(path)!r} does not hold a mapping", hint="the manifest is damaged"
            )
        return cls.from_dict(doc)
