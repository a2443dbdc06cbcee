"""Metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np

from model.metrics import (balanced_accuracy, confusion_matrix, expected_calibration_error, fit_temperature,
                           roc_auc, summarize)


def test_auc_counts_ordered_pairs_and_ties():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert roc_auc(np.array([0, 1, 1]), np.array([0.9, 0.1, 0.2])) == 0.0


def test_confusion_and_balanced_accuracy():
    confusion = confusion_matrix(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), 2)
    assert confusion.tolist() == [[2, 1], [0, 1]]
    assert balanced_accuracy(confusion) == (2 / 3 + 1) / 2


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    labels = np.array([0] * 8 + [1] * 2)
    calibrated = np.tile([0.8, 0.2], (10, 1))
    assert expected_calibration_error(labels, calibrated) < 1e-9
    overconfident = np.tile([0.99, 0.01], (10, 1))
    assert abs(expected_calibration_error(labels, overconfident) - 0.19) < 1e-9


def test_temperature_fit_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (20000, 2))
    true_temperature = 2.5
    probs = np.exp(logits / true_temperature)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = (rng.random(20000) < probs[:, 1]).astype(np.int64)
    assert abs(fit_temperature(logits, labels) - true_temperature) < 0.15


def test_summary_counts_faceless_images_as_errors():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    summary = summarize(np.array([0, 1, 1]), probs, ["happy", "sad"], n_no_face=1)
    assert summary["n"] == 4 and summary["n_no_face"] == 1
    assert summary["accuracy"] == 0.5
    assert abs(summary["accuracy_on_detected"] - 2 / 3) < 1e-12
    assert summary["confusion"] == [[1, 0], [1, 1]]
    assert summary["roc_auc"] == 1.0
