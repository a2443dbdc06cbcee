"""FER+ crowd votes: ten people's labels per FER2013 face, as training targets and as honest val labels.

FER2013's folder labels come from one annotator, and more than half of ``train/sad/`` is neutral to
most people (the data's README). ``ferplus_votes.csv`` beside the images carries, per file, how many
of ten crowd workers chose each expression. Training on that distribution teaches the network what
people see in a face, including "this face shows nothing in particular".

Vote columns use FER+'s names; the project's class folders use FER2013's (``happiness`` is
``happy``). ``unknown`` and ``not_a_face`` votes carry no expression and are dropped; a face that
most voters call not a face is no training face at all.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.errors import ExpressionDetectorError

VOTES_FILE = "ferplus_votes.csv"
# FER+ vote column -> class name as the FER2013 folders spell it.
EXPRESSION_COLUMNS = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": "contempt",
}
EXPRESSIONS = tuple(EXPRESSION_COLUMNS.values())


class VotesError(ExpressionDetectorError):
    """A votes file that cannot be read; the message names it."""


@dataclass(frozen=True)
class FaceVotes:
    """The crowd's votes for one face, by class name (unknown and not-a-face votes kept apart)."""

    counts: dict[str, int]
    not_a_face: int
    unknown: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def is_face(self) -> bool:
        return self.total > 0 and self.not_a_face <= max(self.counts.values())

    def distribution(self, classes: tuple[str, ...]) -> np.ndarray:
        """Share of the expression votes for each of ``classes``; votes for other expressions are left out."""
        vector = np.array([self.counts.get(name, 0) for name in classes], dtype=np.float32)
        return vector / max(self.total, 1)

    def majority(self) -> str | None:
        """The expression with strictly more votes than any other answer (unknown and not-a-face included),
        or None where the crowd did not agree on one."""
        ranked = sorted([*self.counts.values(), self.unknown, self.not_a_face], reverse=True)
        top = max(self.counts, key=self.counts.__getitem__)
        if self.counts[top] == 0 or self.counts[top] != ranked[0] or ranked[1] == ranked[0]:
            return None
        return top

    def share(self, name: str) -> int:
        return self.counts.get(name, 0)


def votes_path(data_root: Path) -> Path:
    return data_root / VOTES_FILE


def load_votes(data_root: Path) -> dict[str, FaceVotes]:
    """Votes keyed by file path relative to ``data_root`` (``train/sad/Training_1.jpg``); empty if no file."""
    path = votes_path(data_root)
    if not path.is_file():
        return {}
    votes = {}
    try:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                counts = {name: int(row[column]) for column, name in EXPRESSION_COLUMNS.items()}
                votes[row["file"]] = FaceVotes(counts, int(row["not_a_face"]), int(row["unknown"]))
    except (OSError, KeyError, ValueError, csv.Error) as error:
        raise VotesError(f"{path} is not a readable FER+ votes file ({error})") from None
    return votes


def votes_for(votes: dict[str, FaceVotes], data_root: Path, image: Path) -> FaceVotes | None:
    """The votes of one image file, looked up by its path under ``data_root``."""
    try:
        key = image.absolute().relative_to(data_root.absolute()).as_posix()
    except ValueError:
        return None
    return votes.get(key)
