"""What a training run asked for and how far it got, as JSON in its run folder (no TensorFlow needed to read it)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from model.errors import ExpressionDetectorError
from model.preprocess import CropFraming, InputSpec


class RunError(ExpressionDetectorError):
    """A run folder whose checkpoint cannot be used; the message names the file and why."""


@dataclass
class TrainConfig:
    classes: list[str]
    data: str
    aux_classes: list[str] = field(default_factory=list)
    # Exported as one more class holding the auxiliary outputs' summed probability (None: not exported).
    other_class: str | None = None
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_epochs: int = 3
    patience: int = 20
    seed: int = 1
    limit_per_class: int | None = None
    labels: str = "folders"  # "votes" (crowd distributions), "majority" (crowd majority) or "folders"
    faces: str = "crops"  # "crops": each image is a face; "photos": the live detector finds the face in each
    detector: str = "auto"  # face-detector range for photos (realtime.detector.DETECTOR_RANGES)
    face_cache: str | None = None  # where photos' face crops are cached
    init: str | None = None  # the .keras model training starts from; None: random weights
    head_epochs: int = 0  # first epochs that train the output layer alone, every other layer frozen
    head_learning_rate: float = 0.05
    teachers: list[str] = field(default_factory=list)  # .keras networks distilled into this one; empty: none
    distill_weight: float = 0.7  # the teachers' share of the loss (model.distill)
    distill_temperature: float = 2.0
    input: InputSpec = field(default_factory=InputSpec)
    framing: CropFraming = field(default_factory=CropFraming)  # how faces are cut out of photos; the card keeps it
    width: float = 1.0  # the network's channels, times the shipped ones (model.network.scaled_widths)
    # The export averages each face with its mirror (two passes a face); False: one pass. Epochs are chosen on
    # mirror-averaged val accuracy either way, the steadier measure of the network.
    mirror_averaging: bool = True
    command: str = ""
    # The shared datasets trained on together (model.sources), under ``data``; empty: ``data`` is one dataset.
    sources: list[str] = field(default_factory=list)
    class_balance: float = 0.0  # power of the per-class loss weights (model.data.balance_weights); 0: none
    # Each source's faces count this many times in the loss (before class balance); a source not named: 1.
    source_weights: dict[str, float] = field(default_factory=dict)

    @property
    def exported_classes(self) -> list[str]:
        """The classes of the exported model: ``classes``, then ``other_class`` where there is one."""
        return self.classes + ([self.other_class] if self.other_class else [])

    def save(self, path: Path) -> None:
        write_atomically(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        raw = json.loads(path.read_text())
        return cls(input=InputSpec(**raw.pop("input")), framing=CropFraming(**raw.pop("framing", {})), **raw)


@dataclass
class TrainState:
    epochs_done: int = 0
    best_epoch: int = -1
    best_val_accuracy: float = -1.0
    history: list[dict] = field(default_factory=list)
    finished: bool = False

    def save(self, path: Path) -> None:
        write_atomically(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "TrainState":
        return cls(**json.loads(path.read_text()))


def write_atomically(path: Path, text: str) -> None:
    """Write then rename, so a run killed mid-write leaves the previous file intact."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


