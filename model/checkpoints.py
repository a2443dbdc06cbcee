"""Keras checkpoints on disk: written whole or not at all, read back in safe mode.

Shared by the training loop (``model.training``) and distillation's teachers (``model.distill``), so neither
imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from model.run_state import RunError


def save_model_atomically(model: keras.Model, path: Path) -> None:
    """Save under a temporary name, then rename: a run killed mid-save keeps the previous checkpoint."""
    temporary = path.with_name(path.stem + ".tmp.keras")
    model.save(temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path, role: str = "a checkpoint") -> keras.Model:
    """A .keras file in safe mode: layers that would run stored code (Lambda) are refused, not executed."""
    try:
        return keras.models.load_model(path, safe_mode=True)
    except (ValueError, TypeError, OSError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RunError(f"{path} cannot be loaded safely as {role} ({first_line})") from None
