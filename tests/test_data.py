"""The class-folder loader, the layouts train.py recognises, and the stratified split."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from model.data import DataError, find_layout, load_class_folders, stratified_split
from model.preprocess import InputSpec


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(encoded.tobytes())


@pytest.fixture
def mixed_tree(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    _write(tmp_path / "happy" / "a.jpg", rng.integers(0, 256, (48, 48), dtype=np.uint8))
    _write(tmp_path / "happy" / "b.png", rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))
    _write(tmp_path / "happy" / "c.bmp", rng.integers(0, 256, (17, 33, 3), dtype=np.uint8))
    _write(tmp_path / "sad" / "d.png", rng.integers(0, 256, (64, 64, 4), dtype=np.uint8))
    _write(tmp_path / "sad" / "e.png", rng.integers(0, 65536, (50, 50), dtype=np.uint16))
    (tmp_path / "sad" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "sad" / "notes.txt").write_text("not an image")
    _write(tmp_path / "angry" / "f.png", rng.integers(0, 256, (48, 48), dtype=np.uint8))
    return tmp_path


def test_loader_reads_mixed_images_and_skips_the_corrupt_one(mixed_tree: Path):
    warnings: list[str] = []
    dataset = load_class_folders(mixed_tree, ["happy", "sad"], InputSpec(), warnings.append)
    assert dataset.images.shape == (5, 48, 48, 1)
    assert dataset.images.dtype == np.float32
    assert dataset.class_counts() == {"happy": 3, "sad": 2}
    assert dataset.n_unreadable == 1
    assert any("broken.jpg" in warning for warning in warnings)
    assert all(path.parent.name in ("happy", "sad") for path in dataset.paths)


def test_loader_names_a_missing_class_folder(mixed_tree: Path):
    with pytest.raises(DataError, match="neutral"):
        load_class_folders(mixed_tree, ["happy", "neutral"], InputSpec())


def test_layouts(tmp_path: Path):
    image = np.zeros((48, 48), np.uint8)
    for split in ("train", "test"):
        for name in ("happy", "sad"):
            _write(tmp_path / "split" / split / name / "x.png", image)
            _write(tmp_path / "flat" / name / "x.png", image)
    split = find_layout(tmp_path / "split", ["happy", "sad"])
    assert split.train_dir.name == "train" and split.val_dir.name == "test"
    flat = find_layout(tmp_path / "flat", ["happy", "sad"])
    assert flat.train_dir == tmp_path / "flat" and flat.val_dir is None
    with pytest.raises(DataError, match="does not exist"):
        find_layout(tmp_path / "nowhere", ["happy", "sad"])
    with pytest.raises(DataError, match="neither"):
        find_layout(tmp_path / "flat", ["happy", "fear"])


def test_stratified_split_is_seeded_and_keeps_proportions(fer_val: Path):
    dataset = load_class_folders(fer_val, ["happy", "sad"], InputSpec())
    train_a, val_a = stratified_split(dataset, 0.2, seed=7)
    train_b, val_b = stratified_split(dataset, 0.2, seed=7)
    assert [p.name for p in val_a.paths] == [p.name for p in val_b.paths]
    assert len(train_a) + len(val_a) == len(dataset)
    assert not set(train_a.paths) & set(val_a.paths)
    for name, count in dataset.class_counts().items():
        assert abs(val_a.class_counts()[name] - 0.2 * count) <= 1


def test_balance_weights_even_out_the_drawn_classes_and_the_rest_as_one():
    from model.data import balance_weights

    # 6 happy, 2 sad, 2 neutral, then 1 surprise + 1 angry (the "other" group of 2).
    targets = np.eye(5, dtype=np.float32)[[0] * 6 + [1] * 2 + [2] * 2 + [3, 4]]
    full = balance_weights(targets, 3, 1.0)
    totals = [full[:6].sum(), full[6:8].sum(), full[8:10].sum(), full[10:].sum()]
    assert np.allclose(totals, totals[0])  # every group weighs the same in the loss
    assert np.isclose(full.mean(), 1.0)
    assert np.allclose(balance_weights(targets, 3, 0.0), 1.0)
    half = balance_weights(targets, 3, 0.5)
    assert half[0] < half[6] < full[6]  # a sad face counts more than a happy one, less than with power 1
    soft = balance_weights(np.array([[0.5, 0.5, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0]], np.float32), 3, 1.0)
    assert np.isclose(soft[0], (soft[1] + soft[2]) / 2)  # a soft target is weighed by its shares


def test_a_source_weight_scales_its_faces_and_the_class_balance_counts_it():
    from model.data import balance_weights

    # Happy: 4 faces of a source weighed 1 and 2 of a source weighed 2; sad: 2 faces weighed 1.
    targets = np.eye(3, dtype=np.float32)[[0] * 6 + [1] * 2]
    prior = np.array([1, 1, 1, 1, 2, 2, 1, 1], np.float32)
    weights = balance_weights(targets, 3, 1.0, prior)
    assert np.isclose(weights[4], 2 * weights[0])  # the weighed source's face counts twice
    assert np.isclose(weights[:6].sum(), weights[6:].sum())  # the classes still weigh the same, weights counted
    assert np.isclose(weights.mean(), 1.0)
    unbalanced = balance_weights(targets, 3, 0.0, prior)
    assert np.allclose(unbalanced / unbalanced[0], prior) and np.isclose(unbalanced.mean(), 1.0)


def test_concatenated_and_subset_faces_keep_their_source_weights():
    from model.data import FaceDataset, concatenate

    def part(count: int, weight: float | None) -> FaceDataset:
        return FaceDataset(np.zeros((count, 4, 4, 1), np.float32), np.zeros(count, np.int64), ("happy",),
                           [Path(f"{weight}-{i}.png") for i in range(count)], 0, None,
                           None if weight is None else np.full(count, weight, np.float32))

    joined = concatenate([part(2, None), part(3, 2.0)])
    assert joined.weights.tolist() == [1.0, 1.0, 2.0, 2.0, 2.0]  # a part without weights weighs 1
    assert joined.subset(np.array([4, 0])).weights.tolist() == [2.0, 1.0]
    assert concatenate([part(2, None), part(1, None)]).weights is None
