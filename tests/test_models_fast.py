"""The scikit-learn fast path (``gyre.models.flavors._sklearn_fast``).

For the estimators it supports it must answer exactly as the estimator: the same values
to the last bit, dtype, shape and memory order, over random input, input on the trees'
thresholds, NaN and extreme values, in batches of every size. Anything it does not
support, or input it does not take, goes to the estimator; a predictor that disagrees
with its estimator is refused before it is used; ``GYRE_FAST_PREDICT=0`` turns it off.
All with real estimators.
"""

from __future__ import annotations

import copy
import importlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from gyre.models import get_flavor, load_model, save_model

BATCH_SIZES = (1, 2, 3, 7, 16, 33, 64, 200)


def _module() -> Any:
    """The fast-path module, imported when a test runs (collecting this file loads no
    flavor module)."""
    return importlib.import_module("gyre.models.flavors._sklearn_fast")


def fast_predictor(est: Any, sample: Any = None) -> Any:
    return _module().fast_predictor(est, sample)


def build(est: Any) -> Any:
    return _module().build(est)


def agrees(est: Any, fast: Any, rows: np.ndarray) -> bool:
    return bool(_module().agrees(est, fast, rows))


def probe_rows(fast: Any, sample: Any = None) -> np.ndarray:
    return _module().probe_rows(fast, sample)  # type: ignore[no-any-return]


def _flavor() -> Any:
    """The sklearn flavor (imported when a test runs, see :func:`_module`)."""
    return get_flavor("sklearn")


def _identical(a: Any, b: Any) -> bool:
    return (
        type(a) is np.ndarray
        and type(b) is np.ndarray
        and a.dtype == b.dtype
        and a.shape == b.shape
        and a.flags.c_contiguous == b.flags.c_contiguous
        and a.flags.f_contiguous == b.flags.f_contiguous
        and (np.array_equal(a, b) if a.dtype.hasobject else a.tobytes() == b.tobytes())
    )


def _assert_same(est: Any, X: np.ndarray, *, proba: bool, fast_answers: bool = True) -> None:
    """Through the flavor (what ``Model.predict`` calls), batch by batch, every answer is
    the estimator's own; ``fast_answers``: and the fast path did answer the small ones
    (larger batches of big forests may go to scikit-learn, quicker there)."""
    fast = fast_predictor(est, X[:5])
    assert fast is not None, f"{type(est).__name__} should take the fast path"
    start = 0
    for size in BATCH_SIZES * 3:
        batch = np.ascontiguousarray(X[start : start + size])
        start = (start + size) % max(len(X) - 200, 1)
        if not len(batch):
            continue
        assert _identical(_flavor().predict(est, batch), est.predict(batch)), size
        if fast_answers and size <= 7:
            assert fast.predict(batch) is not None
        if proba:
            assert _identical(_flavor().predict_proba(est, batch), est.predict_proba(batch)), size
            if fast_answers and size <= 7:
                assert fast.predict_proba(batch) is not None


# -- data ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binary() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(2000, 20, random_state=0)


@pytest.fixture(scope="module")
def multiclass() -> tuple[np.ndarray, np.ndarray]:
    # 10 classes: the softmax's row sums run over more than 8 values (numpy sums those
    # pairwise in a C-ordered row, one by one down a Fortran-ordered column)
    return make_classification(2000, 12, n_informative=8, n_classes=10, random_state=1)


@pytest.fixture(scope="module")
def regression() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_regression(1500, 8, noise=5.0, random_state=2)
    return X, y


def _with_missing(X: np.ndarray, share: float, seed: int) -> np.ndarray:
    out = X.copy()
    out[np.random.default_rng(seed).random(X.shape) < share] = np.nan
    return out


def _random_rows(X: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Rows spread over (and past) the training range."""
    rng = np.random.default_rng(seed)
    lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    span = hi - lo
    return rng.uniform(lo - 0.2 * span, hi + 0.2 * span, size=(n, X.shape[1]))


def _threshold_rows(est: Any, X: np.ndarray, seed: int) -> np.ndarray:
    """Rows that sit exactly on split thresholds (and on the next float up and down):
    every tree's root split, and a grid drawn from every feature's thresholds."""
    rng = np.random.default_rng(seed)
    nodes = [p.nodes for step in est._predictors for p in step]
    rows = []
    for tree in nodes:
        root = tree[0]
        if root["is_leaf"]:
            continue
        t = float(root["num_threshold"])
        for value in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)):
            row = X[rng.integers(len(X))].copy()
            row[int(root["feature_idx"])] = value
            rows.append(row)
    cuts: dict[int, list[float]] = {}
    for tree in nodes:
        inner = tree[tree["is_leaf"] == 0]
        for f, t in zip(inner["feature_idx"], inner["num_threshold"], strict=True):
            cuts.setdefault(int(f), []).append(float(t))
    grid = _random_rows(np.nan_to_num(X), 300, seed)
    for f, values in cuts.items():
        v = np.array(values)
        choices = np.concatenate([v, np.nextafter(v, np.inf), np.nextafter(v, -np.inf)])
        grid[:, f] = rng.choice(choices, size=len(grid))
    return np.vstack([np.array(rows), grid])


def _extreme_rows(n_features: int, seed: int, *, nan: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = [0.0, -0.0, 1e308, -1e308, 5e-324, np.inf, -np.inf]
    if nan:
        values.append(np.nan)
    return rng.choice(np.array(values), size=(120, n_features))


# -- linear models -------------------------------------------------------------------------


def test_the_installed_scikit_learn_is_one_the_fast_path_was_checked_against() -> None:
    version = tuple(int(p) for p in sklearn.__version__.split(".")[:2])
    assert version in _module().VERIFIED_SKLEARN, (
        f"scikit-learn {sklearn.__version__} has no fast path: read its predict code for the "
        "supported estimators, then add it to VERIFIED_SKLEARN"
    )


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_logistic_regression_answers_exactly(kind: str, request: pytest.FixtureRequest) -> None:
    X, y = request.getfixturevalue(kind)
    est = LogisticRegression(max_iter=5000).fit(X, y)
    rows = np.vstack([X, _random_rows(X, 400, 3), 1e6 * _random_rows(X, 50, 4)])
    _assert_same(est, rows, proba=True)


def test_logistic_regression_with_string_labels_and_fortran_input(
    multiclass: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = multiclass
    labels = np.array([f"class-{i}" for i in range(10)], dtype=object)[y]
    est = LogisticRegression(max_iter=5000).fit(X, labels)
    _assert_same(est, X, proba=True)
    fortran = np.asfortranarray(X[:50])
    assert fast_predictor(est) is not None
    assert _identical(_flavor().predict(est, fortran), est.predict(fortran))
    assert _identical(_flavor().predict_proba(est, fortran), est.predict_proba(fortran))


@pytest.mark.parametrize(
    "make",
    [
        lambda: LinearRegression(),
        lambda: Ridge(alpha=0.5),
        lambda: Lasso(alpha=0.1),
        lambda: ElasticNet(alpha=0.1),
        lambda: Ridge(fit_intercept=False),
    ],
)
def test_linear_regressors_answer_exactly(make: Any, regression: Any) -> None:
    X, y = regression
    est = make().fit(X, y)
    _assert_same(est, np.vstack([X, _random_rows(X, 300, 5)]), proba=False)


def test_multi_target_ridge_answers_exactly(regression: Any) -> None:
    X, y = regression
    est = Ridge().fit(X, np.column_stack([y, -2 * y, y**2]))
    _assert_same(est, X, proba=False)


@pytest.mark.parametrize("make", [lambda: LinearSVC(), lambda: SGDClassifier(random_state=0)])
def test_other_linear_classifiers_predict_exactly(make: Any, multiclass: Any) -> None:
    X, y = multiclass
    est = make().fit(StandardScaler().fit_transform(X), y)
    _assert_same(est, X, proba=False)


def test_linear_input_with_nan_or_inf_goes_to_the_estimator(binary: Any) -> None:
    X, y = binary
    est = LogisticRegression().fit(X, y)
    fast = fast_predictor(est, X[:5])
    assert fast is not None
    for bad in (np.nan, np.inf, -np.inf):
        rows = X[:4].copy()
        rows[2, 3] = bad
        assert fast.predict(rows) is None and fast.predict_proba(rows) is None
        with pytest.raises(ValueError, match="NaN|infinity"):
            _flavor().predict(est, rows)


# -- boosted trees -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"max_iter": 60},
        {"max_iter": 40, "max_depth": 3},
        {"max_iter": 15, "max_leaf_nodes": 100, "min_samples_leaf": 2},  # > 64 leaves
        {"max_iter": 200, "learning_rate": 0.3, "early_stopping": True},
    ],
)
@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_hist_gradient_boosting_classifier_answers_exactly(
    kind: str, params: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    X, y = request.getfixturevalue(kind)
    if kind == "multiclass":
        params = {**params, "max_iter": min(params["max_iter"], 15)}
    est = HistGradientBoostingClassifier(random_state=0, **params).fit(X, y)
    rows = np.vstack(
        [
            X[:300],
            _random_rows(X, 300, 6),
            _threshold_rows(est, X, 7),
            _extreme_rows(X.shape[1], 8, nan=True),
            _with_missing(X[300:600], 0.3, 9),
        ]
    )
    np.random.default_rng(10).shuffle(rows)
    _assert_same(est, rows, proba=True)


def test_hist_gradient_boosting_trained_with_missing_values(binary: Any) -> None:
    X, y = binary
    train = _with_missing(X, 0.15, 11)
    est = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(train, y)
    nodes = np.concatenate([p.nodes for step in est._predictors for p in step])
    inner = nodes[nodes["is_leaf"] == 0]
    assert inner["missing_go_to_left"].any() and not inner["missing_go_to_left"].all()
    rows = np.vstack(
        [
            _with_missing(X[:400], 0.4, 12),
            _threshold_rows(est, train, 13),
            _with_missing(_threshold_rows(est, train, 14), 0.2, 15),
            np.full((3, X.shape[1]), np.nan),
        ]
    )
    _assert_same(est, rows, proba=True)


@pytest.mark.parametrize("loss", ["squared_error", "absolute_error", "poisson", "gamma"])
def test_hist_gradient_boosting_regressor_answers_exactly(loss: str, regression: Any) -> None:
    X, y = regression
    target = y if loss in ("squared_error", "absolute_error") else np.abs(y) + 1.0
    est = HistGradientBoostingRegressor(loss=loss, max_iter=50, random_state=0)
    est.fit(_with_missing(X, 0.05, 16), target)
    rows = np.vstack(
        [
            X[:300],
            _threshold_rows(est, X, 17),
            _extreme_rows(X.shape[1], 18, nan=True),
            _with_missing(X[300:500], 0.3, 19),
        ]
    )
    _assert_same(est, rows, proba=False)


def test_large_batches_go_to_the_estimator_and_agree(binary: Any) -> None:
    X, y = binary
    est = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(X, y)
    fast = fast_predictor(est, X[:5])
    assert fast is not None
    assert fast.predict(X) is None  # 2000 rows: scikit-learn's compiled loop is quicker
    assert _identical(_flavor().predict_proba(est, X), est.predict_proba(X))


# -- what falls back -----------------------------------------------------------------------


class ShiftedRegressor(LinearRegression):
    """A subclass that changes predict: the fast path must not answer for it."""

    def predict(self, X: Any) -> Any:
        return super().predict(X) + 1.0


def test_unsupported_estimators_use_the_estimator(binary: Any) -> None:
    X, y = binary
    categorical = X.copy()
    categorical[:, 0] = np.random.default_rng(20).integers(0, 5, len(X))
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    unsupported = [
        HistGradientBoostingClassifier(max_iter=10, categorical_features=[0]).fit(categorical, y),
        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
        ShiftedRegressor().fit(X, y.astype(float)),
        RidgeClassifier().fit(X, y),
        LogisticRegression().fit(frame, y),  # fitted with feature names
        LogisticRegression().fit(X.astype(np.float32), y),  # float32 coefficients
    ]
    for est in unsupported:
        assert build(est) is None, type(est).__name__
        assert fast_predictor(est, X[:5]) is None, type(est).__name__
    for est in unsupported[:4]:
        rows = categorical[:20] if est is unsupported[0] else X[:20]
        assert _identical(_flavor().predict(est, rows), est.predict(rows))
    shifted = unsupported[2]
    plain = LinearRegression.predict(shifted, X[:3])
    assert np.array_equal(_flavor().predict(shifted, X[:3]), plain + 1.0)


def test_input_the_fast_path_does_not_take_goes_to_the_estimator(binary: Any) -> None:
    X, y = binary
    est = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    fast = fast_predictor(est, X[:5])
    assert fast is not None
    strided = X[:40:2, :]
    for other in (X[:5].astype(np.float32), np.asarray(X[:5], dtype=object), strided, X[:0]):
        assert fast.predict(other) is None
    assert _identical(_flavor().predict(est, strided), est.predict(strided))
    with pytest.raises(ValueError, match="features"):
        _flavor().predict(est, X[:3, :5])
    with pytest.raises(ValueError, match="0 sample"):
        _flavor().predict(est, X[:0])
    frame = pd.DataFrame(X[:5], columns=[f"f{i}" for i in range(X.shape[1])])
    with pytest.warns(UserWarning, match="feature names"):
        assert _identical(_flavor().predict(est, frame), est.predict(X[:5]))


def test_the_off_switch(monkeypatch: pytest.MonkeyPatch, binary: Any) -> None:
    X, y = binary
    monkeypatch.setenv("GYRE_FAST_PREDICT", "0")
    est = LogisticRegression().fit(X, y)
    assert fast_predictor(est, X[:5]) is None
    assert _identical(_flavor().predict_proba(est, X[:5]), est.predict_proba(X[:5]))
    monkeypatch.setenv("GYRE_FAST_PREDICT", "1")
    assert fast_predictor(LogisticRegression().fit(X, y), X[:5]) is not None


# -- the gate ------------------------------------------------------------------------------


def _nudged(a: np.ndarray) -> np.ndarray:
    return np.nextafter(a, np.inf)


def test_the_gate_refuses_a_linear_predictor_that_differs_in_the_last_bit(binary: Any) -> None:
    X, y = binary
    est = LogisticRegression().fit(X, y)
    good = build(est)
    assert good is not None and agrees(est, good, probe_rows(good, X[:5]))
    bad = copy.deepcopy(good)
    coef = bad._coef_t.copy()  # type: ignore[attr-defined]
    coef[3, 0] = _nudged(coef[3, 0])
    bad._coef_t = coef  # type: ignore[attr-defined]
    assert not agrees(est, bad, probe_rows(bad, X[:5]))


def test_the_gate_refuses_a_tree_predictor_that_differs(binary: Any) -> None:
    X, y = binary
    est = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)
    good = build(est)
    assert good is not None and agrees(est, good, probe_rows(good, X[:5]))

    def tampered(change: Any) -> Any:
        bad = copy.deepcopy(good)
        change(bad._forest)  # type: ignore[attr-defined]
        return bad

    def leaf_values(forest: Any) -> None:  # every leaf one float up
        forest._value[:] = _nudged(forest._value)
        if forest._masks is not None:
            forest._masks["leaf_values"][:] = _nudged(forest._masks["leaf_values"])

    def nan_routing(forest: Any) -> None:  # NaN goes the other way at every split
        inner = np.isfinite(forest._threshold)
        forest._nan_right[inner] = ~forest._nan_right[inner]
        if forest._masks is not None:
            forest._masks["nan_right"][:] = ~forest._masks["nan_right"]

    def thresholds(forest: Any) -> None:  # every split one float higher
        forest._threshold[:] = _nudged(forest._threshold)
        if forest._masks is not None:
            forest._masks["threshold"][:] = _nudged(forest._masks["threshold"])

    for change in (leaf_values, nan_routing, thresholds):
        bad = tampered(change)
        assert not agrees(est, bad, probe_rows(bad, X[:5])), change.__name__


def test_a_predictor_that_fails_the_gate_is_never_used(
    binary: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = binary
    est = LogisticRegression().fit(X, y)
    module = _module()
    real_build = module.build

    def corrupted(e: Any) -> Any:
        fast = real_build(e)
        assert fast is not None
        fast._intercept = _nudged(fast._intercept)  # type: ignore[attr-defined]
        return fast

    monkeypatch.setattr(module, "build", corrupted)
    assert fast_predictor(est, X[:5]) is None
    assert _identical(_flavor().predict_proba(est, X[:9]), est.predict_proba(X[:9]))


# -- through a package, and from threads ----------------------------------------------------


def test_a_loaded_package_predicts_exactly_through_the_fast_path(
    tmp_path: Path, multiclass: Any
) -> None:
    X, y = multiclass
    fitted = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    save_model(fitted, tmp_path / "hgb", input_example=X[:5])
    model = load_model(tmp_path / "hgb")
    for n in (1, 5, 64):
        rows = np.ascontiguousarray(X[100 : 100 + n])
        assert _identical(model.predict(rows, checked=True), fitted.predict(rows))
        assert _identical(model.predict_proba(rows, checked=True), fitted.predict_proba(rows))
        assert _identical(model.predict(rows), fitted.predict(rows))
    assert fast_predictor(model.raw) is not None


def test_threads_share_a_fast_predictor(binary: Any) -> None:
    X, y = binary
    est = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)
    expected = [est.predict_proba(X[i : i + 1 + i % 9]) for i in range(64)]
    failures: list[int] = []

    def work() -> None:
        for i in range(64):
            got = _flavor().predict_proba(est, X[i : i + 1 + i % 9])
            if not _identical(got, expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert fast_predictor(est) is not None


@pytest.mark.parametrize("params", [{"max_iter": 30}, {"max_iter": 10, "max_depth": 2}])
def test_both_tree_walks_reach_the_leaves_scikit_learn_reaches(
    params: dict[str, Any], binary: Any
) -> None:
    """Whatever the batch size picks: level by level and by bitmasks, tree by tree."""
    X, y = binary
    train = _with_missing(X, 0.1, 21)
    est = HistGradientBoostingClassifier(random_state=0, **params).fit(train, y)
    fast = build(est)
    assert fast is not None
    forest = fast._forest  # type: ignore[attr-defined]
    rows = np.vstack(
        [
            _threshold_rows(est, train, 22),
            _with_missing(_threshold_rows(est, train, 23), 0.3, 24),
            _extreme_rows(X.shape[1], 25, nan=True),
        ]
    )
    bitsets = est._bin_mapper.make_known_categories_bitsets()
    expected = np.stack([p.predict(rows, *bitsets, 1) for step in est._predictors for p in step])
    clean = np.nan_to_num(rows[:50], nan=0.0)  # no NaN: the walks skip the NaN routing
    expected_clean = expected[:, :50].copy()
    for i, row in enumerate(rows[:50]):
        if np.isnan(row).any():
            expected_clean[:, i] = [
                p.predict(clean[i : i + 1], *bitsets, 1)[0]
                for step in est._predictors
                for p in step
            ]
    for walk in (forest._by_levels, forest._by_bitmasks):
        assert np.array_equal(forest.leaf_values(rows, walk), expected)
        assert np.array_equal(forest.leaf_values(rows[7:8], walk), expected[:, 7:8])
        assert np.array_equal(walk(clean, False), expected_clean)


def test_fitting_again_rebuilds_the_fast_predictor(binary: Any) -> None:
    X, y = binary
    lr = LogisticRegression().fit(X, y)
    first = fast_predictor(lr, X[:5])
    assert first is not None
    lr.fit(X[:, ::-1].copy(), 1 - y)  # new coef_, intercept_ and classes_ objects
    assert fast_predictor(lr) not in (None, first)
    assert _identical(_flavor().predict_proba(lr, X[:9]), lr.predict_proba(X[:9]))
    hgb = HistGradientBoostingClassifier(max_iter=10, warm_start=True, random_state=0)
    before = fast_predictor(hgb.fit(X, y), X[:5])
    assert before is not None
    hgb.set_params(max_iter=20).fit(X, y)  # grows the same list of trees
    assert fast_predictor(hgb) not in (None, before)
    assert _identical(_flavor().predict_proba(hgb, X[:9]), hgb.predict_proba(X[:9]))
