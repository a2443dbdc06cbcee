"""Train, export and evaluate the expression CNN.

  python train.py                                   the shipped recipe: happy / sad / neutral on FER2013, RAF-DB and KDEF
  python train.py --sources fer2013 rafdb           the same on some of them
  python train.py --data DIR --classes happy sad    one dataset of your own (another class set)
  python train.py --data DIR --init                 fine-tune the shipped model on DIR/<class>/ photos
  python train.py --resume runs/RUN                 continue an interrupted run
  python train.py evaluate --data DIR [--model PATH] [--detect] [--json]

Training writes checkpoints, curves, a confusion matrix, a report and the exported model (.tflite
for run time, .keras it came from, .json model card) into its run folder, and a copy of the model
into --export-dir only when that is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from model.card import DEFAULT_MODEL, ModelCard, card_path_for
from model.cli_types import (float_between, fraction, name_and_weight, non_negative_float, non_negative_int,
                             positive_float, positive_int)
from model.data import (
    DataError,
    FaceDataset,
    check_class_folders,
    class_folders,
    class_image_paths,
    concatenate,
    find_layout,
    folder_labels_as,
    label_by_crowd_majority,
    one_hot_targets,
    relabel_by_votes,
    stratified_split,
    warn,
)
from model.faces import CropCache, FaceReport, PhotoFaces, check_enough_faces, decide_faces, load_faces, warn_skipped
from model.errors import ExpressionDetectorError
from model.images import read_image
from model.metrics import summarize, summarize_folders
from model.preprocess import CROP_CENTRES, CropFraming, InputSpec, crop_face, face_to_input
from model.run_state import RunError, TrainConfig
from model.sources import DEFAULT_SOURCES, SHARED_DATA, SOURCES, DataSource
from model.votes import EXPRESSIONS, load_votes, votes_path
from realtime.detector import DETECTOR_RANGES, FaceDetector

REPO = Path(__file__).resolve().parent
DEFAULT_CLASSES = ["happy", "sad", "neutral"]
DEFAULT_INIT = REPO / "model" / "happy_sad_neutral.keras"
FACE_CACHE = REPO / "runs" / "face_cache"
SMALL_DATA = 8000  # fewer training faces than this get the schedule for small data
# Gray face sides the network can be trained at: multiples of 16 (its four poolings) but 56. A face costs about
# (side / 48)^2 as much as at 48; at 80 pixels 0.85 ms a face run once on an AMD EPYC here (README), near the 1 ms budget.
INPUT_SIZES = (48, 56, 64, 80)
# --width: from 8-8-16-32 channels to four times the shipped ones, whose per-face cost (about 16x) is already far
# past the 1 ms budget; beyond that a network only fills memory.
WIDTH_RANGE = (0.25, 4.0)
# The shipped recipe's per-class loss weights (model.data.balance_weights): sad faces are the fewest of the
# drawn classes in every source, and the class the model drew worst. 1.0 (classes weighed equally) read RAF-DB's
# sad faces at 0.833 where 0.5 read them at 0.742 (README, "The model"; one run each, seeds 2 and 1).
SOURCES_CLASS_BALANCE = 1.0
# The shipped recipe's input: 64-pixel faces, each run once, against 48 run as seen and mirrored: rafdb/val balanced
# 0.834 -> 0.851, sad recall 0.828 -> 0.843, at 0.25 ms a face against 0.30 (README, "The model"; one run each, seed 3).
SOURCES_INPUT_SIZE = 64


class UsageError(ExpressionDetectorError):
    """A problem with what the user asked for, reported as one sentence."""


FolderLoader = Callable[[Path, list[str]], FaceDataset]  # (root, class names) -> the faces of root/<class>/


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", nargs="+", choices=sorted(SOURCES), default=None, metavar="NAME",
                        help="the shared datasets to train on together, from --sources-root: "
                             f"{', '.join(SOURCES)} (default without --data: all of them)")
    parser.add_argument("--sources-root", type=Path, default=SHARED_DATA, metavar="DIR",
                        help="the folder holding the shared datasets, DIR/<name>/train|val/<class>/ "
                             "(default: ../shared/data beside this project)")
    parser.add_argument("--data", type=Path, default=None,
                        help="one dataset instead: DIR/train/<class> with DIR/val/<class> (or DIR/test/<class>), or "
                             "DIR/<class> to split")
    parser.add_argument("--source-weights", nargs="+", type=name_and_weight, default=[], metavar="NAME=W",
                        help="count each face of source NAME W times in the loss, e.g. rafdb=2 (before the class "
                             "balance, which counts the weights; default: 1 each)")
    parser.add_argument("--class-balance", type=non_negative_float, default=None, metavar="POWER",
                        help="weigh each face by (mean class size / its class size) ** POWER, the expressions the "
                             f"model does not draw counted as one class (default: {SOURCES_CLASS_BALANCE} with "
                             "--sources, 0 with --data)")
    parser.add_argument("--classes", nargs="+", default=None,
                        help="class folders, in output order (default: happy sad neutral where DIR has all three, "
                             "as FER2013 does; otherwise every class folder in DIR)")
    parser.add_argument("--faces", choices=["auto", "crops", "photos"], default="auto",
                        help="crops: each image is a face; photos: the live face detector finds the face in each "
                             "image and cuts it as at run time; auto measures a sample (default: %(default)s)")
    parser.add_argument("--detector", choices=DETECTOR_RANGES, default="auto",
                        help="face-detector range for photos, as at run time: auto runs the short- and full-range "
                             "models on stills and merges their faces (default: %(default)s)")
    parser.add_argument("--crop-centre", choices=CROP_CENTRES, default=None,
                        help="what a face cut out of a photo is centred on: the detector's box, or the mean of the "
                             "eyes, nose and mouth (inner-face: a turned face keeps them where a frontal one has "
                             "them); the model's card keeps it, so the live pipeline cuts faces alike (default: box; "
                             "with --init, as the initial model)")
    parser.add_argument("--face-cache", type=Path, default=FACE_CACHE,
                        help="where the faces found in photos are kept, so later runs need not detect again "
                             "(default: runs/face_cache in this project)")
    parser.add_argument("--init", type=Path, nargs="?", const=DEFAULT_INIT, default=None, metavar="MODEL",
                        help="fine-tune a trained .keras model (given alone: model/happy_sad_neutral.keras) instead of "
                             "training from random weights; new class names get a new output layer")
    parser.add_argument("--head-epochs", type=non_negative_int, default=None,
                        help="with --init: epochs that train the output layer alone before the whole network "
                             "(default: 3)")
    parser.add_argument("--aux-classes", nargs="*", default=None,
                        help="extra classes trained as additional outputs but not exported; more faces to learn "
                             "from (default with crowd votes: every other FER+ expression; with folder labels: "
                             "neutral, when the data has it and it is not in --classes; give the option alone for none)")
    parser.add_argument("--other-class", default=None, metavar="NAME",
                        help="export the auxiliary classes' summed probability as one more class NAME, so a face "
                             "showing none of --classes is said to, not forced into one of them (default with crowd "
                             "votes: other; 'none' for no such class)")
    parser.add_argument("--teachers", type=Path, nargs="+", default=[], metavar="MODEL",
                        help="distil these trained .keras networks (e.g. runs/*/best.keras of other seeds) into "
                             "the new one: it learns from the labels and from their mean logits on each augmented "
                             "batch (teachers need the same classes and auxiliary classes)")
    parser.add_argument("--labels", choices=["auto", "votes", "majority", "folders"], default="auto",
                        help="training targets: the crowd's vote distribution per face (votes), its majority, or "
                             "the folder a face is in; auto means votes when DIR has ferplus_votes.csv "
                             "(default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="most epochs (default: 50 on the shared sources, 60 on --data, 30 with --init)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help=f"default: 128; 32 under {SMALL_DATA} training faces")
    parser.add_argument("--learning-rate", type=positive_float, default=None,
                        help="peak of the warm-up + cosine schedule (default: 0.05); with --init, the rate the whole "
                             "network starts at after the output layer's epochs (default: 0.005)")
    parser.add_argument("--patience", type=positive_int, default=None,
                        help="stop after this many epochs without a better val (default: 20; 15 under "
                             f"{SMALL_DATA} training faces; 8 with --init)")
    parser.add_argument("--input-size", type=int, choices=INPUT_SIZES, default=None, metavar="PIXELS",
                        help="side of the square gray face the network sees, one of "
                             f"{', '.join(map(str, INPUT_SIZES))} (default: {SOURCES_INPUT_SIZE} on the shared "
                             f"sources, {InputSpec().size} on --data; with --init, the initial model's)")
    parser.add_argument("--width", type=float_between(*WIDTH_RANGE), default=None, metavar="MULTIPLIER",
                        help="the network's channels, times the shipped network's 16-32-64-128 (rounded to multiples "
                             f"of 8; the per-face cost grows about as its square), from {WIDTH_RANGE[0]:g} to "
                             f"{WIDTH_RANGE[1]:g} (default: 1; with --init, the initial model's)")
    parser.add_argument("--mirror-averaging", action=argparse.BooleanOptionalAction, default=None,
                        help="the exported model runs each face as seen and mirrored and averages the logits (twice "
                             "the per-face cost), or each face once; epochs are chosen on mirror-averaged val "
                             "accuracy either way (default: off on the shared sources, where the input is 64 "
                             "pixels, on with --data; with --init, as the initial model)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true",
                        help="also show Keras' own per-epoch lines and TensorFlow's native messages")
    parser.add_argument("--val-fraction", type=fraction, default=0.15, help="held out when DIR has no val split")
    parser.add_argument("--limit-per-class", type=positive_int, default=None,
                        help="use at most this many training images per class (quick experiments)")
    parser.add_argument("--run-dir", type=Path, default=None, help="where checkpoints go (default runs/<time>-<classes>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    parser.add_argument("--export-dir", type=Path, default=None,
                        help="also write the model (.tflite, .keras and .json card) here; model/ replaces the shipped "
                             "model of the same classes (default: only the run folder)")
    return parser


def _evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py evaluate",
        description="Evaluate an exported model as the live pipeline runs it, on DIR/<class>/<images>.")
    parser.add_argument("--data", type=Path, required=True,
                        help="DIR/<folder>/<images>: folders named after model classes are scored, and every "
                             "folder gets its share of faces drawn as each class (by_folder)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a .tflite with its .json card beside it")
    parser.add_argument("--detect", action="store_true",
                        help="images are photos: find faces with the live detector and classify the largest")
    parser.add_argument("--detector", choices=["short", "full"], default="short", help="face detector range with --detect")
    parser.add_argument("--crop-scale", type=positive_float, default=None,
                        help="with --detect: crop side over detector box side (default: the model card's)")
    parser.add_argument("--crop-shift", type=float, default=None,
                        help="with --detect: crop centre below the box centre, in crop sides (default: the model card's)")
    parser.add_argument("--crop-centre", choices=CROP_CENTRES, default=None,
                        help="with --detect: what the crop is centred on (default: the model card's)")
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


def _other_class(asked: str | None, labels: str, classes: list[str], aux_classes: list[str]) -> str | None:
    """The merged class for every expression the model does not draw: by default with crowd labels, which
    train every expression, so a surprised or angry face is not renormalized into happy or sad."""
    if asked == "none" or (asked is None and (labels == "folders" or not aux_classes)):
        return None
    name = asked or "other"
    if not aux_classes:
        raise UsageError(f"--other-class {name} needs auxiliary classes to merge (--aux-classes)")
    if name in classes or name in aux_classes:
        raise UsageError(f"--other-class {name} is already a class name; choose another")
    return name


def _label_source(data: Path, asked: str) -> str:
    if asked == "auto":
        return "votes" if votes_path(data).is_file() else "folders"
    if asked != "folders" and not votes_path(data).is_file():
        raise UsageError(f"--labels {asked} needs crowd votes in {votes_path(data)}, which does not exist")
    return asked


def _default_classes(data: Path) -> list[str]:
    """happy sad neutral where the data has all three (FER2013); otherwise the class folders the data holds."""
    found = class_folders(data)
    if not data.is_dir() or all(name in found for name in DEFAULT_CLASSES):
        return list(DEFAULT_CLASSES)
    if len(found) < 2:
        what = f"only one class folder with images ({found[0]})" if found else "no class folder with images"
        raise UsageError(f"{data} has {what}; training needs two or more, DIR/<class>/<images>, one folder per class")
    print(f"classes: {', '.join(found)} (the class folders in {data}; --classes picks and orders them)", flush=True)
    return found


def _load_by_folder(config, layout, val_fraction: float, load: FolderLoader) -> tuple[FaceDataset, FaceDataset]:
    train_set = load(layout.train_dir, config.classes + config.aux_classes)
    if layout.val_dir is None:
        train_set, val_set = stratified_split(train_set, val_fraction, config.seed)
        val_set = val_set.subset(np.flatnonzero(val_set.labels < len(config.classes)))
        val_set.classes = tuple(config.classes)
    else:
        val_set = load(layout.val_dir, config.classes)
    return train_set, val_set


def _load_by_votes(config, layout, val_fraction: float, load: FolderLoader) -> tuple[FaceDataset, FaceDataset]:
    """Every expression folder for training, targets from the crowd; validation by crowd majority.

    Validation faces' votes only select the epoch and fit the temperature: they are never trained on.
    """
    data_root = layout.train_dir.parent if layout.val_dir is not None else Path(config.data)
    votes = load_votes(data_root)
    outputs = config.classes + config.aux_classes
    folders = [name for name in outputs if (layout.train_dir / name).is_dir()]
    train_set = load(layout.train_dir, folders)
    if layout.val_dir is None:
        train_set, val_set = stratified_split(train_set, val_fraction, config.seed)
    else:
        val_set = load(layout.val_dir, [name for name in outputs if (layout.val_dir / name).is_dir()])
    train_set = relabel_by_votes(train_set, outputs, votes, data_root, soft=config.labels == "votes")
    return train_set, label_by_crowd_majority(val_set, config.exported_classes, votes, data_root, config.other_class)


def _photo_faces(config, layout) -> PhotoFaces | None:
    """Crops or photos, measured on a sample unless --faces said; for photos, the live detector behind a cache."""
    if config.faces == "auto":
        with _open_detector(config.detector) as detector:
            decision = decide_faces([path for path, _ in class_image_paths(layout.train_dir, config.classes)],
                                    detector)
        print(decision.describe(), flush=True)
        if decision.mixed:
            warn(f"mixed face crops and photos: {decision.crop_like} of {decision.measured} sampled images look like "
                 f"crops, the others like photos; treating every image as {decision.mode} "
                 f"(--faces crops|photos to choose)")
        config.faces = decision.mode
    else:
        print(f"faces: {config.faces} (as this run was set)", flush=True)
    if config.faces == "crops":
        return None
    framing = config.framing
    print(f"finding faces with the live detector ({config.detector} range) and crop framing ({framing.centre} "
          f"centred); crops cached in {config.face_cache}", flush=True)
    return PhotoFaces(CropCache(Path(config.face_cache), framing, config.detector), framing,
                      lambda: _open_detector(config.detector))


def _open_detector(detector_range: str) -> FaceDetector:
    """The live face detector as main.py runs it on stills."""
    return FaceDetector(model_range=detector_range, still_images=True)


def _source_faces(config, source: DataSource) -> PhotoFaces | None:
    """How one shared dataset's images become faces (model.sources): as they are, or through the live detector."""
    if source.faces == "crops":
        return None
    cache = CropCache(Path(config.face_cache), config.framing, config.detector, source.pad)
    return PhotoFaces(cache, config.framing, lambda: _open_detector(config.detector), source.pad)


def _load_source(config, source: DataSource, report: FaceReport) -> tuple[FaceDataset, FaceDataset]:
    """One shared dataset's training faces on the model's outputs and its val faces on the exported classes."""
    root = source.root(Path(config.data))
    layout = find_layout(root, config.classes)
    if layout.val_dir is None:
        raise DataError(f"{root} has no val/<class> folders; the shared datasets come with their own val split")
    outputs = config.classes + config.aux_classes
    photos = _source_faces(config, source)
    report.mode = "photos" if photos is not None else "crops"
    print(f"{source.name}: {layout.description}; labels: {source.labels}; faces: {source.faces}", flush=True)

    def load(folder: Path, names: list[str]) -> FaceDataset:
        return load_faces(folder, [name for name in names if (folder / name).is_dir()], config.input, photos, report)

    try:
        if source.labels == "votes":
            return _load_by_votes(config, layout, 0.0, load)
        train_set = one_hot_targets(load(layout.train_dir, outputs), outputs)
        val_set = folder_labels_as(load(layout.val_dir, outputs), config.exported_classes, config.other_class)
    finally:
        if photos is not None:
            photos.close()
    return train_set, val_set


def _load_sources(config, report: FaceReport, card: dict) -> tuple[FaceDataset, FaceDataset]:
    """Every named shared dataset, each brought to the live crop its own way, trained on as one.

    ``report`` adds up what became of every image; ``card`` receives, per dataset, what went in and its terms.
    """
    parts = []
    for name in config.sources:
        source, source_report = SOURCES[name], FaceReport()
        train_part, val_part = _load_source(config, source, source_report)
        check_enough_faces(source_report, config.classes, source.root(Path(config.data)))
        weight = config.source_weights.get(name, 1.0)
        train_part = dataclasses.replace(train_part, weights=np.full(len(train_part), weight, np.float32))
        print(f"{name}: {len(train_part)} training faces {train_part.class_counts()}, {len(val_part)} val faces "
              f"{val_part.class_counts()}", flush=True)
        card[name] = {"path": os.path.relpath(source.root(Path(config.data)), REPO), "terms": source.terms,
                      "labels": source.labels, "face_finding": source.faces, "pad": source.pad, "loss_weight": weight,
                      "train_images": train_part.class_counts(), "val_images": val_part.class_counts(),
                      **source_report.summary()}
        report.add(source_report)
        parts.append((train_part, val_part))
    return concatenate([train for train, _ in parts]), concatenate([val for _, val in parts])


def _load_training_data(config, val_fraction: float, report: FaceReport, sources_card: dict
                        ) -> tuple[FaceDataset, FaceDataset]:
    """Training faces of the classes and auxiliary classes; validation faces of the exported classes only.

    ``report`` collects what became of every image: found, used, or skipped and why; with shared datasets
    (``config.sources``), ``sources_card`` gets each one's counts and terms.
    """
    if config.sources:
        train_set, val_set = _load_sources(config, report, sources_card)
        return _limited(config, train_set, val_set)
    layout = find_layout(Path(config.data), config.classes)
    print(f"data layout: {layout.description}; labels: {config.labels}", flush=True)
    for folder in (layout.train_dir, layout.val_dir):
        if folder is not None:
            check_class_folders(folder, config.classes)
    photos = _photo_faces(config, layout)
    report.mode = config.faces
    loader = _load_by_folder if config.labels == "folders" else _load_by_votes
    try:
        train_set, val_set = loader(config, layout, val_fraction,
                                    lambda root, names: load_faces(root, names, config.input, photos, report))
    finally:
        if photos is not None:
            photos.close()
    check_enough_faces(report, config.classes, Path(config.data))
    return _limited(config, train_set, val_set)


def _limited(config, train_set: FaceDataset, val_set: FaceDataset) -> tuple[FaceDataset, FaceDataset]:
    if config.limit_per_class:
        train_set = _limit_per_class(train_set, config.limit_per_class, config.seed)
    print(f"training on {len(train_set)} images {train_set.class_counts()}, "
          f"validating on {len(val_set)} {val_set.class_counts()}", flush=True)
    return train_set, val_set


def _choose_schedule(config, n_train: int, args: argparse.Namespace) -> None:
    """Fill in what the command line left open, from the data size and whether the run fine-tunes, and say so.

    FER2013-sized data keeps the schedule the shipped models were trained with. A few hundred faces
    get batches of 32 (enough steps an epoch to learn from) and, when fine-tuning, a short run: the
    output layer alone first, then the whole network at a tenth of the rate, stopped early on the
    held-out faces.
    """
    fine_tune, small = config.init is not None, n_train < SMALL_DATA
    config.batch_size = args.batch_size or (min(32, 2 ** int(np.log2(max(n_train // 4, 1)))) if small else 128)
    # The shared datasets together hold half as many faces again as FER2013. The shipped model ran 50 epochs
    # (best 43) where the one before ran 40 (best 39, still rising): one run each, with different seeds, so
    # length and seed are not told apart (README "The model").
    config.epochs = args.epochs or (30 if fine_tune else 50 if config.sources else 60)
    config.patience = args.patience or (8 if fine_tune else 15 if small else 20)
    config.learning_rate = args.learning_rate or (0.005 if fine_tune else 0.05)
    if args.head_epochs is not None:
        config.head_epochs = min(args.head_epochs, config.epochs)
    else:
        config.head_epochs = min(3, config.epochs - 1) if fine_tune else 0
    kind = (f"{'small dataset, ' if small else ''}{n_train} training faces, "
            f"{'fine-tuning' if fine_tune else 'from scratch'}")
    print(f"schedule ({kind}): batch {config.batch_size}, up to {config.epochs} epochs, early stop after "
          f"{config.patience} without a better held-out accuracy, learning rate {config.learning_rate:g}"
          f"{f' after {config.head_epochs} epoch(s) of the output layer alone' if config.head_epochs else ''} "
          f"(options on the command line win)", flush=True)
    if small and not fine_tune:
        print(f"note: {n_train} faces are few to learn faces from scratch; --init fine-tunes the shipped model "
              f"({os.path.relpath(DEFAULT_INIT, REPO)}) instead", flush=True)


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _training_data_card(config, train_counts: dict, val_set: FaceDataset, report: FaceReport,
                        sources_card: dict) -> dict:
    """What the card says the model learned from: the data, how its faces were found, what training started from."""
    data = {"source": os.path.relpath(config.data, REPO), "classes": list(config.classes),
            "aux_classes": list(config.aux_classes), "other_class": config.other_class, "labels": config.labels,
            "train_images": train_counts,
            "val_images": val_set.class_counts(), "limit_per_class": config.limit_per_class, **report.summary()}
    if config.sources:
        data["sources"] = sources_card
        data["class_balance"] = config.class_balance
        data["terms"] = ("non-commercial research use only: " +
                         "; ".join(SOURCES[name].terms for name in config.sources))
    if config.faces == "photos" or any(SOURCES[name].faces != "crops" for name in config.sources):
        framing = config.framing
        data["face_finding"] = {"detector": config.detector, "crop_scale": framing.scale, "crop_shift": framing.shift_y,
                                "crop_centre": framing.centre}
    if config.teachers:
        data["distillation"] = {"teachers": [os.path.relpath(teacher, REPO) for teacher in config.teachers],
                                "weight": config.distill_weight, "temperature": config.distill_temperature}
    if config.init:
        data["init"] = {"model": os.path.relpath(config.init, REPO), "head_epochs": config.head_epochs,
                        "frozen": "every layer but the output layer for head_epochs epochs; batch-norm layers "
                                  "throughout", "input": "kept from the initial model"}
    return data


def _save_weights_only(network, path: Path) -> None:
    """The exported .keras holds the weights alone, every layer trainable: best.keras's optimizer only serves
    resuming, and its frozen layers only the fine-tuning run."""
    import keras

    clean = keras.Model.from_config(network.get_config())  # uncompiled: clone_model would keep the optimizer
    for source, target in zip(network.layers, clean.layers):
        target.trainable = True
        target.set_weights(source.get_weights())
    clean.save(path)


def _export(config, state, train_counts: dict, val_set: FaceDataset, run_dir: Path, export_dir: Path | None,
            report: FaceReport, sources_card: dict) -> tuple[Path, dict]:
    """Calibrate on val, export to TFLite in the run folder, measure the exported model as the live pipeline runs it.

    Only an explicit ``export_dir`` receives a copy: a run never replaces the shipped model by default.
    """
    from model.export import export_tflite, merged_log_probs, predict_logits
    from model.metrics import fit_temperature
    from model.network import count_flops
    from model.plots import plot_confusion, plot_curves
    from model.checkpoints import load_checkpoint
    from realtime.classifier import ExpressionClassifier

    network = load_checkpoint(run_dir / "best.keras")
    merge = config.other_class is not None
    val_logits = predict_logits(network, val_set.images,
                                len(config.classes) + (len(config.aux_classes) if merge else 0),
                                mirror=config.mirror_averaging)
    temperature = fit_temperature(val_logits, val_set.labels,
                                  lambda scaled: merged_log_probs(scaled, len(config.classes), merge).numpy())
    name = "_".join(config.classes)
    tflite_path = run_dir / f"{name}.tflite"
    export_tflite(network, len(config.classes), temperature, config.input, tflite_path, merge_rest=merge,
                  mirror=config.mirror_averaging)
    keras_decisions = merged_log_probs(val_logits / temperature, len(config.classes), merge).numpy().argmax(axis=1)
    card = ModelCard(
        classes=config.exported_classes,
        input=config.input,
        framing=config.framing,
        temperature=round(temperature, 4),
        parameters=int(network.count_params()),
        mirror_averaging=config.mirror_averaging,
        flops_per_face=(2 if config.mirror_averaging else 1) * count_flops(network),
        training_data=_training_data_card(config, train_counts, val_set, report, sources_card),
        training_command=config.command,
        commit=_git_commit(),
        notes=("Probabilities come from the mean of the logits of the face and its mirror image, divided by "
               "the temperature fitted on the validation split. flops_per_face counts both passes."
               if config.mirror_averaging
               else "Probabilities come from the logits of the face, one pass, divided by the temperature fitted "
                    "on the validation split.")
              + " The .keras network also has the auxiliary classes' outputs, after the exported classes"
              + (f"; the .tflite sums their probability into '{config.other_class}'." if merge else
                 "; the .tflite has the exported classes alone."),
    )
    card.save(card_path_for(tflite_path))  # the run-time classifier needs the card beside the model to load it
    exported = ExpressionClassifier(tflite_path)
    probs = exported.predict(val_set.images)
    metrics = summarize(val_set.labels, probs, config.exported_classes)
    metrics["keras_tflite_agreement"] = float((probs.argmax(axis=1) == keras_decisions).mean())
    metrics["best_epoch"] = state.best_epoch
    metrics["epochs_run"] = state.epochs_done
    metrics["training_seconds"] = round(sum(r["seconds"] for r in state.history), 1)
    card.metrics = {"validation": {"split": "val (selection and calibration; not a test figure)", **metrics}}
    card.save(card_path_for(tflite_path))
    plot_curves(state.history, run_dir / "curves.png")
    plot_confusion(np.array(metrics["confusion"]), config.exported_classes, run_dir / "confusion.png",
                   f"validation, accuracy {metrics['accuracy']:.3f}")
    _save_weights_only(network, run_dir / f"{name}.keras")
    if export_dir is None:
        return tflite_path, metrics
    export_dir.mkdir(parents=True, exist_ok=True)
    for suffix in (".tflite", ".keras", ".json"):
        shutil.copyfile(run_dir / f"{name}{suffix}", export_dir / f"{name}{suffix}")
    return export_dir / f"{name}.tflite", metrics


def _shown(path: Path) -> str:
    """A path as the user would type it from here: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 59.5 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _report(report: FaceReport, metrics: dict, sizes: tuple[int, int], run_dir: Path, model_path: Path,
            seconds: dict[str, float]) -> None:
    """The end of every run: what became of the images, how the model does on the held-out faces, how long it took.

    The same figures go to ``report.json`` in the run folder, for scripts.
    """
    classes = metrics["classes"]
    folders = [name for name in classes if name in report.found]  # "other" has no folder of its own
    skipped = {reason: len(paths) for reason, paths in report.skipped().items()}
    lines = [
        f"images found: {', '.join(f'{name} {report.found.get(name, 0)}' for name in folders)} ({report.mode})",
        f"faces used: {', '.join(f'{name} {report.used.get(name, 0)}' for name in folders)}; "
        f"{sizes[0]} for training, {sizes[1]} held out",
        f"skipped: {', '.join(f'{count} {reason}' for reason, count in skipped.items())}"
        + (f" (listed in {_shown(run_dir / 'skipped.txt')})" if sum(skipped.values()) else ""),
        f"held-out accuracy {metrics['accuracy']:.4f}, balanced accuracy {metrics['balanced_accuracy']:.4f}"
        + (f", ROC AUC {metrics['roc_auc']:.4f}" if metrics.get("roc_auc") is not None else "")
        + f", on {metrics['n']} faces (they chose the epoch and the temperature: a validation figure)",
        "confusion (rows true, columns predicted): " + "; ".join(
            f"{name} " + " / ".join(str(v) for v in row) for name, row in zip(classes, metrics["confusion"])),
        f"curves: {_shown(run_dir / 'curves.png')}; confusion matrix: {_shown(run_dir / 'confusion.png')}",
        f"time: {_minutes(seconds['total'])} (finding and loading the faces {_minutes(seconds['faces'])}, training "
        f"{_minutes(seconds['training'])}, export {_minutes(seconds['export'])})",
        f"model: {_shown(model_path)} with its card {_shown(card_path_for(model_path))}",
        f"use it: python main.py --model {_shown(model_path)}",
    ]
    print("\n".join(["report:", *(f"  {line}" for line in lines)]), flush=True)
    summary = {"model": str(model_path), "images_found": report.found, "faces_used": report.used,
               "train_faces": sizes[0], "held_out_faces": sizes[1], "skipped": skipped,
               "held_out": {k: metrics.get(k) for k in ("accuracy", "balanced_accuracy", "roc_auc", "ece", "n",
                                                          "confusion", "classes", "best_epoch", "epochs_run")},
               "seconds": {k: round(v, 1) for k, v in seconds.items()}}
    (run_dir / "report.json").write_text(json.dumps(summary, indent=2) + "\n")


def _init_path(asked: Path) -> Path:
    """--init takes the .keras a model was exported with; a .tflite names the .keras beside it."""
    return asked.with_suffix(".keras") if asked.suffix == ".tflite" else asked


def _new_config(args: argparse.Namespace, argv: list[str]) -> TrainConfig:
    """The run's configuration from the command line; a fine-tuning run takes its input spec from its model."""
    if args.data is not None and args.sources is not None:
        raise UsageError("--data names one dataset and --sources the shared ones; give one of them")
    sources = list(args.sources or (DEFAULT_SOURCES if args.data is None else []))
    data = args.sources_root if sources else args.data
    missing = [name for name in sources if not SOURCES[name].root(data).is_dir()]
    if missing:
        raise UsageError(f"{', '.join(missing)} not found under {data} (each dataset lives in DIR/<name>/; "
                         f"--sources picks which, --sources-root names DIR)")
    source_weights = dict(args.source_weights)
    if len(source_weights) < len(args.source_weights):
        raise UsageError("--source-weights names a source twice; give each one weight")
    unknown = [name for name in source_weights if name not in sources]
    if unknown:
        raise UsageError(f"--source-weights names {', '.join(unknown)}, not among the sources trained on "
                         f"({', '.join(sources) or 'none: --data names one dataset'})")
    if sources:
        classes = args.classes or list(DEFAULT_CLASSES)
        labels = "votes" if args.labels == "auto" else args.labels
        aux_classes = ([name for name in EXPRESSIONS if name not in classes] if args.aux_classes is None
                       else args.aux_classes)
    else:
        classes = args.classes or _default_classes(data)
        labels = _label_source(data, args.labels)
        aux_classes = _default_aux_classes(data, classes, labels) if args.aux_classes is None else args.aux_classes
    other_class = _other_class(args.other_class, labels, classes, aux_classes)
    balance = args.class_balance if args.class_balance is not None else SOURCES_CLASS_BALANCE if sources else 0.0
    spec = InputSpec(size=args.input_size or (SOURCES_INPUT_SIZE if sources else InputSpec().size), equalize=True)
    mirror_averaging = not sources if args.mirror_averaging is None else args.mirror_averaging
    init = _init_path(args.init) if args.init else None
    if init is not None and args.input_size is not None:
        raise UsageError("--input-size is for a network trained from scratch: --init keeps its model's input")
    if init is not None and args.width is not None:
        raise UsageError("--width is for a network trained from scratch: --init keeps its model's layers")
    if init is not None:
        from model.training import load_init_model

        initial = load_init_model(init)
        spec = initial.spec
        mirror_averaging = initial.mirror_averaging if args.mirror_averaging is None else args.mirror_averaging
        print(f"fine-tuning {_shown(init)}; its input is kept: {spec.size}x{spec.size}, {spec.channels} channel(s), "
              f"x * {spec.scale:.6g} + {spec.offset:g}, equalize {spec.equalize}", flush=True)
    elif args.head_epochs is not None:
        raise UsageError("--head-epochs needs --init: a network trained from scratch has no trained layers to freeze")
    framing = CropFraming() if init is None else initial.framing
    if args.crop_centre is not None:
        framing = dataclasses.replace(framing, centre=args.crop_centre)
    return TrainConfig(
        classes=classes, aux_classes=aux_classes, other_class=other_class, data=str(data), seed=args.seed,
        sources=sources, class_balance=balance, source_weights=source_weights,
        limit_per_class=args.limit_per_class, labels=labels, faces=args.faces, detector=args.detector,
        face_cache=str(args.face_cache), init=None if init is None else str(init), input=spec, framing=framing,
        width=args.width or 1.0,
        mirror_averaging=mirror_averaging,
        teachers=[str(teacher.resolve()) for teacher in args.teachers],
        command=shlex.join(["python", "train.py", *argv]))


def _quiet_tensorflow(verbose: bool) -> None:
    """Load TensorFlow now, its start-up chatter (oneDNN, "Could not find cuda drivers", "failed call to
    cuInit" on a machine without a GPU) kept off stderr, and its Python warnings (retracing) off too, as
    main.py keeps the native libraries quiet; ``--verbose`` shows them all."""
    if verbose:
        return
    import logging

    from realtime.native import quiet_native

    with quiet_native():
        import tensorflow as tf

        tf.config.list_physical_devices()  # where CUDA is probed and its failure logged
    tf.get_logger().setLevel(logging.ERROR)


def train_main(argv: list[str]) -> int:
    started = time.monotonic()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _train_parser().parse_args(argv)
    _quiet_tensorflow(args.verbose)
    if args.resume:
        run_dir = args.resume
        if not (run_dir / "config.json").is_file():
            raise UsageError(f"{run_dir} is not a training run folder (no config.json in it)")
        config = TrainConfig.load(run_dir / "config.json")
    else:
        config = _new_config(args, argv)
        run_dir = args.run_dir or REPO / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{'_'.join(config.classes)}"
    if len(set(config.classes)) < 2:
        raise UsageError("--classes needs at least two different class names")
    if set(config.classes) & set(config.aux_classes):
        raise UsageError("a class cannot be in both --classes and --aux-classes")
    report, sources_card = FaceReport(), {}
    reading = time.monotonic()
    train_set, val_set = _load_training_data(config, args.val_fraction, report, sources_card)
    warn_skipped(report, run_dir / "skipped.txt")
    loaded = time.monotonic()
    if not args.resume:
        _choose_schedule(config, len(train_set), args)
    print(f"run folder: {run_dir}", flush=True)
    from model.training import train

    state = train(config, train_set, val_set, run_dir, keras_output=args.verbose)
    if state.best_epoch < 0:
        raise UsageError(f"{run_dir} finished without a trained epoch")
    trained = time.monotonic()
    model_path, metrics = _export(config, state, train_set.class_counts(), val_set, run_dir, args.export_dir, report,
                                  sources_card)
    finished = time.monotonic()
    print(f"best epoch {state.best_epoch} of {state.epochs_done}", flush=True)
    _report(report, metrics, (len(train_set), len(val_set)), run_dir, model_path,
            {"total": finished - started, "faces": loaded - reading, "training": trained - loaded,
             "export": finished - trained})
    return 0


def _evaluation_inputs(data_dir: Path, folders: list[str], spec: InputSpec, detect: bool, detector_range: str,
                       framing: CropFraming):
    """Preprocessed faces, their folder indices, and per folder the count of photos without a face.

    With ``detect`` each image is a photo: the live detector finds its faces and the largest is
    classified, cut out exactly as the live pipeline cuts faces.
    """
    faces, folder_indices, no_face = [], [], [0] * len(folders)
    detector = None
    if detect:
        from realtime.detector import FaceDetector, largest_face

        detector = FaceDetector(model_range=detector_range, still_images=True)
    try:
        for path, index in class_image_paths(data_dir, folders):
            image = read_image(path)
            if image is None:
                print(f"warning: skipped unreadable image {path}", file=sys.stderr)
                continue
            if detector is not None:
                face = largest_face(detector.detect(image))
                if face is None:
                    no_face[index] += 1
                    continue
                image = crop_face(image, face, framing)
            faces.append(face_to_input(image, spec))
            folder_indices.append(index)
    finally:
        if detector is not None:
            detector.close()
    batch = np.stack(faces) if faces else np.zeros((0, spec.size, spec.size, spec.channels), np.float32)
    return batch, np.asarray(folder_indices, dtype=np.int64), no_face


def _print_table(metrics: dict) -> None:
    print(f"images: {metrics['n']} in the model's classes (no face found: {metrics['n_no_face']})")
    for key in ("accuracy", "accuracy_on_detected", "balanced_accuracy", "roc_auc", "ece", "share_other"):
        if metrics.get(key) is not None:
            print(f"{key:>22}: {metrics[key]:.4f}")
    classes = metrics["classes"]
    if classes:
        width = max(len(c) for c in classes) + 2
        print("confusion (rows true, columns predicted):")
        print(" " * width + "".join(f"{c:>{width}}" for c in classes))
        for name, row in zip(classes, metrics["confusion"]):
            print(f"{name:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    columns = list(next(iter(metrics["by_folder"].values())))
    width = max(len(c) for c in [*columns, *metrics["by_folder"]]) + 2
    print(f"drawn as (share of each folder's images; uncertain: below min_confidence {metrics['min_confidence']}):")
    print(" " * width + "".join(f"{c:>{width}}" for c in columns))
    for folder, shares in metrics["by_folder"].items():
        print(f"{folder:>{width}}" + "".join(f"{shares[c]:>{width}.3f}" for c in columns))


def _evaluation_framing(args: argparse.Namespace, classifier) -> CropFraming:
    """The model card's crop framing, with what the command line sets instead."""
    given = {"scale": args.crop_scale, "shift_y": args.crop_shift, "centre": args.crop_centre}
    return dataclasses.replace(classifier.card.framing, **{name: value for name, value in given.items()
                                                           if value is not None})


def evaluate_main(argv: list[str]) -> int:
    args = _evaluate_parser().parse_args(argv)
    from realtime.classifier import ExpressionClassifier

    if not args.data.is_dir():
        raise UsageError(f"data folder {args.data} does not exist")
    classifier = ExpressionClassifier(args.model)
    folders = class_folders(args.data)
    if not folders:
        raise UsageError(f"{args.data} has no folders of images; expected {args.data}/<class>/<images>")
    faces, folder_indices, no_face = _evaluation_inputs(
        args.data, folders, classifier.input_spec, args.detect, args.detector, _evaluation_framing(args, classifier))
    probs = classifier.predict(faces)
    metrics = summarize_folders(folder_indices, probs, folders, classifier.classes, no_face,
                                classifier.card.min_confidence, with_no_face=args.detect)
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
