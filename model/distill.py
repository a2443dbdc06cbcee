"""Distillation: one network learns from the crowd's labels and from an ensemble of trained networks at once.

An ensemble of a few networks beats any one of them on FER2013 (its labels are noisy; see
../shared/docs/DESIGN.md), but running several networks per face costs their sum at run time.
Distillation carries most of that gain into one network of the shipped size: each training batch
is augmented once, the teachers see that very batch, and the student's loss mixes cross-entropy to
the labels with the KL divergence from the teachers' mean logits, where teacher and student are both
softened by a temperature so that the teachers' second and third choices (a sad face's neutral
share) are learned too.

The teachers' logits travel beside the labels in the target tensor, so a plain ``model.fit`` (and
its checkpoints and resuming) trains the student.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from model.checkpoints import load_checkpoint
from model.run_state import RunError

DISTILL_WEIGHT = 0.7
DISTILL_TEMPERATURE = 2.0


@keras.saving.register_keras_serializable(package="expressions")
class DistillationLoss(keras.losses.Loss):
    """(1 - weight) x label-smoothed cross-entropy to the labels + weight x T^2 x KL(teachers || student) at T.

    ``y_true`` holds the labels in its first K columns and the teachers' mean logits in the next K, K being
    the student's output width. T^2 keeps the soft term's gradients on the scale of the hard term's.
    """

    def __init__(self, weight: float = DISTILL_WEIGHT, temperature: float = DISTILL_TEMPERATURE,
                 label_smoothing: float = 0.0, name: str = "distillation", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.weight, self.temperature, self.label_smoothing = weight, temperature, label_smoothing

    def call(self, y_true, y_pred):
        classes = tf.shape(y_pred)[-1]
        labels, teacher_logits = y_true[:, :classes], y_true[:, classes:]
        hard = keras.losses.categorical_crossentropy(labels, y_pred, from_logits=True,
                                                     label_smoothing=self.label_smoothing)
        teacher = tf.nn.softmax(teacher_logits / self.temperature)
        soft = tf.reduce_sum(teacher * (tf.nn.log_softmax(teacher_logits / self.temperature)
                                        - tf.nn.log_softmax(y_pred / self.temperature)), axis=-1)
        return (1.0 - self.weight) * hard + self.weight * self.temperature ** 2 * soft

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight, "temperature": self.temperature,
                "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="expressions")
def label_accuracy(y_true, y_pred):
    """Accuracy against the labels alone, when the teachers' logits follow them in ``y_true``."""
    labels = y_true[:, : tf.shape(y_pred)[-1]]
    return tf.cast(tf.equal(tf.argmax(labels, axis=-1), tf.argmax(y_pred, axis=-1)), tf.float32)


def load_teachers(paths: list[str], outputs: int, input_shape: tuple[int, ...]) -> list[keras.Model]:
    """The teacher networks, each checked to take the student's input and give its ``outputs`` logits."""
    teachers = []
    for path in map(Path, paths):
        if not path.is_file():
            raise RunError(f"teacher {path} does not exist")
        teacher = load_checkpoint(path, "a teacher network")
        if tuple(teacher.input_shape[1:]) != tuple(input_shape):
            raise RunError(f"teacher {path} takes faces of shape {tuple(teacher.input_shape[1:])} and the student "
                           f"{tuple(input_shape)} (give the student the teacher's size with --input-size)")
        if teacher.output_shape[-1] != outputs:
            raise RunError(f"teacher {path} has {teacher.output_shape[-1]} outputs and the student {outputs} (train "
                           f"teachers with the same classes and auxiliary classes)")
        teacher.trainable = False
        teachers.append(teacher)
    return teachers


def with_teacher_logits(images: tf.Tensor, targets: tf.Tensor, teachers: list[keras.Model]) -> tf.Tensor:
    """``targets`` with the teachers' mean logits on ``images`` (the augmented batch) appended."""
    mean_logits = tf.add_n([teacher(images, training=False) for teacher in teachers]) / len(teachers)
    return tf.concat([tf.cast(targets, tf.float32), mean_logits], axis=-1)
