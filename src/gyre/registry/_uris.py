"""Model URIs: where a model package is, in the words people use.

- ``runs:/<run_id>/<path>``: a package logged into a run's artifacts (``log_model``).
- ``models:/<name>/<version>`` and ``models:/<name>@<alias>``: through the registry;
  ``models:/<name>@latest`` is the newest version.
- anything else: a local directory holding a package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gyre.errors import InvalidArgument

__all__ = ["ModelRef", "parse_model_uri"]

_RUNS = re.compile(r"^runs:/([0-9a-f]{32})(?:/(.*))?$")
_MODELS = re.compile(r"^models:/([^/@]+)(?:/(\d+)|@([A-Za-z_][A-Za-z0-9_\-]*))$")


@dataclass(frozen=True, slots=True)
class ModelRef:
    kind: Literal["run", "registry", "path"]
    uri: str
    run_id: str | None = None
    artifact_path: str | None = None
    name: str | None = None
    version: int | None = None
    alias: str | None = None
    path: str | None = None


def parse_model_uri(uri: str) -> ModelRef:
    """Parse a model URI; InvalidArgument naming it, with the accepted forms, otherwise."""
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"model URI {uri!r} is empty", hint=_FORMS)
    if uri.startswith("runs:"):
        m = _RUNS.match(uri)
        if not m:
            short = re.match(r"^runs:/([0-9a-f]{1,31})(?:/|$)", uri)
            if short:  # a prefix, as `gyre runs show` takes: the URI needs the whole id
                prefix = short.group(1)
                raise InvalidArgument(
                    f"model URI {uri!r} names run {prefix!r}, {len(prefix)} of the 32 "
                    "characters of a run id",
                    hint=f"`gyre runs show {prefix}` shows the full id",
                )
            raise InvalidArgument(f"model URI {uri!r} is not runs:/<run_id>/<path>", hint=_FORMS)
        return ModelRef("run", uri, run_id=m.group(1), artifact_path=(m.group(2) or "model"))
    if uri.startswith("models:"):
        m = _MODELS.match(uri)
        if not m:
            raise InvalidArgument(
                f"model URI {uri!r} is not models:/<name>/<version> or models:/<name>@<alias>",
                hint=_FORMS,
            )
        version = int(m.group(2)) if m.group(2) else None
        return ModelRef("registry", uri, name=m.group(1), version=version, alias=m.group(3))
    if "://" in uri or uri.split(":", 1)[0] in ("s3", "http", "https"):
        raise InvalidArgument(
            f"model URI {uri!r} has a scheme gyre does not load from", hint=_FORMS
        )
    return ModelRef("path", uri, path=uri)


def parse_version_ref(text: str) -> tuple[str, int | None, str | None]:
    """``name/3`` or ``name@champion`` (as the CLI takes them) → (name, version, alias)."""
    if "@" in text:
        name, _, alias = text.partition("@")
        if name and alias:
            return name, None, alias
    elif "/" in text:
        name, _, version = text.rpartition("/")
        if name and version.isdigit():
            return name, int(version), None
    raise InvalidArgument(
        f"{text!r} names no model version", hint="write <name>/<version> or <name>@<alias>"
    )


def path_hint(path: str) -> str:
    """The hint for a model path that does not exist: a misspelled scheme (``model:/x``,
    ``run:/x``) is named as the URI it was probably meant to be."""
    scheme, sep, rest = path.partition(":/")
    if sep and scheme.lower() in ("model", "registry", "mlflow-models"):
        return f"did you mean 'models:/{rest}'? ({_FORMS})"
    if sep and scheme.lower() in ("run", "mlflow-runs"):
        return f"did you mean 'runs:/{rest}'? ({_FORMS})"
    return _FORMS


_FORMS = (
    "use runs:/<run_id>/<path>, models:/<name>/<version>, models:/<name>@<alias>, or a local folder"
)
