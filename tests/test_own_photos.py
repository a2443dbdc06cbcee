"""Training on a user's own photos: faces found and cut as at run time, cached, fine-tuning, safe export, bad input.

Real parts throughout: the MediaPipe detector, the shipped model, GENKI-4K photos and FER2013 crops read in
place from ../shared. Training runs are one to three epochs on a few dozen faces.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.card import ModelCard
from model.faces import CropCache, FaceReport, PhotoFaces, decide_faces, load_faces, pick_face
from model.images import read_image
from model.preprocess import CropFraming, InputSpec, crop_face, face_to_input
from realtime.annotator import UNCERTAIN_COLOUR, class_colour
from realtime.detector import FaceDetector
from realtime.types import Detection
from tests.conftest import REPO, SHARED, kill_after_first_epoch, link_subset, require, run_cli

GENKI_CLASSES = ["smile", "non_smile"]
DEFAULT_INIT_CARD = REPO / "model" / "happy_sad_neutral.json"
QUICK = ["--classes", *GENKI_CLASSES, "--epochs", "2", "--head-epochs", "1", "--batch-size", "8"]


@pytest.fixture(scope="session")
def genki() -> Path:
    return require(SHARED / "data" / "genki4k_dev")


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(path.suffix, image)[1].tobytes())
    return path


def _no_face(seed: int) -> np.ndarray:
    """A 300x300 picture of a colour gradient (each seed its own): no face in it, and too large to pass for a crop."""
    ramp = np.linspace(0, 200, 300, dtype=np.float32)
    image = np.stack([ramp[None, :].repeat(300, 0), ramp[:, None].repeat(300, 1), np.full((300, 300), 10.0 * seed)], 2)
    return image.astype(np.uint8)


def _side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    height = max(left.shape[0], right.shape[0])
    pad = lambda image: cv2.copyMakeBorder(image, 0, height - image.shape[0], 0, 0, cv2.BORDER_CONSTANT)
    return np.hstack([pad(left), np.full((height, 60, 3), 128, np.uint8), pad(right)])


def _two_smiles(genki: Path) -> tuple[np.ndarray, np.ndarray]:
    """Two photos whose faces, side by side, the detector finds 70 and 67 pixels wide: whose smile is meant?"""
    return tuple(read_image(sorted((genki / "smile").iterdir())[i]) for i in (2, 4))


def _errors(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def _fails_with(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run ended with status 2 and exactly one error sentence holding every fragment."""
    errors = _errors(result)
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert all(fragment in errors[0] for fragment in fragments), errors[0]
    return errors[0]


def _photo_faces(cache: Path, framing: CropFraming = CropFraming()) -> PhotoFaces:
    return PhotoFaces(CropCache(cache, framing, "auto"), framing,
                      lambda: FaceDetector(model_range="auto", still_images=True))


# Photos to faces, the way the live pipeline does it


@pytest.mark.parametrize("centre", ["box", "inner-face"])
def test_photos_are_cut_by_the_live_functions_and_cached(tmp_path: Path, genki: Path, centre: str):
    data = link_subset(genki, tmp_path / "data", GENKI_CLASSES, 3)
    spec, framing = InputSpec(equalize=True), CropFraming(centre=centre)
    first_report, second_report = FaceReport(), FaceReport()
    photos = _photo_faces(tmp_path / "cache", framing)
    first = load_faces(data, GENKI_CLASSES, spec, photos, first_report)
    photos.close()
    again = _photo_faces(tmp_path / "cache", framing)
    second = load_faces(data, GENKI_CLASSES, spec, again, second_report)
    again.close()
    assert first_report.detected == 6 and first_report.from_cache == 0
    assert second_report.detected == 0 and second_report.from_cache == 6
    assert np.array_equal(first.images, second.images)
    assert first_report.found == first_report.used == {"smile": 3, "non_smile": 3}
    with FaceDetector(still_images=True) as detector:
        for path, face in zip(first.paths, first.images):
            image = read_image(path)
            live = crop_face(image, max(detector.detect(image), key=lambda d: d.area), framing)
            assert np.array_equal(face, face_to_input(live, spec))


def test_the_cache_key_is_the_content_and_the_framing(tmp_path: Path, genki: Path):
    photo = sorted((genki / "smile").iterdir())[0]
    copy = tmp_path / "renamed.jpg"
    copy.write_bytes(photo.read_bytes())
    cache = CropCache(tmp_path, CropFraming(), "auto")
    assert cache.key(photo) == cache.key(copy)
    assert cache.key(photo) != CropCache(tmp_path, CropFraming(scale=1.4), "auto").key(photo)
    assert cache.key(photo) != CropCache(tmp_path, CropFraming(centre="inner-face"), "auto").key(photo)
    assert cache.key(photo) != CropCache(tmp_path, CropFraming(), "short").key(photo)
    assert cache.key(photo) != CropCache(tmp_path, CropFraming(), "auto", pad=0.5).key(photo)


def test_crops_and_photos_are_told_apart_by_measuring(tmp_path: Path, genki: Path, fer_val: Path):
    crops = sorted((fer_val / "happy").iterdir())[:16] + sorted((fer_val / "sad").iterdir())[:16]
    photos = sorted((genki / "smile").iterdir())[:16] + sorted((genki / "non_smile").iterdir())[:16]
    with FaceDetector(model_range="auto", still_images=True) as detector:
        assert decide_faces(crops, detector).mode == "crops" and not decide_faces(crops, detector).mixed
        assert decide_faces(photos, detector).mode == "photos" and not decide_faces(photos, detector).mixed
        mixed = decide_faces(crops[:16] + photos[:16], detector)
    assert mixed.mixed and "look like face crops" in mixed.describe()


def test_the_largest_face_unless_two_are_alike():
    def face(side: int) -> Detection:
        return Detection((10, 10, side, side), 0.9, None, None)

    assert pick_face([]) == (None, "no face")
    assert pick_face([face(40), face(100)]) == (face(100), None)
    assert pick_face([face(80), face(100)]) == (None, "ambiguous")


def test_two_people_of_a_size_are_ambiguous_and_a_bystander_is_not(tmp_path: Path, genki: Path):
    first, second = _two_smiles(genki)
    alike = _write(tmp_path / "smile" / "two.png", _side_by_side(first, second))
    small = cv2.resize(second, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
    bystander = _write(tmp_path / "smile" / "bystander.png", _side_by_side(first, small))
    photos = _photo_faces(tmp_path / "cache")
    assert photos.face(alike, FaceReport()) == (None, "ambiguous")
    crop, reason = photos.face(bystander, FaceReport())
    photos.close()
    assert reason is None and crop.shape[0] > 60  # the large face, not the bystander's


def test_unreadable_faceless_and_huge_photos(tmp_path: Path, genki: Path):
    """A corrupt file and a photo without a face are skipped with a reason; a 6000x4500 photo works."""
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    faceless = _write(tmp_path / "faceless.png", _no_face(0))
    huge = np.full((4500, 6000, 3), 90, np.uint8)
    person = cv2.resize(read_image(sorted((genki / "smile").iterdir())[0]), (1800, 1940), interpolation=cv2.INTER_CUBIC)
    huge[1000:2940, 2000:3800] = person
    huge_path = _write(tmp_path / "huge.jpg", huge)
    photos, report = _photo_faces(tmp_path / "cache"), FaceReport()
    assert photos.face(corrupt, report) == (None, "unreadable")
    assert photos.face(faceless, report) == (None, "no face")
    crop, reason = photos.face(huge_path, report)
    photos.close()
    assert reason is None and crop.shape == (192, 192, 3)


def test_custom_classes_get_colours_of_their_own():
    classes = ("smile", "non_smile")
    colours = {class_colour(name, classes) for name in classes}
    assert len(colours) == 2 and UNCERTAIN_COLOUR not in colours


def test_fer2013_sized_data_keeps_the_shipped_schedule_and_small_data_gets_its_own():
    import train

    def chosen(n_train: int, init: str | None) -> tuple:
        config = train.TrainConfig(classes=["a", "b"], data="x", init=init)
        args = argparse.Namespace(batch_size=None, epochs=None, patience=None, learning_rate=None, head_epochs=None)
        train._choose_schedule(config, n_train, args)
        return config.batch_size, config.epochs, config.patience, config.learning_rate, config.head_epochs

    assert chosen(17000, None) == (128, 60, 20, 0.05, 0)
    assert chosen(1700, None) == (32, 60, 15, 0.05, 0)
    assert chosen(255, "model.keras") == (32, 30, 8, 0.005, 3)


# train.py end to end


def test_fine_tuning_on_photos_end_to_end(tmp_path: Path, genki: Path, media: Path):
    """Photos in, a smile/non_smile model out in the run folder only, usable by main.py and evaluate; resumable
    from the crops cache. Bad photos among the good ones are skipped, counted and listed."""
    data = link_subset(genki, tmp_path / "data", GENKI_CLASSES, 16)
    (data / "smile" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    _write(data / "non_smile" / "faceless.png", _no_face(1))
    _write(data / "non_smile" / "two_people.png", _side_by_side(*_two_smiles(genki)))
    run_dir, export = tmp_path / "run", tmp_path / "export"
    shipped = sorted(path.name for path in (REPO / "model").iterdir())
    result = run_cli("train.py", "--data", str(data), *QUICK, "--init", "--face-cache", str(tmp_path / "cache"),
                     "--run-dir", str(run_dir), "--export-dir", str(export))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "faces: photos (" in out and "fine-tuning, epochs 1-1: the output layer alone learns" in out
    assert "epochs 2-2: every layer learns" in out
    assert "skipped: 1 no face, 1 ambiguous, 1 unreadable" in out
    assert "images found: smile 17, non_smile 18 (photos)" in out and "faces used: smile 16, non_smile 16" in out
    assert "held-out accuracy" in out and "balanced accuracy" in out and "ROC AUC" in out
    assert f"use it: python main.py --model {export / 'smile_non_smile.tflite'}" in out
    for reason in ("no face", "ambiguous", "unreadable"):
        assert f"warning: 1 image(s) skipped, {reason}" in result.stderr
    assert sorted(p.name for p in export.iterdir()) == ["smile_non_smile.json", "smile_non_smile.keras",
                                                        "smile_non_smile.tflite"]
    for name in ("smile_non_smile.tflite", "curves.png", "confusion.png", "report.json", "skipped.txt"):
        assert (run_dir / name).is_file()
    assert sorted(path.name for path in (REPO / "model").iterdir()) == shipped
    card = ModelCard.load(export / "smile_non_smile.json")
    assert card.classes == GENKI_CLASSES
    assert card.input == ModelCard.load(DEFAULT_INIT_CARD).input
    assert card.training_data["faces"] == "photos" and card.training_data["init"]["head_epochs"] == 1
    report = json.loads((run_dir / "report.json").read_text())
    assert report["skipped"] == {"no face": 1, "ambiguous": 1, "unreadable": 1}

    log = tmp_path / "faces.jsonl"
    shown = run_cli("main.py", "--source", str(media / "obama.jpg"), "--no-display", "--log", str(log),
                    "--model", str(export / "smile_non_smile.tflite"))
    assert shown.returncode == 0, shown.stderr[-3000:]
    faces = json.loads(log.read_text().splitlines()[0])["faces"]
    assert faces and set(faces[0]["probs"]) == set(GENKI_CLASSES)
    evaluated = run_cli("train.py", "evaluate", "--data", str(data), "--detect", "--json",
                        "--model", str(export / "smile_non_smile.tflite"))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["classes"] == GENKI_CLASSES

    resumed = run_cli("train.py", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(0 detected, 34 from the cache)" in resumed.stdout
    assert f"use it: python main.py --model {run_dir / 'smile_non_smile.tflite'}" in resumed.stdout


def test_from_scratch_on_photos_with_the_folders_as_classes(tmp_path: Path, genki: Path):
    data = link_subset(genki, tmp_path / "data", GENKI_CLASSES, 12)
    result = run_cli("train.py", "--data", str(data), "--epochs", "1", "--face-cache", str(tmp_path / "cache"),
                     "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "classes: non_smile, smile (the class folders in" in result.stdout
    assert "few to learn faces from scratch; --init fine-tunes the shipped model" in result.stdout
    assert "training every layer from random weights" in result.stdout
    card = ModelCard.load(tmp_path / "run" / "non_smile_smile.json")
    assert card.input.equalize and "init" not in card.training_data


def test_a_model_trained_on_inner_face_crops_is_carded_and_cut_so_at_run_time(tmp_path: Path, genki: Path):
    """--crop-centre reaches the card, and every front end's pipeline cuts faces as the card says: a turned face's
    crop follows its eyes, nose and mouth rather than its box."""
    from realtime.api import ExpressionDetector
    from realtime.detector import largest_face

    data = link_subset(genki, tmp_path / "data", GENKI_CLASSES, 12)
    run = tmp_path / "run"
    result = run_cli("train.py", "--data", str(data), "--classes", *GENKI_CLASSES, "--epochs", "1",
                     "--crop-centre", "inner-face", "--face-cache", str(tmp_path / "cache"), "--run-dir", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "crop framing (inner-face centred)" in result.stdout
    card = ModelCard.load(run / "smile_non_smile.json")
    assert card.framing == CropFraming(centre="inner-face")
    assert card.training_data["face_finding"]["crop_centre"] == "inner-face"
    # The faces it trained on were cut so: the cache holds each photo's inner-face crop, and no box-centred one.
    photo = sorted((data / "smile").iterdir())[0]
    inner, boxed = (CropCache(tmp_path / "cache", CropFraming(centre=centre), "auto") for centre in ("inner-face", "box"))
    with FaceDetector(model_range="auto", still_images=True) as finder:
        expected = crop_face(read_image(photo), pick_face(finder.detect(read_image(photo)))[0],
                             CropFraming(centre="inner-face"))
    assert np.array_equal(inner.load(inner.key(photo))[0], expected) and boxed.load(boxed.key(photo)) is None
    turned = read_image(require(SHARED / "data" / "kdef" / "train" / "happy" / "AF01HAHL.jpg"))
    with ExpressionDetector(run / "smile_non_smile.tflite") as detector:
        pipeline = detector.pipeline(still_images=True)
        face = largest_face(pipeline.detector.detect(turned))
        batch = pipeline.preprocess(turned, [face])
    spec = card.input
    assert np.array_equal(batch[0], face_to_input(crop_face(turned, face, CropFraming(centre="inner-face")), spec))
    assert not np.array_equal(batch[0], face_to_input(crop_face(turned, face, CropFraming()), spec))


def test_an_interrupted_fine_tuning_run_resumes_across_the_unfreezing(tmp_path: Path, genki: Path):
    data = link_subset(genki, tmp_path / "data", GENKI_CLASSES, 12)
    run_dir = tmp_path / "run"
    command = [sys.executable, "train.py", "--data", str(data), "--classes", *GENKI_CLASSES, "--epochs", "3",
               "--head-epochs", "1", "--batch-size", "8", "--init", "--face-cache", str(tmp_path / "cache"),
               "--run-dir", str(run_dir)]
    interrupted = kill_after_first_epoch(command, run_dir)
    assert 1 <= interrupted["epochs_done"] < 3

    result = run_cli("train.py", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(0 detected, 24 from the cache)" in result.stdout
    finished = json.loads((run_dir / "state.json").read_text())
    assert finished["history"][: interrupted["epochs_done"]] == interrupted["history"]
    assert [r["stage"] for r in finished["history"]] == ["head", "all", "all"]


def test_mixed_crops_and_photos_warn_with_counts_and_go_on(tmp_path: Path, genki: Path, fer_val: Path):
    for name, crops, photos in (("happy", fer_val / "happy", genki / "smile"),
                                ("sad", fer_val / "sad", genki / "non_smile")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for source in sorted(crops.iterdir())[:10] + sorted(photos.iterdir())[:8]:
            (tmp_path / "data" / name / source.name).symlink_to(source)
    result = run_cli("train.py", "--data", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "8",
                     "--face-cache", str(tmp_path / "cache"), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    warning = [line for line in result.stderr.splitlines() if "mixed face crops and photos" in line]
    assert len(warning) == 1 and "of 32 sampled images look like crops" in warning[0]


# Bad input: one sentence and status 2


def test_no_face_in_any_photo(tmp_path: Path):
    for index in range(12):
        _write(tmp_path / "data" / ("smile", "non_smile")[index % 2] / f"{index}.png", _no_face(index))
    result = run_cli("train.py", "--data", str(tmp_path / "data"), "--face-cache", str(tmp_path / "cache"))
    _fails_with(result, "found no usable face in any of the 12 photos")


def test_an_empty_class_folder_and_one_with_too_few_faces(tmp_path: Path, genki: Path):
    data = link_subset(genki, tmp_path / "data", ["smile"], 6)
    (data / "non_smile").mkdir()
    empty = run_cli("train.py", "--data", str(data), "--classes", *GENKI_CLASSES)
    _fails_with(empty, f"class folder {data / 'non_smile'} has no images (nothing)")
    link_subset(genki, data, ["non_smile"], 3)
    for index in range(3):
        _write(data / "non_smile" / f"faceless{index}.png", _no_face(index))
    few = run_cli("train.py", "--data", str(data), "--classes", *GENKI_CLASSES, "--face-cache", str(tmp_path / "c"))
    _fails_with(few, "class non_smile has 3 usable face(s)", "6 images; skipped: 3 no face", "at least 5")


def test_only_one_class_folder(tmp_path: Path, genki: Path):
    data = link_subset(genki, tmp_path / "data", ["smile"], 6)
    _fails_with(run_cli("train.py", "--data", str(data)), "only one class folder with images (smile)")


def test_folders_of_non_images(tmp_path: Path):
    for name in GENKI_CLASSES:
        (tmp_path / name).mkdir()
        for index in range(3):
            (tmp_path / name / f"notes{index}.txt").write_text("not a photo")
    _fails_with(run_cli("train.py", "--data", str(tmp_path)), "no class folder with images")
    _fails_with(run_cli("train.py", "--data", str(tmp_path), "--classes", *GENKI_CLASSES),
                "has no images (only 3 other file(s), such as notes0.txt)")


def test_classes_naming_a_folder_that_does_not_exist(tmp_path: Path, genki: Path):
    data = link_subset(genki, tmp_path / "data", GENKI_CLASSES, 6)
    _fails_with(run_cli("train.py", "--data", str(data), "--classes", "smile", "frown"),
                "(its class folders: non_smile, smile;")


def test_init_models_that_cannot_be_fine_tuned(tmp_path: Path, genki: Path):
    data = link_subset(genki, tmp_path / "data", GENKI_CLASSES, 6)
    missing = tmp_path / "missing.keras"
    _fails_with(run_cli("train.py", "--data", str(data), "--init", str(missing)),
                f"--init model {missing} does not exist")
    not_a_model = tmp_path / "notes.keras"
    not_a_model.write_text("not a model")
    _fails_with(run_cli("train.py", "--data", str(data), "--init", str(not_a_model)),
                "cannot be loaded safely as a Keras model to fine-tune")
    import keras

    card_side = json.loads(DEFAULT_INIT_CARD.read_text())["input"]["size"]
    side = card_side + 8  # any size but the card's
    other_size = tmp_path / "other_size.keras"
    inputs = keras.Input((side, side, 1))
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs))).save(other_size)
    other_size.with_suffix(".json").write_text(DEFAULT_INIT_CARD.read_text())
    _fails_with(run_cli("train.py", "--data", str(data), "--init", str(other_size)),
                f"takes inputs of shape ({side}, {side}, 1), but its card describes {card_side}x{card_side} faces")
