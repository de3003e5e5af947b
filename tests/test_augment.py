"""Augmentation that keeps the cache: deterministic views, cached like originals, train-only."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from feature_helpers import build_extractor, features_differ, write_images

from vitl.augment import AugmentPolicy, plot_views
from vitl.classifier import ImageClassifier
from vitl.data import load_image_folder, split
from vitl.datasets import make_synthetic_cracks
from vitl.features import Featurizer
from vitl.training import HeadConfig


def _image(seed=0, side=48):
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def _digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def cracks(tmp_path_factory):
    root = make_synthetic_cracks(tmp_path_factory.mktemp("aug") / "s", 6, size=64, verbose=0)
    return load_image_folder(root, verbose=0)


def test_same_image_and_view_give_identical_pixels_and_views_differ():
    policy, image = AugmentPolicy(), _image()
    first, again = policy(image, 3), policy(image, 3)
    assert first.dtype == np.uint8 and first.shape == image.shape
    assert _digest(first) == _digest(again)
    assert _digest(AugmentPolicy()(image, 3)) == _digest(first)  # a new policy object too
    views = {_digest(policy(image, k)) for k in range(1, 7)}
    assert len(views) == 6
    assert _digest(policy(image, 0)) == _digest(image)
    assert not np.array_equal(policy(image, 1), image)


def test_views_depend_on_the_pixels_not_only_the_view_number():
    policy = AugmentPolicy()
    base = np.zeros((40, 40, 3), np.uint8)
    base[:, :20] = 200  # half bright, so geometric transforms are visible
    moved = base.copy()
    moved[0, 0] = 1  # one pixel differs: another seed, another draw
    differing = np.any(policy(base, 1) != policy(moved, 1), axis=-1).sum()
    assert differing > 100


@pytest.mark.slow
def test_a_fresh_process_reproduces_the_view_byte_for_byte():
    image = _image(seed=5)
    code = ("import hashlib, numpy as np; from vitl.augment import AugmentPolicy; "
            "img = np.random.default_rng(5).integers(0, 256, (48, 48, 3), dtype=np.uint8); "
            "print(hashlib.sha256(AugmentPolicy()(img, 2).tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.stdout.strip().splitlines()[-1] == _digest(AugmentPolicy()(image, 2))


def test_transform_id_names_the_parameters():
    a, b = AugmentPolicy(), AugmentPolicy(rotation=0.2)
    assert a.transform_id == AugmentPolicy().transform_id
    assert a.transform_id != b.transform_id
    assert a.transform_id.startswith("aug-v1-")
    assert AugmentPolicy.from_dict(b.to_dict()) == b
    numpy = AugmentPolicy(rotation=np.float32(0.2), views=np.int64(2))  # accepted: so it works
    assert numpy.transform_id.startswith("aug-v1-") and numpy.transform_id != a.transform_id


def test_switched_off_transforms_and_an_identity_policy():
    image = _image()
    off = AugmentPolicy(flip=None, rotation=0, zoom=0, translation=0, contrast=0, brightness=0)
    assert off.is_identity
    assert np.array_equal(off(image, 4), image)
    flips_only = AugmentPolicy(rotation=0, zoom=0, translation=0, contrast=0, brightness=0)
    mirrors = [np.array_equal(flips_only(image, k), m) for k in range(1, 9)
               for m in (image[:, ::-1], image[::-1], image[::-1, ::-1], image)]
    assert any(mirrors)
    for k in range(1, 9):  # every view is one of the four mirror images
        view = flips_only(image, k)
        assert any(np.array_equal(view, m)
                   for m in (image, image[:, ::-1], image[::-1], image[::-1, ::-1]))


@pytest.mark.parametrize("kwargs, word", [
    ({"flip": "diagonal"}, "flip"), ({"rotation": 2.0}, "rotation"),
    ({"brightness": -0.1}, "brightness"), ({"fill_mode": "mirror"}, "fill_mode"),
])
def test_bad_policy_parameters_say_what_to_pass(kwargs, word):
    with pytest.raises(ValueError, match=f"{word}: expected .* Fix:"):
        AugmentPolicy(**kwargs)


def test_bad_image_is_refused():
    with pytest.raises(ValueError, match="uint8 RGB"):
        AugmentPolicy()(np.zeros((8, 8), np.uint8), 1)


def test_augment_batch_is_seeded_and_differs_per_image():
    import tensorflow as tf

    policy = AugmentPolicy()
    batch = tf.constant(np.stack([_image()] * 3).astype(np.float32))
    one = policy.augment_batch(batch, tf.constant([7, 1])).numpy()
    two = policy.augment_batch(batch, tf.constant([7, 1])).numpy()
    other = policy.augment_batch(batch, tf.constant([7, 2])).numpy()
    assert np.array_equal(one, two)
    assert not np.array_equal(one, other)
    assert not np.array_equal(one[0], one[1])
    assert one.min() >= 0 and one.max() <= 255


def test_cached_views_cost_nothing_the_second_time(tmp_path):
    paths = write_images(tmp_path / "img", 4)
    featurizer = Featurizer(build_extractor(size=32), cache=tmp_path / "cache", verbose=0)
    policy = AugmentPolicy()
    first = featurizer.featurize(paths, views=[0, 1, 2], transform=policy)
    assert featurizer.last_stats.computed == 12
    again = featurizer.featurize(paths, views=[0, 1, 2], transform=policy)
    assert featurizer.last_stats.computed == 0 and featurizer.last_stats.hits == 12
    np.testing.assert_array_equal(first, again)
    # the views really are other pictures: their features differ from the originals'
    assert features_differ(first[1], first[0])
    # a different policy is a different cache entry
    featurizer.featurize(paths, views=[1], transform=AugmentPolicy(rotation=0.2))
    assert featurizer.last_stats.computed == 4


@pytest.mark.slow
def test_classifier_augments_training_views_only_and_reuses_the_cache(cracks, tmp_path,
                                                                       monkeypatch):
    parts = split(cracks, 0.5, 0.5, 0.0, seed=0)
    calls = []
    original = Featurizer.featurize

    def spy(self, images, **kwargs):
        calls.append(({str(p) for p in getattr(images, "paths", images)}, kwargs.get("views"),
                      kwargs.get("view", 0)))
        return original(self, images, **kwargs)

    monkeypatch.setattr(Featurizer, "featurize", spy)
    params = {"weights": None, "input_size": 64, "head": HeadConfig(epochs=2), "augment": 2,
              "cache": tmp_path / "cache", "verbose": 0}
    clf = ImageClassifier("mobilenetv2", **params).fit(parts.train, parts.validation)
    n = len(parts.train)
    assert clf.fit_info_["features"]["train"] == {"rows": 3 * n, "hits": 0, "computed": 3 * n}
    assert clf.fit_info_["features"]["train_rows"] == 3 * n
    assert clf.fit_info_["augment"]["views"] == 2
    assert clf.fit_info_["augment"]["transform_id"] == AugmentPolicy().transform_id

    train_paths = {str(p) for p in parts.train.paths}
    val_paths = {str(p) for p in parts.validation.paths}
    assert [c[1] for c in calls if c[0] == train_paths] == [[0, 1, 2]]
    val_calls = [c for c in calls if c[0] & val_paths]
    assert val_calls and all(views in (None, [0]) and view == 0 for _, views, view in val_calls)
    clf.evaluate(parts.validation)  # evaluation: originals only, too
    assert all(views in (None, [0]) and view == 0 for paths, views, view in calls
               if paths & val_paths)

    again = ImageClassifier("mobilenetv2", **params).fit(parts.train, parts.validation)
    assert again.fit_info_["features"]["train"]["computed"] == 0
    assert again.fit_info_["features"]["validation"]["computed"] == 0


@pytest.mark.slow
def test_augment_parameters_are_checked_and_saved(cracks, tmp_path):
    with pytest.raises(ValueError, match="augment: expected an integer >= 0"):
        ImageClassifier(augment=-1).fit(cracks)
    with pytest.raises(ValueError, match="views: expected an integer >= 0"):
        AugmentPolicy(views=-1)
    assert AugmentPolicy.from_dict({"rotation": 0.0, "views": 1}) == AugmentPolicy(
        rotation=0.0, views=1)
    with pytest.raises(ValueError, match=r"AugmentPolicy keys: expected names among .* "
                                         r"received \['old'\]\. Fix: remove or rename"):
        AugmentPolicy.from_dict({"rotation": 0.0, "views": 1, "old": 2})
    assert AugmentPolicy(views=2).transform_id == AugmentPolicy(views=8).transform_id

    policy = AugmentPolicy(rotation=0.05, views=1)
    clf = ImageClassifier("mobilenetv2", weights=None, input_size=64, head=HeadConfig(epochs=1),
                          augment=policy, cache=None, verbose=0).fit(cracks)
    assert clf.fit_info_["augment"]["views"] == 1
    loaded = ImageClassifier.load(clf.save(tmp_path / "m.keras"), cache=None, verbose=0)
    assert loaded.augment == policy
    assert loaded.fit_info_["augment"]["transform_id"] == policy.transform_id


def test_plot_views_shows_the_original_and_k_views(cracks):
    fig = plot_views(cracks.paths[0], AugmentPolicy(), k=4, size=64, caption="CC BY 4.0")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5
    assert shown[0].get_title() == "original"
    assert not np.array_equal(shown[0].images[0].get_array(), shown[1].images[0].get_array())
    assert fig.texts[-1].get_text() == "CC BY 4.0"


def test_repr_shows_only_changed_fields_like_the_other_configs():
    from vitl import ImageClassifier

    assert repr(AugmentPolicy(views=2)) == "AugmentPolicy(views=2)"
    assert repr(ImageClassifier(augment=AugmentPolicy(views=2, flip="horizontal"))) == \
        "ImageClassifier(augment=AugmentPolicy(flip='horizontal', views=2))"
