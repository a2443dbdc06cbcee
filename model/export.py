"""From a trained Keras network to the TFLite model the live pipeline runs with LiteRT.

The exported graph does the whole decision: each face is run as seen and mirrored in one batch,
the logits are averaged (worth 0.3-0.5 points on FER2013), divided by the calibration temperature
and turned into probabilities. A model exported ``mirror=False`` runs each face once, at half the
cost: that is how a larger input fits the per-face budget. The run-time path only normalizes pixels
and reads the output.

A network trained on the crowd's votes has outputs for every expression, but the product draws only
some (happy, sad, neutral). Renormalizing over those alone would make a surprised, angry or afraid
face come out confidently happy or sad; with ``merge_rest`` the remaining expressions' probability
is kept as one more class, ``other``, so such a face is drawn as what it is: none of the three.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model.preprocess import InputSpec


def face_logits(network: keras.Model, faces: tf.Tensor, num_classes: int, mirror: bool = True) -> tf.Tensor:
    """Logits of the first ``num_classes`` outputs, averaged over each face and its mirror in one batched call
    (``mirror``), or of each face alone.

    Outputs past ``num_classes`` belong to auxiliary classes that were only trained, never exported.
    """
    if not mirror:
        return network(faces, training=False)[:, :num_classes]
    count = tf.shape(faces)[0]
    both = tf.concat([faces, tf.reverse(faces, axis=[2])], axis=0)
    logits = network(both, training=False)[:, :num_classes]
    return (logits[:count] + logits[count:]) / 2.0


def merged_log_probs(scaled_logits: tf.Tensor, num_classes: int, merge_rest: bool) -> tf.Tensor:
    """Log-probabilities of the exported classes from temperature-scaled logits of every output.

    Without ``merge_rest`` the first ``num_classes`` outputs are renormalized among themselves; with it,
    the outputs past them are summed into one last class. The exported graph and the metrics that
    select, calibrate and judge it all call this one function.
    """
    scaled_logits = tf.convert_to_tensor(scaled_logits, tf.float32)
    if not merge_rest:
        return tf.nn.log_softmax(scaled_logits[:, :num_classes], axis=1)
    rest = tf.reduce_logsumexp(scaled_logits[:, num_classes:], axis=1, keepdims=True)
    merged = tf.concat([scaled_logits[:, :num_classes], rest], axis=1)
    return merged - tf.reduce_logsumexp(scaled_logits, axis=1, keepdims=True)


def predict_logits(network: keras.Model, faces: np.ndarray, num_classes: int, batch_size: int = 512,
                   mirror: bool = True) -> np.ndarray:
    """``face_logits`` for a numpy batch, without Keras' per-call predict overhead per chunk."""
    call = tf.function(lambda x: face_logits(network, x, num_classes, mirror), reduce_retracing=True)
    chunks = [call(tf.constant(faces[i : i + batch_size])).numpy() for i in range(0, len(faces), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, num_classes), np.float32)


def export_tflite(network: keras.Model, num_classes: int, temperature: float, spec: InputSpec, path: Path,
                  merge_rest: bool = False, mirror: bool = True) -> None:
    """Write a float32 TFLite model with a dynamic batch dimension: faces in, calibrated probabilities out.

    With ``merge_rest`` the model has ``num_classes + 1`` outputs, the last one every other expression's;
    ``mirror`` as in ``face_logits``.
    """
    num_outputs = int(network.output_shape[-1]) if merge_rest else num_classes

    signature = tf.TensorSpec([None, spec.size, spec.size, spec.channels], tf.float32, name="faces")
    # Keras' ExportArchive tracks the network's variables so the converter can freeze them to constants.
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint(
        "serve",
        lambda faces: {"probabilities": tf.exp(merged_log_probs(
            face_logits(network, faces, num_outputs, mirror) / temperature, num_classes, merge_rest))},
        input_signature=[signature],
    )
    with tempfile.TemporaryDirectory() as saved_model_dir:
        archive.write_out(saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serve"])
        path.write_bytes(converter.convert())
