"""Model packages: what save_model writes, what load_model checks, the public surface."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import gyre.models
from gyre.errors import IntegrityError, InvalidArgument, NotFound
from gyre.models import (
    LibraryVersionWarning,
    Model,
    ReferenceProfile,
    flavor_names,
    get_flavor,
    load_model,
    save_model,
)
from gyre.models import _registry as registry
from tests.fixtures import models as m


@pytest.fixture(scope="session")
def sklearn_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One saved sklearn Pipeline package; tests that change it work on a copy."""
    model, frame = m.sklearn_pipeline()
    path = tmp_path_factory.mktemp("pkg") / "churn"
    save_model(
        model,
        path,
        input_example=frame.head(5),
        reference_data=frame,
        metadata={"run_id": "abc123", "metrics": {"auc": 0.91}},
    )
    return path


@pytest.fixture
def package_copy(sklearn_package: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(sklearn_package, copy)
    return copy


def _edit_manifest(package: Path, change: Any) -> None:
    file = package / "gyre-model.yaml"
    doc = yaml.safe_load(file.read_text())
    change(doc)
    file.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_the_public_surface_is_pinned() -> None:
    assert sorted(gyre.models.__all__) == [
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
    for name in gyre.models.__all__:
        assert getattr(gyre.models, name) is not None


def test_import_gyre_models_loads_neither_numpy_nor_any_ml_library() -> None:
    heavy = ["numpy", "pandas", "sklearn", "skops", "xgboost", "lightgbm", "torch", "onnx", "yaml"]
    code = (
        "import sys, json, gyre.models\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_saved_package_lists_every_file_with_its_digest(sklearn_package: Path) -> None:
    doc = yaml.safe_load((sklearn_package / "gyre-model.yaml").read_text())
    on_disk = sorted(p.name for p in sklearn_package.iterdir() if p.name != "gyre-model.yaml")
    assert (
        sorted(doc["files"])
        == on_disk
        == [
            "input_example.json",
            "model.skops",
            "reference_profile.json",
            "requirements.txt",
        ]
    )
    assert all(len(digest) == 64 for digest in doc["files"].values())


def test_manifest_records_flavor_versions_task_and_caller_metadata(sklearn_package: Path) -> None:
    import sklearn

    doc = yaml.safe_load((sklearn_package / "gyre-model.yaml").read_text())
    assert doc["format_version"] == 1
    assert doc["flavor"]["name"] == "sklearn"
    assert doc["flavor"]["library"] == "scikit-learn"
    assert doc["flavor"]["library_version"] == sklearn.__version__
    assert doc["flavor"]["info"]["serialization"] == "skops"
    assert doc["requirements"]["scikit-learn"] == sklearn.__version__
    assert {"skops", "numpy", "scipy", "pandas"} <= set(doc["requirements"])
    assert doc["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert doc["task"] == {"kind": "classifier", "has_predict_proba": True, "classes": [0, 1]}
    assert doc["metadata"] == {"run_id": "abc123", "metrics": {"auc": 0.91}}
    pins = (sklearn_package / "requirements.txt").read_text().splitlines()
    assert f"scikit-learn=={sklearn.__version__}" in pins


def test_loaded_model_exposes_signature_example_profile_and_metadata(sklearn_package: Path) -> None:
    model = load_model(sklearn_package)
    assert isinstance(model, Model) and model.flavor == "sklearn"
    assert model.signature is not None
    assert [c.name for c in model.signature.inputs.columns] == ["age", "visits", "city", "income"]
    assert model.metadata["run_id"] == "abc123"
    assert list(model.input_example.columns) == ["age", "visits", "city", "income"]
    assert len(model.input_example) == 5
    assert isinstance(model.reference_profile, ReferenceProfile)
    assert model.reference_profile.rows == 200
    assert model.predict(model.input_example).shape == (5,)
    assert model.predict_proba(model.input_example).shape == (5, 2)


def test_reference_data_with_missing_values_makes_the_column_nullable(
    sklearn_package: Path,
) -> None:
    model = load_model(sklearn_package)
    assert model.signature is not None
    spec = {c.name: c for c in model.signature.inputs.columns}
    assert spec["income"].nullable  # the 5-row example had no NaN; the reference had
    assert not spec["age"].nullable
    row = {"age": 30.0, "visits": 2, "city": "oslo", "income": None}
    assert model.predict([row]).shape == (1,)


def test_a_file_whose_digest_differs_is_refused_naming_it(package_copy: Path) -> None:
    with (package_copy / "model.skops").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(
        IntegrityError, match=r"file 'model.skops' does not match its recorded sha256"
    ):
        load_model(package_copy)


def test_a_missing_file_is_refused_naming_it(package_copy: Path) -> None:
    (package_copy / "reference_profile.json").unlink()
    with pytest.raises(
        IntegrityError, match="file 'reference_profile.json' listed in the manifest is missing"
    ):
        load_model(package_copy)


def test_a_file_the_manifest_does_not_list_is_refused(package_copy: Path) -> None:
    (package_copy / "extra.py").write_text("print('hi')\n")
    with pytest.raises(IntegrityError, match="file 'extra.py' is not listed in the manifest"):
        load_model(package_copy)


def test_a_different_library_version_warns_naming_both_versions(package_copy: Path) -> None:
    import sklearn

    def older(doc: dict[str, Any]) -> None:
        doc["requirements"]["scikit-learn"] = "1.0.2"

    _edit_manifest(package_copy, older)
    expected = (
        rf"saved with scikit-learn 1\.0\.2, but scikit-learn {sklearn.__version__} is installed"
    )
    with pytest.warns(LibraryVersionWarning, match=expected):
        model = load_model(package_copy)
    assert model.predict(model.input_example).shape == (5,)


def test_a_library_that_is_not_installed_is_named_with_an_install_hint(package_copy: Path) -> None:
    def needs(doc: dict[str, Any]) -> None:
        doc["requirements"]["no-such-dist"] = "9.9"

    _edit_manifest(package_copy, needs)
    with pytest.raises(NotFound, match="library 'no-such-dist' is not installed") as info:
        load_model(package_copy)
    assert info.value.hint == "pip install 'no-such-dist==9.9'"


def test_a_newer_package_format_is_refused(package_copy: Path) -> None:
    _edit_manifest(package_copy, lambda doc: doc.update(format_version=2))
    with pytest.raises(InvalidArgument, match="format_version 2 is not supported"):
        load_model(package_copy)


def test_loading_a_directory_without_a_manifest_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no model package at"):
        load_model(tmp_path)


def test_saving_into_a_non_empty_directory_is_refused(tmp_path: Path) -> None:
    model, _ = m.sklearn_pipeline()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(InvalidArgument, match="already exists and is not an empty directory"):
        save_model(model, tmp_path / "taken")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"], "no partial package left behind"


def test_metadata_must_be_plain_values(tmp_path: Path) -> None:
    model, _ = m.sklearn_pipeline()
    with pytest.raises(InvalidArgument, match=r"metadata\['when'\]"):
        save_model(model, tmp_path / "p", metadata={"when": object()})
    assert not (tmp_path / "p").exists()


def test_predict_proba_of_a_regressor_says_there_is_none(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    X = np.arange(12.0).reshape(6, 2)
    save_model(LinearRegression().fit(X, X.sum(axis=1)), tmp_path / "lr", input_example=X)
    model = load_model(tmp_path / "lr")
    assert model.task.kind == "regressor"
    with pytest.raises(InvalidArgument, match="has no predict_proba") as info:
        model.predict_proba(X)
    assert info.value.hint and "predict()" in info.value.hint


def test_flavor_detection_picks_the_library_specific_flavor(tmp_path: Path) -> None:
    xgb_model, _ = m.xgb_classifier()  # also a scikit-learn estimator
    assert registry.detect_flavor(xgb_model).name == "xgboost"
    pipeline, _ = m.sklearn_pipeline()
    assert registry.detect_flavor(pipeline).name == "sklearn"
    python_model, _ = m.python_model(tmp_path)
    assert registry.detect_flavor(python_model).name == "python"


def test_a_model_no_flavor_can_save_is_refused_naming_its_type(tmp_path: Path) -> None:
    with pytest.raises(
        InvalidArgument, match="no registered flavor can save a model of type 'builtins.dict'"
    ):
        save_model({"weights": [1, 2]}, tmp_path / "p")


def test_an_explicit_flavor_that_cannot_save_the_model_is_refused(tmp_path: Path) -> None:
    model, _ = m.sklearn_pipeline()
    with pytest.raises(
        InvalidArgument, match="flavor 'torch' cannot save a model of type 'Pipeline'"
    ):
        save_model(model, tmp_path / "p", flavor="torch")


def test_an_unknown_flavor_is_not_found_and_lists_the_known_ones() -> None:
    with pytest.raises(NotFound, match="flavor 'caffe' is not registered") as info:
        get_flavor("caffe")
    assert info.value.hint and "sklearn" in info.value.hint


def test_flavors_come_from_entry_points_before_the_builtin_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    points = {
        "sklearn": "gyre.models.flavors.python:FLAVOR",  # shadows the built-in name
        "extra": "gyre.models.flavors.onnx:FLAVOR",
    }
    monkeypatch.setattr(registry, "_entry_points", lambda: points)
    registry.get_flavor.cache_clear()
    try:
        assert "extra" in flavor_names() and set(registry.BUILTIN_FLAVORS) <= set(flavor_names())
        with pytest.raises(InvalidArgument, match="does not provide a flavor named 'sklearn'"):
            get_flavor("sklearn")
        with pytest.raises(InvalidArgument, match="does not provide a flavor named 'extra'"):
            get_flavor("extra")
    finally:
        registry.get_flavor.cache_clear()


def test_every_builtin_flavor_is_available_without_entry_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "_entry_points", dict)
    registry.get_flavor.cache_clear()
    try:
        assert flavor_names() == sorted(registry.BUILTIN_FLAVORS)
        assert [get_flavor(name).name for name in flavor_names()] == flavor_names()
    finally:
        registry.get_flavor.cache_clear()


def test_flavor_names_survive_importing_a_flavor_module() -> None:
    """``gyre.models.flavors`` is the subpackage; the list of names has its own name, so
    importing a flavor module (as loading any model does) cannot shadow it."""
    import gyre.models.flavors.sklearn  # the import is the test

    assert "sklearn" in gyre.models.flavor_names()
