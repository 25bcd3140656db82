"""``gyre models build``: a Docker build context, Kubernetes manifests or a bundle file."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from gyre.cli._output import console, print_json
from gyre.registry import Registry

__all__ = ["register"]


def register(models_app: typer.Typer) -> None:
    """Add ``build`` to the ``gyre models`` group."""
    models_app.command("build")(models_build)


def models_build(
    uri: Annotated[
        str,
        typer.Argument(
            help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH, a package "
            "folder, or a .gyre bundle.",
            show_default=False,
        ),
    ],
    target: Annotated[
        str,
        typer.Option("--target", help="docker, k8s or bundle.", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Folder to create (docker, k8s) or file to write (bundle); must not exist "
            "or be empty.",
            show_default=False,
        ),
    ],
    image: Annotated[
        str | None,
        typer.Option(help="Image name; required for k8s, the tag in docker's README."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port the server listens on. [8080]")] = None,
    base_image: Annotated[
        str | None,
        typer.Option(help="docker: base image. [python:X.Y-slim, X.Y as the model recorded]"),
    ] = None,
    gyre_wheel: Annotated[
        str | None,
        typer.Option(help="docker: install this gyre wheel instead of building one."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="k8s: object name. [the model's name, or gyre-model]")
    ] = None,
    replicas: Annotated[int | None, typer.Option(help="k8s: Deployment replicas. [2]")] = None,
    min_replicas: Annotated[
        int | None, typer.Option(help="k8s: autoscaler minimum. [--replicas]")
    ] = None,
    max_replicas: Annotated[int | None, typer.Option(help="k8s: autoscaler maximum. [10]")] = None,
    cpu_target: Annotated[
        int | None, typer.Option(help="k8s: average CPU % of the request to scale at. [70]")
    ] = None,
    cpu_request: Annotated[str | None, typer.Option(help="k8s: CPU request. [250m]")] = None,
    cpu_limit: Annotated[str | None, typer.Option(help="k8s: CPU limit. [1]")] = None,
    memory_request: Annotated[str | None, typer.Option(help="k8s: memory request. [512Mi]")] = None,
    memory_limit: Annotated[str | None, typer.Option(help="k8s: memory limit. [1Gi]")] = None,
    token_secret: Annotated[
        str | None,
        typer.Option(help="k8s: Secret holding the API token (key 'token'). [NAME-gyre-token]"),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri", "-t", help="[default: GYRE_TRACKING_URI]", show_default=False
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Package a model to deploy: a Docker build context, Kubernetes manifests, or one
    self-contained bundle file. Files are generated, not built, and the same model gives
    the same bytes.

    **docker**: Dockerfile (python:X.Y-slim, non-root user, HEALTHCHECK on
    /v2/health/ready, `gyre serve`), pinned requirements.txt, the package under model/.

    `gyre models build models:/churn@champion --target docker -o build/churn`

    `docker build -t churn:3 build/churn && docker run -p 8080:8080 -e GYRE_TOKEN=... churn:3`

    **k8s**: deployment.yaml (probes, resources, runAsNonRoot), service.yaml (ClusterIP),
    hpa.yaml (CPU autoscaling). Needs --image.

    `gyre models build models:/churn/3 --target k8s -o deploy --image ghcr.io/acme/churn:3
    --replicas 3 --max-replicas 12`

    `kubectl apply -f deploy/`

    **bundle**: one .gyre file with the whole package, for machines with no tracking server:
    `gyre.models.load_model("churn.gyre")` reads it offline.

    `gyre models build models:/churn/3 --target bundle -o churn.gyre`

    The server refuses to listen beyond loopback without API tokens: give the container
    GYRE_TOKEN at run time (the k8s Deployment reads it from a Secret). See docs/packaging.md.
    """
    from gyre.registry._packaging import build

    given: dict[str, Any] = {
        "image": image,
        "port": port,
        "base_image": base_image,
        "gyre_wheel": gyre_wheel,
        "name": name,
        "replicas": replicas,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "cpu_target": cpu_target,
        "cpu_request": cpu_request,
        "cpu_limit": cpu_limit,
        "memory_request": memory_request,
        "memory_limit": memory_limit,
        "token_secret": token_secret,
    }
    options = {key: value for key, value in given.items() if value is not None}
    registry = Registry(tracking_uri)
    try:
        path = build(registry, uri, target, output, **options)
    finally:
        registry.close()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if json:
        print_json({"target": target, "output": str(path), "files": [str(f) for f in files]})
        return
    console.print(f"wrote [bold]{path}[/] ({target}, {len(files)} file{'s' * (len(files) != 1)})")
    next_step = {
        "docker": f"docker build -t {image or 'IMAGE'} {path}  (see {path / 'README.md'})",
        "k8s": f"kubectl apply -f {path}  (create the token Secret first: see deployment.yaml)",
        "bundle": f"gyre serve --bundle {shlex.quote(str(path))}   (on the box; or "
        f"gyre.models.load_model({str(path)!r}) in Python)",
    }[target]
    console.print(f"next: {next_step}", soft_wrap=True)
