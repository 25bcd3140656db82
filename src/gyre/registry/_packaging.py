"""Deployable artifacts from a model package: a Docker build context, Kubernetes manifests, or
one self-contained bundle file.

>>> from gyre.registry import Registry
>>> build(Registry(), "models:/churn@champion", "docker", "build/churn")  # doctest: +SKIP
PosixPath('build/churn')
>>> build(Registry(), "models:/churn/3", "k8s", "deploy", image="ghcr.io/acme/churn:3")
... # doctest: +SKIP
>>> build(Registry(), "models:/churn/3", "bundle", "churn.gyre")  # doctest: +SKIP

Every target is generated, never built: no Docker engine or cluster is needed, and the same
input gives the same bytes, so the output can be committed and diffed. The generated server
is ``gyre serve /app/model``: Open Inference Protocol v2, health at ``/v2/health/live`` and
``/v2/health/ready``, listening on 0.0.0.0, which gyre only allows with API tokens.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from gyre.errors import BackendUnavailable, InvalidArgument
from gyre.models import ModelManifest
from gyre.models._bundle import extract_bundle, read_bundle_info, verify_package, write_bundle
from gyre.models._manifest import MANIFEST_FILE
from gyre.registry._registry import Registry
from gyre.registry._uris import parse_model_uri

__all__ = ["TARGETS", "build"]

TARGETS = ("docker", "k8s", "bundle")

DISTRIBUTION = "gyreml"
APP_DIR = "/app"
MODEL_DIR = f"{APP_DIR}/model"
WHEEL_DIR = "wheels"
UID = 10001  # fixed, so Kubernetes' runAsNonRoot can check it against the image
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
TOKEN_ENV = "GYRE_TOKEN"
DEFAULT_REPLICAS = 2
DEFAULT_MAX_REPLICAS = 10
# Wheel zip entries carry this time instead of the files' mtimes: rebuilds are byte-identical.
_SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?")


@dataclass(frozen=True, slots=True)
class _Source:
    """The verified package being built from, and what is known of where it came from."""

    uri: str
    path: Path
    manifest: ModelManifest
    manifest_sha256: str
    name: str | None = None
    version: int | None = None

    @property
    def run_id(self) -> str | None:
        run_id = self.manifest.metadata.get("run_id")
        return str(run_id) if run_id else None

    @property
    def title(self) -> str:
        if self.name is None:
            return f"the model at {self.uri}"
        return f"{self.name}/{self.version}" if self.version is not None else self.name


def build(
    registry: Registry, uri: str, target: str, output: str | os.PathLike[str], **options: Any
) -> Path:
    """Generate ``target`` for the model ``uri`` at ``output``; the path written.

    ``uri`` is anything :meth:`Registry.download` takes (``runs:/…``, ``models:/name/3``,
    ``models:/name@alias``, a package folder) or a bundle file. Targets and their options:

    - ``docker``: a build context folder. ``image`` (tag shown in the README), ``port``
      (8080), ``base_image`` (``python:<the package's X.Y>-slim``), ``gyre_wheel`` (a gyre
      wheel to install instead of building one from the source tree gyre runs from).
    - ``k8s``: ``deployment.yaml``, ``service.yaml``, ``hpa.yaml``. ``image`` (required),
      ``name``, ``port``, ``replicas`` (2), ``min_replicas`` (= replicas), ``max_replicas``
      (10), ``cpu_target`` (70 %), ``cpu_request`` (250m), ``cpu_limit`` (1),
      ``memory_request`` (512Mi), ``memory_limit`` (1Gi), ``token_secret``
      (``<name>-gyre-token``).
    - ``bundle``: one ``.gyre`` file holding the whole package; ``gyre.models.load_model``
      reads it with no tracking server and no network.

    ``output`` must not exist, or be an empty folder (docker, k8s) or an empty file (bundle).
    Everything is checked before the model is fetched, and the output appears complete or
    not at all.

    >>> build(Registry(), "models:/churn/3", "k8s", "deploy", image="acme/churn:3", replicas=3)
    ... # doctest: +SKIP
    PosixPath('deploy')
    """
    builder = _BUILDERS.get(target)
    if builder is None:
        close = difflib.get_close_matches(str(target), TARGETS, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidArgument(
            f"unknown build target {target!r}", hint=f"{guess}targets: {', '.join(TARGETS)}"
        )
    _check_options(target, builder, options)
    out = Path(output)
    _check_output(out, is_file=target == "bundle")
    source = _resolve(registry, uri)
    if target == "bundle":  # one file, written whole by write_bundle
        builder(source, out, **options)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        builder(source, staging, **options)
        _normalise_modes(staging)
        os.replace(staging, out)  # onto an empty folder, or a new name
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


# -- checks made before anything is fetched ----------------------------------------------


def _check_options(target: str, builder: Callable[..., None], options: dict[str, Any]) -> None:
    accepted = [
        name
        for name, p in inspect.signature(builder).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    for name in options:
        if name not in accepted:
            flag = "--" + name.replace("_", "-")
            raise InvalidArgument(
                f"option {flag} does not apply to --target {target}",
                hint=f"--target {target} takes: "
                + (", ".join("--" + a.replace("_", "-") for a in accepted) or "no options"),
            )
    if target == "k8s" and not options.get("image"):
        raise InvalidArgument(
            "--target k8s needs --image: the image the cluster pulls",
            hint="build and push one from `--target docker` first, then pass e.g. "
            "--image ghcr.io/acme/churn:3",
        )
    for key in ("image", "base_image"):
        value = options.get(key)
        if value is not None and (
            not isinstance(value, str) or not value or any(c.isspace() for c in value)
        ):
            raise InvalidArgument(
                f"--{key.replace('_', '-')} {value!r} is not an image name",
                hint="e.g. ghcr.io/acme/churn:3",
            )
    port = options.get("port")
    if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
        raise InvalidArgument(f"--port {port!r} is not a port number", hint="use 1-65535")
    _check_k8s_numbers(options)


def _check_k8s_numbers(options: dict[str, Any]) -> None:
    for key in ("replicas", "min_replicas", "max_replicas"):
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InvalidArgument(
                f"--{key.replace('_', '-')} {value!r} must be a whole number of at least 1"
            )
    lowest, highest = _replica_range(
        options.get("replicas", DEFAULT_REPLICAS),
        options.get("min_replicas"),
        options.get("max_replicas"),
    )
    if lowest > highest:
        raise InvalidArgument(
            f"--min-replicas {lowest} is more than --max-replicas {highest}",
            hint="the autoscaler needs min <= max",
        )
    target = options.get("cpu_target")
    if target is not None and (not isinstance(target, int) or not 1 <= target <= 100):
        raise InvalidArgument(
            f"--cpu-target {target!r} is not a percentage", hint="use 1-100 (e.g. 70)"
        )
    for key in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
        value = options.get(key)
        if value is not None and not (isinstance(value, str) and _QUANTITY.match(value)):
            raise InvalidArgument(
                f"--{key.replace('_', '-')} {value!r} is not a Kubernetes quantity",
                hint="e.g. 250m or 1 for CPU, 512Mi or 2Gi for memory",
            )
    for key in ("name", "token_secret"):
        value = options.get(key)
        if value is not None and not (
            isinstance(value, str) and len(value) <= 63 and _DNS_LABEL.match(value)
        ):
            raise InvalidArgument(
                f"--{key.replace('_', '-')} {value!r} is not a valid Kubernetes name",
                hint="use at most 63 lowercase letters, digits and '-', starting and ending "
                "with a letter or digit",
            )


def _replica_range(replicas: int, lowest: int | None, highest: int | None) -> tuple[int, int]:
    """The autoscaler's (min, max): min defaults to ``replicas``, max to 10 (or min)."""
    low = lowest or replicas
    return low, highest or max(DEFAULT_MAX_REPLICAS, low)


def _check_output(out: Path, *, is_file: bool) -> None:
    hint = "choose a new --output, or delete it first"
    if out.is_symlink():
        raise InvalidArgument(f"output {str(out)!r} is a link", hint=hint)
    if not out.exists():
        return
    if is_file:
        if not out.is_file():
            raise InvalidArgument(
                f"output {str(out)!r} exists and is not a file",
                hint="a bundle is one file: pass e.g. --output model.gyre",
            )
        if out.stat().st_size:
            raise InvalidArgument(f"output {str(out)!r} exists and is not empty", hint=hint)
        return
    if not out.is_dir():
        raise InvalidArgument(f"output {str(out)!r} exists and is not a folder", hint=hint)
    if any(out.iterdir()):
        raise InvalidArgument(f"output {str(out)!r} exists and is not empty", hint=hint)


# -- the package to build from -----------------------------------------------------------


def _resolve(registry: Registry, uri: str) -> _Source:
    name: str | None = None
    version: int | None = None
    local = Path(uri)
    if not uri.startswith(("runs:", "models:")) and local.is_file():
        bundle = read_bundle_info(local)
        folder = extract_bundle(local)
        name, version = bundle.model_name, bundle.model_version
    else:
        ref = parse_model_uri(uri)
        if ref.kind == "registry":
            mv = registry.resolve_version(ref)
            name, version = mv.name, mv.version
            folder = registry.download(mv.source)
        else:
            folder = registry.download(uri)
    manifest = verify_package(folder)
    digest = hashlib.sha256((folder / MANIFEST_FILE).read_bytes()).hexdigest()
    return _Source(uri, folder, manifest, digest, name, version)


def _copy_package(source: _Source, dest: Path) -> None:
    for rel in sorted([MANIFEST_FILE, *source.manifest.files]):
        file = dest / rel
        file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.path / rel, file)


def _normalise_modes(root: Path) -> None:
    """0644 files, 0755 folders whatever the umask: the image's non-root user reads them."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _app_name(source: _Source, name: str | None) -> str:
    if name is not None:
        return name
    if source.name is None:
        return "gyre-model"
    slug = re.sub(r"[^a-z0-9-]+", "-", source.name.lower()).strip("-")[:63].strip("-")
    return slug or "gyre-model"


def _header(source: _Source, target: str) -> list[str]:
    return [
        f"# Generated by `gyre models build {source.uri} --target {target}` "
        f"(gyre {_gyre_version()}).",
        "# Regenerate it rather than editing it: the same model gives the same bytes.",
        f"# Model: {source.title}, {source.manifest.flavor} flavor, "
        f"manifest sha256 {source.manifest_sha256}.",
    ]


def _gyre_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path
        return "unknown"


# -- docker -------------------------------------------------------------------------------


def _build_docker(
    source: _Source,
    out: Path,
    *,
    image: str | None = None,
    port: int = 8080,
    base_image: str | None = None,
    gyre_wheel: str | None = None,
) -> None:
    python = _python_minor(source.manifest.python_version)
    base = base_image or f"python:{python}-slim"
    tag = image or _default_tag(source)
    _copy_package(source, out / "model")
    wheel = _place_gyre_wheel(out / WHEEL_DIR, gyre_wheel)
    (out / "requirements.txt").write_text(_requirements(source, wheel))
    (out / "Dockerfile").write_text(_dockerfile(source, base, port, tag, wheel is not None))
    keep = ["requirements.txt", "model", *([WHEEL_DIR] if wheel else [])]
    (out / ".dockerignore").write_text(
        "# Send the Docker daemon only what the Dockerfile copies.\n*\n"
        + "".join(f"!{name}\n" for name in keep)
    )
    (out / "README.md").write_text(_docker_readme(source, tag, port, python, base))


def _python_minor(version: str) -> str:
    match = re.match(r"^(\d+)\.(\d+)", version)
    if not match:
        raise InvalidArgument(
            f"the package records python_version {version!r}, not X.Y[.Z]",
            hint="pass --base-image to choose the image's Python yourself",
        )
    return f"{match.group(1)}.{match.group(2)}"


def _default_tag(source: _Source) -> str:
    return f"{_app_name(source, None)}:{source.version if source.version is not None else 'latest'}"


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(source: _Source, wheel: str | None) -> str:
    pinned = {_normalised(n) for n in source.manifest.requirements}
    lines = [
        *_header(source, "docker"),
        "",
        "# What the model was saved with (its package's requirements.txt), exact versions:",
        *(f"{n}=={v}" for n, v in sorted(source.manifest.requirements.items())),
        "",
        "# gyre's own dependencies, at the versions installed where this context was built",
        "# (the model's pins above win where both name a library):",
        *(r for r in _gyre_dependencies() if _normalised(_dist_name(r)) not in pinned),
        "",
        "# gyre itself:",
        f"{DISTRIBUTION} @ file://{APP_DIR}/{WHEEL_DIR}/{wheel}"
        if wheel
        else f"{DISTRIBUTION}=={_gyre_version()}",
    ]
    return "\n".join(lines) + "\n"


def _dist_name(requirement: str) -> str:
    match = _REQUIREMENT.match(requirement)
    return match.group(1) if match else requirement


def _gyre_dependencies() -> list[str]:
    """gyre's required (not optional) dependencies, pinned at their installed versions."""
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return []  # running from a source tree: the wheel's metadata brings them
    pins = []
    for requirement in declared:
        if "extra" in requirement.partition(";")[2]:
            continue
        match = _REQUIREMENT.match(requirement)
        if match is None:
            continue
        name, extras = match.group(1), match.group(2) or ""
        try:
            pins.append(f"{name}{extras}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(requirement.partition(";")[0].strip())
    return sorted(pins, key=lambda r: _normalised(_dist_name(r)))


def _place_gyre_wheel(dest: Path, given: str | None) -> str | None:
    """Put a wheel of gyre into ``dest``; its file name, or None to install from the index."""
    if given is not None:
        wheel = Path(given)
        if not (wheel.is_file() and wheel.name.endswith(".whl")):
            raise InvalidArgument(
                f"--gyre-wheel {given!r} is not a wheel file", hint="pass a path ending in .whl"
            )
        dest.mkdir(parents=True)
        shutil.copyfile(wheel, dest / wheel.name)
        return wheel.name
    root = _gyre_source_tree()
    if root is None:
        return None
    return _build_wheel(root, dest)


def _gyre_source_tree() -> Path | None:
    """The project folder the running gyre comes from, when it is not an index install.

    gyre is not on a public index yet, so an image built from a checkout (an editable
    install, or ``src`` on ``sys.path``) or from an install of a local folder gets a wheel
    of that source tree; an install from an index pins its version instead.
    """
    package = Path(__file__).resolve().parents[1]  # the gyre package running now
    if not {"site-packages", "dist-packages"} & set(package.parts):
        for parent in package.parents:  # a checkout: the project around the code running
            project = parent / "pyproject.toml"
            if project.is_file():
                return parent if f'name = "{DISTRIBUTION}"' in project.read_text() else None
        return None
    try:  # installed: from a local folder (direct_url.json says so), or from an index
        text = importlib.metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
        doc = json.loads(text or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
    url = urlparse(str(doc.get("url", "")))
    if "dir_info" in doc and url.scheme == "file":
        root = Path(unquote(url.path)).resolve()
        if (root / "pyproject.toml").is_file():
            return root
    return None


_PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in")
_PROJECT_PREFIXES = ("README", "LICENSE", "LICENCE", "COPYING", "NOTICE")


def _build_wheel(root: Path, dest: Path) -> str:
    """Build a wheel of the project at ``root`` into ``dest``, offline and reproducibly.

    The build runs in a copy holding only what a wheel is made of (project files and the
    package folder, no caches or egg-info), so the source tree is left untouched. pip is
    used when present, else ``python -m build``; neither may fetch anything.
    """
    top = next((d for d in ("src", "gyre") if (root / d).is_dir()), None)
    hint = "pass --gyre-wheel with a wheel of gyre built elsewhere (`pip wheel --no-deps .`)"
    if top is None:
        raise BackendUnavailable(f"{str(root)!r} has neither src/ nor gyre/", hint=hint)
    with tempfile.TemporaryDirectory(prefix="gyre-wheel-") as tmp:
        copy = Path(tmp) / "project"
        copy.mkdir()
        for item in sorted(root.iterdir()):
            if item.is_file() and (
                item.name in _PROJECT_FILES or item.name.startswith(_PROJECT_PREFIXES)
            ):
                shutil.copyfile(item, copy / item.name)
        shutil.copytree(
            root / top,
            copy / top,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*"),
        )
        dest.mkdir(parents=True)
        if importlib.util.find_spec("pip") is not None:
            command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
            command += ["--no-index", "--quiet", "--wheel-dir", str(dest), str(copy)]
        elif importlib.util.find_spec("build") is not None:
            command = [sys.executable, "-m", "build", "--wheel", "--no-isolation"]
            command += ["--outdir", str(dest), str(copy)]
        else:
            raise BackendUnavailable(
                "cannot build a wheel of gyre: neither pip nor build is installed", hint=hint
            )
        env = {**os.environ, "SOURCE_DATE_EPOCH": _SOURCE_DATE_EPOCH, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        wheels = sorted(dest.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BackendUnavailable(
                f"could not build a wheel of gyre from {str(root)!r}: {last}",
                hint="the build needs setuptools in this environment; or " + hint,
            )
        return wheels[0].name


def _dockerfile(source: _Source, base: str, port: int, tag: str, has_wheel: bool) -> str:
    probe = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{port}{READY_PATH}', timeout=4)"
    )
    entrypoint = ["gyre", "serve", MODEL_DIR, "--host", "0.0.0.0", "--port", str(port)]
    lines = [
        "# syntax=docker/dockerfile:1",
        *_header(source, "docker"),
        "#",
        f"# Build: docker build -t {tag} .",
        f"# Run:   docker run --rm -p {port}:{port} -e {TOKEN_ENV}=<token> {tag}",
        "#",
        "# API tokens: the server listens on 0.0.0.0, and gyre refuses to listen beyond",
        "# loopback without auth. Give the container its token at run time (-e GYRE_TOKEN=...,",
        "# or a Kubernetes Secret); never bake it into the image. Clients send",
        "# 'Authorization: Bearer <token>'. The health endpoints answer without one.",
        "",
        f"FROM {base}",
        "",
        "ENV PYTHONDONTWRITEBYTECODE=1 \\",
        "    PYTHONUNBUFFERED=1 \\",
        "    PIP_NO_CACHE_DIR=1 \\",
        "    PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
        "    GYRE_HOME=/home/gyre/.gyre",
        "",
        f"# An unprivileged user with a fixed uid ({UID}), which Kubernetes' runAsNonRoot checks.",
        f"RUN groupadd --gid {UID} gyre \\",
        f"    && useradd --uid {UID} --gid {UID} --create-home --home-dir /home/gyre \\",
        "       --shell /usr/sbin/nologin gyre",
        "",
        f"WORKDIR {APP_DIR}",
        "# Dependencies first: this layer is reused while only the model changes.",
        "COPY requirements.txt ./",
        *([f"COPY {WHEEL_DIR}/ ./{WHEEL_DIR}/"] if has_wheel else []),
        "RUN pip install --no-cache-dir -r requirements.txt",
        "",
        "# The model package, owned by root: the server can read it but not change it.",
        "COPY model/ ./model/",
        "",
        f"USER {UID}:{UID}",
        f"EXPOSE {port}",
        "# python, not curl: slim images have no curl.",
        "HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \\",
        f"    CMD {json.dumps(['python', '-c', probe])}",
        f"ENTRYPOINT {json.dumps(entrypoint)}",
    ]
    return "\n".join(lines) + "\n"


def _docker_readme(source: _Source, tag: str, port: int, python: str, base: str) -> str:
    m = source.manifest
    pins = ", ".join(f"{n} {v}" for n, v in sorted(m.requirements.items())) or "none"
    return f"""# {source.title}: Docker build context

Generated by `gyre models build {source.uri} --target docker` (gyre {_gyre_version()}).
Regenerate it rather than editing it: the same model gives the same bytes.

| | |
|---|---|
| model | {source.title} |
| flavor | {m.flavor} ({m.library or "-"} {m.library_version or ""}) |
| manifest sha256 | `{source.manifest_sha256}` |
| saved with | Python {m.python_version}; {pins} |
| base image | `{base}` (the package's Python {python}) |

## Build and run

```bash
docker build -t {tag} .
docker run --rm -p {port}:{port} -e {TOKEN_ENV}=<token> {tag}
curl -fsS http://127.0.0.1:{port}{READY_PATH}
```

The container runs `gyre serve {MODEL_DIR} --host 0.0.0.0 --port {port}` as the unprivileged
user {UID}: the Open Inference Protocol v2 under `/v2/...`, with `{LIVE_PATH}` (the process
is up) and `{READY_PATH}` (the model is loaded), which the image's HEALTHCHECK polls.

## API tokens

The server listens on 0.0.0.0, and gyre refuses to listen beyond loopback without auth: the
container needs its API token configuration at run time, `-e {TOKEN_ENV}=...` or a
Kubernetes Secret (`gyre models build ... --target k8s` wires one up). Never bake a token
into the image. Clients send `Authorization: Bearer <token>`; the health endpoints answer
without one.

## What is here

- `Dockerfile`: `{base}`, pinned requirements, the model under `{MODEL_DIR}`, user {UID}.
- `requirements.txt`: the model's exact pins, gyre's dependencies, and gyre itself.
- `model/`: the model package, byte for byte; `model/{MANIFEST_FILE}` lists every file's sha256.
- `{WHEEL_DIR}/` (when present): a wheel of the gyre this context was built with.
"""


# -- kubernetes ---------------------------------------------------------------------------


def _build_k8s(
    source: _Source,
    out: Path,
    *,
    image: str | None = None,
    name: str | None = None,
    port: int = 8080,
    replicas: int = DEFAULT_REPLICAS,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    cpu_target: int = 70,
    cpu_request: str = "250m",
    cpu_limit: str = "1",
    memory_request: str = "512Mi",
    memory_limit: str = "1Gi",
    token_secret: str | None = None,
) -> None:
    assert image is not None  # checked by _check_options before the model was fetched
    app = _app_name(source, name)
    secret = token_secret or f"{app}-gyre-token"
    lowest, highest = _replica_range(replicas, min_replicas, max_replicas)
    labels = _labels(source, app)
    selector = {"app.kubernetes.io/name": app, "app.kubernetes.io/component": "model-server"}
    annotations = {"gyre/model-uri": source.uri, "gyre/manifest-sha256": source.manifest_sha256}
    meta = {"name": app, "labels": labels, "annotations": annotations}
    probe = {"periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "model",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                            "env": [
                                {
                                    "name": TOKEN_ENV,
                                    "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}},
                                }
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": READY_PATH, "port": "http"},
                                "initialDelaySeconds": 5,
                                **probe,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": LIVE_PATH, "port": "http"},
                                "initialDelaySeconds": 15,
                                **probe,
                            },
                            "resources": {
                                "requests": {"cpu": cpu_request, "memory": memory_request},
                                "limits": {"cpu": cpu_limit, "memory": memory_limit},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "minReplicas": lowest,
            "maxReplicas": highest,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu_target},
                    },
                }
            ],
        },
    }
    notes = {
        "deployment.yaml": [
            f"# Pods read their API token from Secret {secret!r} (key 'token'); create it first:",
            f"#   kubectl create secret generic {secret} --from-literal=token=<token>",
            "# gyre refuses to serve beyond loopback without auth; the probes need no token.",
        ],
        "service.yaml": [f"# In-cluster address: http://{app}:{port} (ClusterIP)."],
        "hpa.yaml": [
            f"# Scales {app} between {lowest} and {highest} replicas at {cpu_target}% of the "
            "CPU request.",
        ],
    }
    for file, doc in (
        ("deployment.yaml", deployment),
        ("service.yaml", service),
        ("hpa.yaml", hpa),
    ):
        text = yaml.dump(doc, Dumper=_PlainDumper, sort_keys=False, width=100)
        (out / file).write_text("\n".join([*_header(source, "k8s"), *notes[file], text]))


class _PlainDumper(yaml.SafeDumper):
    """Writes shared mappings out in full: no &anchors and *aliases for a reader to follow."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _labels(source: _Source, app: str) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "gyre",
    }
    if source.name is not None:
        labels["gyre/model"] = _label_value(source.name)
    if source.version is not None:
        labels["gyre/model-version"] = str(source.version)
    if source.run_id is not None:
        labels["gyre/run-id"] = _label_value(source.run_id)
    return {k: v for k, v in labels.items() if v}


def _label_value(text: str) -> str:
    """``text`` made into a valid label value (the exact value is in the annotations)."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


# -- bundle ---------------------------------------------------------------------------------


def _build_bundle(source: _Source, out: Path) -> None:
    write_bundle(source.path, out, name=source.name, version=source.version)


_BUILDERS: dict[str, Callable[..., None]] = {
    "docker": _build_docker,
    "k8s": _build_k8s,
    "bundle": _build_bundle,
}
