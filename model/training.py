"""The training loop: resumable, seeded, selecting the epoch that does best on validation.

Everything a run needs to continue lives in its run folder: ``config.json`` (what was asked),
``state.json`` (epochs done, history, best epoch), ``last.keras`` (weights and optimizer state after
the last finished epoch) and ``best.keras``. Each epoch re-seeds shuffling and augmentation from
``seed + epoch``, so an interrupted and resumed run walks through the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model.augment import augment_batch
from model.data import FaceDataset
from model.export import predict_logits
from model.metrics import log_softmax
from model.network import build_network
from model.preprocess import renormalize_batch
from model.run_state import RunError, TrainConfig, TrainState


def _save_model_atomically(model: keras.Model, path: Path) -> None:
    temporary = path.with_name(path.stem + ".tmp.keras")
    model.save(temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path) -> keras.Model:
    """A .keras checkpoint in safe mode: layers that would run stored code (Lambda) are refused, not executed."""
    try:
        return keras.models.load_model(path, safe_mode=True)
    except (ValueError, TypeError, OSError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RunError(f"{path} cannot be loaded safely as a checkpoint ({first_line})") from None


def _compile(config: TrainConfig, steps_per_epoch: int) -> keras.Model:
    model = build_network(len(config.classes) + len(config.aux_classes), config.input)
    warmup_steps = config.warmup_epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 10.0,
        warmup_target=config.learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(config.epochs * steps_per_epoch - warmup_steps, 1),
        alpha=0.001,
    )
    optimizer = keras.optimizers.SGD(
        learning_rate=schedule, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


def _augment(images: tf.Tensor, spec) -> tf.Tensor:
    """Augment, then (if the model equalizes) equalize again with the run-time function itself."""
    augmented = augment_batch(images)
    if not spec.equalize:
        return augmented
    renormalized = tf.numpy_function(lambda batch: renormalize_batch(batch, spec), [augmented], tf.float32)
    return tf.ensure_shape(renormalized, augmented.shape)


def _epoch_dataset(train_set: FaceDataset, config: TrainConfig, epoch: int) -> tf.data.Dataset:
    keras.utils.set_random_seed(config.seed + epoch)
    order = np.random.default_rng(config.seed + epoch).permutation(len(train_set))
    targets = train_set.target_matrix(len(config.classes) + len(config.aux_classes))[order]
    return (
        tf.data.Dataset.from_tensor_slices((train_set.images[order], targets))
        .batch(config.batch_size, drop_remainder=True)
        .map(lambda x, y: (_augment(x, config.input), y), num_parallel_calls=1)
        .prefetch(2)
    )


def _validate(model: keras.Model, val_set: FaceDataset) -> tuple[float, float]:
    logits = predict_logits(model, val_set.images, len(val_set.classes))
    accuracy = float((logits.argmax(axis=1) == val_set.labels).mean())
    loss = float(-log_softmax(logits)[np.arange(len(val_set)), val_set.labels].mean())
    return accuracy, loss


def train(config: TrainConfig, train_set: FaceDataset, val_set: FaceDataset, run_dir: Path) -> TrainState:
    """Train (or continue training) in ``run_dir``; returns the final state, the best weights in best.keras.

    ``train_set`` holds ``config.classes`` followed by ``config.aux_classes``; ``val_set`` only the former,
    since the exported model decides between those alone.
    """
    if config.input.scale * 255.0 != 1.0 or config.input.offset != 0.0:
        raise ValueError("augmentation expects pixels in [0, 1]: input scale 1/255 and offset 0")
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.json")
    state_path, last_path, best_path = run_dir / "state.json", run_dir / "last.keras", run_dir / "best.keras"
    steps_per_epoch = len(train_set) // config.batch_size
    if steps_per_epoch == 0:
        raise RunError(f"{len(train_set)} training images are fewer than one batch of {config.batch_size}; "
                       f"add images or lower --batch-size")
    if state_path.exists() and last_path.exists():
        state = TrainState.load(state_path)
        model = load_checkpoint(last_path)
        print(f"resuming {run_dir} after epoch {state.epochs_done} of {config.epochs}", flush=True)
    else:
        state = TrainState()
        model = _compile(config, steps_per_epoch)
    verbose = 1 if sys.stdout.isatty() else 2
    for epoch in range(state.epochs_done, 0 if state.finished else config.epochs):
        started = time.monotonic()
        fitted = model.fit(_epoch_dataset(train_set, config, epoch), epochs=epoch + 1, initial_epoch=epoch,
                           verbose=verbose)
        val_accuracy, val_loss = _validate(model, val_set)
        record = {
            "epoch": epoch + 1,
            "loss": float(fitted.history["loss"][-1]),
            "accuracy": float(fitted.history["accuracy"][-1]),
            "val_accuracy": val_accuracy,
            "val_loss": val_loss,
            "learning_rate": float(model.optimizer.learning_rate.numpy()),
            "seconds": round(time.monotonic() - started, 1),
        }
        state.history.append(record)
        state.epochs_done = epoch + 1
        if val_accuracy > state.best_val_accuracy:
            state.best_val_accuracy, state.best_epoch = val_accuracy, epoch + 1
            _save_model_atomically(model, best_path)
        _save_model_atomically(model, last_path)
        state.save(state_path)
        print(f"epoch {epoch + 1}/{config.epochs}: val accuracy {val_accuracy:.4f} (mirror-averaged), "
              f"val loss {val_loss:.4f}, best {state.best_val_accuracy:.4f} at epoch {state.best_epoch}, "
              f"{record['seconds']:.0f} s", flush=True)
        if state.epochs_done - state.best_epoch >= config.patience:
            print(f"stopping early: no better validation accuracy for {config.patience} epochs", flush=True)
            break
    state.finished = True
    state.save(state_path)
    return state
