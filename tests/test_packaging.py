"""gyre models build: Docker context, Kubernetes manifests and bundles, generated not built."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import gyre
from gyre.errors import IntegrityError, InvalidArgument
from gyre.models import ModelManifest, load_model
from gyre.registry import Registry
from gyre.registry._packaging import build
from tests.fixtures.models import sklearn_pipeline


@dataclass
class Registered:
    registry: Registry
    model: Any
    frame: Any
    package: Path  # the package folder as the registry hands it out
    manifest: ModelManifest


@pytest.fixture
def churn(sqlite_uri: str) -> Iterator[Registered]:
    """``churn`` version 1 (alias champion): a scikit-learn pipeline on mixed columns."""
    gyre.set_tracking_uri(sqlite_uri)
    model, frame = sklearn_pipeline()
    with gyre.start_run(experiment="packaging"):
        info = gyre.log_model(model, input_example=frame[:5], reference_data=frame)
    gyre.register_model(info.uri, "churn")
    registry = Registry(sqlite_uri)
    registry.set_alias("churn", "champion", 1)
    package = registry.download("models:/churn/1")
    try:
        yield Registered(registry, model, frame, package, info.manifest)
    finally:
        registry.close()
        gyre.set_tracking_uri(None)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- docker -------------------------------------------------------------------------------


def test_the_docker_context_is_pinned_non_root_healthchecked_and_deterministic(
    churn: Registered, tmp_path: Path
) -> None:
    out = build(churn.registry, "models:/churn@champion", "docker", tmp_path / "ctx")
    dockerfile = (out / "Dockerfile").read_text()
    lines = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]

    minor = ".".join(churn.manifest.python_version.split(".")[:2])
    assert lines[0] == f"FROM python:{minor}-slim"
    assert "USER 10001:10001" in lines
    assert lines.index("USER 10001:10001") > max(i for i, s in enumerate(lines) if "pip" in s)
    assert "EXPOSE 8080" in lines
    [health] = [i for i, s in enumerate(lines) if s.startswith("HEALTHCHECK")]
    probe = json.loads(lines[health + 1].strip().removeprefix("CMD "))
    assert probe[:2] == ["python", "-c"]
    assert "urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready'" in probe[2]
    entry = json.loads(lines[-1].removeprefix("ENTRYPOINT "))
    assert entry == ["gyre", "serve", "/app/model", "--host", "0.0.0.0", "--port", "8080"]
    assert "GYRE_TOKEN" in dockerfile and "GYRE_TOKEN" in (out / "README.md").read_text()

    requirements = [
        line
        for line in (out / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for dist, version in churn.manifest.requirements.items():
        assert f"{dist}=={version}" in requirements
    [gyre_line] = [r for r in requirements if r.startswith("gyreml")]
    assert all("==" in r for r in requirements if r is not gyre_line)
    wheel = re.fullmatch(r"gyreml @ file:///app/wheels/(gyreml-[^/]+\.whl)", gyre_line)
    assert wheel is not None
    with zipfile.ZipFile(out / "wheels" / wheel.group(1)) as zf:
        assert "gyre/registry/_packaging.py" in zf.namelist()
    assert "!model" in (out / ".dockerignore").read_text().splitlines()

    copied = ModelManifest.read(out / "model" / "gyre-model.yaml")
    assert copied.files == churn.manifest.files
    assert sha256(out / "model" / "gyre-model.yaml") == sha256(churn.package / "gyre-model.yaml")
    for rel, digest in churn.manifest.files.items():
        assert sha256(out / "model" / rel) == digest, rel
    assert {p.stat().st_mode & 0o777 for p in (out / "model").rglob("*")} <= {0o644, 0o755}

    again = build(churn.registry, "models:/churn@champion", "docker", tmp_path / "again")
    assert tree(again) == tree(out)  # a fresh wheel build included


# -- kubernetes ---------------------------------------------------------------------------


def test_k8s_manifests_carry_probes_resources_image_and_labels(
    churn: Registered, tmp_path: Path
) -> None:
    out = build(
        churn.registry,
        "models:/churn@champion",
        "k8s",
        tmp_path / "deploy",
        image="ghcr.io/acme/churn:1",
        port=9000,
        replicas=3,
        max_replicas=7,
        cpu_limit="2",
        memory_request="256Mi",
    )
    assert sorted(p.name for p in out.iterdir()) == ["deployment.yaml", "hpa.yaml", "service.yaml"]
    deployment, service, hpa = (
        yaml.safe_load((out / f).read_text())
        for f in ("deployment.yaml", "service.yaml", "hpa.yaml")
    )
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    labels = deployment["metadata"]["labels"]
    assert labels["gyre/model"] == "churn" and labels["gyre/model-version"] == "1"
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["annotations"]["gyre/manifest-sha256"] == sha256(
        churn.package / "gyre-model.yaml"
    )
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    [container] = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/churn:1"
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    [token] = container["env"]
    assert token["name"] == "GYRE_TOKEN" and token["valueFrom"]["secretKeyRef"]["key"] == "token"

    assert (service["kind"], service["spec"]["type"]) == ("Service", "ClusterIP")
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 9000

    assert (hpa["apiVersion"], hpa["kind"]) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"] == "churn"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def test_k8s_from_a_run_uri_labels_the_run_and_names_no_version(
    churn: Registered, tmp_path: Path
) -> None:
    run_id = churn.manifest.metadata["run_id"]
    out = build(churn.registry, f"runs:/{run_id}/model", "k8s", tmp_path / "k", image="acme/m:dev")
    labels = yaml.safe_load((out / "deployment.yaml").read_text())["metadata"]["labels"]
    assert labels["gyre/run-id"] == run_id
    assert "gyre/model-version" not in labels and labels["app.kubernetes.io/name"] == "gyre-model"


# -- bundles ------------------------------------------------------------------------------

LOAD_OFFLINE = """
import json, sys
import gyre.models
model = gyre.models.load_model(sys.argv[1])
rows = json.loads(sys.argv[2])
print(json.dumps({
    "predictions": model.predict(rows).tolist(),
    "path": str(model.path),
    "stores_opened": [m for m in ("httpx", "sqlalchemy") if m in sys.modules],
}))
"""


def test_a_bundle_loads_in_a_fresh_process_with_no_reachable_tracking_server(
    churn: Registered, tmp_path: Path
) -> None:
    bundle = build(churn.registry, "models:/churn@champion", "bundle", tmp_path / "churn.gyre")
    with zipfile.ZipFile(bundle) as zf:
        info = json.loads(zf.read("bundle.json"))
        names = zf.namelist()
    manifest_digest = sha256(churn.package / "gyre-model.yaml")
    assert info == {
        "format": "gyre-bundle",
        "format_version": 1,
        "model": {"name": "churn", "version": 1},
        "manifest_sha256": manifest_digest,
    }
    assert sorted(names) == sorted(
        ["bundle.json", "model/gyre-model.yaml", *(f"model/{f}" for f in churn.manifest.files)]
    )
    rows = churn.frame.head(20)
    env = {
        **os.environ,
        "GYRE_TRACKING_URI": "http://127.0.0.1:9",  # nothing listens there
        "GYRE_HOME": str(tmp_path / "edge-box"),
    }
    out = subprocess.run(
        [sys.executable, "-c", LOAD_OFFLINE, str(bundle), rows.to_json(orient="records")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["predictions"] == churn.model.predict(rows).tolist()
    assert result["path"] == str(tmp_path / "edge-box" / "cache" / "bundles" / manifest_digest)
    assert result["stores_opened"] == []

    again = build(churn.registry, "models:/churn/1", "bundle", tmp_path / "again.gyre")
    assert again.read_bytes() == bundle.read_bytes()
    # A bundle is a build source too, and remembers the name and version.
    k8s = build(churn.registry, str(bundle), "k8s", tmp_path / "k8s", image="acme/churn:1")
    labels = yaml.safe_load((k8s / "deployment.yaml").read_text())["metadata"]["labels"]
    assert (labels["gyre/model"], labels["gyre/model-version"]) == ("churn", "1")


def write_zip(path: Path, members: dict[str, bytes], links: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            member = zipfile.ZipInfo(name)
            if name in links:
                member.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(member, data)
    return path


@pytest.mark.parametrize(
    ("member", "why"),
    [("../escaped.txt", "'..'"), ("/tmp/escaped.txt", "absolute"), ("model/link", "a link")],
)
def test_a_bundle_member_that_would_escape_is_refused_by_name(
    churn: Registered, tmp_path: Path, member: str, why: str
) -> None:
    good = build(churn.registry, "models:/churn/1", "bundle", tmp_path / "good.gyre")
    with zipfile.ZipFile(good) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    links = (member,) if why == "a link" else ()
    evil = write_zip(tmp_path / "evil.gyre", {**members, member: b"../../etc"}, links)
    with pytest.raises(InvalidArgument, match=re.escape(repr(member))) as refused:
        load_model(evil)
    assert why in str(refused.value)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "gyre-home" / "cache" / "bundles").exists()


def test_a_tampered_bundle_file_is_refused_naming_the_file(
    churn: Registered, tmp_path: Path
) -> None:
    good = build(churn.registry, "models:/churn/1", "bundle", tmp_path / "good.gyre")
    with zipfile.ZipFile(good) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["model/requirements.txt"] += b"evil==1.0\n"
    with pytest.raises(IntegrityError, match="'requirements.txt'"):
        load_model(write_zip(tmp_path / "tampered.gyre", members))
    assert list((tmp_path / "gyre-home" / "cache" / "bundles").iterdir()) == []


def test_a_bundle_whose_compressed_bytes_are_damaged_is_refused_naming_the_member(
    churn: Registered, tmp_path: Path
) -> None:
    """Bytes of a member's compressed data overwritten (a bad disk, a cut copy): one error
    naming the member, not zlib's traceback."""
    good = build(churn.registry, "models:/churn/1", "bundle", tmp_path / "good.gyre")
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        member = max(zf.infolist(), key=lambda m: m.compress_size)
    # the member's data follow its 30-byte local header, name and extra field
    name_len, extra_len = struct.unpack_from("<HH", data, member.header_offset + 26)
    start = member.header_offset + 30 + name_len + extra_len
    data[start] = 0x07  # a final deflate block of the reserved type: not deflate data
    damaged = tmp_path / "damaged.gyre"
    damaged.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as refused:
        load_model(damaged)
    assert refused.value.message.startswith(
        f"bundle {str(damaged)!r}: member {member.filename!r} cannot be read ("
    )
    assert refused.value.hint == "the bundle is damaged: build it again"


def test_a_bundle_loads_in_process_and_equals_the_registered_model(
    churn: Registered, tmp_path: Path
) -> None:
    bundle = build(churn.registry, "models:/churn/1", "bundle", tmp_path / "m.gyre")
    rows = churn.frame.head(10)
    assert np.array_equal(load_model(bundle).predict(rows), churn.model.predict(rows))


# -- the command line ---------------------------------------------------------------------


def gyre_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gyre", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def assert_one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode == 2, out
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    # Every check happens before the model is looked up: no store is needed here.
    assert_one_line_error(
        gyre_cli("models", "build", "models:/churn/1", "--target", "dokcer", "-o", "x"),
        "unknown build target 'dokcer'",
        "did you mean 'docker'",
    )
    assert_one_line_error(
        gyre_cli("models", "build", "models:/churn/1", "--target", "k8s", "-o", "x"), "--image"
    )
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert_one_line_error(
        gyre_cli("models", "build", "models:/churn/1", "--target", "docker", "-o", str(busy)),
        f"output {str(busy)!r} exists and is not empty",
    )
    assert_one_line_error(
        gyre_cli("models", "build", "m", "--target", "bundle", "-o", "m.gyre", "--replicas", "3"),
        "--replicas does not apply to --target bundle",
    )
    assert (busy / "keep.txt").read_text() == "mine"


def test_cli_builds_a_bundle_and_help_teaches_every_target(
    churn: Registered, sqlite_uri: str, tmp_path: Path
) -> None:
    target = tmp_path / "cli.gyre"
    out = gyre_cli(
        "models", "build", "models:/churn@champion", "--target", "bundle", "-o", str(target),
        "--json", env={"GYRE_TRACKING_URI": sqlite_uri},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "target": "bundle",
        "output": str(target),
        "files": [str(target)],
    }
    assert np.array_equal(
        load_model(target).predict(churn.frame.head(5)), churn.model.predict(churn.frame.head(5))
    )
    told = gyre_cli(
        "models", "build", "models:/churn@champion", "--target", "bundle", "-o",
        str(tmp_path / "told.gyre"), env={"GYRE_TRACKING_URI": sqlite_uri, "COLUMNS": "200"},
    )  # fmt: skip
    assert f"next: gyre serve --bundle {tmp_path / 'told.gyre'}" in told.stdout, told.stdout
    help_text = gyre_cli("models", "build", "--help").stdout
    for example in ("--target docker", "--target k8s", "--target bundle", "kubectl apply"):
        assert example in help_text, example
