"""Train, export and evaluate the expression CNN.

  python train.py                                   train happy/sad on ../shared/data/fer2013
  python train.py --classes happy sad neutral       another class set
  python train.py --resume runs/RUN                 continue an interrupted run
  python train.py evaluate --data DIR [--model PATH] [--detect] [--json]

Training writes checkpoints, curves and a confusion matrix into its run folder and the exported
model (.tflite for run time, .keras it came from, .json model card) into --export-dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from model.card import ModelCard, card_path_for
from model.cli_types import fraction, positive_float, positive_int
from model.data import (
    DataError,
    FaceDataset,
    class_image_paths,
    find_layout,
    label_by_crowd_majority,
    load_class_folders,
    relabel_by_votes,
    stratified_split,
)
from model.errors import ExpressionDetectorError
from model.images import read_image
from model.metrics import summarize
from model.preprocess import CropFraming, InputSpec, face_to_input
from model.run_state import RunError, TrainConfig
from model.votes import EXPRESSIONS, load_votes, votes_path

REPO = Path(__file__).resolve().parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "fer2013"
DEFAULT_MODEL = REPO / "model" / "happy_sad.tflite"


class UsageError(ExpressionDetectorError):
    """A problem with what the user asked for, reported as one sentence."""


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="DIR/train/<class> with DIR/val/<class> (or DIR/test/<class>), or DIR/<class> to split "
                             "(default: %(default)s)")
    parser.add_argument("--classes", nargs="+", default=["happy", "sad", "neutral"],
                        help="class folders, in output order (default: %(default)s)")
    parser.add_argument("--aux-classes", nargs="*", default=None,
                        help="extra classes trained as additional outputs but not exported; more faces to learn "
                             "from (default with crowd votes: every other FER+ expression; with folder labels: "
                             "neutral, when the data has it and it is not in --classes; give the option alone for none)")
    parser.add_argument("--labels", choices=["auto", "votes", "majority", "folders"], default="auto",
                        help="training targets: the crowd's vote distribution per face (votes), its majority, or "
                             "the folder a face is in; auto means votes when DIR has ferplus_votes.csv "
                             "(default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=60)
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--learning-rate", type=positive_float, default=0.05, help="peak of the warm-up + cosine schedule")
    parser.add_argument("--patience", type=positive_int, default=20, help="stop after this many epochs without a better val")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--val-fraction", type=fraction, default=0.15, help="held out when DIR has no val split")
    parser.add_argument("--limit-per-class", type=positive_int, default=None,
                        help="use at most this many training images per class (quick experiments)")
    parser.add_argument("--run-dir", type=Path, default=None, help="where checkpoints go (default runs/<time>-<classes>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    parser.add_argument("--export-dir", type=Path, default=REPO / "model",
                        help="where the trained model and its card are written (default: %(default)s)")
    return parser


def _evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py evaluate",
        description="Evaluate an exported model as the live pipeline runs it, on DIR/<class>/<images>.")
    parser.add_argument("--data", type=Path, required=True, help="DIR/<class>/<images>; other folders are ignored")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a .tflite with its .json card beside it")
    parser.add_argument("--detect", action="store_true",
                        help="images are photos: find faces with the live detector and classify the largest")
    parser.add_argument("--detector", choices=["short", "full"], default="short", help="face detector range with --detect")
    parser.add_argument("--crop-scale", type=positive_float, default=CropFraming.scale,
                        help="with --detect: crop side over detector box side (default: %(default)s)")
    parser.add_argument("--crop-shift", type=float, default=CropFraming.shift_y,
                        help="with --detect: crop centre below the box centre, in crop sides (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object on the last line")
    return parser


def _limit_per_class(dataset: FaceDataset, limit: int, seed: int) -> FaceDataset:
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(dataset.labels == c))[:limit] for c in range(len(dataset.classes))]
    return dataset.subset(np.sort(np.concatenate(keep)))


def _default_aux_classes(data: Path, classes: list[str], labels: str) -> list[str]:
    if labels != "folders":
        return [name for name in EXPRESSIONS if name not in classes]
    layout = find_layout(data, classes)
    return [] if "neutral" in classes or not (layout.train_dir / "neutral").is_dir() else ["neutral"]


def _label_source(data: Path, asked: str) -> str:
    if asked == "auto":
        return "votes" if votes_path(data).is_file() else "folders"
    if asked != "folders" and not votes_path(data).is_file():
        raise UsageError(f"--labels {asked} needs crowd votes in {votes_path(data)}, which does not exist")
    return asked


def _load_by_folder(config, layout, val_fraction: float) -> tuple[FaceDataset, FaceDataset]:
    train_set = load_class_folders(layout.train_dir, config.classes + config.aux_classes, config.input)
    if layout.val_dir is None:
        train_set, val_set = stratified_split(train_set, val_fraction, config.seed)
        val_set = val_set.subset(np.flatnonzero(val_set.labels < len(config.classes)))
        val_set.classes = tuple(config.classes)
    else:
        val_set = load_class_folders(layout.val_dir, config.classes, config.input)
    return train_set, val_set


def _load_by_votes(config, layout, val_fraction: float) -> tuple[FaceDataset, FaceDataset]:
    """Every expression folder for training, targets from the crowd; validation by crowd majority.

    Validation faces' votes only select the epoch and fit the temperature: they are never trained on.
    """
    data_root = Path(config.data)
    votes = load_votes(data_root)
    outputs = config.classes + config.aux_classes
    folders = [name for name in outputs if (layout.train_dir / name).is_dir()]
    train_set = load_class_folders(layout.train_dir, folders, config.input)
    if layout.val_dir is None:
        train_set, val_set = stratified_split(train_set, val_fraction, config.seed)
    else:
        val_set = load_class_folders(
            layout.val_dir, [name for name in outputs if (layout.val_dir / name).is_dir()], config.input)
    train_set = relabel_by_votes(train_set, outputs, votes, data_root, soft=config.labels == "votes")
    return train_set, label_by_crowd_majority(val_set, config.classes, votes, data_root)


def _load_training_data(config, val_fraction: float) -> tuple[FaceDataset, FaceDataset]:
    """Training faces of the classes and auxiliary classes; validation faces of the exported classes only."""
    layout = find_layout(Path(config.data), config.classes)
    print(f"data layout: {layout.description}; labels: {config.labels}", flush=True)
    loader = _load_by_folder if config.labels == "folders" else _load_by_votes
    train_set, val_set = loader(config, layout, val_fraction)
    if config.limit_per_class:
        train_set = _limit_per_class(train_set, config.limit_per_class, config.seed)
    print(f"training on {len(train_set)} images {train_set.class_counts()}, "
          f"validating on {len(val_set)} {val_set.class_counts()}", flush=True)
    return train_set, val_set


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _export(config, state, train_counts: dict, val_set: FaceDataset, run_dir: Path, export_dir: Path) -> Path:
    """Calibrate on val, export to TFLite, measure the exported model as the live pipeline runs it."""
    from model.export import export_tflite, predict_logits
    from model.metrics import fit_temperature
    from model.network import build_network, count_flops
    from model.plots import plot_confusion, plot_curves
    from model.training import load_checkpoint
    from realtime.classifier import ExpressionClassifier

    network = load_checkpoint(run_dir / "best.keras")
    val_logits = predict_logits(network, val_set.images, len(config.classes))
    temperature = fit_temperature(val_logits, val_set.labels)
    name = "_".join(config.classes)
    tflite_path = run_dir / f"{name}.tflite"
    export_tflite(network, len(config.classes), temperature, config.input, tflite_path)
    keras_decisions = val_logits.argmax(axis=1)
    card = ModelCard(
        classes=list(config.classes),
        input=config.input,
        temperature=round(temperature, 4),
        parameters=int(network.count_params()),
        flops_per_face=2 * count_flops(network),
        training_data={"source": os.path.relpath(config.data, REPO), "classes": list(config.classes),
                       "aux_classes": list(config.aux_classes), "labels": config.labels, "train_images": train_counts,
                       "val_images": val_set.class_counts(), "limit_per_class": config.limit_per_class},
        training_command=config.command,
        commit=_git_commit(),
        notes="Probabilities come from the mean of the logits of the face and its mirror image, divided by "
              "the temperature fitted on the validation split. flops_per_face counts both passes. The .keras "
              "network also has the auxiliary classes' outputs, after these classes; the .tflite has these alone.",
    )
    card.save(card_path_for(tflite_path))  # the run-time classifier needs the card beside the model to load it
    exported = ExpressionClassifier(tflite_path)
    probs = exported.predict(val_set.images)
    metrics = summarize(val_set.labels, probs, list(config.classes))
    metrics["keras_tflite_agreement"] = float((probs.argmax(axis=1) == keras_decisions).mean())
    metrics["best_epoch"] = state.best_epoch
    metrics["epochs_run"] = state.epochs_done
    metrics["training_seconds"] = round(sum(r["seconds"] for r in state.history), 1)
    card.metrics = {"validation": {"split": "val (selection and calibration; not a test figure)", **metrics}}
    card.save(card_path_for(tflite_path))
    plot_curves(state.history, run_dir / "curves.png")
    plot_confusion(np.array(metrics["confusion"]), list(config.classes), run_dir / "confusion.png",
                   f"validation, accuracy {metrics['accuracy']:.3f}")
    # The shipped .keras holds the weights alone: the optimizer state in best.keras only serves resuming.
    weights_only = build_network(network.output_shape[-1], config.input)
    weights_only.set_weights(network.get_weights())
    weights_only.save(run_dir / f"{name}.keras")
    export_dir.mkdir(parents=True, exist_ok=True)
    for suffix in (".tflite", ".keras", ".json"):
        shutil.copyfile(run_dir / f"{name}{suffix}", export_dir / f"{name}{suffix}")
    print(json.dumps({k: metrics.get(k) for k in ("accuracy", "roc_auc", "ece", "keras_tflite_agreement")}))
    return export_dir / f"{name}.tflite"


def train_main(argv: list[str]) -> int:
    args = _train_parser().parse_args(argv)
    if args.resume:
        run_dir = args.resume
        if not (run_dir / "config.json").is_file():
            raise UsageError(f"{run_dir} is not a training run folder (no config.json in it)")
        config = TrainConfig.load(run_dir / "config.json")
    else:
        labels = _label_source(args.data, args.labels)
        aux_classes = (_default_aux_classes(args.data, args.classes, labels) if args.aux_classes is None
                       else args.aux_classes)
        config = TrainConfig(
            classes=args.classes, aux_classes=aux_classes, data=str(args.data), epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, patience=args.patience, seed=args.seed,
            limit_per_class=args.limit_per_class, labels=labels, input=InputSpec(equalize=True),
            command=shlex.join(["python", "train.py", *argv]))
        run_dir = args.run_dir or REPO / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{'_'.join(config.classes)}"
    if len(set(config.classes)) < 2:
        raise UsageError("--classes needs at least two different class names")
    if set(config.classes) & set(config.aux_classes):
        raise UsageError("a class cannot be in both --classes and --aux-classes")
    train_set, val_set = _load_training_data(config, args.val_fraction)
    print(f"run folder: {run_dir}", flush=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from model.training import train

    state = train(config, train_set, val_set, run_dir)
    if state.best_epoch < 0:
        raise UsageError(f"{run_dir} finished without a trained epoch")
    model_path = _export(config, state, train_set.class_counts(), val_set, run_dir, args.export_dir)
    print(f"best epoch {state.best_epoch} of {state.epochs_done}; model written to {model_path} "
          f"(card {card_path_for(model_path)}); curves and confusion matrix in {run_dir}")
    return 0


def _evaluation_inputs(data_dir: Path, classes: list[str], spec: InputSpec, detect: bool, detector_range: str,
                       framing: CropFraming):
    """Preprocessed faces, their labels and the count of photos without a face."""
    pairs = class_image_paths(data_dir, classes)
    if not pairs:
        raise UsageError(f"{data_dir} has no images in folders named after the model's classes ({', '.join(classes)})")
    faces, labels, no_face = [], [], 0
    detector = None
    if detect:
        from realtime.detector import FaceDetector, crop_face, largest_face

        detector = FaceDetector(model_range=detector_range, still_images=True)
    for path, label in pairs:
        image = read_image(path)
        if image is None:
            print(f"warning: skipped unreadable image {path}", file=sys.stderr)
            continue
        if detector is not None:
            face = largest_face(detector.detect(image))
            if face is None:
                no_face += 1
                continue
            image = crop_face(image, face, framing)
        faces.append(face_to_input(image, spec))
        labels.append(label)
    if detector is not None:
        detector.close()
    batch = np.stack(faces) if faces else np.zeros((0, spec.size, spec.size, spec.channels), np.float32)
    return batch, np.asarray(labels, dtype=np.int64), no_face


def _print_table(metrics: dict) -> None:
    print(f"images: {metrics['n']} (no face found: {metrics['n_no_face']})")
    for key in ("accuracy", "accuracy_on_detected", "balanced_accuracy", "roc_auc", "ece"):
        if metrics.get(key) is not None:
            print(f"{key:>22}: {metrics[key]:.4f}")
    classes = metrics["classes"]
    width = max(len(c) for c in classes) + 2
    print("confusion (rows true, columns predicted):")
    print(" " * width + "".join(f"{c:>{width}}" for c in classes))
    for name, row in zip(classes, metrics["confusion"]):
        print(f"{name:>{width}}" + "".join(f"{v:>{width}}" for v in row))


def evaluate_main(argv: list[str]) -> int:
    args = _evaluate_parser().parse_args(argv)
    from realtime.classifier import ExpressionClassifier

    if not args.data.is_dir():
        raise UsageError(f"data folder {args.data} does not exist")
    classifier = ExpressionClassifier(args.model)
    faces, labels, no_face = _evaluation_inputs(
        args.data, classifier.classes, classifier.input_spec, args.detect, args.detector,
        CropFraming(args.crop_scale, args.crop_shift))
    metrics = summarize(labels, classifier.predict(faces), classifier.classes, no_face)
    if args.json:
        print(json.dumps(metrics))
    else:
        _print_table(metrics)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from realtime.classifier import ModelError
    from realtime.detector import DetectorError

    try:
        if argv[:1] == ["evaluate"]:
            return evaluate_main(argv[1:])
        return train_main(argv)
    except (UsageError, DataError, ModelError, DetectorError, RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue a training run with --resume RUN_DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
