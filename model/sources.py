"""The face datasets the shipped model learns from, what kind of images each holds, and their terms.

Each source lives in ``../shared/data/<name>/`` with ``train/<class>/`` and ``val/<class>/`` folders named
like FER2013's (``happy``, ``sad``, ``neutral``, ``surprise``, ``angry``, ``disgust``, ``fear``). Their
expressions map onto the model's outputs by name, as the FER+ votes do: happy, sad and neutral are drawn,
every other expression is an auxiliary output merged into ``other`` on export.

How a source's images meet the live crop differs, and each is brought to it by the live code itself:

- ``crops``: FER2013's tight 48x48 crops are what the live framing (``CropFraming``) was measured against,
  so each image is a face as it is.
- ``aligned``: RAF-DB's 100x100 aligned faces are framed by landmarks, not by a detector. Padded with a
  margin of repeated border pixels, the live detector boxes them at 0.99 of the image side (median of 277
  train faces, 97% found; ``scripts/rafdb_framing.py``), so the live crop (1.2 box sides) is a fifth
  looser than the image: they go through the detector and the live crop like photos do
  (``model.faces.PhotoFaces`` with ``pad``).
- ``photos``: KDEF's studio photos go through the live detector and crop as a user's photos do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class DataSource:
    """One dataset under ``SHARED_DATA``: how its faces are found, how it is labelled, and on what terms."""

    name: str
    faces: str  # "crops", "aligned" (padded, then the live detector) or "photos" (the live detector)
    labels: str  # "votes" (FER+ crowd votes beside the images) or "folders"
    terms: str
    pad: float = 0.0  # margin added around each image before detection, in image sides ("aligned" only)

    def root(self, data_root: Path) -> Path:
        return data_root / self.name


SOURCES: dict[str, DataSource] = {
    "fer2013": DataSource(
        "fer2013", "crops", "votes",
        "FER2013 (Goodfellow et al., ICML 2013 challenge; Neural Networks 64, 2015), released for research; "
        "FER+ crowd votes (Barsoum et al., ICMI 2016), MIT licence"),
    "rafdb": DataSource(
        "rafdb", "aligned", "folders",
        "RAF-DB basic (Li, Deng and Du, CVPR 2017), non-commercial research use only", pad=0.5),
    "kdef": DataSource(
        "kdef", "photos", "folders",
        "KDEF (Lundqvist, Flykt and Ohman, Karolinska Institutet, 1998), non-commercial research use only"),
}
DEFAULT_SOURCES = ("fer2013", "rafdb", "kdef")
