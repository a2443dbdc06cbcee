"""Photos in, faces out: a folder of ordinary photos becomes training faces cut exactly as the live pipeline cuts them.

A photo of a person is not a face crop: squeezed whole into 48x48, its face is a few pixels wide.
So each photo goes through the live detector (``realtime.detector.FaceDetector`` in IMAGE mode, as
``main.py`` runs stills, handed in by the caller: ``model/`` knows no camera), the live framing
(``model.preprocess.crop_face`` with the run's ``CropFraming``) and, on loading, the live
preprocessing (``model.preprocess.face_to_input``). There is no second copy of any of them here, so
a face trained on and a face seen at run time are found, cut and normalized alike.

Aligned face crops whose framing differs from the live one (RAF-DB's) go the same way with a margin
added around them first (``pad``): BlazeFace misses a face with no margin, and with one it boxes the
face as it would in a frame, so the network sees such faces framed exactly as the live pipeline
frames faces.

Which kind a dataset holds is measured, not assumed: ``decide_faces`` runs the detector on a sample
and asks whether the face fills the image (a crop) or sits somewhere in it (a photo).

Detection is the slow part, so every photo's outcome (its crop, or why it has none) is cached under
a key of the file's content, the framing and the detector: a second run, or a resumed one, reads the
crops back instead of detecting again. This module never imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from model.data import DataError, FaceDataset, class_image_paths, load_class_folders
from model.images import read_image
from model.preprocess import CropFraming, DetectedFace, InputSpec, crop_face, face_to_input

# Bump when what a cached crop holds changes (framing code, detector handling), so old crops are not reused.
# 2: eyes levelled only where they are far enough apart (model.preprocess.MIN_EYE_SPAN); padded crops.
CACHE_VERSION = 2
# A second face at least this fraction of the largest face's side makes a photo ambiguous: whose
# expression the folder names cannot be told. Smaller faces are bystanders, and the largest is used.
AMBIGUOUS_SIDE_RATIO = 0.75
# A face whose box side is at least this fraction of the image's shorter side fills the image: the
# image is a crop. Measured: FER2013 val crops 0.62 (5th percentile) to 0.85 (median); GENKI-4K
# photos 0.51 (median) to 0.73 (95th percentile). The decision uses the sample's majority.
CROP_FILL = 0.7
# An image this small is taken for a tight crop when the detector finds nothing in it (BlazeFace misses
# a face that has no margin around it) or a face over half its side: nobody takes photos of people
# this small, and FER2013's 48x48 crops measure 0.62 at the 5th percentile.
SMALL_IMAGE_SIDE = 128
SMALL_CROP_FILL = 0.5
DECISION_SAMPLE = 32
# Below this share of the other kind, a sample is one kind with a few outliers; above it, it is mixed.
MIXED_SHARE = 0.2
PROGRESS_EVERY = 500
SKIP_REASONS = ("no face", "ambiguous")  # why a readable photo gives no face to train on
# Fewer usable faces than this in a class cannot be split into training and held-out faces usefully.
MIN_FACES_PER_CLASS = 5


class Detected(DetectedFace, Protocol):
    """What this module needs of one detected face (``realtime.types.Detection`` has it)."""


class FaceFinder(Protocol):
    """A face detector for still images (``realtime.detector.FaceDetector(still_images=True)``)."""

    def detect(self, image: np.ndarray) -> Sequence[Detected]: ...

    def close(self) -> None: ...


def pad_image(image: np.ndarray, pad: float) -> np.ndarray:
    """The image with a margin of ``pad`` times its side on every edge, its border pixels repeated (0: unchanged).

    Repeated, not mirrored: a mirrored margin holds half-faces that the detector finds as second faces.
    """
    if pad <= 0:
        return image
    margin = int(round(pad * max(image.shape[:2])))
    return cv2.copyMakeBorder(image, margin, margin, margin, margin, cv2.BORDER_REPLICATE)


@dataclass
class FaceReport:
    """What became of a dataset's images: found and used per class, and the skipped files by reason.

    One report collects every folder a run loads (train/ and val/ add up), so the end-of-run report
    and the card count the whole dataset.
    """

    mode: str = "crops"
    found: dict[str, int] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    no_face: list[Path] = field(default_factory=list)
    ambiguous: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    detected: int = 0
    from_cache: int = 0

    def add(self, other: "FaceReport") -> None:
        """Count another dataset's images in this report too (the mode becomes "mixed" where they differ)."""
        if not self.found:
            self.mode = other.mode
        elif other.mode != self.mode:
            self.mode = "mixed"
        for name, count in other.found.items():
            self.found[name] = self.found.get(name, 0) + count
        for name, count in other.used.items():
            self.used[name] = self.used.get(name, 0) + count
        self.no_face += other.no_face
        self.ambiguous += other.ambiguous
        self.unreadable += other.unreadable
        self.detected += other.detected
        self.from_cache += other.from_cache

    def skipped(self) -> dict[str, list[Path]]:
        return {"no face": self.no_face, "ambiguous": self.ambiguous, "unreadable": self.unreadable}

    def summary(self) -> dict:
        """The counts, for the model card and the run's report.json."""
        return {"faces": self.mode, "found": self.found, "used": self.used,
                **{reason.replace(" ", "_"): len(paths) for reason, paths in self.skipped().items()}}


@dataclass(frozen=True)
class FacesDecision:
    """Whether a dataset holds face crops or photos, and the measurement behind it."""

    mode: str  # "crops" or "photos"
    measured: int
    crop_like: int
    median_side: int

    @property
    def mixed(self) -> bool:
        minority = min(self.crop_like, self.measured - self.crop_like)
        return self.measured > 0 and minority >= max(2, MIXED_SHARE * self.measured)

    def describe(self) -> str:
        return (f"faces: {self.mode} ({self.crop_like} of {self.measured} sampled images look like face crops, "
                f"a face filling the image, at {self.median_side} px median side; --faces crops|photos overrides)")


def pick_face(detections: Sequence[Detected]) -> tuple[Detected | None, str | None]:
    """(the face to train on, None), or (None, why not): "no face", or "ambiguous" for two faces of similar size."""
    if not detections:
        return None, "no face"
    ranked = sorted(detections, key=lambda d: max(d.box[2], d.box[3]), reverse=True)
    if len(ranked) > 1 and max(ranked[1].box[2:]) >= AMBIGUOUS_SIDE_RATIO * max(ranked[0].box[2:]):
        return None, "ambiguous"
    return ranked[0], None


def _looks_like_crop(image: np.ndarray, detections: Sequence[Detected]) -> bool:
    height, width = image.shape[:2]
    small = max(height, width) <= SMALL_IMAGE_SIDE
    if not detections:
        return small
    largest = max(max(d.box[2], d.box[3]) for d in detections)
    return largest >= (SMALL_CROP_FILL if small else CROP_FILL) * min(height, width)


def decide_faces(paths: Sequence[Path], detector: FaceFinder) -> FacesDecision:
    """Measure an evenly spread sample of the images with the live detector: crops or photos?"""
    picks = sorted({int(i) for i in np.linspace(0, len(paths) - 1, min(DECISION_SAMPLE, len(paths)))})
    crop_like, sides = 0, []
    for index in picks:
        image = read_image(paths[index])
        if image is None:
            continue
        sides.append(max(image.shape[:2]))
        crop_like += _looks_like_crop(image, detector.detect(image))
    mode = "crops" if sides and 2 * crop_like > len(sides) else "photos"
    return FacesDecision(mode, len(sides), crop_like, int(np.median(sides)) if sides else 0)


class CropCache:
    """Crops on disk under a key of (file content, framing, detector), so photos are detected once.

    ``<key>.png`` holds a face crop exactly as ``crop_face`` returned it (lossless); ``<key>.skip``
    says why a photo gave none ("no face" or "ambiguous"). Each file is written to a temporary name
    and renamed, so an interrupted run leaves only whole entries behind.
    """

    def __init__(self, root: Path, framing: CropFraming, detector_range: str, pad: float = 0.0) -> None:
        self.root = root
        # A box-centred crop's key leaves the centre out, so the crops cached before CropFraming.centre stay valid.
        centre = "" if framing.centre == "box" else f"|centre {framing.centre}"
        self._salt = (f"v{CACHE_VERSION}|{detector_range}|{framing.scale!r}|{framing.shift_y!r}|"
                      f"{AMBIGUOUS_SIDE_RATIO!r}|pad {pad!r} replicated{centre}").encode()

    def key(self, path: Path) -> str:
        return hashlib.sha256(self._salt + hashlib.sha256(path.read_bytes()).digest()).hexdigest()

    def _entry(self, key: str, suffix: str) -> Path:
        return self.root / key[:2] / f"{key}{suffix}"

    def load(self, key: str) -> tuple[np.ndarray | None, str | None] | None:
        """(crop, None) or (None, reason) from the cache; None when this photo was never detected."""
        crop_path, skip_path = self._entry(key, ".png"), self._entry(key, ".skip")
        if crop_path.is_file():
            crop = read_image(crop_path)
            return None if crop is None else (crop, None)
        reason = skip_path.read_text().strip() if skip_path.is_file() else None
        return (None, reason) if reason in SKIP_REASONS else None

    def store(self, key: str, crop: np.ndarray | None, reason: str | None) -> None:
        if crop is not None:
            data = cv2.imencode(".png", crop)[1].tobytes()
            target = self._entry(key, ".png")
        else:
            data, target = (reason or "").encode(), self._entry(key, ".skip")
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)


class PhotoFaces:
    """Each photo's face crop, from the cache or else from the live detector (opened on the first miss).

    ``pad``: a margin, in image sides, added around each image before detection (for aligned crops);
    the cache must have been made with the same ``pad``.
    """

    def __init__(self, cache: CropCache, framing: CropFraming, open_detector: Callable[[], FaceFinder],
                 pad: float = 0.0) -> None:
        self.cache, self.framing, self.open_detector, self.pad = cache, framing, open_detector, pad
        self._detector: FaceFinder | None = None

    def face(self, path: Path, report: FaceReport) -> tuple[np.ndarray | None, str | None]:
        """(crop, None), or (None, reason) with reason "unreadable", "no face" or "ambiguous"."""
        try:
            key = self.cache.key(path)
        except OSError:
            return None, "unreadable"
        cached = self.cache.load(key)
        if cached is not None:
            report.from_cache += 1
            return cached
        image = read_image(path)
        if image is None:
            return None, "unreadable"
        crop, reason = self._detect(image)
        report.detected += 1
        self.cache.store(key, crop, reason)
        return crop, reason

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        if self._detector is None:
            self._detector = self.open_detector()
        image = pad_image(image, self.pad)
        face, reason = pick_face(self._detector.detect(image))
        if face is None:
            return None, reason
        return crop_face(image, face, self.framing), None

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None


def _load_photos(root: Path, pairs: list[tuple[Path, int]], classes: Sequence[str], spec: InputSpec,
                 faces: PhotoFaces, report: FaceReport) -> FaceDataset:
    images = np.empty((len(pairs), spec.size, spec.size, spec.channels), dtype=np.float32)
    labels, kept, unreadable = np.empty(len(pairs), dtype=np.int64), [], 0
    skipped = report.skipped()
    for done, (path, label) in enumerate(pairs, start=1):
        crop, reason = faces.face(path, report)
        if crop is None:
            skipped[reason].append(path)
            unreadable += reason == "unreadable"
        else:
            images[len(kept)], labels[len(kept)] = face_to_input(crop, spec), label
            kept.append(path)
        if done % PROGRESS_EVERY == 0 or done == len(pairs):
            print(f"finding faces under {root}: {done}/{len(pairs)} photos, {len(kept)} faces "
                  f"({report.detected} detected, {report.from_cache} from the cache)", flush=True)
    if pairs and not kept:
        raise DataError(f"the face detector found no usable face in any of the {len(pairs)} photos under {root} "
                        f"(try --detector full for faces far from the camera, or --faces crops if the images "
                        f"are face crops)")
    return FaceDataset(images[: len(kept)], labels[: len(kept)], tuple(classes), kept, unreadable)


def load_faces(root: Path, classes: Sequence[str], spec: InputSpec, photos: PhotoFaces | None,
               report: FaceReport) -> FaceDataset:
    """The faces of ``root/<class>/``: each image itself when ``photos`` is None (crops), else the face the
    live detector finds in it. Images without a usable face are skipped and recorded in ``report``."""
    pairs = class_image_paths(root, classes)
    if photos is None:
        dataset = load_class_folders(root, classes, spec, on_warning=lambda message: None)
        kept = set(dataset.paths)
        report.unreadable += [path for path, _ in pairs if path not in kept]
    else:
        dataset = _load_photos(root, pairs, classes, spec, photos, report)
    for index, name in enumerate(classes):
        report.found[name] = report.found.get(name, 0) + sum(1 for _, label in pairs if label == index)
        report.used[name] = report.used.get(name, 0) + int((dataset.labels == index).sum())
    return dataset


def warn_skipped(report: FaceReport, listing: Path, shown: int = 5) -> None:
    """One warning per reason with its count and the first few files; the full list goes to ``listing``."""
    lines = []
    for reason, paths in report.skipped().items():
        if not paths:
            continue
        more = f", and {len(paths) - shown} more" if len(paths) > shown else ""
        examples = ", ".join(str(p) for p in paths[:shown]) + more
        print(f"warning: {len(paths)} image(s) skipped, {reason}: {examples}", file=sys.stderr)
        lines += [f"{reason}\t{path}" for path in paths]
    if lines:
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("\n".join(lines) + "\n")


def check_enough_faces(report: FaceReport, classes: Sequence[str], where: Path) -> None:
    """Refuse a class with fewer than ``MIN_FACES_PER_CLASS`` usable faces, saying where its images went."""
    for name in classes:
        used, found = report.used.get(name, 0), report.found.get(name, 0)
        if used < MIN_FACES_PER_CLASS:
            lost = ", ".join(f"{sum(1 for p in paths if p.parent.name == name)} {reason}"
                             for reason, paths in report.skipped().items())
            raise DataError(f"class {name} has {used} usable face(s) under {where} ({found} images; skipped: {lost}); "
                            f"training needs at least {MIN_FACES_PER_CLASS} a class")
