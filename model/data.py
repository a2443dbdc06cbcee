"""Face datasets kept as class folders (``DIR/happy/*.jpg``), loaded into memory through the shared preprocessing.

FER2013's happy and sad crops are 12k images of 48x48: as float32 that is about 110 MB, so the whole
set lives in one numpy array and the input pipeline only shuffles, augments and batches it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from model.errors import ExpressionDetectorError
from model.images import is_image_path, read_image
from model.preprocess import InputSpec, face_to_input
from model.votes import FaceVotes, votes_for


class DataError(ExpressionDetectorError):
    """A dataset folder that cannot be used; the message says what to change."""


@dataclass
class FaceDataset:
    images: np.ndarray  # (N, size, size, channels) float32, normalized
    labels: np.ndarray  # (N,) int64 indices into classes
    classes: tuple[str, ...]
    paths: list[Path]
    n_unreadable: int = 0
    targets: np.ndarray | None = None  # (N, K) soft targets (crowd votes); None means one-hot labels
    # (N,) how much each face counts in the loss before class balance (its source's weight); None means 1 each
    weights: np.ndarray | None = None

    def target_matrix(self, num_outputs: int) -> np.ndarray:
        """What the loss is fitted to: the soft targets when there are any, else the labels one-hot."""
        if self.targets is not None:
            return self.targets
        return np.eye(num_outputs, dtype=np.float32)[self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.classes)}

    def subset(self, indices: np.ndarray) -> "FaceDataset":
        return FaceDataset(
            self.images[indices], self.labels[indices], self.classes, [self.paths[i] for i in indices], 0,
            None if self.targets is None else self.targets[indices],
            None if self.weights is None else self.weights[indices],
        )


@dataclass(frozen=True)
class DataLayout:
    """Where the training and validation images are; ``val_dir`` None means split ``train_dir``."""

    description: str
    train_dir: Path
    val_dir: Path | None


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def class_image_paths(root: Path, classes: Sequence[str]) -> list[tuple[Path, int]]:
    """(path, class index) for every image in ``root/<class>/``; other folders are ignored."""
    pairs = []
    for index, name in enumerate(classes):
        folder = root / name
        if folder.is_dir():
            pairs.extend((path, index) for path in sorted(folder.iterdir()) if is_image_path(path))
    return pairs


def load_class_folders(
    root: Path, classes: Sequence[str], spec: InputSpec, on_warning: Callable[[str], None] = warn
) -> FaceDataset:
    """Load ``root/<class>/*`` for the given classes; unreadable files are skipped, warned about and counted."""
    missing = [name for name in classes if not (root / name).is_dir()]
    if missing:
        raise DataError(f"{root} has no folder for class(es) {', '.join(missing)}; expected {root}/<class>/<images>")
    pairs = class_image_paths(root, classes)
    images = np.empty((len(pairs), spec.size, spec.size, spec.channels), dtype=np.float32)
    labels = np.empty(len(pairs), dtype=np.int64)
    kept_paths: list[Path] = []
    unreadable = 0
    for path, label in pairs:
        image = read_image(path)
        if image is None:
            unreadable += 1
            on_warning(f"skipped unreadable image {path}")
            continue
        images[len(kept_paths)] = face_to_input(image, spec)
        labels[len(kept_paths)] = label
        kept_paths.append(path)
    if unreadable:
        on_warning(f"{unreadable} unreadable image(s) skipped under {root}")
    n = len(kept_paths)
    if n == 0:
        raise DataError(f"no readable images for classes {', '.join(classes)} under {root}")
    return FaceDataset(images[:n], labels[:n], tuple(classes), kept_paths, unreadable)


def find_layout(data_dir: Path, classes: Sequence[str]) -> DataLayout:
    """Recognise ``DIR/train/<class>`` + ``DIR/val|test/<class>``, or a single ``DIR/<class>`` to split."""
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist; pass --data DIR with DIR/<class>/<images>")

    def has_classes(folder: Path) -> bool:
        return all((folder / name).is_dir() for name in classes)

    train_dir = data_dir / "train"
    if has_classes(train_dir):
        for held_out in ("val", "validation", "test"):
            if has_classes(data_dir / held_out):
                return DataLayout(f"{train_dir}/<class> for training, {data_dir / held_out}/<class> for validation",
                                  train_dir, data_dir / held_out)
        return DataLayout(f"{train_dir}/<class>, split for validation", train_dir, None)
    if has_classes(data_dir):
        return DataLayout(f"{data_dir}/<class>, split for validation", data_dir, None)
    found = class_folders(data_dir)
    raise DataError(
        f"{data_dir} has neither train/<class> folders nor <class> folders for {', '.join(classes)} "
        f"(its class folders: {', '.join(found) if found else 'none'}; --classes names the folders to train on)"
    )


def stratified_split(dataset: FaceDataset, val_fraction: float, seed: int) -> tuple[FaceDataset, FaceDataset]:
    """Split every class in the same proportion, reproducibly, so a small class still shows up in validation."""
    rng = np.random.default_rng(seed)
    val_indices = []
    for label in range(len(dataset.classes)):
        members = np.flatnonzero(dataset.labels == label)
        rng.shuffle(members)
        val_indices.extend(members[: max(1, round(len(members) * val_fraction))] if len(members) > 1 else [])
    is_val = np.zeros(len(dataset), dtype=bool)
    is_val[np.asarray(val_indices, dtype=np.int64)] = True
    return dataset.subset(np.flatnonzero(~is_val)), dataset.subset(np.flatnonzero(is_val))


def _crowd_or_folder(dataset: FaceDataset, index: int, votes: dict[str, FaceVotes], data_root: Path):
    """(votes, folder class) of one face; votes None where the crowd never saw this file."""
    return votes_for(votes, data_root, dataset.paths[index]), dataset.classes[dataset.labels[index]]


def relabel_by_votes(
    dataset: FaceDataset, outputs: Sequence[str], votes: dict[str, FaceVotes], data_root: Path, soft: bool
) -> FaceDataset:
    """Training targets from the crowd: the vote distribution (``soft``) or its strict majority.

    Faces without votes keep their folder label; faces most voters call no face at all are dropped,
    and so, for majority targets, are faces the crowd split evenly over, or whose expression is not
    among ``outputs``.
    """
    outputs = tuple(outputs)
    keep, targets = [], []
    for index in range(len(dataset)):
        face_votes, folder_class = _crowd_or_folder(dataset, index, votes, data_root)
        if face_votes is None:
            name = folder_class if folder_class in outputs else None
        elif not face_votes.is_face():
            name = None
        elif soft:
            keep.append(index)
            targets.append(face_votes.distribution(outputs))
            continue
        else:
            name = face_votes.majority() if face_votes.majority() in outputs else None
        if name is not None:
            keep.append(index)
            targets.append(np.eye(len(outputs), dtype=np.float32)[outputs.index(name)])
    kept = dataset.subset(np.asarray(keep, dtype=np.int64))
    kept.targets = np.stack(targets) if targets else np.zeros((0, len(outputs)), np.float32)
    kept.labels = kept.targets.argmax(axis=1).astype(np.int64)
    kept.classes = outputs
    return kept


def label_by_crowd_majority(
    dataset: FaceDataset, classes: Sequence[str], votes: dict[str, FaceVotes], data_root: Path,
    other_class: str | None = None,
) -> FaceDataset:
    """The faces whose strict crowd majority (folder label where there are no votes) is one of ``classes``.

    This is how validation judges a vote-trained model: by what most people see, not by one annotator.
    With ``other_class`` (the last of ``classes``), a face whose majority is any other expression is
    labelled with it, as the exported model's merged class for every expression it does not draw.
    """
    classes = tuple(classes)
    keep, labels = [], []
    for index in range(len(dataset)):
        face_votes, folder_class = _crowd_or_folder(dataset, index, votes, data_root)
        name = folder_class if face_votes is None else face_votes.majority()
        if other_class is not None and name is not None and name not in classes:
            name = other_class
        if name in classes:
            keep.append(index)
            labels.append(classes.index(name))
    kept = dataset.subset(np.asarray(keep, dtype=np.int64))
    kept.labels = np.asarray(labels, dtype=np.int64)
    kept.classes = classes
    kept.targets = None
    return kept


def class_folders(data_dir: Path) -> list[str]:
    """The class folders a dataset holds: the sub-folders of ``DIR/train`` (or of ``DIR``) with an image in them."""
    root = data_dir / "train" if (data_dir / "train").is_dir() else data_dir
    if not root.is_dir():
        return []
    return sorted(folder.name for folder in root.iterdir()
                  if folder.is_dir() and any(is_image_path(path) for path in folder.iterdir()))


def check_class_folders(root: Path, classes: Sequence[str]) -> None:
    """Refuse a class folder without a single image file before any slow loading, saying what it does hold."""
    for name in classes:
        folder = root / name
        files = [path for path in sorted(folder.iterdir()) if path.is_file()] if folder.is_dir() else []
        if not any(is_image_path(path) for path in files):
            held = f"only {len(files)} other file(s), such as {files[0].name}" if files else "nothing"
            raise DataError(f"class folder {folder} has no images ({held}); image files end in .jpg, .png, "
                            f".bmp, .webp or .tif")


def concatenate(datasets: Sequence[FaceDataset]) -> FaceDataset:
    """One dataset of several with the same classes; soft targets are kept where every part has them."""
    classes = datasets[0].classes
    if any(part.classes != classes for part in datasets):
        raise ValueError("datasets to concatenate must have the same classes")
    targets = None
    if all(part.targets is not None for part in datasets):
        targets = np.concatenate([part.targets for part in datasets])
    weights = None
    if any(part.weights is not None for part in datasets):
        weights = np.concatenate([np.ones(len(part), np.float32) if part.weights is None else part.weights
                                  for part in datasets])
    return FaceDataset(np.concatenate([part.images for part in datasets]),
                       np.concatenate([part.labels for part in datasets]), classes,
                       [path for part in datasets for path in part.paths],
                       sum(part.n_unreadable for part in datasets), targets, weights)


def one_hot_targets(dataset: FaceDataset, outputs: Sequence[str]) -> FaceDataset:
    """A folder-labelled dataset re-indexed onto ``outputs`` by class name, with one-hot targets; faces of a
    class not among ``outputs`` are dropped."""
    outputs = tuple(outputs)
    names = [dataset.classes[label] for label in dataset.labels]
    keep = np.asarray([index for index, name in enumerate(names) if name in outputs], dtype=np.int64)
    kept = dataset.subset(keep)
    kept.labels = np.asarray([outputs.index(names[index]) for index in keep], dtype=np.int64)
    kept.classes = outputs
    kept.targets = np.eye(len(outputs), dtype=np.float32)[kept.labels]
    return kept


def folder_labels_as(dataset: FaceDataset, classes: Sequence[str], other_class: str | None) -> FaceDataset:
    """Validation faces labelled by folder onto the exported ``classes``: every other expression becomes
    ``other_class`` (the last of ``classes``), or is dropped where there is none."""
    classes = tuple(classes)
    keep, labels = [], []
    for index, label in enumerate(dataset.labels):
        name = dataset.classes[label]
        if other_class is not None and name not in classes:
            name = other_class
        if name in classes:
            keep.append(index)
            labels.append(classes.index(name))
    kept = dataset.subset(np.asarray(keep, dtype=np.int64))
    kept.labels, kept.classes, kept.targets = np.asarray(labels, dtype=np.int64), classes, None
    return kept


def balance_weights(targets: np.ndarray, drawn: int, power: float, prior: np.ndarray | None = None) -> np.ndarray:
    """Per-face loss weights that even out the drawn classes (and all other expressions as one group).

    A face weighs ``prior * (mean group size / its group's size) ** power``, spread over its soft target:
    with ``power`` 1 every group weighs the same in the loss, with 0 every face weighs its prior. The first
    ``drawn`` columns are groups of their own; the rest (auxiliary expressions, exported as one ``other``)
    are one group, since the model is judged on what it draws. ``prior`` (a face's source weight; None: 1
    each) counts in the group sizes too, so that weighing a source up does not undo the class balance.
    Weights average 1, so the learning rate keeps its meaning.
    """
    prior = np.ones(len(targets), dtype=np.float32) if prior is None else prior.astype(np.float32)
    if len(targets) == 0:
        return prior
    if power == 0:
        return (prior / prior.mean()).astype(np.float32)
    grouped = np.concatenate([targets[:, :drawn], targets[:, drawn:].sum(axis=1, keepdims=True)], axis=1)
    sizes = (grouped * prior[:, None]).sum(axis=0)
    present = sizes > 0
    group_weight = np.zeros_like(sizes)
    group_weight[present] = (sizes[present].mean() / sizes[present]) ** power
    weights = prior * (grouped @ group_weight)
    return (weights / weights.mean()).astype(np.float32)
