"""The flavor contract: what every flavor must do, checked on one model.

>>> from gyre.testing._flavor import check_flavor
>>> check_flavor("sklearn", fitted_pipeline, X_test)  # doctest: +SKIP

:func:`check_flavor` saves the model into a temporary directory and checks that

* the manifest is complete: flavor, pinned requirements (also in ``requirements.txt``),
  python version, signature, input example, task, and the sha256 of every other file;
* the package loads here, and its predictions (and probabilities, when the task says it
  has them) equal the original model's, when the original can be asked directly;
* the package loads **in a fresh Python process** and predicts exactly the same there;
* a package with one byte changed is refused with IntegrityError naming the file.

Each failure is an AssertionError naming what broke.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gyre.errors import IntegrityError, InvalidArgument
from gyre.models import (
    ModelManifest,
    UnsafeSerializationWarning,
    get_flavor,
    load_model,
    save_model,
)
from gyre.models._flavor import inherits
from gyre.models._manifest import MANIFEST_FILE

__all__ = ["check_flavor"]

_FRESH_PROCESS = """
import json, sys
import numpy as np
from gyre.models import load_model

package, out = sys.argv[1], sys.argv[2]
model = load_model(package)
example = model.input_example
outputs = {"predict": model.predict(example)}
if model.task.has_predict_proba:
    outputs["predict_proba"] = model.predict_proba(example)
for name, value in outputs.items():
    value = np.asarray(value)
    np.save(f"{out}/{name}.npy", value.astype(str) if value.dtype == object else value)
print(json.dumps(sorted(outputs)))
"""


def _storable(value: Any) -> NDArray[Any]:
    arr = np.asarray(value)
    return arr.astype(str) if arr.dtype == object else arr


def _same(a: Any, b: Any) -> bool:
    x, y = _storable(a), _storable(b)
    if x.shape != y.shape:
        return False
    if x.dtype.kind in "fc" and y.dtype.kind in "fc":
        return bool(np.array_equal(x, y, equal_nan=True))
    return bool(np.array_equal(x, y))


def _outputs(model: Any, X: Any) -> dict[str, Any]:
    out = {"predict": model.predict(X)}
    if model.task.has_predict_proba:
        out["predict_proba"] = model.predict_proba(X)
    else:
        try:
            model.predict_proba(X)
        except InvalidArgument:
            pass
        else:
            raise AssertionError("predict_proba answered though the task says it has none")
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_manifest(package: Path, manifest: ModelManifest, flavor_name: str) -> None:
    written = ModelManifest.read(package / MANIFEST_FILE)
    assert written.to_dict() == manifest.to_dict(), (
        "the manifest on disk differs from the returned one"
    )
    assert manifest.flavor == flavor_name, f"manifest names flavor {manifest.flavor!r}"
    on_disk = {
        p.relative_to(package).as_posix(): _sha256(p)
        for p in package.rglob("*")
        if p.is_file() and p.name != MANIFEST_FILE
    }
    assert manifest.files == on_disk, (
        f"manifest files {sorted(manifest.files)} != files on disk {sorted(on_disk)} "
        "(or a digest differs)"
    )
    for dist in get_flavor(flavor_name).requirements():
        assert manifest.requirements.get(dist) == version(dist), (
            f"requirement {dist!r} should be pinned to the installed {version(dist)}, "
            f"manifest says {manifest.requirements.get(dist)!r}"
        )
    pins = (package / "requirements.txt").read_text().split()
    assert pins == [f"{d}=={v}" for d, v in sorted(manifest.requirements.items())], pins
    if manifest.library is not None:
        assert manifest.library_version == manifest.requirements.get(manifest.library)
    assert manifest.python_version == platform.python_version()
    assert manifest.signature is not None, "no signature was inferred from the input example"
    assert manifest.input_example in manifest.files, "the input example is not in the package"
    assert manifest.task.kind in ("classifier", "regressor", "unknown"), manifest.task.kind


def _original_outputs(model: Any, prepared: Any) -> dict[str, Any] | None:
    """What the in-memory model says, when it can be asked without the flavor."""
    if inherits(model, "torch", "Module"):
        import torch

        with torch.no_grad():
            arr = prepared.to_numpy() if hasattr(prepared, "to_numpy") else prepared
            tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            return {"predict": model(tensor).numpy()}
    predict = getattr(model, "predict", None)
    if not callable(predict) or isinstance(model, type):
        return None
    required = [
        p
        for p in inspect.signature(predict).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) != 1:  # e.g. predict(context, model_input)
        return None
    out = {"predict": predict(prepared)}
    if callable(getattr(model, "predict_proba", None)):
        out["predict_proba"] = model.predict_proba(prepared)
    return out


def _fresh_process(package: Path, scratch: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(package), str(scratch)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, (
        f"loading the package in a fresh process failed:\n{done.stderr[-3000:]}"
    )
    names = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: np.load(scratch / f"{name}.npy", allow_pickle=False) for name in names}


def _check_tampering_refused(package: Path, scratch: Path, manifest: ModelManifest) -> None:
    tampered = scratch / "tampered"
    shutil.copytree(package, tampered)
    victim = max(manifest.files, key=lambda rel: (tampered / rel).stat().st_size)
    data = bytearray((tampered / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / victim).write_bytes(bytes(data))
    try:
        load_model(tampered)
    except IntegrityError as exc:
        assert victim in str(exc), f"IntegrityError {exc} should name {victim!r}"
    else:
        raise AssertionError(f"a package with {victim!r} changed was loaded")


def check_flavor(
    flavor_name: str, model: Any, X: Any, *, allow_pickle: bool = False
) -> ModelManifest:
    """Run the flavor contract on ``model`` with input ``X`` (also used as input example).

    Returns the manifest of the package it saved; raises AssertionError naming the
    failed check.
    """
    assert get_flavor(flavor_name).can_save(model), f"{flavor_name}.can_save(model) is False"
    with tempfile.TemporaryDirectory(prefix="gyre-check-flavor-") as tmp, warnings.catch_warnings():
        if allow_pickle:  # the caller opted in; the warning is not what is checked here
            warnings.simplefilter("ignore", UnsafeSerializationWarning)
        scratch = Path(tmp)
        package = scratch / "model"
        manifest = save_model(
            model, package, flavor=flavor_name, input_example=X, allow_pickle=allow_pickle
        )
        _check_manifest(package, manifest, flavor_name)

        loaded = load_model(package)
        here = _outputs(loaded, X)
        original = _original_outputs(model, loaded.prepare_input(X))
        for name, value in (original or {}).items():
            if name in here:
                assert _same(here[name], value), f"loaded {name} differs from the original model's"
        assert _same(_outputs(loaded, loaded.input_example)["predict"], here["predict"]), (
            "predictions on the saved input example differ from those on X"
        )

        there = _fresh_process(package, scratch)
        assert sorted(there) == sorted(here), f"fresh process computed {sorted(there)}"
        for name, value in here.items():
            assert _same(there[name], value), f"{name} in a fresh process differs from in-process"

        _check_tampering_refused(package, scratch, manifest)
        return manifest
