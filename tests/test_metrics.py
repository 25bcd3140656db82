"""gyre's numpy task metrics agree with scikit-learn's definitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from gyre._metrics import classification_metrics, regression_metrics, roc_auc


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    p1[:20] = 0.5  # ties
    pred = (p1 >= 0.5).astype(int)
    got = classification_metrics(y, pred, np.c_[1 - p1, p1], classes=[0, 1])
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1), abs=1e-9)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, np.c_[1 - p1, p1]), abs=1e-9)
    assert got["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()


def test_multiclass_macro_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.choice(["a", "b", "c"], 400)
    proba = rng.dirichlet([1, 1, 1], 400)
    pred = np.array(["a", "b", "c"])[proba.argmax(axis=1)]
    got = classification_metrics(y, pred, proba, classes=["a", "b", "c"])
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    assert got["precision"] == pytest.approx(
        skm.precision_score(y, pred, average="macro"), abs=1e-12
    )
    assert got["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"), abs=1e-9
    )
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=["a", "b", "c"]))


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    p = y + rng.normal(scale=0.3, size=200)
    got = regression_metrics(y, p)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), abs=1e-12)
    assert got["rmse"] == pytest.approx(skm.mean_squared_error(y, p) ** 0.5, abs=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p), abs=1e-12)


def test_roc_auc_of_one_class_is_nan() -> None:
    assert np.isnan(roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
