"""Every registered flavor passes the flavor contract, and each refuses what is unsafe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin

from gyre.errors import InvalidArgument, NotFound
from gyre.models import UnsafeSerializationWarning, flavor_names, load_model, save_model
from gyre.testing._flavor import check_flavor
from tests.fixtures import models as m

# One small model per flavor. A flavor registered without an entry here fails its test.
BUILDERS: dict[str, Callable[[Path], tuple[Any, Any]]] = {
    "sklearn": lambda _: m.sklearn_pipeline(),
    "xgboost": lambda _: m.xgb_classifier(),
    "lightgbm": lambda _: m.lgbm_regressor(),
    "torch": lambda _: m.torch_mlp(),
    "onnx": lambda _: m.onnx_logistic_regression(),
    "python": m.python_model,
}


@pytest.mark.parametrize("name", flavor_names())
def test_every_registered_flavor_passes_the_contract(name: str, tmp_path: Path) -> None:
    assert name in BUILDERS, f"flavor {name!r} has no conformance model in BUILDERS"
    model, X = BUILDERS[name](tmp_path)
    manifest = check_flavor(name, model, X)
    assert manifest.flavor == name


# -- sklearn: skops by default, pickle only when allowed ------------------------------------


class ComplexGainRegressor(RegressorMixin, BaseEstimator):
    """Holds a complex number, which skops cannot store but pickle can."""

    def fit(self, X: Any, y: Any) -> ComplexGainRegressor:
        self.coef_ = np.linalg.lstsq(np.asarray(X), y, rcond=None)[0]
        self.gain_ = 1 + 0j
        return self

    def predict(self, X: Any) -> Any:
        return np.asarray(X) @ self.coef_ * self.gain_.real


class ShiftTransformer(TransformerMixin, BaseEstimator):
    """A user-defined step skops stores by its state: a type the saver must record."""

    def fit(self, X: Any, y: Any = None) -> ShiftTransformer:
        self.shift_ = np.asarray(X).mean(axis=0)
        return self

    def transform(self, X: Any) -> Any:
        return np.asarray(X) - self.shift_


def _regression_data() -> tuple[Any, Any]:
    X = np.random.default_rng(5).normal(size=(30, 3))
    return X, X @ np.array([1.0, -2.0, 0.5])


def _edit_manifest(package: Path, change: Callable[[dict[str, Any]], None]) -> None:
    file = package / "gyre-model.yaml"
    doc = yaml.safe_load(file.read_text())
    change(doc)
    file.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_pickle_is_refused_unless_allowed(tmp_path: Path) -> None:
    X, y = _regression_data()
    model = ComplexGainRegressor().fit(X, y)
    with pytest.raises(
        InvalidArgument, match="skops cannot save this ComplexGainRegressor"
    ) as info:
        save_model(model, tmp_path / "p", input_example=X)
    assert info.value.hint and "allow_pickle=True" in info.value.hint
    assert not (tmp_path / "p").exists()


def test_allowed_pickle_warns_when_saving_and_again_when_loading(tmp_path: Path) -> None:
    X, y = _regression_data()
    model = ComplexGainRegressor().fit(X, y)
    with pytest.warns(UnsafeSerializationWarning, match="saving ComplexGainRegressor with pickle"):
        manifest = save_model(model, tmp_path / "p", input_example=X, allow_pickle=True)
    assert manifest.flavor_info["serialization"] == "pickle"
    with pytest.warns(
        UnsafeSerializationWarning, match="with pickle, which can run arbitrary code"
    ):
        loaded = load_model(tmp_path / "p")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_allow_pickle_still_uses_skops_when_skops_can(tmp_path: Path) -> None:
    X, y = _regression_data()
    from sklearn.linear_model import Ridge

    manifest = save_model(Ridge().fit(X, y), tmp_path / "p", input_example=X, allow_pickle=True)
    assert manifest.flavor_info["serialization"] == "skops"


@pytest.fixture
def custom_step_package(tmp_path: Path) -> Path:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    X, y = _regression_data()
    model = make_pipeline(ShiftTransformer(), Ridge()).fit(X, y)
    save_model(model, tmp_path / "p", input_example=X)
    return tmp_path / "p"


def test_types_the_saver_recorded_are_trusted_when_loading(custom_step_package: Path) -> None:
    doc = yaml.safe_load((custom_step_package / "gyre-model.yaml").read_text())
    assert doc["flavor"]["info"]["trusted_types"] == [f"{__name__}.ShiftTransformer"]
    model = load_model(custom_step_package)
    assert model.predict(model.input_example).shape == (30,)


def test_skops_types_nobody_trusted_are_refused_by_name(custom_step_package: Path) -> None:
    _edit_manifest(custom_step_package, lambda doc: doc["flavor"]["info"].update(trusted_types=[]))
    with pytest.raises(
        InvalidArgument,
        match=f"'model.skops' holds types that are not trusted: {__name__}.ShiftTransformer",
    ):
        load_model(custom_step_package)


# -- python flavor: the class must be importable ---------------------------------------------


def test_a_python_model_class_defined_in_main_is_refused(tmp_path: Path) -> None:
    cls = type("Scripted", (), {"__module__": "__main__", "load_context": print, "predict": print})
    with pytest.raises(
        InvalidArgument, match="'Scripted' is defined in __main__, so it cannot be imported"
    ):
        save_model(cls(), tmp_path / "p")


def test_a_python_model_class_defined_in_a_function_is_refused(tmp_path: Path) -> None:
    class Local:
        def load_context(self, context: Any) -> None: ...

        def predict(self, context: Any, model_input: Any) -> Any: ...

    with pytest.raises(InvalidArgument, match="is defined in a function"):
        save_model(Local(), tmp_path / "p")


def test_a_python_model_class_that_cannot_be_imported_names_the_module(tmp_path: Path) -> None:
    model, X = m.python_model(tmp_path)
    save_model(model, tmp_path / "p", input_example=X)
    _edit_manifest(
        tmp_path / "p",
        lambda doc: doc["flavor"]["info"].update({"class": "gone_module:ThresholdModel"}),
    )
    with pytest.raises(NotFound, match="cannot import module 'gone_module'") as info:
        load_model(tmp_path / "p")
    assert info.value.hint and "PYTHONPATH" in info.value.hint


def test_python_model_artifacts_are_copied_into_the_package(tmp_path: Path) -> None:
    model, X = m.python_model(tmp_path)
    manifest = save_model(model, tmp_path / "p", input_example=X)
    assert manifest.flavor_info["artifacts"] == {"weights": "artifacts/weights/weights.txt"}
    (tmp_path / "weights.txt").unlink()  # the package no longer needs the original
    loaded = load_model(tmp_path / "p")
    assert loaded.predict_proba(X).shape == (20, 2)


def test_python_model_config_must_be_json(tmp_path: Path) -> None:
    model, _ = m.python_model(tmp_path)
    model.config = {"threshold": {1, 2}}
    with pytest.raises(InvalidArgument, match="config is not JSON-serialisable"):
        save_model(model, tmp_path / "p")


class _Flaky(m.ThresholdModel):
    def predict(self, context: Any, model_input: Any) -> Any:
        return np.random.default_rng().normal(size=len(model_input))


def test_check_flavor_fails_a_model_whose_fresh_process_predictions_differ(tmp_path: Path) -> None:
    model, X = m.python_model(tmp_path)
    flaky = _Flaky()
    flaky.artifacts, flaky.config = model.artifacts, model.config
    with pytest.raises(AssertionError, match="differ"):
        check_flavor("python", flaky, X)


# -- torch: script, else trace with the example ------------------------------------------------


def _varargs_net() -> Any:
    import torch

    class VarArgs(torch.nn.Module):  # *inputs cannot be scripted, only traced
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 1)

        def forward(self, *inputs: Any) -> Any:
            return self.linear(inputs[0])

    torch.manual_seed(0)
    return VarArgs()


def test_a_torch_module_that_cannot_be_scripted_is_traced_with_the_example(tmp_path: Path) -> None:
    import torch

    net = _varargs_net()
    X = np.random.default_rng(6).normal(size=(5, 3)).astype(np.float32)
    manifest = save_model(net, tmp_path / "p", input_example=X)
    assert manifest.flavor_info["method"] == "trace"
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy()
    np.testing.assert_array_equal(load_model(tmp_path / "p").predict(X), expected)


def test_an_unscriptable_torch_module_without_an_example_asks_for_one(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="torch.jit.script cannot compile VarArgs") as info:
        save_model(_varargs_net(), tmp_path / "p")
    assert info.value.hint == "pass input_example so the model can be traced instead"


# -- other shapes each flavor accepts -------------------------------------------------------------


def test_an_onnx_file_path_is_saved_like_a_model_proto(tmp_path: Path) -> None:
    proto, X = m.onnx_logistic_regression()
    (tmp_path / "lr.onnx").write_bytes(proto.SerializeToString())
    save_model(str(tmp_path / "lr.onnx"), tmp_path / "p", input_example=X)
    model = load_model(tmp_path / "p")
    assert model.flavor == "onnx" and model.task.has_predict_proba
    assert model.predict_proba(X).shape == (100, 2)


def test_an_xgboost_booster_round_trips(tmp_path: Path) -> None:
    import xgboost as xgb

    clf, frame = m.xgb_classifier()
    booster = clf.get_booster()
    save_model(booster, tmp_path / "p", input_example=frame)
    loaded = load_model(tmp_path / "p")
    assert loaded.task.kind == "unknown" and not loaded.task.has_predict_proba
    np.testing.assert_array_equal(loaded.predict(frame), booster.predict(xgb.DMatrix(frame)))


def test_a_lightgbm_classifier_keeps_its_string_labels(tmp_path: Path) -> None:
    import lightgbm as lgb

    frame, target = m.numeric_frame()
    labels = np.where(target > 0, "yes", "no")
    clf = lgb.LGBMClassifier(n_estimators=5, num_leaves=7, n_jobs=1, verbose=-1).fit(frame, labels)
    save_model(clf, tmp_path / "p", input_example=frame)
    loaded = load_model(tmp_path / "p")
    assert loaded.task.classes == ["no", "yes"]
    np.testing.assert_array_equal(loaded.predict(frame), clf.predict(frame))
    np.testing.assert_array_equal(loaded.predict_proba(frame), clf.predict_proba(frame))
