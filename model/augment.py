"""Augmentation that fits faces, as batched TensorFlow ops inside tf.data.

FER2013 crops are web photos: mostly well lit, sharp, frontal and unoccluded. Real video is not,
so besides the usual warp (flip, rotation, zoom, shift) each batch gets what a webcam or a dim
audience shot adds: a yawed (three-quarter) view, a small face blown up, blur, dim light and low
contrast, sensor noise, JPEG artefacts and an object over part of the face. Every kind is applied
to a random part of the batch so that clean faces stay common. One projective warp does all the
geometry (separate Keras layers would resample several times and run slower on a CPU). No vertical
flip: an upside-down face is not a face this model will ever see.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import tensorflow as tf

MAX_ROTATION_DEGREES = 15.0
MAX_ZOOM = 0.1
MAX_SHIFT = 0.1
REFERENCE_SIDE = 48  # the face side the pixel-sized strengths below are given for; other sizes scale them
MAX_YAW_PERSPECTIVE = 0.012  # per pixel from the centre: the far side of a 48-pixel face shrinks by up to ~25%
SMALL_FACE_PROBABILITY = 0.15
SMALL_FACE_SIDES = (12, 32)
BLUR_PROBABILITY = 0.2
MAX_BLUR_SIGMA = 1.6
DARKEN_PROBABILITY = 0.3
GAMMA_RANGE = (0.6, 2.5)
MAX_BRIGHTNESS = 0.15
CONTRAST_RANGE = (0.3, 1.3)
NOISE_PROBABILITY = 0.2
MAX_NOISE_STD = 0.06
JPEG_PROBABILITY = 0.2
JPEG_QUALITY = (10, 60)
ERASE_PROBABILITY = 0.4
ERASE_AREA = (0.02, 0.2)


def _uniform(batch_size, low: float, high: float) -> tf.Tensor:
    return tf.random.uniform([batch_size], low, high)


def _chosen(batch_size, probability: float) -> tf.Tensor:
    """A (N, 1, 1, 1) mask of the images an augmentation applies to."""
    return tf.reshape(tf.random.uniform([batch_size]) < probability, [-1, 1, 1, 1])


def _projective_transforms(batch_size, size: int) -> tf.Tensor:
    """Per image, the 8 projective parameters that map output pixels to input pixels.

    Centred coordinates go through perspective (a head turned left or right), then flip, rotation
    and zoom, then back to pixels with a shift.
    """
    angle = _uniform(batch_size, -1.0, 1.0) * MAX_ROTATION_DEGREES * math.pi / 180.0
    zoom = _uniform(batch_size, 1.0 - MAX_ZOOM, 1.0 + MAX_ZOOM)
    flip = tf.where(tf.random.uniform([batch_size]) < 0.5, -1.0, 1.0)
    max_yaw = MAX_YAW_PERSPECTIVE * REFERENCE_SIDE / size  # the same turn of the head at any input size
    yaw = _uniform(batch_size, -max_yaw, max_yaw)
    centre = (size - 1) / 2.0
    ones, zeros = tf.ones([batch_size]), tf.zeros([batch_size])

    def matrices(rows):
        return tf.reshape(tf.stack(rows, axis=1), [-1, 3, 3])

    to_centre = matrices([ones, zeros, -centre * ones, zeros, ones, -centre * ones, zeros, zeros, ones])
    perspective = matrices([ones, zeros, zeros, zeros, ones, zeros, yaw, zeros, ones])
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    rotate = matrices([flip * cos, -sin, zeros, flip * sin, cos, zeros, zeros, zeros, ones])
    shift_x = _uniform(batch_size, -MAX_SHIFT, MAX_SHIFT) * size
    shift_y = _uniform(batch_size, -MAX_SHIFT, MAX_SHIFT) * size
    back = matrices([ones, zeros, centre + shift_x, zeros, ones, centre + shift_y, zeros, zeros, ones])
    full = back @ rotate @ perspective @ to_centre
    full = full / full[:, 2:3, 2:3]
    return tf.reshape(full, [-1, 9])[:, :8]


def _small_faces(images: tf.Tensor, batch_size, size: int) -> tf.Tensor:
    """Some faces shrunk to a few pixels and blown up again, as a distant face is by the crop."""
    side = tf.random.uniform([], *SMALL_FACE_SIDES, dtype=tf.int32)
    small = tf.image.resize(images, tf.stack([side, side]), method="area")
    blown_up = tf.image.resize(small, [size, size], method="bilinear")
    return tf.where(_chosen(batch_size, SMALL_FACE_PROBABILITY), blown_up, images)


def _blur(images: tf.Tensor, batch_size, size: int) -> tf.Tensor:
    """A Gaussian blur of its own strength per image (the batch runs as channels of one depthwise conv).

    Strengths are given for a 48-pixel face and scaled to ``size``, so the same optical blur is drawn.
    """
    scale = size / REFERENCE_SIDE
    sigma = tf.where(tf.random.uniform([batch_size]) < BLUR_PROBABILITY,
                     _uniform(batch_size, 0.5 * scale, MAX_BLUR_SIGMA * scale), 1e-3)
    reach = max(3, math.ceil(3 * scale))
    taps = tf.range(-reach, reach + 1, dtype=tf.float32)
    kernel = tf.exp(-(taps[None, :] ** 2) / (2.0 * sigma[:, None] ** 2))
    kernel = kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)  # (N, taps)
    as_channels = tf.transpose(images, [3, 1, 2, 0])  # (C, H, W, N)
    rows = tf.transpose(kernel)[:, None, :, None]  # (taps, 1, N, 1)
    cols = tf.transpose(kernel)[None, :, :, None]  # (1, taps, N, 1)
    blurred = tf.nn.depthwise_conv2d(as_channels, rows, [1, 1, 1, 1], "SAME")
    blurred = tf.nn.depthwise_conv2d(blurred, cols, [1, 1, 1, 1], "SAME")
    return tf.transpose(blurred, [3, 1, 2, 0])


def _lighting(images: tf.Tensor, batch_size) -> tf.Tensor:
    """Dim or washed-out light (gamma), low or high contrast and a brightness offset."""
    gamma = tf.exp(_uniform(batch_size, math.log(GAMMA_RANGE[0]), math.log(GAMMA_RANGE[1])))
    gamma = tf.where(tf.random.uniform([batch_size]) < DARKEN_PROBABILITY, gamma, 1.0)
    images = tf.pow(tf.clip_by_value(images, 1e-4, 1.0), tf.reshape(gamma, [-1, 1, 1, 1]))
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    contrast = tf.random.uniform([batch_size, 1, 1, 1], *CONTRAST_RANGE)
    brightness = tf.random.uniform([batch_size, 1, 1, 1], -MAX_BRIGHTNESS, MAX_BRIGHTNESS)
    return tf.clip_by_value((images - mean) * contrast + mean + brightness, 0.0, 1.0)


def _noise(images: tf.Tensor, batch_size) -> tf.Tensor:
    std = tf.random.uniform([batch_size, 1, 1, 1], 0.0, MAX_NOISE_STD)
    noisy = tf.clip_by_value(images + tf.random.normal(tf.shape(images)) * std, 0.0, 1.0)
    return tf.where(_chosen(batch_size, NOISE_PROBABILITY), noisy, images)


def _jpeg_round_trip(images: np.ndarray, qualities: np.ndarray) -> np.ndarray:
    """Encode and decode each face with OpenCV (a hundred times faster than tf.map_fn over TF's codec)."""
    out = np.empty_like(images)
    for index, (face, quality) in enumerate(zip(images, qualities)):
        pixels = np.clip(np.rint(face * 255.0), 0, 255).astype(np.uint8)
        _, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        out[index] = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).reshape(face.shape) / np.float32(255.0)
    return out


def _jpeg(images: tf.Tensor, batch_size) -> tf.Tensor:
    """JPEG artefacts of a random quality, as a compressed stream or a saved photo has them."""
    qualities = tf.random.uniform([batch_size], *JPEG_QUALITY, dtype=tf.int32)
    compressed = tf.numpy_function(_jpeg_round_trip, [images, qualities], tf.float32)
    compressed = tf.ensure_shape(compressed, images.shape)
    return tf.where(_chosen(batch_size, JPEG_PROBABILITY), compressed, images)


def _occlusion(images: tf.Tensor, batch_size, size: int) -> tf.Tensor:
    """Cover a random rectangle in half of the images, with noise or a flat tone (a hand, a cup, hair)."""
    area = _uniform(batch_size, *ERASE_AREA) * size * size
    log_aspect = _uniform(batch_size, math.log(0.3), math.log(3.3))
    height = tf.clip_by_value(tf.sqrt(area * tf.exp(log_aspect)), 1.0, size)
    width = tf.clip_by_value(tf.sqrt(area / tf.exp(log_aspect)), 1.0, size)
    top = tf.random.uniform([batch_size]) * (size - height)
    left = tf.random.uniform([batch_size]) * (size - width)
    coords = tf.range(size, dtype=tf.float32)
    rows = (coords[None, :] >= top[:, None]) & (coords[None, :] < (top + height)[:, None])
    cols = (coords[None, :] >= left[:, None]) & (coords[None, :] < (left + width)[:, None])
    erase = rows[:, :, None] & cols[:, None, :] & (tf.random.uniform([batch_size, 1, 1]) < ERASE_PROBABILITY)
    flat = tf.ones_like(images) * tf.random.uniform([batch_size, 1, 1, 1])
    fill = tf.where(_chosen(batch_size, 0.5), tf.random.uniform(tf.shape(images)), flat)
    return tf.where(erase[:, :, :, None], fill, images)


def augment_batch(images: tf.Tensor) -> tf.Tensor:
    """A randomly augmented copy of a (N, size, size, C) batch of faces with pixel values in [0, 1]."""
    batch_size = tf.shape(images)[0]
    size = images.shape[1]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=_projective_transforms(batch_size, size),
        output_shape=tf.constant([size, size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    degraded = _blur(_small_faces(warped, batch_size, size), batch_size, size)
    degraded = _noise(_lighting(degraded, batch_size), batch_size)
    return _occlusion(_jpeg(degraded, batch_size), batch_size, size)
