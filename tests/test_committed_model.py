"""The shipped model, as the live pipeline runs it, against the figures it must reach on val/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.card import ModelCard
from model.data import load_class_folders
from tests.conftest import COMMITTED_MODEL, run_cli


def test_committed_model_files_are_present_and_small():
    for suffix in (".tflite", ".keras", ".json"):
        path = COMMITTED_MODEL.with_suffix(suffix)
        assert path.is_file()
        assert path.stat().st_size < 10 * 1024 * 1024
    card = ModelCard.load(COMMITTED_MODEL.with_suffix(".json"))
    assert card.classes == ["happy", "sad"]
    assert card.training_command.startswith("python train.py")


def test_committed_model_reaches_its_figures_on_val(fer_val: Path):
    result = run_cli("train.py", "evaluate", "--data", str(fer_val), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["n"] == 895 + 653
    assert metrics["accuracy"] >= 0.94
    assert metrics["roc_auc"] >= 0.98
    assert metrics["ece"] <= 0.02


def test_keras_and_tflite_models_agree(fer_val: Path):
    import keras

    from model.export import predict_logits
    from realtime.classifier import ExpressionClassifier

    classifier = ExpressionClassifier(COMMITTED_MODEL)
    val = load_class_folders(fer_val, classifier.classes, classifier.input_spec)
    network = keras.models.load_model(COMMITTED_MODEL.with_suffix(".keras"), safe_mode=True)
    keras_decisions = predict_logits(network, val.images, len(classifier.classes)).argmax(axis=1)
    tflite_decisions = classifier.predict(val.images).argmax(axis=1)
    assert np.mean(keras_decisions == tflite_decisions) >= 0.995


def test_three_class_model_is_shipped_with_its_val_figures(fer_val: Path):
    model = COMMITTED_MODEL.with_name("happy_sad_neutral.tflite")
    card = ModelCard.load(model.with_suffix(".json"))
    assert card.classes == ["happy", "sad", "neutral"]
    assert card.training_command.startswith("python train.py --classes happy sad neutral")
    result = run_cli("train.py", "evaluate", "--data", str(fer_val), "--model", str(model), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["n"] == 895 + 653 + 607
    assert metrics["accuracy"] == card.metrics["validation"]["accuracy"] > 0.75
    assert metrics["ece"] == card.metrics["validation"]["ece"]
