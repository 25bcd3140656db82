"""A fast path for fitted scikit-learn estimators of a few common kinds.

scikit-learn validates its input on every call, which costs far more than the arithmetic
of a small model (LogisticRegression on 20 features: ~120 µs to predict one row, of which
the dot product is 1-2 µs), and HistGradientBoosting predicts tree by tree, one compiled
call per tree. Here the fitted attributes are turned, once, into a lean numpy predictor
that answers *exactly* as the estimator does: the same values to the last bit, the same
dtype and shape.

Exactness comes from doing the same floating-point operations as scikit-learn, in the same
order, on arrays of the same layout (the linear models' ``X @ coef_.T + intercept_``, the
loss's ``expit`` or softmax, the boosted trees' raw sum added iteration by iteration); the
tree traversal itself is comparisons only. Every predictor is also checked, before it is
used, against the estimator (:func:`agrees`) on the first data it sees (the model's input
example, when the server warms up), on rows built from its own thresholds and on random
rows; any difference, and the estimator answers instead.

What is supported (the estimator's exact type, fitted without feature names, on the
scikit-learn versions in :data:`VERIFIED_SKLEARN`):

* ``LogisticRegression``, ``LogisticRegressionCV``: predict and predict_proba (binary:
  ``expit``; multiclass: softmax, as scikit-learn >= 1.8 always does).
* ``LinearSVC``, ``SGDClassifier``, ``Perceptron``: predict (their predict_proba, where
  there is one, stays the estimator's).
* ``LinearRegression``, ``Ridge``, ``RidgeCV``, ``Lasso``, ``LassoCV``, ``ElasticNet``,
  ``ElasticNetCV``: predict, single or multiple targets.
* ``HistGradientBoostingClassifier`` / ``...Regressor`` on numeric features only (no
  categorical splits): predict, predict_proba; regression losses with an identity or log
  link.

Anything else (Pipelines, subclasses, categorical features, sparse coefficients, ...) is
left to the estimator. Only a C- or F-ordered float64 2-D ``numpy.ndarray`` with at least
one row and the fitted width takes the fast path; linear models also need every value
finite (scikit-learn raises on NaN and inf, so those go to the estimator, which does), and
batches of trees large enough for scikit-learn's compiled loop to be quicker go to it.

The predictor is built and checked on an estimator's first prediction (a few ms for a
linear model, tens of ms for a boosted ensemble), and again if it is fitted again.
``GYRE_FAST_PREDICT=0`` turns the fast path off; it is read at that point.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FAST_PREDICT_ENV",
    "VERIFIED_SKLEARN",
    "FastPredictor",
    "agrees",
    "build",
    "fast_predictor",
    "probe_rows",
]

logger = logging.getLogger(__name__)

FAST_PREDICT_ENV = "GYRE_FAST_PREDICT"
# The scikit-learn releases whose predict code this module reproduces (read, and tested by
# tests/test_models_fast.py). Another release gets the estimator until it is checked too.
VERIFIED_SKLEARN: frozenset[tuple[int, int]] = frozenset({(1, 9)})

Array = NDArray[Any]
F64 = np.dtype(np.float64)


def _takes(x: Any, n_features: int) -> bool:
    """Whether ``x`` is input the fast path answers for: a C- or F-ordered float64 matrix
    of the fitted width with at least one row (anything else: the estimator)."""
    return (
        type(x) is np.ndarray
        and x.dtype == F64
        and x.ndim == 2
        and x.shape[1] == n_features
        and x.shape[0] > 0
        and (x.flags.c_contiguous or x.flags.f_contiguous)
    )


def _finite(x: Array) -> bool:
    return bool(np.isfinite(x).all())


class FastPredictor:
    """A verified stand-in for an estimator's predict (and predict_proba).

    Both return None for input they do not take (see :func:`_takes`): the caller then asks
    the estimator. Instances are immutable once built, and every call works on arrays of
    its own, so they are safe to share between threads.
    """

    n_features: int
    has_proba: bool = False

    def predict(self, x: Any) -> Array | None:
        raise NotImplementedError

    def predict_proba(self, x: Any) -> Array | None:
        return None

    def probes(self, rng: np.random.Generator) -> Array:
        """A few hundred rows for :func:`agrees` to compare on."""
        raise NotImplementedError


# -- linear models -------------------------------------------------------------------------


def _linear_probes(n_features: int, rng: np.random.Generator) -> Array:
    """Random rows at several scales, a row of zeros and rows of large values."""
    scales = 10.0 ** rng.uniform(-3, 3, size=(256, 1))
    rows = rng.standard_normal((256, n_features)) * scales
    rows[0] = 0.0
    rows[1] = 1e150
    rows[2] = -1e150
    return rows


class _LinearRegressor(FastPredictor):
    """``X @ coef_ + intercept_`` (``coef_.T`` for several targets), as
    ``LinearModel._decision_function`` computes it, on the estimator's own arrays."""

    def __init__(self, coef: Array, intercept: Any, n_features: int) -> None:
        self.n_features = n_features
        self._weights = coef if coef.ndim == 1 else coef.T
        self._intercept = intercept

    def predict(self, x: Any) -> Array | None:
        if not _takes(x, self.n_features) or not _finite(x):
            return None
        out: Array = x @ self._weights + self._intercept
        return out

    def probes(self, rng: np.random.Generator) -> Array:
        return _linear_probes(self.n_features, rng)


class _LinearClassifier(FastPredictor):
    """``LinearClassifierMixin``: scores ``X @ coef_.T + intercept_``; with one column,
    a 1-D score and class 1 where it is > 0, else the class of the highest score (the
    first on a tie).

    ``proba``: LogisticRegression's predict_proba, ``expit`` of the score for two classes
    (``[1 - p, p]``), the softmax of the scores for more.
    """

    def __init__(
        self, coef: Array, intercept: Any, classes: Array, n_features: int, proba: bool
    ) -> None:
        self.n_features = n_features
        self.has_proba = proba
        self._coef_t = coef.T
        self._intercept = intercept
        self._classes = classes

    def _scores(self, x: Array) -> Array:
        scores: Array = x @ self._coef_t + self._intercept
        if scores.shape[1] == 1:
            scores = scores.reshape(-1)
        return scores

    def predict(self, x: Any) -> Array | None:
        if not _takes(x, self.n_features) or not _finite(x):
            return None
        scores = self._scores(x)
        one = scores.ndim == 1
        chosen = (scores > 0).astype(np.intp) if one else np.argmax(scores, axis=1)
        out: Array = self._classes.take(chosen, axis=0)
        return out

    def predict_proba(self, x: Any) -> Array | None:
        if not self.has_proba or not _takes(x, self.n_features) or not _finite(x):
            return None
        scores = self._scores(x)
        if scores.ndim == 1:
            from scipy.special import expit

            positive = expit(scores, out=scores)
            return np.stack([1 - positive, positive], axis=1)
        return _softmax_in_place(scores)

    def probes(self, rng: np.random.Generator) -> Array:
        return _linear_probes(self.n_features, rng)


def _softmax_in_place(scores: Array) -> Array:
    """Row-wise softmax, step by step as ``sklearn.utils.extmath.softmax`` takes it:
    subtract the row maximum, exponentiate, divide by the row sum (in place)."""
    scores -= np.max(scores, axis=1).reshape(-1, 1)
    np.exp(scores, out=scores)
    scores /= np.sum(scores, axis=1).reshape(-1, 1)
    return scores


# -- boosted trees -------------------------------------------------------------------------

# Bits 0..k-1 set, for k = 0..64: a leaf range [lo, hi) is LOW_BITS[hi] ^ LOW_BITS[lo].
_LOW_BITS = np.array([(1 << k) - 1 for k in range(65)], dtype=np.uint64)

# Rough single-thread costs in µs (measured on one x86-64 machine with numpy 2.4 and
# scikit-learn 1.9), only used to pick the quickest of answers that are all exact: a numpy
# call, a (row, tree, level) step, a (row, split) bitmask step; scikit-learn's call per tree
# and per (row, tree).
_CALL = 2.4
_LEVEL_STEP = 0.0036
_BITMASK_STEP = 0.0022
_SKLEARN_TREE = 5.5
_SKLEARN_ROW_TREE = 0.035
# Past this many (row, split) pairs the bitmask arrays leave the caches and it slows down;
# past this many (row, tree) pairs, so do the level-by-level ones (and scikit-learn, which
# also uses every core unless OMP_NUM_THREADS says otherwise, takes over).
_BITMASK_MAX_PAIRS = 50_000
_LEVELS_MAX_PAIRS = 50_000


def _set_aside_levels(
    levels: list[Array], inner: Array, count: Array
) -> tuple[frozenset[int], float]:
    """The levels at which to set aside the (tree, row) pairs already at a leaf (each time
    the share of training samples still above a leaf falls below a third of what it was
    at the last such level), and the expected number of steps per pair: a guess at where
    it pays, from the training data. It changes no answer."""
    depth = len(levels) - 1
    roots = count[levels[0]].sum()
    if not roots > 0:
        return frozenset(), float(depth)
    chosen = []
    walking = 1.0
    steps = 0.0
    for level in range(depth):
        share = count[levels[level][inner[levels[level]]]].sum() / roots
        if level > 0 and share < walking / 3:
            chosen.append(level)
            walking = share
        steps += walking
    return frozenset(chosen), steps


class _Forest:
    """Every tree of a boosted ensemble, flattened into arrays and traversed with numpy.

    Built from scikit-learn's ``TreePredictor.nodes`` (numeric splits only): a row goes
    left at a node when its value is NaN and ``missing_go_to_left``, or when it is
    ``<= num_threshold``; right otherwise. :meth:`leaf_values` gives every tree's leaf
    value for every row, in two ways that give the same leaves (comparisons only):

    * level by level: all (tree, row) pairs step down one level per round, for as many
      rounds as the deepest leaf is deep. Nodes are renumbered so that a node's right
      child is its left child + 1 (the step is ``left[node] + goes_right``) and a leaf is
      its own left child and never goes right (threshold +inf), so pairs that reached a
      leaf stay there. At a few levels, chosen from how many training samples went
      deeper, the pairs already at a leaf are set aside and the rest walk on alone.
    * bitmasks, for small batches of trees with at most 64 leaves (after QuickScorer,
      Lucchese et al., SIGIR 2015): every split that sends the row right rules out the
      leaves of its left subtree; the leaf reached is the leftmost one not ruled out.
      A fixed number of numpy calls whatever the depth, over every split of every tree.
    """

    def __init__(self, trees: list[Array], n_features: int) -> None:
        sizes = np.array([len(t) for t in trees], dtype=np.intp)
        if len(trees) == 0 or sizes.min() < 1:
            raise ValueError("no trees")
        start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        nodes = np.concatenate(trees)
        n_trees, total = len(trees), int(sizes.sum())
        tree_of = np.repeat(np.arange(n_trees), sizes)
        leaf = nodes["is_leaf"].astype(bool)
        inner = ~leaf
        if nodes["is_categorical"][inner].any():
            raise ValueError("categorical split")
        feature = nodes["feature_idx"].astype(np.intp)
        threshold = nodes["num_threshold"].astype(np.float64)
        if (feature[inner] < 0).any() or (feature[inner] >= n_features).any():
            raise ValueError("feature index out of range")
        if np.isnan(threshold[inner]).any():
            raise ValueError("NaN threshold")
        local_left = nodes["left"].astype(np.intp)
        local_right = nodes["right"].astype(np.intp)
        local_size = sizes[tree_of]
        bad = (local_left >= local_size) | (local_right >= local_size)
        if bad[inner].any():
            raise ValueError("child index out of range")
        left = np.where(inner, local_left + start[tree_of], -1)
        right = np.where(inner, local_right + start[tree_of], -1)

        # Walk down from the roots, level by level: every node must be reached exactly
        # once (a forest: no shared node, no cycle, nothing unreachable).
        seen = np.zeros(total, dtype=np.intp)
        levels = [start]
        seen[start] += 1
        while True:
            parents = levels[-1][inner[levels[-1]]]
            if parents.size == 0:
                break
            children = np.concatenate([left[parents], right[parents]])
            np.add.at(seen, children, 1)
            if seen.max() > 1 or len(levels) > total:
                raise ValueError("not a forest")
            levels.append(children)
        if seen.min() < 1:
            raise ValueError("unreachable node")
        self.depth = len(levels) - 1
        self.n_trees = n_trees
        self.n_features = n_features

        # Level-by-level tables: roots are 0..T-1, then the children of the k-th split (in
        # node order) are T + 2k (left) and T + 2k + 1 (right).
        split_rank = np.cumsum(inner) - 1
        new = np.empty(total, dtype=np.intp)
        new[start] = np.arange(n_trees)
        new[left[inner]] = n_trees + 2 * split_rank[inner]
        new[right[inner]] = n_trees + 2 * split_rank[inner] + 1
        self._feature = np.zeros(total, dtype=np.intp)
        self._feature[new[inner]] = feature[inner]
        self._threshold = np.full(total, np.inf)
        self._threshold[new[inner]] = threshold[inner]
        missing_left = nodes["missing_go_to_left"].astype(bool)
        self._nan_right = np.zeros(total, dtype=bool)
        self._nan_right[new] = inner & ~missing_left
        self._left = np.empty(total, dtype=np.intp)
        self._left[new] = np.where(inner, new[np.maximum(left, 0)], new)
        self._value = np.empty(total, dtype=np.float64)
        self._value[new] = nodes["value"].astype(np.float64)
        self._inner = np.zeros(total, dtype=bool)
        self._inner[new] = inner
        self._set_aside, self._steps = _set_aside_levels(
            levels, inner, nodes["count"].astype(np.float64)
        )

        self._masks: dict[str, Array] | None = None
        # Bitmask tables: leaves numbered left to right within each tree, and each split's
        # left-subtree leaves as a contiguous range of bits.
        n_leaves = leaf.astype(np.intp)
        for level in reversed(levels):
            parents = level[inner[level]]
            n_leaves[parents] = n_leaves[left[parents]] + n_leaves[right[parents]]
        leaves_per_tree = n_leaves[start]
        if leaves_per_tree.max() > 64:
            return
        first = np.zeros(total, dtype=np.intp)  # the node's first leaf, within its tree
        for level in levels:
            parents = level[inner[level]]
            first[left[parents]] = first[parents]
            first[right[parents]] = first[parents] + n_leaves[left[parents]]
        splits = np.flatnonzero(inner)
        splits_per_tree = np.bincount(tree_of[splits], minlength=n_trees)
        width = max(int(splits_per_tree.max()), 1)
        tree_start = np.concatenate([[0], np.cumsum(splits_per_tree)[:-1]])
        slot = np.arange(splits.size) - tree_start[tree_of[splits]]
        at = slot * n_trees + tree_of[splits]  # slot-major: (slot, tree)
        lo = first[splits]
        hi = lo + n_leaves[left[splits]]
        leaf_start = np.concatenate([[0], np.cumsum(leaves_per_tree)[:-1]]).astype(np.intp)
        leaf_values = np.empty(int(leaves_per_tree.sum()), dtype=np.float64)
        leaves = np.flatnonzero(leaf)
        leaf_values[leaf_start[tree_of[leaves]] + first[leaves]] = nodes["value"][leaves]
        size = width * n_trees
        masks = {
            "feature": np.zeros(size, dtype=np.intp),
            "threshold": np.full(size, np.inf),  # an empty slot never sends a row right
            "nan_right": np.zeros(size, dtype=bool),
            "mask": np.zeros(size, dtype=np.uint64),
            "leaf_start": leaf_start,
            "leaf_values": leaf_values,
        }
        masks["feature"][at] = feature[splits]
        masks["threshold"][at] = threshold[splits]
        masks["nan_right"][at] = ~missing_left[splits]
        masks["mask"][at] = _LOW_BITS[hi] ^ _LOW_BITS[lo]
        self._masks = masks
        self._width = width

    def strategy(self, n: int) -> Callable[[Array, bool], Array] | None:
        """The quicker way to find the leaves of ``n`` rows, or None when scikit-learn's
        compiled traversal would be quicker (large batches)."""
        trees = self.n_trees
        calls = self.depth + 3 * len(self._set_aside)
        levels = calls * _CALL + n * trees * self._steps * _LEVEL_STEP
        sklearn = trees * (_SKLEARN_TREE + n * _SKLEARN_ROW_TREE)
        if self._masks is not None and n * self._width * trees <= _BITMASK_MAX_PAIRS:
            bitmasks = 4 * _CALL + n * self._width * trees * _BITMASK_STEP
            if bitmasks < levels and bitmasks < sklearn:
                return self._by_bitmasks
        quicker = levels < sklearn and n * trees <= _LEVELS_MAX_PAIRS
        return self._by_levels if quicker else None

    def leaf_values(self, x: Array, strategy: Callable[[Array, bool], Array]) -> Array:
        """The leaf value each tree gives each row, shape (n_trees, n_rows)."""
        return strategy(x, bool(np.isnan(x).any()))

    def _by_levels(self, x: Array, has_nan: bool) -> Array:
        n, width = x.shape
        flat = np.ascontiguousarray(x).reshape(-1)
        node = np.repeat(np.arange(self.n_trees), n)  # tree-major: (tree, row)
        row_start = np.tile(np.arange(n) * width, self.n_trees) if n > 1 else None
        reached: Array | None = None  # every pair's node, once some were set aside
        walking: Array | None = None  # where in `reached` the pairs still walking are
        for level in range(self.depth):
            if level in self._set_aside:
                live = np.flatnonzero(self._inner.take(node))
                if reached is None or walking is None:
                    reached, walking = node, live
                else:
                    reached[walking] = node
                    walking = walking[live]
                node = node[live]
                if row_start is not None:
                    row_start = row_start[live]
            at = self._feature.take(node)
            if row_start is not None:
                at += row_start
            value = flat.take(at)
            right = np.greater(value, self._threshold.take(node))
            if has_nan:
                right |= np.isnan(value) & self._nan_right.take(node)
            node = self._left.take(node)
            node += right
        if reached is not None:
            reached[walking] = node
            node = reached
        return self._value.take(node).reshape(self.n_trees, n)

    def _by_bitmasks(self, x: Array, has_nan: bool) -> Array:
        t = self._masks
        assert t is not None
        n = x.shape[0]
        value = x.take(t["feature"], axis=1)  # (row, slot, tree)
        right = np.greater(value, t["threshold"])
        if has_nan:
            right |= np.isnan(value) & t["nan_right"]
        ruled_out = np.multiply(right, t["mask"])
        out = np.bitwise_or.reduce(ruled_out.reshape(n, self._width, self.n_trees), axis=1)
        lowest_kept = ~out & (out + np.uint64(1))  # a power of two: the leaf's bit
        _, exponent = np.frexp(lowest_kept.astype(np.float64))  # exact: 2**k -> k + 1
        leaf = exponent.T.astype(np.intp)
        leaf += t["leaf_start"].reshape(-1, 1) - 1
        values: Array = t["leaf_values"].take(leaf)
        return values

    def probes(self, rng: np.random.Generator, rows: int = 256) -> Array:
        """Rows whose values are split thresholds, the floats just above them, NaN,
        +-inf and huge values, mixed at random: every split sees values on its edge."""
        candidates: list[Array] = []
        inner = np.isfinite(self._threshold)
        for f in range(self.n_features):
            cuts = np.unique(self._threshold[inner & (self._feature == f)])
            extra = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 0.0])
            candidates.append(np.concatenate([cuts, np.nextafter(cuts, np.inf), extra]))
        out = np.empty((rows, self.n_features))
        for f, values in enumerate(candidates):
            out[:, f] = rng.choice(values, size=rows)
        out[rng.random(out.shape) < 0.05] = np.nan
        out[:3] = [[np.nan], [np.inf], [-np.inf]]
        return out


class _HistGradientBoosting(FastPredictor):
    """``HistGradientBoosting{Classifier,Regressor}``: raw predictions, then the link.

    The raw prediction is built as ``_raw_predict`` builds it: zeros plus the baseline,
    then each iteration's tree values added in turn (``np.add.accumulate`` over the
    iterations is that same sequence of additions), in a (rows, trees per iteration)
    array in Fortran order.
    """

    def __init__(
        self,
        forest: _Forest,
        baseline: Array,
        n_iterations: int,
        link: str,
        classes: Array | None,
    ) -> None:
        self.n_features = forest.n_features
        self._forest = forest
        self._per_iteration = baseline.shape[1]
        self._baseline = baseline.reshape(-1, 1)  # (trees per iteration, 1)
        self._n_iterations = n_iterations
        self._link = link  # identity | log | binary | multiclass
        self._classes = classes
        self.has_proba = link in ("binary", "multiclass")

    def _raw(self, x: Any) -> Array | None:
        """The raw predictions, shape (rows, trees per iteration) in Fortran order, or None
        for input the estimator should take (not a float64 matrix; a large batch)."""
        if not _takes(x, self.n_features):
            return None
        n = x.shape[0]
        strategy = self._forest.strategy(n)
        if strategy is None:
            return None
        k = self._per_iteration
        steps = np.empty((self._n_iterations + 1, k, n))
        steps[0] = np.zeros((k, n)) + self._baseline
        steps[1:] = self._forest.leaf_values(x, strategy).reshape(self._n_iterations, k, n)
        total = np.add.accumulate(steps, axis=0)[-1]  # (k, n)
        raw: Array = np.array(total.T, order="F")
        return raw

    def predict(self, x: Any) -> Array | None:
        raw = self._raw(x)
        if raw is None:
            return None
        if self._link == "identity":
            return raw.ravel()
        if self._link == "log":
            out: Array = np.exp(raw.ravel())
            return out
        assert self._classes is not None
        one = raw.shape[1] == 1
        chosen = (raw.ravel() > 0).astype(int) if one else np.argmax(raw, axis=1)
        return self._classes[chosen]  # type: ignore[no-any-return]

    def predict_proba(self, x: Any) -> Array | None:
        raw = self._raw(x) if self.has_proba else None
        if raw is None:
            return None
        if self._link == "binary":
            from scipy.special import expit

            proba = np.empty((raw.shape[0], 2), dtype=raw.dtype)
            proba[:, 1] = expit(raw.squeeze(1))
            proba[:, 0] = 1 - proba[:, 1]
            return proba
        return _softmax_in_place(raw.copy(order="K"))

    def probes(self, rng: np.random.Generator) -> Array:
        return self._forest.probes(rng)


# -- which estimators ----------------------------------------------------------------------


def _sklearn_version() -> tuple[int, int] | None:
    import sklearn

    try:
        major, minor = str(sklearn.__version__).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _linear_regressor(est: Any) -> FastPredictor | None:
    coef = est.coef_
    if type(coef) is not np.ndarray or coef.dtype != F64 or coef.ndim not in (1, 2):
        return None
    intercept = est.intercept_
    if not isinstance(intercept, (float, np.floating, np.ndarray)):
        return None
    return _LinearRegressor(coef, intercept, int(est.n_features_in_))


def _linear_classifier(est: Any, proba: bool) -> FastPredictor | None:
    coef = est.coef_
    if type(coef) is not np.ndarray or coef.dtype != F64 or coef.ndim != 2:
        return None
    intercept = est.intercept_
    classes = est.classes_
    if not isinstance(intercept, np.ndarray) or not isinstance(classes, np.ndarray):
        return None
    if coef.shape[0] != (1 if len(classes) == 2 else len(classes)):
        return None
    return _LinearClassifier(coef, intercept, classes, int(est.n_features_in_), proba)


def _hist_gradient_boosting(est: Any, classifier: bool) -> FastPredictor | None:
    from sklearn._loss.link import IdentityLink, LogitLink, LogLink, MultinomialLogit
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss

    if getattr(est, "_preprocessor", None) is not None or getattr(est, "_in_fit", False):
        return None
    if getattr(est, "is_categorical_", None) is not None:
        return None
    baseline = est._baseline_prediction
    per_iteration = int(est.n_trees_per_iteration_)
    predictors = est._predictors
    if baseline.shape != (1, per_iteration) or baseline.dtype != F64:
        return None
    if not predictors or any(len(step) != per_iteration for step in predictors):
        return None
    loss, link = est._loss, est._loss.link
    classes = None
    if classifier:
        classes = est.classes_
        if type(loss) is HalfBinomialLoss and type(link) is LogitLink and per_iteration == 1:
            kind = "binary"
        elif type(loss) is HalfMultinomialLoss and type(link) is MultinomialLogit:
            kind = "multiclass"
        else:
            return None
        if len(classes) != (2 if kind == "binary" else per_iteration):
            return None
    elif type(link) is IdentityLink and per_iteration == 1:
        kind = "identity"
    elif type(link) is LogLink and per_iteration == 1:
        kind = "log"
    else:
        return None
    trees = [p.nodes for step in predictors for p in step]
    forest = _Forest(trees, int(est.n_features_in_))
    return _HistGradientBoosting(forest, baseline, len(predictors), kind, classes)


def _linear_classifier_with_proba(est: Any) -> FastPredictor | None:
    return _linear_classifier(est, proba=True)


def _linear_classifier_without_proba(est: Any) -> FastPredictor | None:
    return _linear_classifier(est, proba=False)


def _hgb_classifier(est: Any) -> FastPredictor | None:
    return _hist_gradient_boosting(est, classifier=True)


def _hgb_regressor(est: Any) -> FastPredictor | None:
    return _hist_gradient_boosting(est, classifier=False)


# Supported estimators by public module and class name (looked up without importing
# anything: an estimator's class is only ever matched against its own module's name).
_BUILDERS: dict[tuple[str, str], Callable[[Any], FastPredictor | None]] = {
    ("sklearn.linear_model", "LogisticRegression"): _linear_classifier_with_proba,
    ("sklearn.linear_model", "LogisticRegressionCV"): _linear_classifier_with_proba,
    ("sklearn.svm", "LinearSVC"): _linear_classifier_without_proba,
    ("sklearn.linear_model", "SGDClassifier"): _linear_classifier_without_proba,
    ("sklearn.linear_model", "Perceptron"): _linear_classifier_without_proba,
    ("sklearn.ensemble", "HistGradientBoostingClassifier"): _hgb_classifier,
    ("sklearn.ensemble", "HistGradientBoostingRegressor"): _hgb_regressor,
    **{
        ("sklearn.linear_model", name): _linear_regressor
        for name in (
            "LinearRegression",
            "Ridge",
            "RidgeCV",
            "Lasso",
            "LassoCV",
            "ElasticNet",
            "ElasticNetCV",
        )
    },
}


def _builder(kind: type) -> Callable[[Any], FastPredictor | None] | None:
    """The builder for estimators of exactly type ``kind`` (not a subclass), if any."""
    public = kind.__module__.split("._")[0]  # sklearn.linear_model._logistic -> ...model
    make = _BUILDERS.get((public, kind.__qualname__))
    if make is None or getattr(sys.modules.get(public), kind.__qualname__, None) is not kind:
        return None
    return make


def build(est: Any) -> FastPredictor | None:
    """A fast predictor for ``est``, or None when its kind is not supported.

    Not yet checked against the estimator: :func:`fast_predictor` does that.
    """
    make = _builder(type(est))
    if make is None or _sklearn_version() not in VERIFIED_SKLEARN:
        return None
    if getattr(est, "feature_names_in_", None) is not None:
        return None  # an ndarray makes scikit-learn warn; only the estimator does that
    try:
        return make(est)
    except (AttributeError, ValueError, TypeError, IndexError):
        logger.debug("no fast path for %s", type(est).__qualname__, exc_info=True)
        return None


# -- the gate ------------------------------------------------------------------------------


def _identical(a: Any, b: Any) -> bool:
    """Same type, dtype, shape, memory order and values, to the last bit (NaN included)."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return False
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.flags.c_contiguous != b.flags.c_contiguous:
        return False
    if a.flags.f_contiguous != b.flags.f_contiguous:
        return False
    if a.dtype.hasobject:
        return bool(np.array_equal(a, b))
    return a.tobytes() == b.tobytes()


def _sample_rows(data: Any, n_features: int, limit: int = 64) -> Array | None:
    """Up to ``limit`` rows of the data a model was first asked about, as float64."""
    if isinstance(data, np.ndarray):
        rows = data
    elif hasattr(data, "dtypes") and hasattr(data, "to_numpy"):  # a pandas DataFrame
        if not all(dtype == F64 for dtype in data.dtypes):
            return None
        rows = data.to_numpy()
    else:
        return None
    if rows.dtype != F64 or rows.ndim != 2 or rows.shape[1] != n_features or not rows.size:
        return None
    return np.ascontiguousarray(rows[:limit])


def probe_rows(fast: FastPredictor, sample: Any = None, *, seed: int = 0) -> Array:
    """The rows :func:`agrees` compares on: rows of ``sample`` (the first input the model
    got, e.g. its input example), then the predictor's own probes."""
    rows = fast.probes(np.random.default_rng(seed))
    first = _sample_rows(sample, fast.n_features)
    return rows if first is None else np.concatenate([first, rows])


def agrees(est: Any, fast: FastPredictor, rows: Array) -> bool:
    """Whether ``fast`` answers exactly as ``est`` on ``rows``: in batches of 64 (the
    server's largest by default), the first few one by one and a few small batches (each
    batch size can take another code path, in numpy, in BLAS and here). Input ``fast``
    declines (it would leave it to the estimator) is not compared."""
    batches = [rows[i : i + 64] for i in range(0, len(rows), 64)]
    batches += [rows[i : i + 1] for i in range(min(8, len(rows)))]
    batches += [rows[i : i + size] for i, size in ((0, 2), (3, 5), (8, 17))]
    methods = [("predict", fast.predict)]
    if fast.has_proba:
        methods.append(("predict_proba", fast.predict_proba))
    with np.errstate(all="ignore"):
        for batch in batches:
            batch = np.ascontiguousarray(batch)
            if not batch.size:
                continue
            for name, method in methods:
                mine = method(batch)
                if mine is None:
                    continue
                theirs = getattr(est, name)(batch)
                if not _identical(mine, theirs):
                    logger.debug(
                        "fast %s of %s differs from the estimator on %d rows: not used",
                        name,
                        type(est).__qualname__,
                        len(batch),
                    )
                    return False
    return True


# -- the cache -----------------------------------------------------------------------------

# The fitted attributes a fast predictor is built from. Fitting again assigns new objects
# (or, for a warm-started ensemble, grows the list of predictors): the predictor is then
# built and checked again. In-place changes to ``coef_`` are seen by the linear predictors,
# which compute with the estimator's own arrays.
State = tuple[Any, Any, Any, Any, Any, int]


def _state(est: Any) -> State:
    found: dict[str, Any] = getattr(est, "__dict__", {})
    trees = found.get("_predictors")
    return (
        found.get("coef_"),
        found.get("intercept_"),
        found.get("classes_"),
        trees,
        found.get("_baseline_prediction"),
        len(trees) if type(trees) is list else -1,
    )


def _same(a: State, b: State) -> bool:
    return (
        a[0] is b[0]
        and a[1] is b[1]
        and a[2] is b[2]
        and a[3] is b[3]
        and a[4] is b[4]
        and a[5] == b[5]
    )


_known: weakref.WeakKeyDictionary[Any, tuple[State, FastPredictor | None]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def enabled() -> bool:
    """Whether ``GYRE_FAST_PREDICT`` allows the fast path (anything but 0/false/no/off)."""
    value = os.environ.get(FAST_PREDICT_ENV, "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def fast_predictor(est: Any, sample: Any = None) -> FastPredictor | None:
    """The checked fast predictor of ``est``, built on first use (None: use ``est``).

    ``sample``: the data of that first call, compared on along with the probes. The
    answer is remembered for as long as ``est`` lives and is not fitted again.
    """
    state = _state(est)
    try:
        known = _known.get(est)
    except TypeError:  # not hashable, or no weak references: never fast
        return None
    if known is not None and _same(known[0], state):
        return known[1]
    with _lock:
        known = _known.get(est)
        if known is not None and _same(known[0], state):
            return known[1]
        fast = _checked(est, sample) if enabled() else None
        _known[est] = (state, fast)
        return fast


def _checked(est: Any, sample: Any) -> FastPredictor | None:
    try:
        fast = build(est)
        if fast is None:
            return None
        if agrees(est, fast, probe_rows(fast, sample)):
            return fast
    except Exception:  # the estimator always remains: a failure here only costs speed
        logger.debug("no fast path for %s", type(est).__qualname__, exc_info=True)
    return None
