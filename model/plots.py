"""Training curves and confusion matrix as PNG files in the run folder (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(history: list[dict], path: Path) -> None:
    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [r["loss"] for r in history], label="train (augmented, smoothed labels)")
    loss_axis.plot(epochs, [r["val_loss"] for r in history], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy_axis.plot(epochs, [r["accuracy"] for r in history], label="train (augmented)")
    accuracy_axis.plot(epochs, [r["val_accuracy"] for r in history], label="validation (mirror-averaged)")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    confusion = np.asarray(confusion)
    figure, axis = plt.subplots(figsize=(1.6 * len(classes) + 2, 1.4 * len(classes) + 1.5))
    axis.imshow(confusion, cmap="Blues")
    for (row, col), count in np.ndenumerate(confusion):
        share = count / max(confusion[row].sum(), 1)
        colour = "white" if count > confusion.max() / 2 else "black"
        axis.text(col, row, f"{count}\n{share:.1%}", ha="center", va="center", color=colour)
    axis.set_xticks(range(len(classes)), classes)
    axis.set_yticks(range(len(classes)), classes)
    axis.set(xlabel="predicted", ylabel="true", title=title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
