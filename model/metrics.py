"""Classification metrics in plain numpy, so evaluation needs no TensorFlow or scikit-learn."""

from __future__ import annotations

from typing import Callable

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean per-class recall over the classes that occur, so a majority class cannot hide a weak one."""
    support = confusion.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(confusion)[present] / support[present]))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve for binary labels (1 positive), via the rank-sum statistic with ties.

    None when only one class is present: the area is undefined, and JSON has no NaN.
    """
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    start = 0
    while start < len(sorted_scores):
        end = start
        while end + 1 < len(sorted_scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: how far the shown confidence is from the accuracy it should promise."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    bin_index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = bin_index == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def fit_temperature(logits: np.ndarray, labels: np.ndarray,
                    log_probs: Callable[[np.ndarray], np.ndarray] = log_softmax) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels`` (golden-section on log T).

    ``log_probs`` turns temperature-scaled logits into the log-probabilities of the classes ``labels``
    index (a plain log-softmax, or the exported model's merging of outputs).
    """

    def nll(log_t: float) -> float:
        return float(-log_probs(logits / np.exp(log_t))[np.arange(len(labels)), labels].mean())

    low, high = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    for _ in range(80):
        if nll(a) < nll(b):
            high, b = b, a
            a = high - ratio * (high - low)
        else:
            low, a = a, b
            b = low + ratio * (high - low)
    return float(np.exp((low + high) / 2.0))


def summarize(labels: np.ndarray, probs: np.ndarray, classes: list[str], n_no_face: int = 0) -> dict:
    """The metrics ``train.py evaluate`` reports; images without a face count as wrong in ``accuracy``."""
    predictions = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    confusion = confusion_matrix(labels, predictions, len(classes))
    n_detected = len(labels)
    n_correct = int(np.trace(confusion))
    result = {
        "classes": classes,
        "n": n_detected + n_no_face,
        "n_no_face": n_no_face,
        "accuracy": n_correct / max(n_detected + n_no_face, 1),
        "accuracy_on_detected": n_correct / max(n_detected, 1),
        "balanced_accuracy": balanced_accuracy(confusion) if n_detected else 0.0,
        "ece": expected_calibration_error(labels, probs) if n_detected else 0.0,
        "confusion": confusion.tolist(),
    }
    if len(classes) == 2:
        result["roc_auc"] = roc_auc(labels == 1, probs[:, 1]) if n_detected else None
    return result


def drawn_counts(probs: np.ndarray, classes: list[str], min_confidence: float) -> dict[str, int]:
    """How many faces would be drawn as each class (confidence at or above ``min_confidence``) or as not sure."""
    counts = {name: 0 for name in classes} | {"uncertain": 0}
    if len(probs):
        confident = probs.max(axis=1) >= min_confidence
        for index, name in enumerate(classes):
            counts[name] = int(((probs.argmax(axis=1) == index) & confident).sum())
        counts["uncertain"] = int((~confident).sum())
    return counts


def _by_folder(folder_indices: np.ndarray, probs: np.ndarray, folders: list[str], classes: list[str],
               no_face: list[int], min_confidence: float, with_no_face: bool) -> dict[str, dict[str, float]]:
    shares = {}
    for index, folder in enumerate(folders):
        counts = drawn_counts(probs[folder_indices == index], classes, min_confidence)
        if with_no_face:
            counts["no_face"] = no_face[index]
        total = max(sum(counts.values()), 1)
        shares[folder] = {name: round(count / total, 4) for name, count in counts.items()}
    return shares


def summarize_folders(folder_indices: np.ndarray, probs: np.ndarray, folders: list[str], classes: list[str],
                      no_face: list[int], min_confidence: float, with_no_face: bool = False) -> dict:
    """``summarize`` over the folders named after model classes, plus what every folder is drawn as.

    A model may know more classes than the folders hold (a happy/sad/neutral model on happy/ and
    sad/): the scores then judge the decision among the folders' classes alone, with the
    probabilities renormalized over them, and ``share_other`` tells how many faces the model would
    rather have put in a class outside them.
    """
    scored = [name for name in classes if name in folders]
    columns = [classes.index(name) for name in scored]
    in_scored = np.isin(folder_indices, [folders.index(name) for name in scored])
    if scored:
        subset = probs[in_scored][:, columns]
        subset = subset / np.maximum(subset.sum(axis=1, keepdims=True), 1e-12)
        labels = np.asarray([scored.index(folders[i]) for i in folder_indices[in_scored]], dtype=np.int64)
        result = summarize(labels, subset, scored, sum(no_face[folders.index(name)] for name in scored))
        result.setdefault("roc_auc", None)
    else:
        result = {"classes": [], "n": 0, "n_no_face": 0, "accuracy": None, "accuracy_on_detected": None,
                  "balanced_accuracy": None, "ece": None, "confusion": [], "roc_auc": None}
    full_decisions = probs[in_scored].argmax(axis=1) if in_scored.any() else np.zeros(0, np.int64)
    result["share_other"] = float(np.mean(~np.isin(full_decisions, columns))) if len(full_decisions) else 0.0
    result["by_folder"] = _by_folder(folder_indices, probs, folders, classes, no_face, min_confidence, with_no_face)
    result["min_confidence"] = min_confidence
    result["model_classes"] = list(classes)
    return result
