"""gyre.autolog(): scikit-learn fits tracked without changing the training code."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import gyre
from gyre.entities import Run, RunStatus
from gyre.tracking import AutologWarning, autolog


@pytest.fixture
def tracking(sqlite_uri: str) -> Iterator[str]:
    gyre.set_tracking_uri(sqlite_uri)
    autolog()
    try:
        yield sqlite_uri
    finally:
        autolog(disable=True)
        gyre.set_tracking_uri(None)


def frame(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 3)), columns=["age", "income", "visits"])
    y = (x["age"] + 0.5 * x["income"] + rng.normal(scale=0.7, size=n) > 0).astype(int)
    return x, y.to_numpy()


def runs() -> list[Run]:
    return list(gyre.search_runs().items)


def test_a_classifier_fit_logs_params_training_metrics_and_a_loadable_model(
    tracking: str,
) -> None:
    X, y = frame()
    model = LogisticRegression(C=0.5, max_iter=300).fit(X, y)

    [run] = runs()
    assert (run.name, run.status) == ("LogisticRegression", RunStatus.FINISHED)
    assert run.tags["gyre.autolog"] == "true"
    assert run.params["C"] == "0.5" and run.params["max_iter"] == "300"
    assert run.params["penalty"] == str(model.get_params()["penalty"])
    proba = model.predict_proba(X)
    pred = model.predict(X)
    assert run.metrics == pytest.approx(
        {
            "training_accuracy": skm.accuracy_score(y, pred),
            "training_precision": skm.precision_score(y, pred),
            "training_recall": skm.recall_score(y, pred),
            "training_f1": skm.f1_score(y, pred),
            "training_roc_auc": skm.roc_auc_score(y, proba[:, 1]),
            "training_log_loss": skm.log_loss(y, proba),
        },
        rel=1e-9,
    )
    loaded = gyre.load_model(f"runs:/{run.run_id}/model")
    holdout, _ = frame(50, seed=1)
    assert np.array_equal(loaded.predict(holdout), model.predict(holdout))
    assert loaded.input_example.shape == (5, 3)
    assert loaded.reference_profile is not None
    assert loaded.reference_profile.columns["age"].count == len(X)
    assert loaded.metadata["metrics"]["training_accuracy"] == run.metrics["training_accuracy"]


def test_a_regressor_logs_mae_rmse_r2(tracking: str) -> None:
    X, _ = frame()
    target = 2 * X["age"].to_numpy() - X["income"].to_numpy()
    model = LinearRegression().fit(X, target)
    [run] = runs()
    pred = model.predict(X)
    assert run.metrics == pytest.approx(
        {
            "training_mae": skm.mean_absolute_error(target, pred),
            "training_rmse": skm.mean_squared_error(target, pred) ** 0.5,
            "training_r2": skm.r2_score(target, pred),
        },
        rel=1e-9,
        abs=1e-12,
    )


def test_a_pipeline_logs_one_run_not_one_per_step(tracking: str) -> None:
    X, y = frame()
    columns = ColumnTransformer([("scale", StandardScaler(), ["age", "income", "visits"])])
    Pipeline([("columns", columns), ("clf", LogisticRegression())]).fit(X, y)
    [run] = runs()
    assert run.name == "Pipeline"
    assert "steps" in run.params and "LogisticRegression" in run.params["steps"]
    assert run.metrics["training_accuracy"] > 0.7


def test_fits_that_joblib_runs_on_worker_threads_stay_inside_the_outer_run(
    tracking: str,
) -> None:
    import joblib

    X, _ = frame()
    three_classes = np.digitize(X["age"], [-0.5, 0.5])  # one binary fit per class
    with joblib.parallel_backend("threading", n_jobs=2):
        OneVsRestClassifier(LogisticRegression(), n_jobs=2).fit(X, three_classes)
    assert [r.name for r in runs()] == ["OneVsRestClassifier"]


def test_a_fit_inside_an_active_run_logs_into_it(tracking: str) -> None:
    X, y = frame()
    with gyre.start_run(experiment="churn", name="mine") as active:
        gyre.log_param("team", "risk")
        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
        assert gyre.active_run() is active  # still open: the fit did not end it
    [run] = runs()
    assert run.run_id == active.run_id and run.status == RunStatus.FINISHED
    assert run.params["team"] == "risk" and "steps" in run.params
    assert "training_f1" in run.metrics
    assert gyre.load_model(f"runs:/{run.run_id}/model").predict(X[:3]).shape == (3,)


def test_a_fit_that_raises_fails_its_run_and_the_error_propagates(tracking: str) -> None:
    X, _ = frame()
    one_class = np.zeros(len(X), dtype=int)
    with pytest.raises(ValueError) as raised:
        LogisticRegression().fit(X, one_class)
    autolog(disable=True)
    with pytest.raises(ValueError) as plain:
        LogisticRegression().fit(X, one_class)
    assert type(raised.value) is type(plain.value) and str(raised.value) == str(plain.value)
    [run] = runs()
    assert run.status == RunStatus.FAILED
    assert run.error == f"ValueError: {plain.value}"


def test_a_logging_failure_warns_and_the_fit_still_succeeds(tracking: str) -> None:
    X, y = frame()
    with gyre.start_run(name="mine") as active:
        gyre.log_param("C", "a different value")  # params are write-once: autolog's clash
        model = LogisticRegression(C=0.5)
        with pytest.warns(AutologWarning, match="could not record params: Conflict") as caught:
            fitted = model.fit(X, y)
    assert fitted is model and hasattr(model, "classes_")
    assert caught[0].filename == __file__  # points at the user's fit() call
    [run] = runs()
    assert run.run_id == active.run_id and run.params["C"] == "a different value"
    assert "training_accuracy" in run.metrics  # what could be logged still was
    assert gyre.load_model(f"runs:/{run.run_id}/model").predict(X[:3]).shape == (3,)


def test_enabling_twice_patches_once_and_disable_restores_the_originals(sqlite_uri: str) -> None:
    originals = {cls: vars(cls)["fit"] for cls in (LogisticRegression, Pipeline, StandardScaler)}
    gyre.set_tracking_uri(sqlite_uri)
    try:
        autolog()
        wrapped = vars(LogisticRegression)["fit"]
        autolog()
        assert vars(LogisticRegression)["fit"] is wrapped
        assert wrapped.__wrapped__ is originals[LogisticRegression]
        autolog(disable=True)
        assert {cls: vars(cls)["fit"] for cls in originals} == originals
        LogisticRegression().fit(*frame())
        assert runs() == []
    finally:
        autolog(disable=True)
        gyre.set_tracking_uri(None)
