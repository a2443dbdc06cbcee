"""The model card: the JSON beside every exported model that tells the run-time path how to use it.

The live pipeline takes class names, input size, normalization and crop framing from here, never
from code, so a model trained on other classes or faces cut otherwise works with ``--model`` alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from model.errors import ExpressionDetectorError
from model.preprocess import CropFraming, InputSpec


# The model a user gets without --model: happy / sad / neutral, trained on the FER+ crowd votes.
DEFAULT_MODEL = Path(__file__).resolve().parent / "happy_sad_neutral.tflite"


class CardError(ExpressionDetectorError):
    """A model card that is missing or does not describe a usable model."""


@dataclass
class ModelCard:
    classes: list[str]
    input: InputSpec
    # How the live pipeline cuts a face out of a frame for this model: as its training photos were cut.
    # Cards written before this field have the one framing there was then, CropFraming()'s defaults.
    framing: CropFraming = field(default_factory=CropFraming)
    output: str = "probabilities"
    temperature: float = 1.0
    min_confidence: float = 0.6
    mirror_averaging: bool = True
    parameters: int = 0
    flops_per_face: int = 0
    training_data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    training_command: str = ""
    commit: str = ""
    notes: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> "ModelCard":
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise CardError(f"model card {path} is missing; every model needs its .json card beside it") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CardError(f"model card {path} is not readable JSON ({error})") from None
        try:
            spec = InputSpec(**raw.pop("input"))
            framing = CropFraming(**raw.pop("framing", {}))
            card = cls(input=spec, framing=framing, **raw)
        except (KeyError, TypeError, ValueError) as error:
            raise CardError(f"model card {path} lacks or has unknown fields ({error})") from None
        if len(card.classes) < 2 or len(set(card.classes)) != len(card.classes):
            raise CardError(f"model card {path} must name two or more distinct classes, not {card.classes}")
        return card


def card_path_for(model_path: Path) -> Path:
    """The card lives beside the model with the same stem: ``happy_sad.tflite`` -> ``happy_sad.json``."""
    return model_path.with_suffix(".json")
