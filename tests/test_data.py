"""Tests for vitl.data: reading pixels, loading image folders, summaries and splits."""

from __future__ import annotations

import builtins
import io
import os
import unicodedata
import warnings

import numpy as np
import pytest
from PIL import Image

from vitl import data
from vitl.cli import main as cli_main
from vitl.data import (
    TUTORIAL_FRACTIONS,
    BadImageError,
    ImageCollection,
    load_image_folder,
    load_split_folders,
    part_sizes,
    read_image,
    split,
    split_folders,
    tutorial_split,
)

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def save(path, image=None, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    (image or Image.new("RGB", (12, 8), (90, 120, 150))).save(path, **kwargs)
    return path


def noise_jpeg_bytes(size=64):
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def close(actual, expected, tol=6):
    return np.all(np.abs(np.asarray(actual, int) - np.asarray(expected, int)) <= tol)


# ---------------------------------------------------------------- read_image


def test_grayscale_and_bilevel_become_rgb(tmp_path):
    grey = read_image(save(tmp_path / "g.png", Image.new("L", (5, 3), 100)))
    assert grey.shape == (3, 5, 3) and grey.dtype == np.uint8
    assert (grey == 100).all()
    bilevel = read_image(save(tmp_path / "b.png", Image.new("1", (4, 4), 1)))
    assert bilevel.shape == (4, 4, 3) and (bilevel == 255).all()


def test_rgba_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (3, 1))
    image.putdata([(255, 0, 0, 255), (0, 0, 255, 0), (0, 0, 0, 128)])
    pixels = read_image(save(tmp_path / "a.png", image))
    assert pixels.shape == (1, 3, 3)
    assert pixels[0, 0].tolist() == list(RED)
    assert pixels[0, 1].tolist() == list(WHITE)  # fully transparent
    assert close(pixels[0, 2], (127, 127, 127), tol=1)  # half transparent black


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette(list(RED) + [0, 255, 0] + [0] * 762)
    image.putdata([0, 1])
    pixels = read_image(save(tmp_path / "p.png", image, transparency=1))
    assert pixels[0, 0].tolist() == list(RED)
    assert pixels[0, 1].tolist() == list(WHITE)


def test_cmyk_jpeg(tmp_path):
    path = save(tmp_path / "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)))
    assert Image.open(path).mode == "CMYK"
    pixels = read_image(path)
    assert pixels.shape == (8, 8, 3)
    assert close(pixels[4, 4], RED, tol=40)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535, 257, 128, 65000]], dtype=np.uint16)
    path = save(tmp_path / "deep.png", Image.fromarray(values))
    assert Image.open(path).mode == "I;16"
    pixels = read_image(path)
    assert pixels.shape == (1, 6, 3)
    assert pixels[0, :, 0].tolist() == [0, 128, 255, 1, 0, 253]
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_32_bit_integer_mode_is_read_as_16_bit_range(tmp_path):
    values = np.array([[0, 32768, 65535]], dtype=np.int32)
    path = save(tmp_path / "deep.tif", Image.fromarray(values))
    assert Image.open(path).mode == "I"
    assert read_image(path)[0, :, 1].tolist() == [0, 128, 255]


def test_one_pixel_and_resize(tmp_path):
    path = save(tmp_path / "dot.bmp", Image.new("RGB", (1, 1), BLUE))
    assert read_image(path).tolist() == [[list(BLUE)]]
    assert read_image(path, size=4).shape == (4, 4, 3)
    assert (read_image(path, size=(3, 5)) == BLUE).all(axis=-1).all()


def test_resize_is_deterministic_and_uses_draft_for_jpeg(tmp_path):
    path = tmp_path / "noise.jpg"
    path.write_bytes(noise_jpeg_bytes(256))
    first, second = read_image(path, size=(32, 48)), read_image(path, size=(32, 48))
    assert first.shape == (32, 48, 3)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("size", [0, -3, (2,), (4, 0), 2.5, True])
def test_bad_size_argument(tmp_path, size):
    with pytest.raises(ValueError, match="size") as info:
        read_image(save(tmp_path / "x.png"), size=size)
    assert not isinstance(info.value, BadImageError)


def make_exif_rotated(path):
    """Stored 40 wide x 20 high, red 10x10 block in the stored top-left, orientation 6."""
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return save(path, stored, exif=exif, quality=95)


def test_exif_orientation_is_applied(tmp_path):
    pixels = read_image(make_exif_rotated(tmp_path / "phone.jpg"))
    assert pixels.shape == (40, 20, 3)  # upright: 20 wide, 40 high
    assert close(pixels[3, 16], RED, tol=40)  # stored top-left lands top-right
    assert close(pixels[3, 3], BLUE, tol=40)
    assert close(pixels[36, 3], BLUE, tol=40)
    small = read_image(tmp_path / "phone.jpg", size=(20, 10))
    assert small.shape == (20, 10, 3)
    assert small[1, 8, 0] > 150 and small[1, 1, 0] < 100


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), RED), Image.new("RGB", (6, 6), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 2
    pixels = read_image(path)
    assert pixels.shape == (6, 6, 3) and close(pixels[3, 3], RED, tol=2)


@pytest.mark.slow
def test_10000_by_10000_image_loads(tmp_path):
    path = save(tmp_path / "huge.jpg", Image.new("L", (10_000, 10_000), 90), quality=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        small = read_image(path, size=(100, 50))
        full = read_image(path)
    assert small.shape == (100, 50, 3) and close(small[50, 25], (90, 90, 90), tol=2)
    assert full.shape == (10_000, 10_000, 3) and full.dtype == np.uint8
    assert close(full[9_999, 9_999], (90, 90, 90), tol=2)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_images_above_the_pixel_limit_are_bad(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(BadImageError, match="too many pixels"):
        read_image(save(tmp_path / "a.png", Image.new("RGB", (15, 10))))  # Pillow only warns
    with pytest.raises(BadImageError, match="too many pixels"):
        read_image(save(tmp_path / "b.png", Image.new("RGB", (20, 20))))  # Pillow refuses


def test_pixel_limit_allows_100_megapixels():
    assert Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS >= 100_000_000


@pytest.mark.parametrize("kind, reason", [
    ("empty", "empty file"), ("random", "not an image"), ("text", "not an image"),
    ("truncated", "truncated"), ("missing", "not found"), ("folder", "directory"),
])
def test_bad_files_raise_bad_image_error(tmp_path, kind, reason):
    path = tmp_path / "bad.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 999, dtype=np.uint8).tobytes())
    elif kind == "text":
        path.write_text("hello, I am not a picture")
    elif kind == "truncated":
        whole = noise_jpeg_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(BadImageError, match=reason) as info:
        read_image(path)
    assert isinstance(info.value, ValueError)
    assert info.value.path == path and str(path) in str(info.value)


# --------------------------------------------------------- load_image_folder


def test_loads_the_shared_fixture(image_folder):
    images = load_image_folder(image_folder, verbose=0)
    assert images.class_names == ["cracked", "intact"]
    assert images.counts() == {"cracked": 6, "intact": 6}
    assert images.labels.dtype == np.int64 and images.labels.tolist() == [0] * 6 + [1] * 6
    assert all(p.is_absolute() for p in images.paths)
    assert images.relative_paths()[:2] == ["cracked/0.jpg", "cracked/1.png"]
    assert len(images.report) == 0
    assert repr(images).startswith("ImageCollection(12 images, classes cracked=6, intact=6")


def test_names_extensions_nesting_and_hidden_files(tmp_path):
    root = tmp_path / "data"
    for name in ["fissure é 1.jpg", "裂缝.png", "a.JPG", "b.Png", "c.JpEg", "d.BMP",
                 "deep/er/e.png"]:
        save(root / "cracked" / name)
    save(root / "cracked" / "f.GIF", Image.new("P", (4, 4)))
    (root / "cracked" / "notes.txt").write_text("not an image")
    save(root / "cracked" / "scan.tif")
    save(root / "cracked" / ".hidden.jpg")
    save(root / "cracked" / ".thumbs" / "x.jpg")
    save(root / ".git" / "y.jpg")
    save(root / "intact" / "ok.jpeg")
    images = load_image_folder(root, verbose=0)
    assert images.relative_paths() == [
        "cracked/a.JPG", "cracked/b.Png", "cracked/c.JpEg", "cracked/d.BMP",
        "cracked/deep/er/e.png", "cracked/f.GIF", "cracked/fissure é 1.jpg", "cracked/scan.tif",
        "cracked/裂缝.png", "intact/ok.jpeg"]
    assert images.labels.tolist() == [0] * 9 + [1]
    assert len(images.report) == 0
    assert sorted(p.name for p in images.report.ignored) == ["notes.txt"]
    for path in images.paths:
        pixels = read_image(path)
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3


def test_bad_files_are_skipped_reported_and_warned(tmp_path, monkeypatch):
    root = tmp_path / "data"
    good = [save(root / "cracked" / "good1.png"), save(root / "cracked" / "good2.jpg"),
            save(root / "cracked" / "x.jpg" / "inside.png")]  # a folder named like an image
    save(root / "cracked" / "locked.jpg")
    (root / "cracked" / "corrupt.jpg").write_bytes(
        np.random.default_rng(2).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    whole = noise_jpeg_bytes()
    (root / "cracked" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), np.uint8)).save(
        png, format="PNG")
    (root / "cracked" / "truncated.png").write_bytes(png.getvalue()[:3000])
    (root / "cracked" / "empty.jpg").write_bytes(b"")
    (root / "cracked" / "notes.png").write_text("not a picture")
    (root / "cracked" / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    good += [save(root / "intact" / f"{i}.png") for i in range(3)]
    save(root / "stray.jpg")  # not inside a class folder

    real_open = builtins.open

    def open_refusing_locked(file, *args, **kwargs):  # tests run as root: chmod cannot deny
        if str(file).endswith("locked.jpg"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(data, "open", open_refusing_locked, raising=False)
    with pytest.warns(UserWarning) as caught:
        images = load_image_folder(root, verbose=0)

    assert sorted(images.paths) == sorted(p.absolute() for p in good)
    assert images.counts() == {"cracked": 3, "intact": 3}
    reasons = {item.path.name: item.reason for item in images.report.skipped}
    assert len(images.report) == 8
    assert "permission denied" in reasons["locked.jpg"]
    assert "not an image" in reasons["corrupt.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "truncated" in reasons["truncated.png"].lower()
    assert "empty file" in reasons["empty.jpg"]
    assert "not an image" in reasons["notes.png"]
    assert "not found" in reasons["dangling.jpg"]
    assert "not in a class folder" in reasons["stray.jpg"]
    messages = "\n".join(str(w.message) for w in caught)
    text = str(images.report)
    for name in reasons:
        assert name in messages and name in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads chmod 000 files")
def test_chmod_000_file_is_reported(tmp_path):
    root = tmp_path / "data"
    save(root / "a" / "ok.png")
    locked = save(root / "a" / "locked.png")
    save(root / "b" / "ok.png")
    locked.chmod(0)
    with pytest.warns(UserWarning, match="locked.png"):
        images = load_image_folder(root, verbose=0)
    assert images.report.skipped[0].reason == "permission denied"


def test_symlink_loops_and_duplicates_do_not_hang(tmp_path):
    root = tmp_path / "data"
    save(root / "cracked" / "a.png")
    save(root / "cracked" / "sub" / "b.png")
    (root / "cracked" / "sub" / "loop").symlink_to(root / "cracked", target_is_directory=True)
    save(root / "intact" / "c.png")
    (root / "intact" / "self.jpg").symlink_to(root / "intact" / "self.jpg")
    (root / "intact" / "again").symlink_to(root / "cracked" / "sub", target_is_directory=True)
    with pytest.warns(UserWarning) as caught:
        images = load_image_folder(root, verbose=0)
    assert len(caught) == 3 and "symlink loop" in str(caught[0].message)
    assert images.relative_paths() == ["cracked/a.png", "cracked/sub/b.png", "intact/c.png"]
    reasons = {item.path.name: item.reason for item in images.report.skipped}
    assert reasons["loop"].startswith("symlink loop")
    assert "already included" in reasons["again"]
    assert "symbolic links" in reasons["self.jpg"]


def test_symlinked_folders_can_be_ignored(tmp_path):
    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    save(elsewhere / "far.png")
    save(root / "cracked" / "a.png")
    save(root / "intact" / "b.png")
    (root / "cracked" / "linked").symlink_to(elsewhere, target_is_directory=True)
    followed = load_image_folder(root, verbose=0)
    assert "cracked/linked/far.png" in followed.relative_paths()
    with pytest.warns(UserWarning, match="not followed"):
        strict = load_image_folder(root, follow_symlinks=False, verbose=0)
    assert strict.relative_paths() == ["cracked/a.png", "intact/b.png"]


def test_validate_false_lists_without_decoding(tmp_path):
    root = tmp_path / "data"
    save(root / "a" / "ok.png")
    (root / "a" / "bad.png").write_text("not a picture")
    save(root / "b" / "ok.png")
    images = load_image_folder(root, validate=False, verbose=0)
    assert images.relative_paths() == ["a/bad.png", "a/ok.png", "b/ok.png"]


def test_error_missing_root(tmp_path):
    with pytest.raises(ValueError, match="existing folder") as info:
        load_image_folder(tmp_path / "nope")
    assert "nope" in str(info.value) and "Fix:" in str(info.value)


def test_error_root_is_a_file(tmp_path):
    archive = tmp_path / "assets.zip"
    archive.write_bytes(b"PK")
    with pytest.raises(ValueError, match="unzip") as info:
        load_image_folder(archive)
    assert "the file" in str(info.value) and "assets.zip" in str(info.value)


def test_error_no_class_folders(tmp_path):
    save(tmp_path / "a.jpg")
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="no sub-folders") as info:
        load_image_folder(tmp_path)
    assert "1 images, 1 other files" in str(info.value)


def test_error_one_class_folder(tmp_path):
    save(tmp_path / "cracked" / "a.png")
    with pytest.raises(ValueError, match="only one: 'cracked'") as info:
        load_image_folder(tmp_path)
    assert "two or more classes" in str(info.value)
    save(tmp_path / "cracked" / "CD" / "a.png")  # looks like the parent of the real root
    with pytest.raises(ValueError, match="pass .*cracked"):
        load_image_folder(tmp_path)


def test_error_empty_class_folder_is_named(tmp_path):
    save(tmp_path / "cracked" / "a.png")
    (tmp_path / "intact").mkdir()
    (tmp_path / "intact" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no usable image in 'intact'"):
        load_image_folder(tmp_path, verbose=0)


def test_error_class_with_only_bad_files(tmp_path):
    save(tmp_path / "cracked" / "a.png")
    (tmp_path / "intact").mkdir()
    (tmp_path / "intact" / "x.jpg").write_bytes(b"")
    (tmp_path / "intact" / "y.png").write_text("nope")
    bad_class = r"'intact' \(all 2 files bad\)"
    with pytest.warns(UserWarning) as caught, pytest.raises(ValueError, match=bad_class):
        load_image_folder(tmp_path, verbose=0)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and "x.jpg: empty file" in messages[0] and "y.png" in messages[1]


# ----------------------------------------------------------- ImageCollection


def fake(counts: dict[str, int], root="/data") -> ImageCollection:
    paths = [f"{root}/{name}/img_{i:04d}.jpg" for name, n in counts.items() for i in range(n)]
    labels = [name for name, n in counts.items() for _ in range(n)]
    return ImageCollection.from_paths(paths, labels, list(counts))


def test_from_paths_names_ints_and_root():
    by_name = fake({"a": 2, "b": 1})
    assert by_name.labels.tolist() == [0, 0, 1]
    assert str(by_name.root) == "/data"
    assert by_name.relative_paths() == ["a/img_0000.jpg", "a/img_0001.jpg", "b/img_0000.jpg"]
    by_int = ImageCollection.from_paths(["/x/1.png", "/x/2.png"], [1, 0], ["a", "b"], root="/")
    assert by_int.labels.tolist() == [1, 0] and by_int.relative_paths() == ["x/1.png", "x/2.png"]
    assert by_int.counts() == {"a": 1, "b": 1}


@pytest.mark.parametrize("labels, match", [([0], "one label per path"),
                                           (["a", "zebra"], "zebra"), ([0, 5], "0..1")])
def test_from_paths_errors(labels, match):
    with pytest.raises(ValueError, match=match):
        ImageCollection.from_paths(["/d/a/1.png", "/d/b/2.png"], labels, ["a", "b"])


@pytest.mark.parametrize("labels, received", [([0], "1 labels, values 0..0"),
                                              ([0, 2], "2 labels, values 0..2"),
                                              ([-1, 0], "2 labels, values -1..0")])
def test_direct_construction_checks_labels_too(labels, received):
    with pytest.raises(ValueError, match=rf"^labels: expected one integer in 0..1 per path \(2\), "
                       rf"received '{received}'. Fix: pass one label per path"):
        ImageCollection("/d", ["/d/a/1.png", "/d/b/2.png"], labels, ["a", "b"])


def test_split_table_keeps_a_class_named_total():
    c = ImageCollection.from_paths([f"/d/x/{i}.png" for i in range(6)] +
                                   [f"/d/total/{i}.png" for i in range(4)],
                                   ["x"] * 6 + ["total"] * 4, ["total", "x"])
    rows = [line.split() for line in str(split(c, 0.5, 0.5, 0.0, seed=0)).splitlines()]
    assert rows == [["class", "train", "validation", "test", "total"],
                    ["total", "2", "2", "0", "4"], ["x", "3", "3", "0", "6"],
                    ["total", "5", "5", "0", "10"]]


def test_subset_by_indices_and_mask():
    c = fake({"a": 3, "b": 2})
    picked = c.subset([4, 0])
    assert picked.relative_paths() == ["b/img_0001.jpg", "a/img_0000.jpg"]
    assert picked.labels.tolist() == [1, 0] and picked.class_names == ["a", "b"]
    only_b = c.subset(c.labels == 1)
    assert len(only_b) == 2 and only_b.counts() == {"a": 0, "b": 2}
    assert len(c.subset([])) == 0


def test_summary_sizes_and_table(tmp_path):
    root = tmp_path / "data"
    save(root / "a" / "small.png", Image.new("RGB", (10, 5)))
    save(root / "a" / "big.png", Image.new("RGB", (25, 30)))
    make_exif_rotated(root / "b" / "phone.jpg")  # stored 40x20, shown 20x40: the largest
    summary = load_image_folder(root, verbose=0).summary()
    assert summary.counts == {"a": 2, "b": 1}
    assert summary.smallest == (10, 5) and summary.largest == (20, 40)
    text = str(summary)
    rows = [line.split() for line in text.splitlines()]
    assert ["a", "2"] in rows and ["b", "1"] in rows and ["total", "3"] in rows
    assert "image size (WxH): 10x5 to 20x40" in text
    assert "class 'b' has only 1 image;" in text and "imbalance" not in text


def test_summary_warns_about_classes_that_differ_only_in_case():
    # a photo dropped into "cd/" next to "CD/" on Linux makes a third class of one image
    summary = fake({"CD": 60, "UD": 60, "cd": 60}).summary()
    case = [w for w in summary.warnings if "letter case" in w]
    assert len(case) == 1 and "'CD'" in case[0] and "'cd'" in case[0]
    assert not any("letter case" in w for w in fake({"CD": 60, "UD": 60}).summary().warnings)


def test_summary_warns_about_imbalance():
    summary = fake({"ok": 40, "defect": 10}).summary()
    imbalance = [w for w in summary.warnings if "imbalance" in w]
    assert len(imbalance) == 1 and "'ok' has 40" in imbalance[0] and "4.0:1" in imbalance[0]
    # says how to weight the classes, in Python and on the command line
    assert imbalance[0].endswith("read per-class recall (macro accuracy) or weight the classes: "
                                 "HeadConfig(class_weight='balanced'), vitl train "
                                 "--class-weight balanced")
    assert any("50 image headers could not be read" in w for w in summary.warnings)
    assert not any("imbalance" in w for w in fake({"ok": 30, "defect": 10}).summary().warnings)


# --------------------------------------------------------------------- split


def parts_of(parts) -> dict[str, int]:
    return {rel: k for k, part in enumerate(parts) for rel in part.relative_paths()}


def test_split_is_a_deterministic_partition():
    c = fake({"a": 120, "b": 80})
    first, second = split(c), split(c)
    assert parts_of(first) == parts_of(second)
    assert sorted(parts_of(first)) == sorted(c.relative_paths())
    assert sum(len(p) for p in first) == len(c)
    assert first.train.class_names == ["a", "b"]


def test_split_moves_few_files_when_files_are_added():
    for seed in (None, 7):
        before = parts_of(split(fake({"a": 300, "b": 200}), seed=seed))
        after = parts_of(split(fake({"a": 400, "b": 260}), seed=seed))
        moved = sum(after[rel] != part for rel, part in before.items())
        assert 0 < moved < 0.05 * len(before)  # only files near a part boundary move


def test_split_is_stratified_with_exact_per_class_counts():
    parts = split(fake({"a": 500, "b": 300, "c": 7}), 0.7, 0.15, 0.15)
    assert [p.counts() for p in parts] == [{"a": 350, "b": 210, "c": 5},
                                           {"a": 75, "b": 45, "c": 1},
                                           {"a": 75, "b": 45, "c": 1}]
    order_free = fake({"a": 500, "b": 300, "c": 7})
    shuffled = order_free.subset(np.random.default_rng(0).permutation(len(order_free)))
    assert parts_of(split(shuffled)) == parts_of(split(order_free))


@pytest.mark.parametrize(("n", "fractions", "sizes"), [
    (200, (0.7, 0.27, 0.03), [140, 54, 6]), (10, (0.7, 0.27, 0.03), [7, 2, 1]),
    (11, (0.9, 0.1, 0.0), [10, 1, 0]), (2, (0.7, 0.15, 0.15), [1, 1, 0]),
    (1, (0.5, 0.5, 0.0), [1, 0, 0]), (3, (0.7, 0.15, 0.15), [1, 1, 1])])
def test_part_sizes_exact_and_every_part_filled(n, fractions, sizes):
    assert part_sizes(n, fractions) == sizes


def test_tutorial_split_fractions():
    assert TUTORIAL_FRACTIONS == (0.70, 0.27, 0.03)
    parts = tutorial_split(fake({"a": 1000, "b": 1000}))
    assert [len(p) for p in parts] == [1400, 540, 60]
    assert parts_of(parts) == parts_of(split(fake({"a": 1000, "b": 1000}), 0.7, 0.27, 0.03))


def test_seed_changes_the_assignment():
    c = fake({"a": 100, "b": 100})
    plain, one, two = parts_of(split(c)), parts_of(split(c, seed=1)), parts_of(split(c, seed=2))
    assert plain != one and one != two
    assert one == parts_of(split(c, seed=1))


def test_every_class_reaches_every_part():
    c = fake({f"class{k:02d}": 4 for k in range(30)})
    parts = split(c, 0.7, 0.15, 0.15)
    for part in parts:
        assert min(part.counts().values()) >= 1


def test_tiny_classes():
    parts = split(fake({"big": 200, "three": 3, "two": 2, "one": 1}))
    counts = [p.counts() for p in parts]
    assert [c["three"] for c in counts] == [1, 1, 1]
    assert [c["two"] for c in counts] == [1, 1, 0]
    assert [c["one"] for c in counts] == [1, 0, 0]
    assert sum(c["big"] for c in counts) == 200


def test_zero_fraction_part_stays_empty():
    parts = split(fake({"a": 50, "tiny": 3}), 0.8, 0.0, 0.2)
    assert len(parts.validation) == 0
    assert parts.test.counts()["tiny"] >= 1 and parts.train.counts()["tiny"] >= 1


def test_unicode_normalisation_does_not_change_the_split():
    names = ["é", "ü", "ñ", "å"] * 10
    paths = [f"/d/a/{n}{i}.jpg" for i, n in enumerate(names)]
    nfc = ImageCollection.from_paths(paths, [0] * 40, ["a"])
    nfd = ImageCollection.from_paths([unicodedata.normalize("NFD", p) for p in paths],
                                     [0] * 40, ["a"])
    assert [len(p) for p in split(nfc)] == [len(p) for p in split(nfd)]
    assert [p.labels.tolist() for p in split(nfc)] == [p.labels.tolist() for p in split(nfd)]
    strip = [[unicodedata.normalize("NFC", r) for r in p.relative_paths()] for p in split(nfd)]
    assert strip == [p.relative_paths() for p in split(nfc)]


@pytest.mark.parametrize("fractions, match", [
    ((0.7, 0.2, 0.2), "= 1"), ((0.0, 0.5, 0.5), "train > 0"), ((1.2, -0.1, -0.1), "train"),
])
def test_bad_fractions(fractions, match):
    with pytest.raises(ValueError, match=match):
        split(fake({"a": 5, "b": 5}), *fractions)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        split(fake({"a": 5, "b": 5}), seed="42")


def test_split_table(image_folder):
    parts = tutorial_split(load_image_folder(image_folder, verbose=0))
    lines = str(parts).splitlines()
    assert lines[0].split() == ["class", "train", "validation", "test", "total"]
    assert lines[1].split()[0] == "cracked" and lines[1].split()[-1] == "6"
    assert lines[-1].split() == ["total"] + [str(len(p)) for p in parts] + ["12"]
    assert all(n >= 1 for n in (len(parts.train), len(parts.validation), len(parts.test)))


# ----------------------------------------------------------------------- CLI


def test_cli_data_prints_summary_report_and_split(image_folder, capsys):
    (image_folder / "intact" / "broken.jpg").write_bytes(b"")
    assert cli_main(["data", str(image_folder), "--split", "tutorial"]) == 0
    out = capsys.readouterr().out
    assert "cracked" in out and "total" in out and "image size (WxH): 24x16 to 24x16" in out
    assert "broken.jpg: empty file (0 bytes)" in out
    assert "validation" in out and "split (tutorial" in out


def test_cli_data_without_split(image_folder, capsys):
    assert cli_main(["data", str(image_folder), "--no-split"]) == 0
    assert "validation" not in capsys.readouterr().out


def test_cli_data_bad_folder_exits_2(tmp_path, capsys):
    assert cli_main(["data", str(tmp_path / "missing")]) == 2
    assert "expected an existing folder" in capsys.readouterr().err


@pytest.mark.parametrize("verbose", ["bar", 3, -1, None])
def test_verbose_is_0_1_or_2(tmp_path, verbose):
    with pytest.raises(ValueError, match="verbose: expected 0"):
        load_image_folder(tmp_path, verbose=verbose)


# ---------------------------------------------------------------- folders already split


@pytest.mark.parametrize("val_name", ["validation", "val"])
def test_split_folders_are_loaded_as_given(tmp_path, val_name):
    for part, n in (("train", 3), (val_name, 2)):
        for label in ("cracked", "intact"):
            for i in range(n):
                save(tmp_path / part / label / f"{i}.png")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / val_name / "cracked" / "bad.png").write_bytes(b"not an image")
    assert split_folders(tmp_path) == {"train": tmp_path / "train",
                                       "validation": tmp_path / val_name, "test": None}
    with pytest.warns(UserWarning, match="bad.png"):
        parts = load_split_folders(tmp_path, verbose=0)
    assert [part.counts() for part in parts] == [{"cracked": 3, "intact": 3},
                                                 {"cracked": 2, "intact": 2},
                                                 {"cracked": 0, "intact": 0}]
    assert [s.path.name for s in parts.validation.report.skipped] == ["bad.png"]
    assert parts.test.class_names == ["cracked", "intact"]


def test_a_class_folder_is_not_a_split_folder(tmp_path):
    for label in ("train", "cracked"):
        save(tmp_path / label / "0.png")
    assert split_folders(tmp_path) is None
    with pytest.raises(ValueError, match=r"split folder: expected train/ .*Fix: pass such"):
        load_split_folders(tmp_path)


def test_a_pil_image_given_to_a_model_gets_a_fix_not_a_type_error():
    # clf.classify([Image.open("photo.jpg")]) is a natural first try
    with pytest.raises(ValueError, match=r"images: expected .*received 'a JpegImageFile.*Fix: .*"
                                         r"np\.asarray"):
        data.paths_or_arrays([Image.open(io.BytesIO(noise_jpeg_bytes()))])


def test_summary_warns_when_the_class_folders_are_one_level_down(tmp_path):
    # `vitl data data/` instead of `vitl data data/sdnet2018-decks`: the data sets become classes
    for dataset, classes in {"decks": ("CD", "UD"), "walls": ("cracked", "intact")}.items():
        for name in classes:
            for i in range(2):
                save(tmp_path / dataset / name / f"{i}.png", Image.new("RGB", (8, 8)))
    summary = load_image_folder(tmp_path, verbose=0).summary()
    nested = [w for w in summary.warnings if "sub-folders" in w]
    assert len(nested) == 1 and "'decks' (CD, UD)" in nested[0] and str(tmp_path / "decks") in \
        nested[0]
    flat = fake({"CD": 60, "UD": 60}).summary()
    assert not any("sub-folders" in w for w in flat.warnings)


@pytest.mark.parametrize("given, received", [
    (("/data/sdnet2018-decks", "SDNET2018 deck sample, from ..."), "tuple"),
    ("/data/sdnet2018-decks", "str"),
])
def test_splitting_something_else_than_a_collection_says_how_to_load_one(given, received):
    with pytest.raises(ValueError) as raised:
        tutorial_split(given)
    message = str(raised.value)
    assert message.startswith("collection: expected an ImageCollection") and received in message
    assert "load_image_folder" in message, message


def test_summary_warns_when_image_shapes_differ(tmp_path):
    # every image is stretched to a square: a 300x900 photo is squashed 3x, a 400x300 one not
    save(tmp_path / "ok" / "tall.png", Image.new("RGB", (300, 900)))
    save(tmp_path / "ok" / "wide.png", Image.new("L", (400, 300)))
    save(tmp_path / "defect" / "square.png", Image.new("RGB", (227, 227)))
    warnings = load_image_folder(tmp_path, verbose=0).summary().warnings
    assert ("image shapes differ: width/height from 0.33 (300x900) to 1.33 (400x300); every "
            "image is stretched to a square (no crop), so objects are distorted unevenly: crop "
            "the photos to one shape if you can") in warnings
    square = tmp_path / "square"
    save(square / "a" / "1.png", Image.new("RGB", (256, 256)))
    save(square / "b" / "2.png", Image.new("RGB", (227, 227)))
    assert not any("shapes" in w for w in load_image_folder(square, verbose=0).summary().warnings)


def test_load_image_folder_min_classes_admits_one_class(tmp_path):
    save(tmp_path / "cracked" / "1.png", Image.new("RGB", (8, 8)))
    with pytest.raises(ValueError, match="a classifier needs two or more classes"):
        load_image_folder(tmp_path, verbose=0)
    one = load_image_folder(tmp_path, verbose=0, min_classes=1)
    assert one.class_names == ["cracked"] and len(one) == 1
