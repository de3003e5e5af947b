"""vitl.workshop: the notebooks' settings and caption credit."""

from __future__ import annotations

import vitl
from vitl.workshop import workshop_settings


def test_fast_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("VITL_FAST", "1")
    assert workshop_settings().fast and workshop_settings().epochs == 40
    monkeypatch.setenv("VITL_FAST", "0")
    assert not workshop_settings().fast and workshop_settings().epochs == 200


def test_fast_sample_keeps_every_class_and_is_independent_of_the_split_hash(tmp_path):
    paths = [f"/d/{c}/{i}.jpg" for c in "ab" for i in range(100)]
    images = vitl.ImageCollection.from_paths(paths, [p[3] for p in paths], ["a", "b"])
    sample = workshop_settings(fast=True).sample(images, fast_share=0.2)
    assert sample.counts() == {"a": 20, "b": 20}
    # A split of the sample with the notebooks' seed spreads it like any other collection
    # (a hashed sample drawn with that seed would put all of it into train).
    parts = vitl.split(sample, 0.5, 0.25, 0.25, seed=0)
    assert 8 <= len(parts.train) <= 32 and len(parts.test) >= 2


def test_image_credit_names_the_data_actually_used(tmp_path):
    folder = vitl.make_synthetic_cracks(tmp_path / "synthetic", 1, size=64, verbose=0)
    assert "synthetic" in vitl.image_credit(folder)
    assert "SDNET2018" not in vitl.image_credit(folder)
    (tmp_path / "sdnet").mkdir()
    (tmp_path / "sdnet" / "ATTRIBUTION.md").write_text(vitl.SDNET2018_ATTRIBUTION + "\n")
    assert vitl.image_credit(tmp_path / "sdnet") == vitl.SDNET2018_ATTRIBUTION
