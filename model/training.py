"""The training loop: resumable, seeded, selecting the epoch that does best on validation.

Everything a run needs to continue lives in its run folder: ``config.json`` (what was asked),
``state.json`` (epochs done, history, best epoch), ``last.keras`` (weights and optimizer state after
the last finished epoch) and ``best.keras``. Each epoch re-seeds shuffling and augmentation from
``seed + epoch``, so an interrupted and resumed run walks through the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model.augment import augment_batch
from model.card import CardError, ModelCard, card_path_for
from model.checkpoints import load_checkpoint, save_model_atomically
from model.data import FaceDataset, balance_weights
from model.distill import DistillationLoss, label_accuracy, load_teachers, with_teacher_logits
from model.export import merged_log_probs, predict_logits
from model.network import build_network, scaled_widths
from model.preprocess import CropFraming, InputSpec, renormalize_batch
from model.run_state import RunError, TrainConfig, TrainState


@dataclass(frozen=True)
class InitModel:
    """A trained model a run starts from: its network, the input spec of its card, its outputs' class names, and
    whether its export averages each face with its mirror (a fine-tuned model keeps its per-face cost), and how
    its faces were cut out of photos (fine-tuning cuts new photos alike unless told otherwise)."""

    network: keras.Model
    spec: InputSpec
    outputs: list[str]
    mirror_averaging: bool = True
    framing: CropFraming = field(default_factory=CropFraming)


def load_init_model(path: Path) -> InitModel:
    """The ``--init`` model with what its card says; a missing file, a non-model or a card that disagrees is refused."""
    if not path.is_file():
        raise RunError(f"--init model {path} does not exist")
    network = load_checkpoint(path, "a Keras model to fine-tune")
    try:
        card = ModelCard.load(card_path_for(path))
    except CardError as error:
        raise RunError(f"--init model {path} needs its card, which says how its inputs are normalized: "
                       f"{error}") from None
    spec, shape = card.input, tuple(network.input_shape[1:])
    if shape != (spec.size, spec.size, spec.channels):
        raise RunError(f"--init model {path} takes inputs of shape {shape}, but its card describes "
                       f"{spec.size}x{spec.size} faces with {spec.channels} channel(s)")
    if spec.scale * 255.0 != 1.0 or spec.offset != 0.0:
        raise RunError(f"--init model {path} scales pixels by {spec.scale} and adds {spec.offset}; fine-tuning needs "
                       f"pixels scaled to [0, 1], as train.py exports them")
    if not isinstance(network.layers[-1], keras.layers.Dense):
        raise RunError(f"--init model {path} does not end in a dense output layer that fine-tuning could replace")
    other = card.training_data.get("other_class")
    outputs = [name for name in card.classes if name != other] + list(card.training_data.get("aux_classes", []))
    return InitModel(network, spec, outputs if len(outputs) == network.output_shape[-1] else [], card.mirror_averaging,
                     card.framing)


def _with_outputs(init: InitModel, outputs: list[str]) -> keras.Model:
    """The network with an output per class in ``outputs``; a class it already had keeps its trained row.

    New class names need a new output layer; the features under it are what fine-tuning starts from.
    """
    if init.outputs == outputs:
        return init.network
    old_layer = init.network.layers[-1]
    layer = keras.layers.Dense(len(outputs), name=old_layer.name)
    network = keras.Model(init.network.inputs, layer(old_layer.input), name=init.network.name)
    kernel, bias = layer.get_weights()
    old_kernel, old_bias = old_layer.get_weights()
    for index, name in enumerate(outputs):
        if name in init.outputs:
            kernel[:, index], bias[index] = old_kernel[:, init.outputs.index(name)], old_bias[init.outputs.index(name)]
    layer.set_weights([kernel, bias])
    return network


def _initial_network(config: TrainConfig) -> keras.Model:
    outputs = config.classes + config.aux_classes
    if config.init is None:
        return build_network(len(outputs), config.input, widths=scaled_widths(config.width))
    return _with_outputs(load_init_model(Path(config.init)), outputs)


def _set_stage(model: keras.Model, config: TrainConfig, stage: str) -> str:
    """Freeze what this stage does not train; returns a line that says what was frozen.

    Fine-tuning first trains the output layer alone ("head"), so the new layer's random start cannot
    wreck the trained features, then every layer at a lower rate ("all"). Batch normalization stays
    in inference mode with its large-dataset statistics throughout: a few hundred faces in batches
    of 32 would estimate them worse.
    """
    if config.init is None:
        return f"training every layer from random weights ({model.count_params():,} parameters)"
    output_layer = model.layers[-1]
    for layer in model.layers:
        if stage == "head":
            layer.trainable = layer is output_layer
        else:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    trained = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    frozen = model.count_params() - trained
    if stage == "head":
        return (f"fine-tuning, epochs 1-{config.head_epochs}: the output layer alone learns ({trained:,} parameters) "
                f"at rate {config.head_learning_rate:g}; {frozen:,} parameters frozen")
    return (f"fine-tuning, epochs {config.head_epochs + 1}-{config.epochs}: every layer learns ({trained:,} "
            f"parameters) at rate {config.learning_rate:g} with cosine decay; batch-norm statistics and scales stay "
            f"frozen ({frozen:,} parameters)")


def _schedule(config: TrainConfig, steps_per_epoch: int, stage: str):
    if config.init is None:
        warmup_steps = config.warmup_epochs * steps_per_epoch
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10.0,
            warmup_target=config.learning_rate,
            warmup_steps=warmup_steps,
            decay_steps=max(config.epochs * steps_per_epoch - warmup_steps, 1),
            alpha=0.001,
        )
    if stage == "head":
        return config.head_learning_rate
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate,
        decay_steps=max((config.epochs - config.head_epochs) * steps_per_epoch, 1),
        alpha=0.01,
    )


def _compile(model: keras.Model, config: TrainConfig, steps_per_epoch: int, stage: str) -> None:
    """Set the stage's trainable layers and a fresh optimizer for it, and say what is frozen."""
    print(_set_stage(model, config, stage), flush=True)
    optimizer = keras.optimizers.SGD(
        learning_rate=_schedule(config, steps_per_epoch, stage), momentum=0.9, nesterov=True,
        weight_decay=config.weight_decay,
    )
    if config.teachers:
        loss = DistillationLoss(config.distill_weight, config.distill_temperature, config.label_smoothing)
        accuracy = keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")
    else:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing)
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer, loss=loss, metrics=[accuracy])


def _augment(images: tf.Tensor, spec) -> tf.Tensor:
    """Augment, then (if the model equalizes) equalize again with the run-time function itself."""
    augmented = augment_batch(images)
    if not spec.equalize:
        return augmented
    renormalized = tf.numpy_function(lambda batch: renormalize_batch(batch, spec), [augmented], tf.float32)
    return tf.ensure_shape(renormalized, augmented.shape)


def _augmented_batch(images: tf.Tensor, targets: tf.Tensor, spec: InputSpec,
                     teachers: list[keras.Model]) -> tuple[tf.Tensor, tf.Tensor]:
    """One augmented batch; with teachers, their logits on this very batch are appended to the targets."""
    augmented = _augment(images, spec)
    return augmented, (with_teacher_logits(augmented, targets, teachers) if teachers else targets)


def face_loss_weights(train_set: FaceDataset, config: TrainConfig) -> np.ndarray:
    """Each training face's weight in the loss: its source's weight, times its class balance."""
    targets = train_set.target_matrix(len(config.classes) + len(config.aux_classes))
    return balance_weights(targets, len(config.classes), config.class_balance, train_set.weights)


def _epoch_dataset(train_set: FaceDataset, config: TrainConfig, epoch: int,
                   teachers: list[keras.Model]) -> tf.data.Dataset:
    keras.utils.set_random_seed(config.seed + epoch)
    order = np.random.default_rng(config.seed + epoch).permutation(len(train_set))
    targets = train_set.target_matrix(len(config.classes) + len(config.aux_classes))
    weights = face_loss_weights(train_set, config)
    return (
        tf.data.Dataset.from_tensor_slices((train_set.images[order], targets[order], weights[order]))
        .batch(config.batch_size, drop_remainder=True)
        .map(lambda x, y, w: (*_augmented_batch(x, y, config.input, teachers), w), num_parallel_calls=1)
        .prefetch(2)
    )


def _validate(model: keras.Model, val_set: FaceDataset, config: TrainConfig) -> tuple[float, float]:
    """Accuracy and loss over the classes the model will be exported with, as it will be exported."""
    merge = config.other_class is not None
    logits = predict_logits(model, val_set.images, len(config.classes) + (len(config.aux_classes) if merge else 0))
    log_probs = merged_log_probs(logits, len(config.classes), merge).numpy()
    accuracy = float((log_probs.argmax(axis=1) == val_set.labels).mean())
    loss = float(-log_probs[np.arange(len(val_set)), val_set.labels].mean())
    return accuracy, loss


class _BatchProgress(keras.callbacks.Callback):
    """A bar through one epoch's batches on stderr, drawn only where stderr is a terminal (a log gets the epoch
    lines alone), and gone once the epoch ends."""

    def __init__(self, epoch: int, epochs: int, steps: int) -> None:
        super().__init__()
        self._title, self._steps, self._bar = f"epoch {epoch}/{epochs}", steps, None

    def on_epoch_begin(self, epoch, logs=None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=self._steps, desc=self._title, unit="batch", leave=False, file=sys.stderr,
                         disable=not sys.stderr.isatty())

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._bar.update(1)

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._bar.close()


def train(config: TrainConfig, train_set: FaceDataset, val_set: FaceDataset, run_dir: Path,
          keras_output: bool = False) -> TrainState:
    """Train (or continue training) in ``run_dir``; returns the final state, the best weights in best.keras.

    ``train_set`` holds ``config.classes`` followed by ``config.aux_classes``; ``val_set`` the exported classes
    (``config.exported_classes``), since validation judges the model as it will be exported.
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
        model = _initial_network(config)
        _compile(model, config, steps_per_epoch, "head" if config.head_epochs else "all")
    outputs = len(config.classes) + len(config.aux_classes)
    teachers = load_teachers(config.teachers, outputs, model.input_shape[1:]) if config.teachers else []
    if teachers:
        print(f"distilling from {len(teachers)} teacher(s): {', '.join(config.teachers)} (weight "
              f"{config.distill_weight:g} at temperature {config.distill_temperature:g})", flush=True)
    for epoch in range(state.epochs_done, 0 if state.finished else config.epochs):
        if config.head_epochs and epoch == config.head_epochs:
            _compile(model, config, steps_per_epoch, "all")
        started = time.monotonic()
        # One progress display: ours (a bar through the epoch's batches on a terminal, then the epoch line
        # below); Keras' own per-epoch lines only with keras_output (train.py --verbose).
        callbacks = [] if keras_output else [_BatchProgress(epoch + 1, config.epochs, steps_per_epoch)]
        fitted = model.fit(_epoch_dataset(train_set, config, epoch, teachers), epochs=epoch + 1, initial_epoch=epoch,
                           verbose=2 if keras_output else 0, shuffle=False, callbacks=callbacks)
        val_accuracy, val_loss = _validate(model, val_set, config)
        record = {
            "epoch": epoch + 1,
            "loss": float(fitted.history["loss"][-1]),
            "accuracy": float(fitted.history["accuracy"][-1]),
            "val_accuracy": val_accuracy,
            "val_loss": val_loss,
            "learning_rate": float(model.optimizer.learning_rate.numpy()),
            "seconds": round(time.monotonic() - started, 1),
            "stage": "head" if epoch < config.head_epochs else "all",
        }
        state.history.append(record)
        state.epochs_done = epoch + 1
        if val_accuracy > state.best_val_accuracy:
            state.best_val_accuracy, state.best_epoch = val_accuracy, epoch + 1
            save_model_atomically(model, best_path)
        save_model_atomically(model, last_path)
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
