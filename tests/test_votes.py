"""FER+ crowd votes as training targets and as validation labels, on the real shared votes file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.data import label_by_crowd_majority, load_class_folders, relabel_by_votes
from model.preprocess import InputSpec
from model.votes import EXPRESSIONS, FaceVotes, load_votes
from tests.conftest import FER, require

OUTPUTS = ("happy", "sad", "neutral", *[name for name in EXPRESSIONS if name not in ("happy", "sad", "neutral")])
# Files of train/sad/: two that most voters call neutral, two they call sad, one the crowd never saw.
NEUTRAL_BY_CROWD = ["Training_10031481.jpg", "Training_10094936.jpg"]
SAD_BY_CROWD = ["Training_10111384.jpg", "Training_10235859.jpg"]
NO_VOTES = ["Training_11036409.jpg"]


def _votes(**counts: int) -> FaceVotes:
    unknown, not_a_face = counts.pop("unknown", 0), counts.pop("not_a_face", 0)
    return FaceVotes({name: counts.get(name, 0) for name in EXPRESSIONS}, not_a_face, unknown)


def test_majority_is_strict_and_counts_unknown_and_not_a_face():
    assert _votes(happy=6, neutral=4).majority() == "happy"
    assert _votes(happy=4, neutral=4, sad=2).majority() is None
    assert _votes(sad=3, unknown=3, neutral=2, happy=2).majority() is None
    assert _votes(not_a_face=6, happy=4).majority() is None
    assert not _votes(not_a_face=6, happy=4).is_face()
    assert _votes(happy=6, neutral=2, unknown=2).distribution(("happy", "neutral", "sad")).tolist() == \
        pytest.approx([0.75, 0.25, 0.0])


@pytest.fixture()
def sad_folder(tmp_path: Path) -> Path:
    """A FER2013-shaped tree of symlinks (votes are looked up by path under the data root)."""
    votes_file = require(FER / "ferplus_votes.csv")
    (tmp_path / "ferplus_votes.csv").symlink_to(votes_file)
    folder = tmp_path / "train" / "sad"
    folder.mkdir(parents=True)
    for name in NEUTRAL_BY_CROWD + SAD_BY_CROWD + NO_VOTES:
        (folder / name).symlink_to(require(FER / "train" / "sad" / name))
    return tmp_path


def test_training_targets_follow_the_crowd_and_unvoted_faces_keep_their_folder(sad_folder: Path):
    votes = load_votes(sad_folder)
    dataset = load_class_folders(sad_folder / "train", ["sad"], InputSpec())
    soft = relabel_by_votes(dataset, OUTPUTS, votes, sad_folder, soft=True)
    by_name = {path.name: target for path, target in zip(soft.paths, soft.targets)}
    assert np.allclose(soft.targets.sum(axis=1), 1.0)
    for name in NEUTRAL_BY_CROWD:
        assert OUTPUTS[int(np.argmax(by_name[name]))] == "neutral"
    for name in SAD_BY_CROWD:
        assert OUTPUTS[int(np.argmax(by_name[name]))] == "sad"
    assert by_name[NO_VOTES[0]].tolist() == np.eye(len(OUTPUTS))[OUTPUTS.index("sad")].tolist()
    majority = relabel_by_votes(dataset, OUTPUTS, votes, sad_folder, soft=False)
    assert set(np.unique(majority.targets)) <= {0.0, 1.0}
    assert [OUTPUTS[i] for i in majority.labels].count("neutral") == 2


def test_validation_keeps_only_faces_whose_crowd_majority_is_a_class(sad_folder: Path):
    votes = load_votes(sad_folder)
    dataset = load_class_folders(sad_folder / "train", ["sad"], InputSpec())
    judged = label_by_crowd_majority(dataset, ("happy", "sad"), votes, sad_folder)
    assert sorted(path.name for path in judged.paths) == sorted(SAD_BY_CROWD + NO_VOTES)
    with_neutral = label_by_crowd_majority(dataset, ("happy", "sad", "neutral"), votes, sad_folder)
    assert len(with_neutral) == 5
    assert sorted(with_neutral.classes[i] for i in with_neutral.labels).count("neutral") == 2
