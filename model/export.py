"""From a trained Keras network to the TFLite model the live pipeline runs with LiteRT.

The exported graph does the whole decision: each face is run as seen and mirrored in one batch,
the logits are averaged (worth 0.3-0.5 points on FER2013), divided by the calibration temperature
and turned into probabilities. The run-time path only normalizes pixels and reads the output.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model.preprocess import InputSpec


def mirrored_logits(network: keras.Model, faces: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Logits of the first ``num_classes`` outputs, averaged over each face and its mirror, in one batched call.

    Outputs past ``num_classes`` belong to auxiliary classes that were only trained, never exported.
    """
    count = tf.shape(faces)[0]
    both = tf.concat([faces, tf.reverse(faces, axis=[2])], axis=0)
    logits = network(both, training=False)[:, :num_classes]
    return (logits[:count] + logits[count:]) / 2.0


def predict_logits(network: keras.Model, faces: np.ndarray, num_classes: int, batch_size: int = 512) -> np.ndarray:
    """Mirror-averaged logits for a numpy batch, without Keras' per-call predict overhead per chunk."""
    call = tf.function(lambda x: mirrored_logits(network, x, num_classes), reduce_retracing=True)
    chunks = [call(tf.constant(faces[i : i + batch_size])).numpy() for i in range(0, len(faces), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, num_classes), np.float32)


def export_tflite(network: keras.Model, num_classes: int, temperature: float, spec: InputSpec, path: Path) -> None:
    """Write a float32 TFLite model with a dynamic batch dimension: faces in, calibrated probabilities out."""

    signature = tf.TensorSpec([None, spec.size, spec.size, spec.channels], tf.float32, name="faces")
    # Keras' ExportArchive tracks the network's variables so the converter can freeze them to constants.
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint(
        "serve",
        lambda faces: {"probabilities": tf.nn.softmax(mirrored_logits(network, faces, num_classes) / temperature)},
        input_signature=[signature],
    )
    with tempfile.TemporaryDirectory() as saved_model_dir:
        archive.write_out(saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serve"])
        path.write_bytes(converter.convert())
