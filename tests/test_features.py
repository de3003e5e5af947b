"""featurize / Featurizer: cache hit and miss rules, alignment, views, errors."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from feature_helpers import (
    assert_features_close,
    build_extractor,
    direct_features,
    features_differ,
    write_images,
)
from PIL import Image

from vitl.data import BadImageError, ImageCollection
from vitl.features import FeatureCache, Featurizer, featurize


@pytest.fixture(scope="module")
def extractor():
    return build_extractor(seed=0, size=32)


@pytest.fixture
def images(tmp_path):
    return write_images(tmp_path / "images", 12)


def run(paths, extractor, cache, **kwargs):
    return featurize(paths, extractor, cache=cache, verbose=0, return_stats=True, **kwargs)


def test_cold_then_warm_equals_uncached_and_direct_computation(extractor, images, tmp_path):
    cold, cold_stats = run(images, extractor, tmp_path / "cache")
    warm, warm_stats = run(images, extractor, tmp_path / "cache")
    uncached, uncached_stats = run(images, extractor, None)

    assert (cold_stats.hits, cold_stats.computed) == (0, 12)
    assert (warm_stats.hits, warm_stats.computed, warm_stats.images) == (12, 0, 12)
    assert (uncached_stats.hits, uncached_stats.computed) == (0, 12)
    assert cold.dtype == np.float32 and cold.shape == (12, extractor.feature_dim)
    assert np.array_equal(cold, warm)  # float32 bytes round-trip exactly
    assert np.array_equal(cold, uncached)
    assert_features_close(cold, direct_features(extractor, images))
    assert features_differ(cold[0], cold[1])  # distinct images give distinct rows


def test_renamed_and_moved_files_hit(extractor, images, tmp_path):
    first, _ = run(images, extractor, tmp_path / "cache")
    moved = []
    for i, path in enumerate(images):
        target = tmp_path / "elsewhere" / f"sub{i % 3}" / f"renamed_{i}.jpeg"
        target.parent.mkdir(parents=True, exist_ok=True)
        moved.append(shutil.move(path, target))
    again, stats = run(moved, extractor, tmp_path / "cache")
    assert (stats.hits, stats.computed) == (12, 0)
    assert np.array_equal(first, again)


def test_edited_file_misses_and_gets_new_features(extractor, images, tmp_path):
    first, _ = run(images, extractor, tmp_path / "cache")
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(images[5])
    again, stats = run(images, extractor, tmp_path / "cache")
    assert (stats.hits, stats.computed) == (11, 1)
    assert features_differ(first[5], again[5])
    assert np.array_equal(np.delete(first, 5, axis=0), np.delete(again, 5, axis=0))
    assert_features_close(again[5], direct_features(extractor, [images[5]])[0])


def test_file_written_while_featurized_is_never_cached_under_old_bytes(extractor, images,
                                                                    tmp_path, monkeypatch):
    """A file still being copied when hashed (an old key) and complete when decoded: no vector
    under the old key (later runs would see a miss: "194 cached, 6 computed"); named, redone."""
    from vitl.features import pipeline

    read = pipeline.read_image
    final_bytes = [150, 200]  # one write per run below, the last one stays

    def finish_writing(path, size=None):
        if path == images[5] and len(final_bytes) > finish_writing.runs:
            Image.fromarray(np.full((40, 40, 3), final_bytes[finish_writing.runs], np.uint8)
                            ).save(path)
            finish_writing.runs = len(final_bytes)
        return read(path, size)

    monkeypatch.setattr(pipeline, "read_image", finish_writing)
    finish_writing.runs = 0
    features, stats = run(images, extractor, tmp_path / "cache", errors="skip")
    assert [(path, "file changed" in why) for path, why in stats.bad] == [(images[5], True)]
    assert np.isnan(features[5]).all() and stats.computed == 11
    assert len(FeatureCache(tmp_path / "cache")) == 11
    finish_writing.runs = 1
    with pytest.raises(BadImageError, match="file changed while it was featurized"):
        run(images, extractor, tmp_path / "cache")
    again, stats = run(images, extractor, tmp_path / "cache")  # the final bytes: computed once
    assert (stats.hits, stats.computed, stats.bad) == (11, 1, [])
    _, stats = run(images, extractor, tmp_path / "cache")
    assert (stats.hits, stats.computed) == (12, 0)
    assert_features_close(again[5], direct_features(extractor, [images[5]])[0])


@pytest.mark.parametrize("change", ["input_size", "weights", "backbone", "precision", "view"])
def test_other_backbone_settings_or_view_miss(change, extractor, images, tmp_path):
    cache = tmp_path / "cache"
    run(images, extractor, cache)
    other, kwargs = extractor, {}
    if change == "input_size":
        other = build_extractor(seed=0, size=48)
    elif change == "weights":
        other = build_extractor(seed=1, size=32)
    elif change == "backbone":
        other = build_extractor(seed=0, size=32, backbone="efficientnetb0")
    elif change == "precision":
        other = build_extractor(seed=0, size=32, precision="bfloat16")
    else:
        kwargs = {"view": 1, "transform": lambda image, view: image[:, ::-1],
                  "transform_id": "flip"}
    _, stats = run(images, other, cache, **kwargs)
    assert (stats.hits, stats.computed) == (0, 12)
    _, stats = run(images, other, cache, **kwargs)  # and is then cached under its own key
    assert (stats.hits, stats.computed) == (12, 0)


def test_same_seed_gives_same_fingerprint_and_shares_entries(extractor, images, tmp_path):
    run(images, extractor, tmp_path / "cache")
    twin = build_extractor(seed=0, size=32)
    assert twin.fingerprint == extractor.fingerprint
    assert build_extractor(seed=1, size=32).fingerprint != extractor.fingerprint
    _, stats = run(images, twin, tmp_path / "cache")
    assert stats.hits == 12


def test_adding_ten_images_featurizes_only_ten(extractor, tmp_path):
    first = write_images(tmp_path / "images", 20)
    run(first, extractor, tmp_path / "cache")
    more = first + write_images(tmp_path / "images", 10, start=20)
    features, stats = run(more, extractor, tmp_path / "cache")
    assert (stats.images, stats.hits, stats.computed) == (30, 20, 10)
    assert_features_close(features, direct_features(extractor, more))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_vector_does_not_depend_on_its_batch_mates(precision, tmp_path):
    """The same image alone, among 40, and as the one cache miss among hits: the same bits."""
    fx = build_extractor(seed=0, size=32, precision=precision)
    paths = write_images(tmp_path / "images", 40)
    alone = run([paths[7]], fx, None)[0][0]
    among_many = run(paths, fx, None)[0]
    cache = tmp_path / "cache"
    run(paths[:7] + paths[8:], fx, cache)
    as_only_miss, stats = run(paths, fx, cache)
    assert stats.computed == 1
    np.testing.assert_array_equal(alone, among_many[7])
    np.testing.assert_array_equal(as_only_miss, among_many)
    assert np.abs(alone).max() > 0


def test_rows_follow_input_order_and_collections_work(extractor, images, tmp_path):
    forward, _ = run(images, extractor, tmp_path / "cache")
    backward, _ = run(images[::-1], extractor, None)
    assert np.array_equal(forward[::-1], backward)
    collection = ImageCollection.from_paths(images, [i % 2 for i in range(12)], ["a", "b"])
    from_collection, stats = run(collection, extractor, tmp_path / "cache")
    assert stats.hits == 12 and np.array_equal(forward, from_collection)


def test_identical_files_are_computed_once(extractor, images, tmp_path):
    copy = tmp_path / "copy.jpg"
    shutil.copy(images[3], copy)
    features, stats = run([images[3], copy, images[4]], extractor, tmp_path / "cache")
    assert (stats.images, stats.hits, stats.computed, stats.identical) == (3, 0, 2, 1)
    # the printed line adds up: 0 cached + 2 computed + 1 identical = 3 images
    assert "0 cached, 2 computed" in str(stats) and "1 identical files computed once" in str(stats)
    assert np.array_equal(features[0], features[1])


def _flip(image, view):
    return image[:, ::-1] if view == 1 else np.rot90(image, view)


def test_views_are_cached_like_originals(extractor, images, tmp_path):
    cache = tmp_path / "cache"
    stacked, stats = run(images, extractor, cache, views=[0, 1, 2], transform=_flip,
                         transform_id="flip-rot")
    assert stacked.shape == (3, 12, extractor.feature_dim) and stats.computed == 36
    original, stats = run(images, extractor, cache)
    assert stats.hits == 12 and np.array_equal(stacked[0], original)
    from vitl.data import read_image

    batch = np.stack([read_image(p, 32)[:, ::-1] for p in images]).astype(np.float32)
    flipped = np.asarray(extractor.model(batch, training=False))
    assert_features_close(stacked[1], flipped)
    assert features_differ(stacked[1], stacked[2])

    view2, stats = run(images, extractor, cache, view=2, transform=_flip, transform_id="flip-rot")
    assert stats.hits == 12 and np.array_equal(view2, stacked[2])
    _, stats = run(images, extractor, cache, view=2, transform=_flip, transform_id="flip-rot-v2")
    assert stats.hits == 0


def test_transform_output_of_another_size_is_resized(extractor, images):
    def crop(image, view):
        return image[4:-4, 4:-4]  # 24x24 from 32x32

    features, _ = run(images[:2], extractor, None, view=1, transform=crop)
    assert features.shape == (2, extractor.feature_dim) and np.isfinite(features).all()


def test_transform_id_from_transform_attribute(extractor, images, tmp_path):
    class Flip:
        transform_id = "flip-attr"

        def __call__(self, image, view):
            return image[:, ::-1]

    _, stats = run(images[:3], extractor, tmp_path / "cache", view=1, transform=Flip())
    assert stats.computed == 3
    _, stats = run(images[:3], extractor, tmp_path / "cache", view=1,
                   transform=lambda image, view: image[:, ::-1], transform_id="flip-attr")
    assert stats.hits == 3


def test_bad_image_names_the_file_and_keeps_earlier_batches(extractor, images, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(BadImageError, match="broken.jpg"):
        run(images + [broken], extractor, tmp_path / "cache")
    assert len(FeatureCache(tmp_path / "cache")) == 12  # the 3 full batches before it were kept


def test_missing_file_raises_file_not_found(extractor, images, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        run(images + [tmp_path / "nope.jpg"], extractor, tmp_path / "cache")


def test_default_cache_follows_vitl_cache_and_none_writes_nothing(extractor, images, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("VITL_CACHE", str(tmp_path / "env-cache"))
    run(images[:3], extractor, "default")
    assert len(FeatureCache(tmp_path / "env-cache")) == 3
    for off in (None, False):
        _, stats = run(images[:3], extractor, off)
        assert stats.computed == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env-cache", "images"]


def test_progress_prints_a_summary_line(extractor, images, tmp_path, capsys):
    featurize(images, extractor, cache=tmp_path / "cache", verbose=1)
    featurize(images, extractor, cache=tmp_path / "cache", verbose=1)
    err = capsys.readouterr().err
    assert "featurized 12 images with mobilenetv2: 0 cached, 12 computed in" in err
    assert "featurized 12 images with mobilenetv2: 12 cached, 0 computed in" in err
    assert "img/s" in err


def test_empty_input_gives_empty_array(extractor, tmp_path):
    features, stats = run([], extractor, tmp_path / "cache")
    assert features.shape == (0, extractor.feature_dim) and stats.images == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"cache": 123}, "cache: expected 'default'"),
    ({"view": -1}, "view: expected an integer >= 0"),
    ({"view": 1}, "transform: expected a function"),
    ({"view": 1, "transform": _flip}, "transform_id: expected a string"),
    ({"views": "012"}, "views: expected a sequence"),
])
def test_bad_arguments_say_expected_received_fix(kwargs, match, extractor, images, tmp_path):
    kwargs.setdefault("cache", tmp_path / "cache")
    with pytest.raises(ValueError, match=match) as info:
        featurize(images, extractor, verbose=0, **kwargs)
    assert "Fix:" in str(info.value)


def test_not_an_extractor_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="build_feature_extractor"):
        Featurizer(object(), cache=None)


@pytest.mark.parametrize("length", [1, 7])
def test_cached_vector_of_another_length_is_recomputed_not_trusted(length, extractor, images,
                                                                    tmp_path):
    expected, _ = run(images[:1], extractor, None)
    cache = FeatureCache(tmp_path / "cache")
    key = Featurizer(extractor, cache=None).keys(images[:1])[0]
    cache.put_many([(key, np.full(length, 3.0))])  # planted: a sound entry of the wrong length
    features, stats = run(images[:1], extractor, cache)
    assert stats.computed == 1 and np.array_equal(features, expected)


@pytest.mark.parametrize("cache", [None, "cache"])
def test_fifo_among_images_is_skipped_and_named(cache, extractor, images, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    cache = cache and tmp_path / cache
    features, stats = run(images[:2] + [fifo], extractor, cache, errors="skip")
    assert [path.name for path, _ in stats.bad] == ["pipe.jpg"]
    assert "FIFO" in stats.bad[0][1] and np.isnan(features[2]).all()
    assert not np.isnan(features[:2]).any()


def test_ray_summary_counts_add_up_to_the_images():
    """A rerun after a killed ray run: images = cached + from earlier shards + computed."""
    from vitl.features.pipeline import FeatureStats

    stats = FeatureStats("mobilenetv2-tv", 400, 225, 100, 0, 22.2, "float32", engine="ray",
                         imported=175, shards={"total": 16, "skipped": 9, "imported": 3,
                                               "run": 4}, workers={"a:1": 2, "b:2": 2})
    assert "225 cached, 75 from earlier shards, 100 computed" in str(stats)
