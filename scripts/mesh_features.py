"""Does MediaPipe's face mesh know happy, sad and neutral? A probe of the one pretrained face network in reach.

  pip download mediapipe==0.10.21 --no-deps --only-binary=:all: --python-version 3.11 \\
      --platform manylinux_2_28_x86_64 -d /tmp/mediapipe-wheel
  python scripts/mesh_features.py --wheel /tmp/mediapipe-wheel/mediapipe-0.10.21-*.whl [--model M] [--json]

This machine reaches only package registries, and the one network trained on many real faces that a
package carries is MediaPipe's face mesh (``face_landmark.tflite``, in the same wheel the detector's
BlazeFace comes from: ``realtime.detector_model``). If its features separated sad from neutral, they could
feed or teach the expression network. Every RAF-DB face, cut as ``scripts/wild_figures.py`` cuts it, goes
through the mesh at its 192 x 192 input; the features are its 468 landmarks (levelled on the outer eye
corners, centred and scaled) and its last 3 x 3 x 128 feature maps of both heads. Probes are fitted on
``rafdb/train`` (class-weighted, as training balances classes) and measured on ``rafdb/val``: recall and
balanced accuracy among happy / sad / neutral, as ``wild_figures.py`` decides them, beside the model's own.
The last probe adds the model's log-probabilities to the mesh features: had the mesh something the model
lacks, it would beat the same probe on the model's log-probabilities alone (the control; the model has seen
rafdb/train, so both probes learn to trust it more than new faces would deserve).

Needs TensorFlow (the probes are fitted with Keras), as training does. Val chooses nothing here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from model.errors import ExpressionDetectorError  # noqa: E402
from model.metrics import balanced_accuracy, confusion_matrix  # noqa: E402
from model.preprocess import face_to_input  # noqa: E402
from model.sources import SHARED_DATA, SOURCES  # noqa: E402
from realtime.api import DEFAULT_MODEL  # noqa: E402
from realtime.classifier import ExpressionClassifier  # noqa: E402
from scripts import run_script  # noqa: E402
from scripts.wild_figures import DECIDED, face_crops  # noqa: E402

MESH_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
MESH_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
MESH_SIDE = 192
# The last feature maps before each head's output: the landmark head's and the face-presence head's.
EMBEDDING_TENSORS = ("p_re_lu_18", "p_re_lu_16")
OUTER_EYE_CORNERS = (33, 263)
LABELS = (*DECIDED, "other")
PROBE_EPOCHS = 40
PROBE_HIDDEN = 256


class MeshProbeError(ExpressionDetectorError):
    """The wheel does not hold the expected face-mesh model."""


def mesh_model(wheel: Path, folder: Path) -> Path:
    """``face_landmark.tflite`` read out of the wheel into ``folder``, checked against its pinned SHA-256."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MESH_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise MeshProbeError(f"{wheel} is not a mediapipe 0.10.21 wheel holding {MESH_MEMBER} ({error})") from None
    if hashlib.sha256(data).hexdigest() != MESH_SHA256:
        raise MeshProbeError(f"{MESH_MEMBER} in {wheel} does not match its pinned SHA-256")
    path = folder / "face_landmark.tflite"
    path.write_bytes(data)
    return path


class FaceMesh:
    """Landmarks and last feature maps of one face crop (8-bit BGR) at a time."""

    def __init__(self, model: Path) -> None:
        with warnings.catch_warnings():  # kept tensors are how the feature maps are read; one face at a time
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
            self._interpreter = Interpreter(model_path=str(model), num_threads=2,
                                            experimental_preserve_all_tensors=True)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._landmarks = self._interpreter.get_output_details()[0]["index"]
        by_name = {detail["name"]: detail["index"] for detail in self._interpreter.get_tensor_details()}
        self._embeddings = [by_name[name] for name in EMBEDDING_TENSORS]

    def features(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(468, 3) landmarks in input pixels, and the flattened feature maps."""
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) if crop.ndim == 3 else cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
        shrinking = rgb.shape[0] > MESH_SIDE
        rgb = cv2.resize(rgb, (MESH_SIDE, MESH_SIDE), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        self._interpreter.set_tensor(self._input, (rgb.astype(np.float32) / 255.0)[None])
        self._interpreter.invoke()
        landmarks = self._interpreter.get_tensor(self._landmarks).reshape(468, 3)
        embedding = np.concatenate([self._interpreter.get_tensor(index).ravel() for index in self._embeddings])
        return landmarks, embedding


def normalized_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(N, 468 * 3): each face's landmarks turned so its outer eye corners are level, centred, and scaled to unit
    spread, so the shape of the face is left and not where or how large it sat in the crop."""
    xy = landmarks[:, :, :2] - landmarks[:, :, :2].mean(axis=1, keepdims=True)
    eyes = landmarks[:, OUTER_EYE_CORNERS[1], :2] - landmarks[:, OUTER_EYE_CORNERS[0], :2]
    angle = np.arctan2(eyes[:, 1], eyes[:, 0])
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    levelled = np.stack([cos * xy[:, :, 0] + sin * xy[:, :, 1], -sin * xy[:, :, 0] + cos * xy[:, :, 1]], axis=-1)
    spread = np.sqrt((levelled ** 2).sum(axis=-1).mean(axis=1))[:, None, None]
    depth = landmarks[:, :, 2:] - landmarks[:, :, 2:].mean(axis=1, keepdims=True)
    return (np.concatenate([levelled, depth], axis=-1) / spread).reshape(len(landmarks), -1)


def _split(classifier: ExpressionClassifier, mesh: FaceMesh, root: Path) -> dict[str, np.ndarray]:
    crops, folders, _, _ = face_crops(root, SOURCES["rafdb"].pad, True, classifier.card.framing)
    probabilities = classifier.predict(np.stack([face_to_input(crop, classifier.input_spec) for crop in crops]))
    columns = [classifier.classes.index(name) for name in LABELS]
    landmarks, embeddings = zip(*(mesh.features(crop) for crop in crops))
    return {"labels": np.array([LABELS.index(f) if f in LABELS else LABELS.index("other") for f in folders]),
            "model": np.log(np.clip(probabilities[:, columns], 1e-6, 1.0)),
            "landmarks": normalized_landmarks(np.stack(landmarks)), "mesh": np.stack(embeddings)}


def decided_figures(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Recall and balanced accuracy among happy / sad / neutral, each face decided by the most likely of the three."""
    decided = labels < len(DECIDED)
    confusion = confusion_matrix(labels[decided], scores[decided, :len(DECIDED)].argmax(axis=1), len(DECIDED))
    recall = {name: round(float(row[i] / max(row.sum(), 1)), 4) for i, (name, row) in enumerate(zip(DECIDED, confusion))}
    return {"recall": recall, "balanced_accuracy": round(balanced_accuracy(confusion), 4)}


def probe(train: np.ndarray, train_labels: np.ndarray, val: np.ndarray, hidden: int, seed: int) -> np.ndarray:
    """Val-face class scores from a softmax probe (``hidden`` 0) or a one-hidden-layer one, fitted on train."""
    import keras

    keras.utils.set_random_seed(seed)
    mean, scale = train.mean(axis=0), train.std(axis=0) + 1e-6
    counts = np.bincount(train_labels, minlength=len(LABELS))
    class_weight = len(train_labels) / (len(LABELS) * np.maximum(counts, 1))
    layers = [keras.Input((train.shape[1],))]
    if hidden:
        layers += [keras.layers.Dense(hidden, activation="relu"), keras.layers.Dropout(0.3)]
    layers.append(keras.layers.Dense(len(LABELS), kernel_regularizer=keras.regularizers.l2(1e-4)))
    network = keras.Sequential(layers)
    network.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    network.fit((train - mean) / scale, train_labels, sample_weight=class_weight[train_labels], epochs=PROBE_EPOCHS,
                batch_size=128, verbose=0)
    return network.predict((val - mean) / scale, verbose=0)


PROBES = (  # name, feature sets, hidden units
    ("landmarks, linear", ("landmarks",), 0),
    ("landmarks, MLP", ("landmarks",), PROBE_HIDDEN),
    ("mesh feature maps, linear", ("mesh",), 0),
    ("mesh feature maps, MLP", ("mesh",), PROBE_HIDDEN),
    ("model log-probabilities alone, MLP (the control)", ("model",), PROBE_HIDDEN),
    ("mesh maps + landmarks + model log-probabilities, MLP", ("mesh", "landmarks", "model"), PROBE_HIDDEN),
)


def mesh_figures(model: Path, data: Path, wheel: Path, seed: int) -> dict:
    classifier = ExpressionClassifier(model)
    with tempfile.TemporaryDirectory() as folder:
        mesh = FaceMesh(mesh_model(wheel, Path(folder)))
        train, val = (_split(classifier, mesh, data / "rafdb" / split) for split in ("train", "val"))
    report = {"model": str(model), "train_faces": len(train["labels"]), "val_faces": len(val["labels"]),
              "the model": decided_figures(val["model"], val["labels"])}
    for name, features, hidden in PROBES:
        scores = probe(np.hstack([train[f] for f in features]), train["labels"],
                       np.hstack([val[f] for f in features]), hidden, seed)
        report[name] = decided_figures(scores, val["labels"])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, required=True, help="the downloaded mediapipe 0.10.21 wheel")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="folder holding rafdb/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    if not (args.data / "rafdb").is_dir():
        parser.error(f"{args.data / 'rafdb'} does not exist; --data names the folder holding rafdb/")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    report = mesh_figures(args.model, args.data, args.wheel, args.seed)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"rafdb/val, {report['val_faces']} faces; probes fitted on rafdb/train's {report['train_faces']}; "
          f"happy / sad / neutral decided by the most likely of the three")
    for name, figures in report.items():
        if isinstance(figures, dict):
            recall = ", ".join(f"{label} {value:.3f}" for label, value in figures["recall"].items())
            print(f"  {name:<54} balanced {figures['balanced_accuracy']:.3f}  (recall {recall})")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
