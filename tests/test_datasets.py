"""Tests for vitl.datasets: the SDNET2018 fetcher (no network) and the synthetic generator."""

from __future__ import annotations

import csv
import errno
import hashlib
import http.client
import io
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import together
from PIL import Image

from vitl import datasets
from vitl.datasets import (
    DatasetChecksumError,
    DatasetUnavailableError,
    make_synthetic_cracks,
    sdnet,
    sdnet2018_decks,
    synthetic,
    synthetic_mask_path,
)

# Captured before the autouse fixture clears it: CI points it at ../shared/data.
_REAL_MIRROR = Path(
    os.environ.get("VITL_DATA_MIRROR")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)


# --------------------------------------------------------------------------- SDNET2018 sample


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test may reach the network or see the caller's mirror."""
    monkeypatch.delenv("VITL_DATA_MIRROR", raising=False)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution (test)")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def _jpeg_bytes(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (value, value, value)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def fake_zip(tmp_path, monkeypatch):
    """A tiny zip laid out like the tutorial's assets.zip; the module's expected hash is patched."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    path = mirror / "sdnet2018-decks-sample.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("assets/CD/", b"")
        for i in range(3):
            archive.writestr(f"assets/CD/7001-{i}.jpg", _jpeg_bytes(40 + i))
            archive.writestr(f"assets/UD/7001-{i}.jpg", _jpeg_bytes(200 - i))
        archive.writestr("assets/README.md", "Labeled directories go here.")
        archive.writestr("../evil.txt", "zip-slip attempt")
    data = path.read_bytes()
    monkeypatch.setattr(sdnet, "SDNET2018_SIZE", len(data))
    monkeypatch.setattr(sdnet, "SDNET2018_SHA256", hashlib.sha256(data).hexdigest())
    return path


def _image_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))


def test_mirror_argument_unpacks_class_folders(fake_zip, tmp_path, capsys):
    folder = sdnet2018_decks(mirror=fake_zip.parent, data_dir=tmp_path / "data")
    assert folder == tmp_path / "data" / "sdnet2018-decks"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["CD", "UD"]
    assert _image_files(folder) == [f"{c}/7001-{i}.jpg" for c in ("CD", "UD") for i in range(3)]
    assert (folder / "README.md").read_text() == "Labeled directories go here."
    assert "CC BY 4.0" in (folder / "ATTRIBUTION.md").read_text()
    assert (folder / ".complete").read_text().strip() == sdnet.SDNET2018_SHA256
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "evil.txt").exists()
    assert not list((tmp_path / "data").glob(".sdnet2018-decks.tmp-*"))
    out = capsys.readouterr().out
    assert f"from mirror {fake_zip}" in out and "sha256 ok" in out


def test_mirror_may_name_the_zip_file_itself_and_accepts_assets_zip(fake_zip, tmp_path):
    renamed = fake_zip.with_name("assets.zip")
    fake_zip.rename(renamed)
    folder = sdnet2018_decks(mirror=renamed.parent, data_dir=tmp_path / "a", verbose=0)
    assert len(_image_files(folder)) == 6
    folder = sdnet2018_decks(mirror=renamed, data_dir=tmp_path / "b", verbose=0)
    assert len(_image_files(folder)) == 6


def test_env_var_mirror(fake_zip, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VITL_DATA_MIRROR", str(fake_zip.parent))
    folder = sdnet2018_decks(data_dir=tmp_path / "data")
    assert len(_image_files(folder)) == 6
    assert f"from VITL_DATA_MIRROR {fake_zip}" in capsys.readouterr().out


def test_imported_bundle_mirror_is_found(fake_zip, tmp_path, monkeypatch, capsys):
    # `vitl weights import BUNDLE` copies data zips into VITL_HOME/data-mirror.
    home = tmp_path / "home"
    (home / "data-mirror").mkdir(parents=True)
    shutil.copy(fake_zip, home / "data-mirror" / fake_zip.name)
    monkeypatch.setenv("VITL_HOME", str(home))
    folder = sdnet2018_decks(data_dir=tmp_path / "data")
    assert len(_image_files(folder)) == 6
    assert "from imported bundle" in capsys.readouterr().out


def test_default_data_dir_follows_vitl_data(fake_zip, tmp_path, monkeypatch):
    monkeypatch.setenv("VITL_DATA", str(tmp_path / "elsewhere"))
    folder = sdnet2018_decks(mirror=fake_zip, verbose=0)
    assert folder == tmp_path / "elsewhere" / "sdnet2018-decks"


def test_sha_mismatch_is_refused_and_nothing_unpacked(fake_zip, tmp_path, monkeypatch):
    monkeypatch.setattr(sdnet, "SDNET2018_SHA256", "0" * 64)
    received = hashlib.sha256(fake_zip.read_bytes()).hexdigest()
    with pytest.raises(DatasetChecksumError) as info:
        sdnet2018_decks(mirror=fake_zip.parent, data_dir=tmp_path / "data", verbose=0)
    message = str(info.value)
    assert "0" * 64 in message and received in message
    assert not (tmp_path / "data" / "sdnet2018-decks").exists()
    assert not list((tmp_path / "data").glob(".*tmp*"))


def test_offline_without_mirror_names_what_was_tried_and_the_fixes(tmp_path, capsys):
    with pytest.raises(DatasetUnavailableError) as info:
        sdnet2018_decks(data_dir=tmp_path / "data", timeout=1, verbose=1)
    message = str(info.value)
    assert "VITL_DATA_MIRROR" in message and "mirror=" in message
    assert datasets.SDNET2018_URL in message and "gaierror" in message and "(github.com)" in message
    # Offline nothing claims a download is happening (get_file would print "Downloading data").
    assert "Downloading" not in capsys.readouterr().out
    assert not (tmp_path / "data" / "sdnet2018-decks").exists()
    assert not list((tmp_path / "data").glob(".*tmp*"))


def test_mirror_folder_without_the_zip_is_reported(tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    with pytest.raises(DatasetUnavailableError, match="no sdnet2018-decks-sample.zip or assets"):
        sdnet2018_decks(mirror=empty, data_dir=tmp_path / "data", verbose=0)


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = http.client.HTTPMessage()
        self.headers["Content-Length"] = str(len(data))

    def info(self):
        return self.headers


def test_download_is_verified_kept_and_reused(fake_zip, tmp_path, monkeypatch, capsys):
    payload = fake_zip.read_bytes()
    calls = []

    def fake_urlopen(url, data=None):  # keras.utils.get_file -> urllib.request.urlretrieve
        calls.append((url, socket.getdefaulttimeout()))
        return _FakeResponse(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(sdnet, "resolve_host", lambda url: None)  # the fake network has DNS
    data = tmp_path / "data"
    folder = sdnet2018_decks(data_dir=data, timeout=3, verbose=1)
    assert calls == [(datasets.SDNET2018_URL, 3)]
    assert "downloaded from" in capsys.readouterr().out
    assert (data / "sdnet2018-decks-sample.zip").read_bytes() == payload
    assert not list(data.glob(".*tmp*"))
    # A broken unpacked folder is redone from the kept zip, without a second download.
    (folder / ".complete").unlink()
    sdnet2018_decks(data_dir=data, verbose=1)
    assert len(calls) == 1
    assert "from earlier download" in capsys.readouterr().out


def test_corrupt_download_is_refused_and_discarded(fake_zip, tmp_path, monkeypatch):
    payload = bytearray(fake_zip.read_bytes())
    payload[100] ^= 0xFF
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, data=None: _FakeResponse(bytes(payload)))
    monkeypatch.setattr(sdnet, "resolve_host", lambda url: None)
    data = tmp_path / "data"
    with pytest.raises(DatasetChecksumError, match="sha256"):
        sdnet2018_decks(data_dir=data, verbose=0)
    assert sorted(p.name for p in data.iterdir()) == []


def test_corrupt_earlier_download_is_named_not_silently_replaced(fake_zip, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "sdnet2018-decks-sample.zip").write_bytes(b"not the zip")
    with pytest.raises(DatasetChecksumError, match="from earlier download") as info:
        sdnet2018_decks(data_dir=data, verbose=0)
    assert "sha256" in str(info.value) and "Fix: replace" in str(info.value)
    assert not (data / "sdnet2018-decks").exists()


def test_second_call_returns_without_reading_the_zip(fake_zip, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    first = sdnet2018_decks(mirror=fake_zip.parent, data_dir=data, verbose=0)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the zip was read again")

    monkeypatch.setattr(sdnet, "_verify_zip", must_not_run)
    monkeypatch.setattr(sdnet.zipfile, "ZipFile", must_not_run)
    assert sdnet2018_decks(mirror=fake_zip.parent, data_dir=data) == first
    assert "already unpacked" in capsys.readouterr().out


def test_force_unpacks_again(fake_zip, tmp_path):
    data = tmp_path / "data"
    folder = sdnet2018_decks(mirror=fake_zip, data_dir=data, verbose=0)
    (folder / "CD" / "7001-0.jpg").unlink()
    sdnet2018_decks(mirror=fake_zip, data_dir=data, verbose=0)
    assert len(_image_files(folder)) == 5  # valid marker: left alone
    sdnet2018_decks(mirror=fake_zip, data_dir=data, force=True, verbose=0)
    assert len(_image_files(folder)) == 6


def test_half_unpacked_folder_without_marker_is_redone(fake_zip, tmp_path):
    data = tmp_path / "data"
    half = data / "sdnet2018-decks"
    (half / "CD").mkdir(parents=True)
    (half / "UD").mkdir()
    (half / "CD" / "7001-0.jpg").write_bytes(b"truncated")
    (half / "stray.txt").write_text("left by an interrupted run")
    folder = sdnet2018_decks(mirror=fake_zip, data_dir=data, verbose=0)
    assert not (folder / "stray.txt").exists()
    assert (folder / "CD" / "7001-0.jpg").read_bytes() == _jpeg_bytes(40)
    assert len(_image_files(folder)) == 6


def test_wrong_marker_is_not_taken_as_valid(fake_zip, tmp_path):
    data = tmp_path / "data"
    folder = sdnet2018_decks(mirror=fake_zip, data_dir=data, verbose=0)
    (folder / ".complete").write_text("f" * 64 + "\n")
    (folder / "UD" / "7001-1.jpg").unlink()
    sdnet2018_decks(mirror=fake_zip, data_dir=data, verbose=0)
    assert len(_image_files(folder)) == 6


def test_crash_mid_extract_leaves_nothing_valid_and_next_call_recovers(fake_zip, tmp_path,
                                                                       monkeypatch):
    data = tmp_path / "data"
    real_extract = sdnet.zipfile.ZipFile.extract
    calls = {"n": 0}

    def crash_on_fourth(archive, info, into):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated kill mid-extract")
        return real_extract(archive, info, into)

    monkeypatch.setattr(sdnet.zipfile.ZipFile, "extract", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        sdnet2018_decks(mirror=fake_zip, data_dir=data, verbose=0)
    assert not (data / "sdnet2018-decks").exists()
    assert not list(data.glob(".sdnet2018-decks.tmp-*"))
    monkeypatch.setattr(sdnet.zipfile.ZipFile, "extract", real_extract)
    folder = sdnet2018_decks(mirror=fake_zip, data_dir=data, verbose=0)
    assert len(_image_files(folder)) == 6


def test_leftovers_of_dead_processes_are_removed(fake_zip, tmp_path):
    data = tmp_path / "data"
    (data / ".sdnet2018-decks.tmp-999999999-ab" / "CD").mkdir(parents=True)
    (data / ".sdnet2018-decks-sample.zip.tmp-999999999-ab").write_bytes(b"partial")
    sdnet2018_decks(mirror=fake_zip, data_dir=data, verbose=0)
    assert sorted(p.name for p in data.iterdir()) == ["sdnet2018-decks"]


def test_tutorial_data_prefers_sdnet2018(fake_zip, tmp_path):
    folder, source = datasets.tutorial_data(mirror=fake_zip, data_dir=tmp_path, verbose=0)
    assert folder == tmp_path / "sdnet2018-decks"
    assert f"from mirror {fake_zip}" in source and "CC BY 4.0" in source


def test_tutorial_data_falls_back_to_synthetic_offline(tmp_path):
    folder, source = datasets.tutorial_data(data_dir=tmp_path, synthetic_n_per_class=3,
                                            verbose=0)
    assert folder == tmp_path / "synthetic-cracks"
    assert len(list((folder / "cracked").glob("*.png"))) == 3
    assert "synthetic" in source and "VITL_DATA_MIRROR" in source


def test_tutorial_data_does_not_hide_a_corrupt_zip(fake_zip, tmp_path, monkeypatch):
    monkeypatch.setattr(sdnet, "SDNET2018_SHA256", "0" * 64)
    with pytest.raises(DatasetChecksumError):
        datasets.tutorial_data(mirror=fake_zip, data_dir=tmp_path, verbose=0)
    assert not (tmp_path / "synthetic-cracks").exists()


def test_bad_timeout_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="timeout: expected a number of seconds > 0"):
        sdnet2018_decks(data_dir=tmp_path, timeout=0)


def test_real_sample_from_the_shared_mirror(tmp_path, monkeypatch):
    names = [n for n in datasets.SDNET2018_ZIP_NAMES if (_REAL_MIRROR / n).is_file()]
    if not names:
        pytest.skip(f"no SDNET2018 zip in {_REAL_MIRROR} (set VITL_DATA_MIRROR)")
    monkeypatch.setenv("VITL_DATA_MIRROR", str(_REAL_MIRROR))
    folder = sdnet2018_decks(data_dir=tmp_path, verbose=0)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["CD", "UD"]
    assert len(list((folder / "CD").glob("*.jpg"))) == 200
    assert len(list((folder / "UD").glob("*.jpg"))) == 200
    with Image.open(next((folder / "UD").glob("*.jpg"))) as image:
        assert image.size == (256, 256)


# --------------------------------------------------------------------------- synthetic cracks


def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def _grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64)


def test_synthetic_layout_counts_and_sizes(tmp_path):
    out = make_synthetic_cracks(tmp_path / "syn", 3, size=64, masks=True, seed=1, verbose=0)
    class_dirs = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert class_dirs == ["cracked", "uncracked"]
    for name in class_dirs:
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == [f"{name}_{i:04d}.png" for i in range(3)]
        for f in files:
            with Image.open(out / name / f) as image:
                assert (image.size, image.mode) == ((64, 64), "RGB")
    assert sorted(p.name for p in (out / ".masks").iterdir()) == [
        f"cracked_{i:04d}.png" for i in range(3)
    ]
    readme = (out / "README.md").read_text()
    assert "seed=1" in readme and "n_per_class=3" in readme
    with open(out / "tiles.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows][:1] == ["cracked/cracked_0000.png"] and len(rows) == 6
    assert all(float(r["crack_share"]) > 0 for r in rows if r["class"] == "cracked")
    assert all(float(r["crack_share"]) == 0 for r in rows if r["class"] == "uncracked")


def test_synthetic_is_deterministic_by_seed(tmp_path):
    a = _pngs(make_synthetic_cracks(tmp_path / "a", 4, size=64, masks=True, verbose=0))
    b = _pngs(make_synthetic_cracks(tmp_path / "b", 4, size=64, masks=True, verbose=0))
    c = _pngs(make_synthetic_cracks(tmp_path / "c", 4, size=64, seed=7, verbose=0))
    assert a == b
    images = [k for k in c if not k.startswith(".")]
    assert all(a[k] != c[k] for k in images)


def test_image_i_does_not_depend_on_n_per_class(tmp_path):
    small = _pngs(make_synthetic_cracks(tmp_path / "small", 3, size=64, verbose=0))
    large = _pngs(make_synthetic_cracks(tmp_path / "large", 6, size=64, verbose=0))
    assert len(large) == 12
    assert all(large[k] == v for k, v in small.items())


def test_masks_only_for_cracked_and_aligned_with_dark_pixels(tmp_path):
    out = make_synthetic_cracks(tmp_path / "syn", 8, size=128, masks=True, verbose=0)
    assert not synthetic_mask_path(out / "uncracked" / "uncracked_0000.png").exists()
    for path in sorted((out / "cracked").glob("*.png")):
        mask = _grey(synthetic_mask_path(path)) > 127
        assert set(np.unique(_grey(synthetic_mask_path(path)))) <= {0.0, 255.0}
        grey = _grey(path)
        near = _dilate(mask, 4) & ~_dilate(mask, 1)  # a ring of background around the crack
        assert grey[mask].mean() < grey[near].mean() - 8, path.name


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    padded = np.pad(mask, radius)
    h, w = mask.shape
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def test_cracks_cover_a_small_share(tmp_path):
    out = make_synthetic_cracks(tmp_path / "syn", 12, size=224, masks=True, verbose=0)
    shares = [(_grey(p) > 127).mean() for p in sorted((out / ".masks").glob("*.png"))]
    assert len(shares) == 12
    assert 0.005 <= min(shares) and max(shares) <= 0.08
    assert 0.01 <= np.mean(shares) <= 0.04


def test_global_brightness_statistics_do_not_give_the_class_away(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # 100 tiles a class: the class means differ by sampling noise of ~0.14 pooled std only.
    out = make_synthetic_cracks(tmp_path / "syn", 100, size=96, verbose=0)
    features, labels = [], []
    for label, name in enumerate(("cracked", "uncracked")):
        for path in sorted((out / name).glob("*.png")):
            grey = _grey(path)
            features.append([grey.mean(), grey.std()])
            labels.append(label)
    features, labels = np.array(features), np.array(labels)
    means = features[:, 0]
    pooled = np.sqrt((means[labels == 0].var() + means[labels == 1].var()) / 2)
    assert abs(means[labels == 0].mean() - means[labels == 1].mean()) < 0.5 * pooled
    model = make_pipeline(StandardScaler(), LogisticRegression())
    accuracy = cross_val_score(model, features, labels, cv=5).mean()
    assert accuracy < 0.75


def test_same_arguments_return_at_once(tmp_path, monkeypatch):
    out = make_synthetic_cracks(tmp_path / "syn", 2, size=48, verbose=0)
    before = _pngs(out)

    def must_not_draw(*args, **kwargs):
        raise AssertionError("regenerated")

    monkeypatch.setattr(synthetic, "_draw_tile", must_not_draw)
    assert make_synthetic_cracks(tmp_path / "syn", 2, size=48, verbose=0) == out
    assert _pngs(out) == before


def test_other_arguments_or_overwrite_regenerate(tmp_path, monkeypatch):
    out = make_synthetic_cracks(tmp_path / "syn", 2, size=48, masks=True, verbose=0)
    make_synthetic_cracks(out, 3, size=48, verbose=0)
    assert len(list((out / "cracked").glob("*.png"))) == 3
    assert not (out / ".masks").exists()  # the old folder was replaced, not merged into
    drawn = []
    real = synthetic._draw_tile
    monkeypatch.setattr(synthetic, "_draw_tile", lambda *a, **k: drawn.append(1) or real(*a, **k))
    make_synthetic_cracks(out, 3, size=48, verbose=0, overwrite=True)
    assert len(drawn) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no temp folders left


def test_interrupted_generation_keeps_the_old_folder(tmp_path, monkeypatch):
    out = make_synthetic_cracks(tmp_path / "syn", 2, size=48, verbose=0)
    before = _pngs(out)
    real = synthetic._draw_tile
    count = {"n": 0}

    def crash_on_third(*args, **kwargs):
        count["n"] += 1
        if count["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_draw_tile", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_cracks(out, 4, size=48, verbose=0)
    assert _pngs(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


def test_foreign_folder_is_never_overwritten(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not empty"):
            make_synthetic_cracks(foreign, 2, size=48, overwrite=overwrite, verbose=0)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with pytest.raises(FileExistsError):
        make_synthetic_cracks(a_file, 1, size=48, verbose=0)
    assert a_file.read_text() == "not a folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(_pngs(make_synthetic_cracks(empty, 1, size=48, verbose=0))) == 2


def test_custom_class_names(tmp_path):
    out = make_synthetic_cracks(tmp_path / "syn", 4, size=48, class_names=("CD", "UD"), verbose=0)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["CD", "UD"]
    with open(out / "tiles.csv", newline="") as handle:
        assert sorted({r["class"] for r in csv.DictReader(handle)}) == ["CD", "UD"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_per_class": 0}, "n_per_class: expected an integer >= 1"),
        ({"size": 16}, "size: expected an integer >= 32"),
        ({"seed": -1}, "seed: expected an integer >= 0"),
        ({"class_names": ("a", "a")}, "class_names: expected two different folder names"),
        ({"class_names": (".hidden", "b")}, "class_names"),
        ({"class_names": "ab"}, "class_names"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path, kwargs, match):
    args = {"n_per_class": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_synthetic_cracks(tmp_path / "syn", verbose=0, **args)
    assert not (tmp_path / "syn").exists()


def test_synthetic_mask_path_maps_class_folder_to_masks_folder():
    assert synthetic_mask_path(Path("/x/syn/cracked/cracked_0007.png")) == Path(
        "/x/syn/.masks/cracked_0007.png"
    )


_UNPACK_AT_ONCE = """
import sys, time
from pathlib import Path
from vitl.datasets import sdnet2018_decks
data_dir, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    pass
folder = sdnet2018_decks(data_dir=data_dir)
until = time.time() + 1.0  # keep reading: a second unpacker must not swap the folder away
while time.time() < until:
    print(len(list(Path(folder).glob("*/*.jpg"))))
"""


def test_notebooks_starting_together_unpack_the_sample_once(tmp_path):
    # Two notebooks on a fresh laptop: the second unpacker replaced the folder the first
    # was already reading (a moment without it), and both unpacked.
    if not any((_REAL_MIRROR / n).is_file() for n in datasets.SDNET2018_ZIP_NAMES):
        pytest.skip(f"no SDNET2018 zip in {_REAL_MIRROR} (set VITL_DATA_MIRROR)")
    for round_ in range(5):
        data_dir, start = tmp_path / f"data{round_}", time.time() + 2  # after the imports
        workers = together.start(_UNPACK_AT_ONCE, [(data_dir, start)] * 3,
                                 VITL_DATA_MIRROR=str(_REAL_MIRROR))
        outputs = [out.splitlines() for out in together.outputs(workers)]
        assert sum("sha256 ok" in lines[0] for lines in outputs) == 1, outputs
        assert {count for lines in outputs for count in lines[1:]} == {"400"}
        assert sorted(p.name for p in data_dir.iterdir()) == ["sdnet2018-decks"]


_SYNTHETIC_AT_ONCE = """
import os, sys, time
from vitl.datasets import make_synthetic_cracks
out_dir, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    pass
folder = make_synthetic_cracks(out_dir, 20, size=64, verbose=0)
first = os.stat(folder).st_ino
time.sleep(0.5)  # a second writer must not swap the folder away meanwhile
print(first, os.stat(folder).st_ino, len(list(folder.glob("*/*.png"))))
"""


def test_notebooks_starting_together_make_the_synthetic_set_once(tmp_path):
    # Before: each process wrote the tiles and swapped its folder in, under the others' readers.
    for round_ in range(3):
        out_dir, start = tmp_path / f"syn{round_}", time.time() + 2  # after the imports
        workers = together.start(_SYNTHETIC_AT_ONCE, [(out_dir, start)] * 3)
        seen = set()
        for out in together.outputs(workers):
            first, last, count = out.split()
            assert count == "40"
            seen |= {first, last}
        assert len(seen) == 1, "the folder was written more than once"


@pytest.mark.parametrize("without", ["fcntl", "flock"])
def test_folder_lock_runs_the_block_unlocked_where_there_is_no_flock(tmp_path, monkeypatch,
                                                                      without):
    from vitl import _files

    if without == "fcntl":  # Windows has no fcntl module
        monkeypatch.setattr(_files, "fcntl", None)
    else:  # some network file systems refuse flock
        def refuse(fd, operation):
            raise OSError(errno.ENOLCK, "No locks available")

        monkeypatch.setattr(_files.fcntl, "flock", refuse)
    opened = len(os.listdir("/proc/self/fd"))
    with _files.folder_lock(tmp_path / "new"):
        ran = True
    assert ran and (tmp_path / "new").is_dir()
    assert len(os.listdir("/proc/self/fd")) == opened  # no descriptor left open
