"""Task metrics in plain numpy, shared by the validation gate and monitoring.

Definitions follow scikit-learn's (a test checks agreement to 1e-9): binary precision,
recall and F1 use the positive class (the last of the sorted labels); with more than two
classes they are macro averages; ROC AUC is the Mann-Whitney statistic with ties counted
half (one-vs-rest macro average for several classes); log loss clips probabilities to
[1e-15, 1 - 1e-15].
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["LOWER_IS_BETTER", "classification_metrics", "regression_metrics"]

LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse", "mse", "error_rate"})


def _safe_div(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def roc_auc(y_true: Any, score: Any) -> float:
    """Binary ROC AUC; NaN when only one class is present."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(
    y_true: Any, y_pred: Any, proba: Any | None = None, classes: Any | None = None
) -> dict[str, Any]:
    """accuracy, precision, recall, f1, roc_auc, log_loss and the confusion matrix."""
    yt = np.asarray(y_true)
    yp = np.asarray(y_pred)
    labels = np.asarray(classes) if classes is not None else np.unique(np.r_[yt, yp])
    index = {label.item() if hasattr(label, "item") else label: i for i, label in enumerate(labels)}
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    ti = np.array([index.get(v.item() if hasattr(v, "item") else v, -1) for v in yt])
    pi = np.array([index.get(v.item() if hasattr(v, "item") else v, -1) for v in yp])
    ok = (ti >= 0) & (pi >= 0)
    np.add.at(cm, (ti[ok], pi[ok]), 1)
    tp = np.diag(cm).astype(float)
    precision = np.array([_safe_div(tp[i], cm[:, i].sum()) for i in range(k)])
    recall = np.array([_safe_div(tp[i], cm[i, :].sum()) for i in range(k)])
    f1 = np.array(
        [_safe_div(2 * precision[i] * recall[i], precision[i] + recall[i]) for i in range(k)]
    )
    out: dict[str, Any] = {"accuracy": float(np.mean(yt == yp)) if len(yt) else float("nan")}
    if k == 2:
        out.update(precision=precision[1], recall=recall[1], f1=f1[1])
    else:
        out.update(precision=precision.mean(), recall=recall.mean(), f1=f1.mean())
    out = {key: float(v) for key, v in out.items()}
    if proba is not None and k >= 2:
        p = np.asarray(proba, dtype=float)
        if p.ndim == 1:
            p = np.c_[1 - p, p]
        onehot = ti[:, None] == np.arange(p.shape[1])[None, :]
        if k == 2:
            out["roc_auc"] = roc_auc(ti == 1, p[:, 1])
        else:
            aucs = [roc_auc(onehot[:, j], p[:, j]) for j in range(p.shape[1])]
            out["roc_auc"] = float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else np.nan
        clipped = np.clip(p / p.sum(axis=1, keepdims=True), 1e-15, 1 - 1e-15)
        picked = clipped[onehot]
        out["log_loss"] = float(-np.mean(np.log(picked))) if len(picked) else float("nan")
    out["confusion_matrix"] = cm.tolist()
    out["labels"] = [v.item() if hasattr(v, "item") else v for v in labels]
    return out


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """mae, rmse, mse and r2."""
    yt = np.asarray(y_true, dtype=float)
    yp = np.asarray(y_pred, dtype=float).reshape(yt.shape)
    err = yp - yt
    mse = float(np.mean(err**2))
    ss_tot = float(np.sum((yt - yt.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot else float("nan")
    return {"mae": float(np.mean(np.abs(err))), "rmse": mse**0.5, "mse": mse, "r2": r2}
