"""Image folders in, checked file lists and reproducible splits out.

One sub-folder per class (``root/cracked/*.jpg``, ``root/intact/*.png``).
:func:`read_image` is the single place where pixels are made; everything that
needs pixels (features, fine-tuning, prediction, plots) calls it, so they all see
the same image. :func:`load_image_folder` lists and checks the files; :func:`split`
assigns each file to train / validation / test (stratified, exact per-class
counts, files ordered by a hash of their names).

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ["cracked", "intact"]:
    ...     (root / name).mkdir()
    ...     for i in range(3):
    ...         Image.new("RGB", (8, 6), "gray").save(root / name / f"{i}.png")
    >>> images = load_image_folder(root, verbose=0)
    >>> images
    ImageCollection(6 images, classes cracked=3, intact=3, root='...')
    >>> read_image(images.paths[0]).shape
    (6, 8, 3)
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from tqdm import tqdm

from ._errors import check_fraction, check_verbose, counted, problem
from ._files import file_kind, regular_opener

#: File name endings read as images (compared in lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: Names never read as images or class folders: what macOS and Windows leave in folders
#: and zips (names starting with a dot, e.g. ``.DS_Store`` and AppleDouble ``._x.jpg``,
#: are skipped too).
JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})

#: Largest image accepted, in pixels (~450 MB as RGB uint8). Pillow's own default
#: (89.5 Mpx) would refuse a 10000x10000 photo; importing this module raises
#: ``PIL.Image.MAX_IMAGE_PIXELS`` to this value, and that Pillow setting is the
#: one knob: set it higher (or None) to accept bigger images.
MAX_PIXELS = 150_000_000
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS

#: ML.NET tutorial fractions (train, validation, test), see :func:`tutorial_split`.
TUTORIAL_FRACTIONS = (0.70, 0.27, 0.03)

_CHECK_SIZE = 32  # validation decodes at this size: JPEGs then decode at 1/8 scale
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


class BadImageError(ValueError):
    """A file that cannot be read as an image; ``.path`` and ``.reason`` say why."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


#: Why Pillow or the OS could not read a file, by exception type (the first match wins).
_REASONS = ((FileNotFoundError, "file not found (or a broken symlink)"),
            (PermissionError, "permission denied"),
            (IsADirectoryError, "is a directory, not a file"),
            (Image.UnidentifiedImageError, "not an image (Pillow cannot identify the format)"),
            (Image.DecompressionBombError, "too many pixels ({err})"))


def _reason(err: Exception) -> str:
    """Say in a few words why Pillow or the OS could not read a file."""
    for kind, reason in _REASONS:
        if isinstance(err, kind):
            return reason.format(err=err)
    if "truncated" in str(err).lower():
        return f"truncated image data ({err})"
    if isinstance(err, OSError) and err.strerror:  # "not a regular file (a FIFO)", symlink loops
        return err.strerror if err.errno == errno.EINVAL else f"cannot read: {err.strerror}"
    return f"cannot decode: {type(err).__name__}: {err}"


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I") or img.mode == "F":
        # convert("RGB") clips 16-bit grey (> 255 becomes 255) and truncates floats:
        # scale 0..65535 onto 0..255 (floats stay 0..255) and round instead.
        scale = 1.0 if img.mode == "F" else 255 / 65535
        grey = np.clip(np.rint(np.asarray(img, np.float64) * scale), 0, 255)
        img = Image.fromarray(grey.astype(np.uint8))
    if img.mode[-1] in "Aa" or "transparency" in img.info:  # transparent -> white
        white = Image.new("RGBA", img.size, "white")
        return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def read_image(path, size=None) -> np.ndarray:
    """Read one image file as upright RGB pixels.

    EXIF orientation is applied (phone photos come out upright); grey, palette,
    CMYK and 16-bit images become RGB; 16-bit values are scaled to 8 bit
    (65535 -> 255, 32768 -> 128); transparent pixels are composited onto white;
    animated GIFs give their first frame. The same file and ``size`` always give
    the same array.

    Args:
        path: image file.
        size: None to keep the size, an int for a square, or ``(height, width)``.
            Resizing is Pillow bilinear (antialiased when shrinking); large JPEGs
            are decoded at a reduced DCT scale first (``Image.draft``), for speed.

    Returns:
        ``uint8`` array of shape ``(height, width, 3)``.

    Raises:
        BadImageError: (a ValueError) the file is empty, missing, unreadable,
            not an image, truncated or has more than
            ``PIL.Image.MAX_IMAGE_PIXELS`` pixels; the message says which.
        ValueError: ``size`` is not valid.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "grey.png"
        >>> Image.new("L", (40, 30), 200).save(path)
        >>> pixels = read_image(path, size=(15, 20))
        >>> pixels.shape, pixels.dtype, pixels[0, 0].tolist()
        ((15, 20, 3), dtype('uint8'), [200, 200, 200])
    """
    pair = size if isinstance(size, (tuple, list)) else (size, size)
    if size is not None and (len(pair) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in pair)):
        raise ValueError(problem("size", "None, an int >= 1 or a pair (height, width)", size,
                                 "pass e.g. size=224 or size=(224, 224)"))
    path = Path(path)
    try:
        with open(path, "rb", opener=regular_opener) as file, Image.open(file) as img:
            limit = Image.MAX_IMAGE_PIXELS  # Pillow only warns below twice the limit
            if limit is not None and img.width * img.height > limit:
                raise BadImageError(path, f"too many pixels ({img.width}x{img.height} > "
                                          f"PIL.Image.MAX_IMAGE_PIXELS={limit})")
            if size is not None:  # JPEGs decode at a reduced DCT scale; other formats ignore it
                rotated = img.getexif().get(0x0112) in _ROTATED
                img.draft(None, tuple(pair) if rotated else (pair[1], pair[0]))
            img.load()  # the first frame only, for animations
            ImageOps.exif_transpose(img, in_place=True)
            rgb = _to_rgb(img)
        if size is not None and rgb.size != (pair[1], pair[0]):
            rgb = rgb.resize((int(pair[1]), int(pair[0])), Image.BILINEAR, reducing_gap=3.0)
        return np.array(rgb)
    except (BadImageError, MemoryError):
        raise
    except Exception as err:  # Pillow raises many types for broken files
        if isinstance(err, Image.UnidentifiedImageError) and os.path.getsize(path) == 0:
            raise BadImageError(path, "empty file (0 bytes)") from err
        raise BadImageError(path, _reason(err)) from err


def check_images(paths) -> tuple[list[Path], list[SkippedFile]]:
    """Split ``paths`` into usable images and :class:`SkippedFile` records saying why not.

    Each file is decoded at a small size (JPEGs at 1/8 scale) and Pillow-verified,
    as :func:`load_image_folder` validates; FIFOs and devices are never read.

    Args:
        paths: image file paths.

    Returns:
        ``(good paths, skipped files)``.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (8, 8)).save(folder / "ok.png")
        >>> _ = (folder / "bad.png").write_bytes(b"not a png")
        >>> good, skipped = check_images([folder / "ok.png", folder / "bad.png"])
        >>> [p.name for p in good], [(s.path.name, s.reason) for s in skipped]
        (['ok.png'], [('bad.png', 'not an image (Pillow cannot identify the format)')])
    """
    good, skipped = [], []
    for path in map(Path, paths):
        try:
            read_image(path, size=_CHECK_SIZE)  # a real decode: verify() alone misses truncation
            with open(path, "rb", opener=regular_opener) as file, Image.open(file) as img:
                img.verify()  # checksums (PNG CRCs) that decoding skips
            good.append(path)
        except MemoryError:
            raise
        except Exception as err:  # noqa: BLE001 - Pillow raises many types for broken files
            reason = err.reason if isinstance(err, BadImageError) else _reason(err)
            skipped.append(SkippedFile(path, reason))
    return good, skipped


@dataclass(frozen=True)
class SkippedFile:
    """A file or folder left out of a collection, and why."""

    path: Path
    reason: str


@dataclass
class LoadReport:
    """What :func:`load_image_folder` left out; ``str(report)`` lists it.

    Attributes:
        skipped: bad images, unreadable folders, symlink loops (each warned about).
        ignored: files without an image extension (listed, not warned about).
    """

    skipped: list[SkippedFile] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.skipped)

    def __str__(self) -> str:
        lines = [f"skipped files and folders: {len(self.skipped) or 'none'}"]
        lines += [f"  {s.path}: {s.reason}" for s in self.skipped]
        if self.ignored:
            names = ", ".join(p.name for p in self.ignored[:5]) + (
                ", ..." if len(self.ignored) > 5 else "")
            lines.append(f"{len(self.ignored)} non-image files ignored "
                         f"(not {'/'.join(IMAGE_EXTENSIONS)}): {names}")
        return "\n".join(lines)


@dataclass
class DataSummary:
    """Images per class, image size range and warnings; ``str(summary)`` is a table."""

    counts: dict[str, int]
    smallest: tuple[int, int] | None  # (width, height) of the image with fewest pixels
    largest: tuple[int, int] | None
    warnings: list[str]

    def __str__(self) -> str:
        table = pd.DataFrame({"class": [*self.counts, "total"],
                              "images": [*self.counts.values(), sum(self.counts.values())]})
        rows = [table.to_string(index=False)]
        if self.smallest:
            rows.append("image size (WxH): {}x{} to {}x{}".format(*self.smallest, *self.largest))
        rows += [f"warning: {w}" for w in self.warnings] or ["warnings: none"]
        return "\n".join(rows)


@dataclass(repr=False)
class ImageCollection:
    """Image files with integer labels; ``labels[i]`` indexes ``class_names``.

    The naming of ``keras.utils.image_dataset_from_directory``: ``class_names``
    are the class folder names (sorted), ``labels`` their integer indices.

    Attributes:
        root: the folder paths are shown relative to.
        paths: absolute file paths (symlinks are not resolved).
        labels: ``int64`` array, one per path.
        class_names: class (folder) names in label order.
        report: what was skipped while loading.

    Example:
        >>> c = ImageCollection("/d", ["/d/a/1.jpg", "/d/b/2.jpg"], [0, 1], ["a", "b"])
        >>> c.counts(), c.subset([1]).relative_paths()
        ({'a': 1, 'b': 1}, ['b/2.jpg'])
    """

    root: Path
    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]
    report: LoadReport = field(default_factory=LoadReport)

    def __post_init__(self):
        self.root = Path(self.root)
        self.paths = [Path(p) for p in self.paths]
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.class_names = [str(c) for c in self.class_names]
        span = f", values {self.labels.min()}..{self.labels.max()}" if len(self.labels) else ""
        if len(self.labels) != len(self.paths) or span and not (
                0 <= self.labels.min() <= self.labels.max() < len(self.class_names)):
            raise ValueError(problem("labels", f"one integer in 0..{len(self.class_names) - 1} "
                                     f"per path ({len(self.paths)})", f"{len(self.labels)} "
                                     f"labels{span}", "pass one label per path, each an index "
                                     "into class_names (or names: ImageCollection.from_paths)"))

    @classmethod
    def from_paths(cls, paths, labels, class_names, root=None) -> ImageCollection:
        """Build a collection from lists; ``labels`` are ints or class names.

        Args:
            paths: image file paths.
            labels: one int (index into ``class_names``) or class name per path.
            class_names: the class names in label order.
            root: the folder paths are shown relative to; default: the common
                folder above the class folders (``root/class/file``).

        Returns:
            An :class:`ImageCollection`.

        Raises:
            ValueError: labels that are not in ``class_names`` (or an index into it),
            or not one per path.

        Example:
            >>> c = ImageCollection.from_paths(["/d/a/1.jpg", "/d/b/2.jpg"], ["a", "b"], ["a", "b"])
            >>> c.relative_paths(), c.labels.tolist()
            (['a/1.jpg', 'b/2.jpg'], [0, 1])
        """
        paths, class_names = [Path(p).absolute() for p in paths], list(class_names)
        index = {name: i for i, name in enumerate(class_names)}
        labels = [index.get(label, label) for label in labels]  # names to their indices
        unknown = sorted({str(label) for label in labels if not isinstance(label, (int, np.integer))
                          or isinstance(label, bool) or not 0 <= label < len(class_names)})
        if unknown or len(labels) != len(paths):
            raise ValueError(problem(
                "labels", f"one label per path ({len(paths)}), each a name from {class_names} "
                f"or an integer in 0..{len(class_names) - 1}", f"{len(labels)} labels, unknown: "
                f"{unknown[:9]}", "pass one label per path; add missing names to class_names"))
        if root is None:
            root = os.path.commonpath([p.parent.parent for p in paths]) if paths else Path.cwd()
        return cls(Path(root).absolute(), paths, labels, class_names)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items())
        return f"ImageCollection({len(self)} images, classes {counts}, root='{self.root}')"

    def subset(self, indices) -> ImageCollection:
        """Return the collection of the given positions, with the same classes.

        Args:
            indices: integer positions or a boolean mask.

        Returns:
            A new :class:`ImageCollection`.

        Example:
            >>> c = ImageCollection("/d", ["/d/a/1.jpg", "/d/b/2.jpg"], [0, 1], ["a", "b"])
            >>> len(c.subset(c.labels == 1)), c.subset([]).class_names
            (1, ['a', 'b'])
        """
        index = np.asarray(indices)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
        return ImageCollection(self.root, [self.paths[i] for i in index], self.labels[index],
                               self.class_names, self.report)

    def relative_paths(self) -> list[str]:
        """Return the paths relative to ``root`` with ``/`` separators (stable across OSes).

        Returns:
            One string per image.

        Example:
            >>> ImageCollection("/d", ["/d/a/1.jpg"], [0], ["a"]).relative_paths()
            ['a/1.jpg']
        """
        return [Path(os.path.relpath(p, self.root)).as_posix() for p in self.paths]

    def counts(self) -> dict[str, int]:
        """Return the images per class, in label order (classes without images give 0).

        Returns:
            ``{class name: count}``.

        Example:
            >>> ImageCollection("/d", ["/d/a/1.jpg"], [0], ["a", "b"]).counts()
            {'a': 1, 'b': 0}
        """
        per_class = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, per_class)}

    def _nested_classes(self) -> dict[str, list[str]]:
        """Classes with no image of their own and 2+ sub-folders holding them, with those."""
        subs = {}
        for path, label in zip(self.paths, self.labels):
            parts = Path(path).parts[len(self.root.parts):]  # (class, [sub, ...], file)
            subs.setdefault(self.class_names[label], set()).add(
                parts[1] if len(parts) > 2 else None)
        return {k: sorted(v) for k, v in subs.items() if None not in v and len(v) > 1}

    def summary(self, verbose: int = 0) -> DataSummary:
        """Count images per class, read image sizes from the file headers, flag problems.

        Args:
            verbose: 0 silent, 1 (or 2) a progress bar while reading the headers.

        Returns:
            A :class:`DataSummary` (print it for a table).

        Example:
            >>> c = ImageCollection("/d", ["/d/a/1.jpg", "/d/b/2.jpg"], [0, 1], ["a", "b"])
            >>> print(c.summary().warnings[0])
            class 'a' has only 1 image; aim for 50+ per class
        """
        bar = tqdm(self.paths, desc="Reading image sizes", unit="img",
                   disable=not check_verbose(verbose))
        sizes = sorted(filter(None, map(_header_size, bar)), key=lambda wh: (wh[0] * wh[1], wh))
        notes = self.problems()
        if sizes:
            narrow, wide = min(sizes, key=_aspect), max(sizes, key=_aspect)
            if _aspect(wide) > 1.25 * _aspect(narrow):  # 4:3 beside 16:9 or portrait photos
                notes.append("image shapes differ: width/height from {:.2f} ({}x{}) to {:.2f} "
                             "({}x{}); every image is stretched to a square (no crop), so "
                             "objects are distorted unevenly: crop the photos to one shape if "
                             "you can".format(_aspect(narrow), *narrow, _aspect(wide), *wide))
        if len(sizes) < len(self):
            notes.append(f"{len(self) - len(sizes)} image headers could not be read")
        if self.report.skipped:
            notes.append(f"{len(self.report.skipped)} bad files were skipped (see the report)")
        return DataSummary(self.counts(), sizes[0] if sizes else None, sizes[-1] if sizes else None,
                           notes)

    def problems(self) -> list[str]:
        """The warnings of :meth:`summary` that need no file read: classes empty, small,
        split by letter case, kept in sub-folders, or heavily imbalanced.

        Returns:
            One sentence per problem, each saying what to do (empty when none).

        Example:
            >>> c = ImageCollection("/d", ["/d/a/1.jpg"] * 40 + ["/d/A/2.jpg"] * 10,
            ...                     [0] * 40 + [1] * 10, ["a", "A"])
            >>> len(c.problems()), c.problems()[0][:44]
            (2, "classes 'a' and 'A' differ only in letter ca")
        """
        counts = pd.Series(self.counts(), dtype=np.int64)
        notes = [f"class '{k}' has no images" for k in counts.index[counts == 0]]
        notes += [f"class '{k}' has only {counted(n, 'image')}; aim for 50+ per class"
                  for k, n in counts[counts.between(1, 9)].items()]
        by_case = pd.Series(counts.index, counts.index).groupby(lambda k: k.casefold()).agg(list)
        notes += [f"classes {' and '.join(map(repr, names))} differ only in letter case: one "
                  "class split in two? Merge their folders" for names in by_case if len(names) > 1]
        nested = self._nested_classes()
        if nested and len(nested) == len(counts):  # pointed one folder too high?
            shown = "; ".join(f"'{k}' ({', '.join(v)})" for k, v in nested.items())
            notes.append(f"every class folder keeps its images in sub-folders: {shown}. The top "
                         "folders are the classes; if the sub-folders are, point at "
                         f"{self.root / next(iter(nested))} (or another of them) instead")
        present = counts[counts > 0]
        if len(present) and present.max() > 3 * present.min():
            big, small = present.idxmax(), present.idxmin()
            notes.append(f"heavy class imbalance: '{big}' has {present[big]} images, '{small}' "
                         f"{present[small]} ({present[big] / present[small]:.1f}:1); accuracy "
                         "will mislead, read per-class recall (macro accuracy) or weight the "
                         "classes: HeadConfig(class_weight='balanced'), vitl train "
                         "--class-weight balanced")
        return notes


def _aspect(size: tuple[int, int]) -> float:
    """Width / height."""
    return size[0] / size[1]


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as displayed, from the header only; None if unreadable."""
    try:
        with open(path, "rb", opener=regular_opener) as file, Image.open(file) as img:
            return img.size[::-1] if img.getexif().get(0x0112) in _ROTATED else img.size
    except Exception:  # noqa: BLE001 - the summary counts unreadable headers instead
        return None


def _is_junk(name: str) -> bool:
    """Hidden names (``.DS_Store``, AppleDouble ``._x.jpg``) and OS litter (``__MACOSX``)."""
    return name.startswith(".") or name in JUNK_NAMES


def _folder_problem(sub: Path, parent: Path, follow: bool, visited: set) -> str | None:
    """Why not to descend into ``sub`` (and record it as visited otherwise)."""
    if sub.is_symlink() and not follow:
        return "symlinked folder not followed (follow_symlinks=False)"
    try:
        key = (sub.stat().st_dev, sub.stat().st_ino)
    except OSError as err:
        return f"cannot open folder: {err.strerror}"
    if key in visited:
        real = os.path.realpath(sub)
        if os.path.commonpath([real, os.path.realpath(parent)]) == real:
            return f"symlink loop: points back to {real}"
        return f"folder already included via another path ({real})"
    visited.add(key)
    return None


def _scan(folder: Path, follow: bool, visited: set, report: LoadReport) -> list[Path]:
    """All image-named files below ``folder``, skipping hidden names and loops."""
    try:
        entries = sorted(entry for entry in folder.iterdir() if not _is_junk(entry.name))
    except OSError as err:
        report.skipped.append(SkippedFile(folder, f"cannot list folder: {err.strerror}"))
        return []
    found = []
    for entry in entries:
        why = _folder_problem(entry, folder, follow, visited) if entry.is_dir() else None
        if why:
            report.skipped.append(SkippedFile(entry, why))
        elif entry.is_dir():
            found += _scan(entry, follow, visited, report)
        elif not entry.name.lower().endswith(IMAGE_EXTENSIONS):
            report.ignored.append(entry)
        elif file_kind(entry) == "a regular file" or not os.path.exists(entry):
            found.append(entry)  # missing, broken links, loops: decoding names the reason
        else:  # a FIFO or a link to /dev/zero would block or never end when read
            report.skipped.append(SkippedFile(entry, f"not a regular file ({file_kind(entry)}); "
                                                     "not read"))
    return found


def list_images(folder, *, follow_symlinks=True, report: LoadReport | None = None) -> list[Path]:
    """List every image file below ``folder`` (any depth), sorted, for prediction.

    Unlike :func:`load_image_folder` the folder needs no class sub-folders and
    nothing is decoded; hidden names are skipped and symlink loops are not followed.

    Args:
        folder: a folder of images, or one image file (returned alone).
        follow_symlinks: descend into symlinked folders.
        report: a :class:`LoadReport` to record what was left out (FIFOs,
            devices, unlistable folders, symlink loops), to name it to the user.

    Returns:
        Absolute paths of the image-named files.

    Raises:
        ValueError: ``folder`` does not exist.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> (folder / "sub").mkdir()
        >>> for name in ["b.JPG", "sub/a.png", "notes.txt", ".hidden.png"]:
        ...     _ = (folder / name).write_bytes(b"x")
        >>> [p.relative_to(folder).as_posix() for p in list_images(folder)]
        ['b.JPG', 'sub/a.png']
    """
    folder = Path(folder).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        return [folder]  # a file given by name: the caller decides whether it is readable
    if not folder.is_dir():
        raise ValueError(problem("image folder", "an existing folder or image file", str(folder),
                                 "check the path"))
    visited = {(folder.stat().st_dev, folder.stat().st_ino)}
    return sorted(_scan(folder, follow_symlinks, visited,
                        LoadReport() if report is None else report))


def load_image_folder(root, *, validate=True, follow_symlinks=True, verbose: int = 1,
                      min_classes: int = 2) -> ImageCollection:
    """List the images of a folder with one sub-folder per class.

    Class names are the sub-folder names, sorted; images in nested folders
    below a class folder belong to that class. Extensions ``.jpg .jpeg .png
    .bmp .gif .webp .tif .tiff`` count in any letter case; names starting with
    a dot (``.DS_Store``, ``._x.jpg``) and ``__MACOSX``, ``Thumbs.db``,
    ``desktop.ini`` are ignored. Bad files (and FIFOs, devices) are skipped
    with a warning and listed in ``collection.report``; they never stop the load.

    Args:
        root: the folder holding the class folders.
        validate: decode every image (JPEGs at reduced scale) to catch corrupt,
            truncated and non-image files now rather than mid-training.
        follow_symlinks: descend into symlinked folders (loops are detected and
            reported). Symlinked files are always read.
        verbose: 0 silent, 1 (or 2) a progress bar while checking images.
        min_classes: class folders required: 2 to train; 1 to score a trained
            model on photos of one class (e.g. only cracked ones).

    Returns:
        An :class:`ImageCollection`, paths sorted by class then relative path.

    Raises:
        ValueError: ``root`` is missing or not a folder; there are fewer than
            ``min_classes`` class folders; a class folder holds no usable image; a class
            folder name holds a control character (newline...) or non-UTF-8 bytes.

    Example:
        >>> load_image_folder("/no/such/folder")
        Traceback (most recent call last):
        ...
        ValueError: image folder: expected an existing folder with one sub-folder per class, ...
    """
    verbose = check_verbose(verbose)
    root = Path(root).expanduser().absolute()
    layout = "an existing folder with one sub-folder per class"
    if not root.is_dir():
        fix = "unzip it and pass the folder" if root.suffix.lower() == ".zip" else \
            "pass the folder that holds the class folders"
        raise ValueError(problem("image folder", layout, f"the file {root}", fix) if root.exists()
                         else problem("image folder", layout, str(root), "check the path"))
    report = LoadReport()
    found = _scan(root, follow_symlinks, {(root.stat().st_dev, root.stat().st_ino)}, report)
    report.skipped += [SkippedFile(p, "image directly in the root folder, not in a class folder")
                       for p in found if p.parent == root]
    left_out = {item.path for item in report.skipped}
    names = sorted(e.name for e in root.iterdir()
                   if e.is_dir() and not _is_junk(e.name) and e not in left_out)
    # Control characters (newline, tab...) or bytes that are not UTF-8 (surrogates).
    bad_names = [n for n in names if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in n)]
    if bad_names:
        raise ValueError(problem("class folder name", "a name without control characters "
                                 "(newline, tab...) and in UTF-8, as it becomes a label",
                                 bad_names[0], f"rename that folder in {root}"))
    if len(names) < min_classes:
        received = f"only one: '{names[0]}'" if names else (
            f"no sub-folders in {root} ({len(report.skipped)} images, "
            f"{len(report.ignored)} other files)")
        fix = f"put images in {root / 'cracked'} and {root / 'intact'}"
        if names:
            fix = (f"if '{names[0]}' holds the class folders, pass {root / names[0]}"
                   if any(p.is_dir() for p in (root / names[0]).iterdir()) else
                   "a classifier needs two or more classes: add a folder per class")
        raise ValueError(problem("image folder", "at least two class sub-folders" if min_classes > 1
                                 else "at least one class sub-folder", received, fix))
    files = {name: [p for p in found if p.relative_to(root).parts[0] == name] for name in names}
    bad = set()
    if validate:
        every = [p for paths in files.values() for p in paths]
        _, skipped = check_images(tqdm(every, desc="Checking images", unit="img",
                                       disable=not verbose))
        report.skipped += skipped
        bad = {s.path for s in skipped}
    for item in report.skipped:
        warnings.warn(f"vitl: skipped {item.path}: {item.reason}", stacklevel=2)
    empty = [f"'{k}'" + (f" (all {len(v)} files bad)" if v else "")
             for k, v in files.items() if set(v) <= bad]
    if empty:
        raise ValueError(problem("class folders", f"images ({'/'.join(IMAGE_EXTENSIONS)}) in "
                                 "every class folder", f"no usable image in {', '.join(empty)}",
                                 "add images there or remove the folder"))
    kept = sorted((names.index(name), Path(os.path.relpath(p, root)).as_posix(), p)
                  for name, paths in files.items() for p in paths if p not in bad)
    return ImageCollection(root, [p for *_, p in kept], [k[0] for k in kept], names, report)


def paths_or_arrays(images) -> tuple[list[Path] | None, list[np.ndarray] | None]:
    """Sort what a model is asked about into image files or pixel arrays.

    Args:
        images: an :class:`ImageCollection`, a folder or file path, a sequence of
            paths, an RGB array ``(H, W, 3)``, a batch ``(N, H, W, 3)`` or a list of arrays.

    Returns:
        ``(paths, None)`` for file inputs or ``(None, arrays)`` for pixel arrays.

    Raises:
        ValueError: an array that is neither one image nor a batch; a list item that
            is neither a path nor an array (a PIL image, say).

    Example:
        >>> paths_or_arrays(np.zeros((2, 8, 8, 3)))[1][0].shape
        (8, 8, 3)
        >>> paths_or_arrays(["a.jpg"])
        ([PosixPath('a.jpg')], None)
    """
    if isinstance(images, ImageCollection):
        return list(images.paths), None
    if isinstance(images, (str, Path)):
        return list_images(images), None
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(problem("images", "an (H, W, 3) image or (N, H, W, 3) batch",
                                     f"an array of shape {images.shape}", "pass RGB pixels"))
        return None, [images] if images.ndim == 3 else list(images)
    images = list(images)
    if images and all(isinstance(i, np.ndarray) for i in images):
        return None, images
    odd = next((i for i in images if not isinstance(i, (str, os.PathLike))), None)
    if odd is not None:  # a PIL image, say: Path() would raise a bare TypeError
        raise ValueError(problem("images", "image paths, a folder, an ImageCollection or RGB "
                                 "arrays", f"a {type(odd).__name__} in the list",
                                 "pass the file's path, or np.asarray(image.convert('RGB')) "
                                 "for a PIL image"))
    return [Path(p) for p in images], None


class Split(NamedTuple):
    """Three disjoint collections; ``str(split)`` is a per-class table.

    Example:
        >>> c = ImageCollection("/d", [f"/d/a/{i}.jpg" for i in range(10)], [0] * 10, ["a"])
        >>> print(split(c, 0.8, 0.1, 0.1))
        class   train  validation    test   total
        a           8           1       1      10
        total       8           1       1      10
    """

    train: ImageCollection
    validation: ImageCollection
    test: ImageCollection

    def summary(self) -> str:
        """Return the images per class in each part, as a text table.

        Returns:
            The table (also ``str(split)``).

        Example:
            >>> c = ImageCollection("/d", ["/d/a/1.jpg"], [0], ["a"])
            >>> split(c, 1.0, 0.0, 0.0).summary().splitlines()[1].split()
            ['a', '1', '0', '0', '1']
        """
        table = pd.DataFrame({name: part.counts() for name, part in zip(self._fields, self)})
        table["total"] = table.sum(axis=1)
        table = pd.concat([table, table.sum().to_frame("total").T])  # a class may be 'total'
        return table.astype(np.int64).rename_axis("class").reset_index().to_string(index=False)

    __str__ = summary


def split(collection: ImageCollection, train=0.7, validation=0.15, test=0.15, *, seed=None
          ) -> Split:
    """Split a collection into train / validation / test, stratified by class with exact counts.

    Every class is split on its own, in the given proportions (see
    :func:`part_sizes`: counts that add up, each non-zero part gets at least one
    image of every class that has enough). Which files go where comes from a sha1
    hash of the class name, the path relative to ``root`` (Unicode-normalised)
    and ``seed``: files are ordered by it, the first go to train, the next to
    validation, the rest to test (the idea of TensorFlow's ``retrain.py``
    ``which_set``). So the split is the same on every machine and does not
    depend on the order of the files.

    Args:
        collection: the images to split.
        train, validation, test: fractions summing to 1; ``train > 0``.
        seed: None for the plain hash, or an int to draw another split.

    Returns:
        A :class:`Split` of three collections.

    Raises:
        ValueError: not a collection; fractions out of range or not summing to 1; a bad seed.

    Example:
        >>> paths = [f"/d/{c}/{i}.jpg" for c in "ab" for i in range(100)]
        >>> c = ImageCollection.from_paths(paths, [p[3] for p in paths], ["a", "b"])
        >>> parts = split(c, 0.8, 0.1, 0.1, seed=1)
        >>> [len(p) for p in parts], parts.validation.counts()
        ([160, 20, 20], {'a': 10, 'b': 10})
    """
    if not isinstance(collection, ImageCollection):  # e.g. tutorial_data()'s (folder, source)
        raise ValueError(problem("collection", "an ImageCollection", type(collection).__name__,  # noqa: TRY004
                                 "pass vitl.load_image_folder(folder); tutorial_data() returns "
                                 "(folder, source)"))
    fractions = [check_fraction(n, v) for n, v in
                 (("train", train), ("validation", validation), ("test", test))]
    if fractions[0] == 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(problem("split fractions", "train > 0 and train + validation + test = 1",
                                 f"{train} + {validation} + {test} = {sum(fractions):g}",
                                 "pass e.g. train=0.7, validation=0.15, test=0.15"))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(problem("seed", "None or an int", seed, "pass e.g. seed=0"))
    prefix = "" if seed is None else f"{seed}\0"
    keys = [prefix + collection.class_names[label] + "\0" + unicodedata.normalize("NFC", rel)
            for label, rel in zip(collection.labels, collection.relative_paths())]
    # A stable pseudo-random number in [0, 1) per file (sha1, like TF's retrain.py);
    # surrogateescape: a file name that is not UTF-8 hashes as its own bytes.
    scores = np.array([int.from_bytes(hashlib.sha1(k.encode("utf-8", "surrogateescape"))
                                      .digest()[:8], "big") / 2.0**64 for k in keys])
    part = np.zeros(len(collection), dtype=np.int64)
    for label in range(len(collection.class_names)):
        members = np.flatnonzero(collection.labels == label)
        members = members[np.argsort(scores[members], kind="stable")]
        part[members] = np.repeat(np.arange(3), part_sizes(len(members), fractions))
    return Split(*(collection.subset(part == p) for p in range(3)))


def part_sizes(n: int, fractions) -> list[int]:
    """Split ``n`` items into parts of the given fractions: exact integers that add up to ``n``.

    Largest remainders; then every part with a non-zero fraction gets at least
    one item while ``n`` allows (the first parts first), taken from the part most
    over its share.

    Args:
        n: the number of items.
        fractions: one fraction per part, summing to 1.

    Returns:
        One count per part.

    Example:
        >>> part_sizes(200, (0.70, 0.27, 0.03)), part_sizes(10, (0.7, 0.27, 0.03))
        ([140, 54, 6], [7, 2, 1])
        >>> part_sizes(2, (0.7, 0.15, 0.15))
        [1, 1, 0]
    """
    exact = [n * f for f in fractions]
    sizes = [math.floor(e + 1e-9) for e in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    for i, f in enumerate(fractions):
        donors = [j for j in range(len(sizes)) if sizes[j] > 1]
        if f > 0 and sizes[i] == 0 and donors:
            donor = max(donors, key=lambda j: sizes[j] - exact[j])  # the most over its share
            sizes[donor] -= 1
            sizes[i] += 1
    return sizes


def tutorial_split(collection: ImageCollection, seed=None) -> Split:
    """Split as the ML.NET tutorial does: 70% train, 27% validation, 3% test.

    The tutorial calls ``TrainTestSplit(data, testFraction: 0.3)`` and then
    ``TrainTestSplit(trainSplit.TestSet)``, whose ``testFraction`` defaults to
    0.1: validation = 0.3 * 0.9 = 27%, test = 0.3 * 0.1 = 3%. ML.NET splits at
    random, unstratified; here it is :func:`split` (hashed, stratified, exact).

    Args:
        collection: the images to split.
        seed: as for :func:`split`.

    Returns:
        A :class:`Split`.

    Example:
        >>> paths = [f"/d/{c}/{i}.jpg" for c in "ab" for i in range(200)]
        >>> c = ImageCollection.from_paths(paths, [p[3] for p in paths], ["a", "b"])
        >>> [len(p) for p in tutorial_split(c)]
        [280, 108, 12]
    """
    return split(collection, *TUTORIAL_FRACTIONS, seed=seed)


#: Sub-folder names of a folder already split into parts (``val/`` also names validation).
SPLIT_FOLDERS = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


def split_folders(root) -> dict[str, Path | None] | None:
    """Find the parts of a folder already split into ``train/``, ``validation/`` (or ``val/``)
    and ``test/`` folders, each with one sub-folder per class.

    Args:
        root: the folder.

    Returns:
        ``{part: folder or None}`` (``train`` always found), or None when ``root`` has no
        ``train/`` folder or other sub-folders (a folder with one sub-folder per class).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("train", "val"):
        ...     (root / name).mkdir()
        >>> {part: folder and folder.name for part, folder in split_folders(root).items()}
        {'train': 'train', 'validation': 'val', 'test': None}
        >>> (root / "cracked").mkdir()
        >>> split_folders(root) is None
        True
    """
    names = {p.name: p for p in Path(root).expanduser().iterdir()
             if p.is_dir() and not _is_junk(p.name)}
    known = {alias for aliases in SPLIT_FOLDERS.values() for alias in aliases}
    if "train" not in names or not set(names) <= known:
        return None
    return {part: next((names[a] for a in aliases if a in names), None)
            for part, aliases in SPLIT_FOLDERS.items()}


def load_split_folders(root, **options) -> Split:
    """Load a folder already split into ``train/``, ``validation/`` (or ``val/``) and ``test/``.

    Each part is :func:`load_image_folder` of its folder; a missing validation or test
    folder gives an empty part (with train's classes).

    Args:
        root: the folder (see :func:`split_folders`).
        **options: passed to :func:`load_image_folder` (``validate``, ``verbose``...).

    Returns:
        The :class:`Split`.

    Raises:
        ValueError: ``root`` is not laid out so, or a part's folder cannot be loaded.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for part, n in (("train", 3), ("test", 1)):
        ...     for label in ("cracked", "intact"):
        ...         (root / part / label).mkdir(parents=True)
        ...         for i in range(n):
        ...             Image.new("RGB", (8, 8)).save(root / part / label / f"{i}.png")
        >>> [len(part) for part in load_split_folders(root, verbose=0)]
        [6, 0, 2]
    """
    folders = split_folders(root)
    if folders is None:
        raise ValueError(problem("split folder", "train/ (and validation/ or val/, test/) "
                                 "folders, each with one sub-folder per class", str(root),
                                 "pass such a folder, or split a class folder with split()"))
    train = load_image_folder(folders["train"], **options)
    return Split(train, *(load_image_folder(folders[part], **options) if folders[part]
                          else train.subset([]) for part in ("validation", "test")))
