"""Synthetic concrete tiles with and without thin branching cracks, for offline demos and tests.

:func:`make_synthetic_cracks` writes a two-class image folder that
``vitl.data.load_image_folder`` reads; :func:`synthetic_mask_path` finds a
tile's crack mask. A tile is grey-beige noise at several scales (grain, mottling,
pores, uneven light); a crack is a dark random walk with momentum and a few
branches; distractors are straight things that are not cracks (saw cuts,
scratches, shadows).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from .._errors import check_fraction, check_int, check_verbose, problem
from .._files import atomic_folder

#: Hidden folder (beside the class folders) holding the crack masks; image-folder
#: loaders skip dot-folders, so it is never taken for a class.
SYNTHETIC_MASK_DIR = ".masks"
_MARKER = ".synthetic-cracks.json"
#: Bump when the drawing changes, so earlier folders are regenerated.
_VERSION = 2
_SUPERSAMPLE = 3  # lines are drawn at 3x and shrunk, for soft antialiased edges
_README = """# Synthetic concrete-crack tiles (not real data)

Made by `vitl.datasets.make_synthetic_cracks` with {settings}. `tiles.csv` lists per tile its
class, crack share and distractors; `.masks/` (if there) holds crack masks, 255 = crack.
"""


def make_synthetic_cracks(out_dir, n_per_class: int = 50, *, size: int = 224, seed: int = 0,
                          masks: bool = False, class_names=("cracked", "uncracked"),
                          distractor_fraction: float = 0.5, overwrite: bool = False,
                          verbose: int = 1) -> Path:
    """Draw a two-class image folder of synthetic concrete tiles with and without cracks.

    Tiles of the first class get thin dark branching cracks (about 1-3% of the
    pixels); a share ``distractor_fraction`` of the second class get crack-like
    distractors (saw cuts, scratches, shadows), so "any dark line" is not the
    answer. Every tile keeps the mean brightness of its texture, so brightness
    statistics say next to nothing about the class.

    Layout: ``out_dir/<class>/<class>_<i:04d>.png``; with ``masks=True`` also
    ``out_dir/.masks/<class>_<i:04d>.png`` (255 = crack) for the cracked class
    (see :func:`synthetic_mask_path`). ``README.md`` says how the folder was made
    and ``tiles.csv`` lists per tile its class, crack share and distractors. Tile
    ``i`` depends only on ``seed``, its class and ``i`` (not on ``n_per_class``).
    The same arguments again return at once; other arguments or ``overwrite=True``
    regenerate the folder as a whole (crash-safe). A non-empty ``out_dir`` this
    function did not make is never touched.

    Args:
        out_dir: the folder to write.
        n_per_class: tiles per class.
        size: tile width and height in pixels (>= 32).
        seed: the random seed (integer >= 0).
        masks: also write binary crack masks.
        class_names: (cracked, uncracked) folder names.
        distractor_fraction: share of uncracked tiles that get distractors.
        overwrite: regenerate even when ``out_dir`` already matches.
        verbose: 0 silent, 1 (or 2) a progress bar.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ValueError: an argument is out of range.
        FileExistsError: ``out_dir`` is a file, or a non-empty folder not made by
            this function.

    Example:
        >>> import tempfile
        >>> out = make_synthetic_cracks(tempfile.mkdtemp() + "/syn", 2, size=64, verbose=0)
        >>> sorted(p.name for p in (out / "cracked").iterdir())
        ['cracked_0000.png', 'cracked_0001.png']
        >>> Image.open(out / "uncracked" / "uncracked_0001.png").size
        (64, 64)
    """
    out_dir = Path(out_dir).expanduser()
    names = tuple(class_names) if isinstance(class_names, (list, tuple)) else ()
    if len(set(names)) != 2 or len(names) != 2 or not all(
            isinstance(n, str) and n and n[0] != "." and not {"/", "\\"} & set(n) for n in names):
        raise ValueError(problem("class_names", "two different folder names (cracked, "
                                 "uncracked), no dot first", class_names,
                                 "pass class_names=('cracked', 'uncracked')"))
    params = {"generator_version": _VERSION,
              "n_per_class": check_int("n_per_class", n_per_class, minimum=1),
              "size": check_int("size", size, minimum=32, fix="pass size=224 (or at least 32)"),
              "seed": check_int("seed", seed, minimum=0, fix="pass a seed such as 0"),
              "masks": bool(masks), "class_names": list(names),
              "distractor_fraction": check_fraction("distractor_fraction", distractor_fraction)}
    verbose = check_verbose(verbose)
    marker = out_dir / _MARKER
    with contextlib.suppress(OSError, ValueError):  # no marker, or not JSON: (re)generate
        if not overwrite and json.loads(marker.read_text()) == params:
            return out_dir
    if out_dir.exists() and not marker.is_file() and (
            not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(problem(
            "out_dir", "a new or empty folder, or one made by make_synthetic_cracks",
            f"{out_dir} (not empty, no {_MARKER})", "pass another out_dir or empty that folder"))
    with atomic_folder(out_dir) as tmp:
        _write_tiles(tmp, params, verbose)
    return out_dir


def synthetic_mask_path(image_path) -> Path:
    """Return where :func:`make_synthetic_cracks` put the crack mask of ``image_path``.

    ``out_dir/<class>/<name>.png`` -> ``out_dir/.masks/<name>.png``. The file
    exists only for cracked tiles made with ``masks=True``.

    Args:
        image_path: a tile written by :func:`make_synthetic_cracks`.

    Returns:
        The mask's path (it may not exist).

    Example:
        >>> synthetic_mask_path("syn/cracked/cracked_0003.png").as_posix()
        'syn/.masks/cracked_0003.png'
    """
    image_path = Path(image_path)
    return image_path.parent.parent / SYNTHETIC_MASK_DIR / image_path.name


def _write_tiles(folder: Path, params: dict, verbose: int) -> None:
    names, n = params["class_names"], params["n_per_class"]
    for name in names + ([SYNTHETIC_MASK_DIR] if params["masks"] else []):
        (folder / name).mkdir()
    rows = ["file,class,crack_share,distractors"]
    for class_index, i in tqdm(itertools.product((0, 1), range(n)), total=2 * n,
                               desc="synthetic cracks", disable=not verbose):
        # Tile i's seed depends on (seed, class, i) only, not on n_per_class.
        rng = np.random.default_rng(np.random.SeedSequence(params["seed"],
                                                           spawn_key=(class_index, i)))
        image, mask, distractors = _draw_tile(rng, params["size"], crack=class_index == 0,
                                              distractor_fraction=params["distractor_fraction"])
        name = names[class_index]
        stem = f"{name}_{i:04d}.png"
        Image.fromarray(image).save(folder / name / stem, compress_level=1)  # 5x faster, lossless
        if mask is not None and params["masks"]:
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / SYNTHETIC_MASK_DIR / stem)
        share = 0.0 if mask is None else mask.mean()
        rows.append(f"{name}/{stem},{name},{share:.4f},{'+'.join(distractors)}")
    (folder / "tiles.csv").write_text("\n".join(rows) + "\n")
    settings = ", ".join(f"{k}={v}" for k, v in params.items())
    (folder / "README.md").write_text(_README.format(settings=settings))
    (folder / _MARKER).write_text(json.dumps(params) + "\n")  # last: it marks "complete"


def _draw_tile(rng: np.random.Generator, size: int, *, crack: bool,
               distractor_fraction: float = 0.5):
    """Draw one tile; return (uint8 RGB image, bool crack mask or None, distractor names)."""
    s = size / 224  # lengths below are in pixels of a 224-px tile
    light = _texture(rng, size, s)
    mean = light.mean()
    mask, distractors = None, []
    if crack:
        coverage = _crack_coverage(rng, size, s)
        halo = np.clip(gaussian_filter(coverage, 2.5 * s) * 2.5, 0, 1)
        light = light * (1 - rng.uniform(0.06, 0.15) * halo) \
            * (1 - rng.uniform(0.45, 0.75) * coverage)
        mask = coverage >= 0.35
    elif rng.random() < distractor_fraction:
        distractors = sorted(rng.choice(["saw_cut", "scratches", "shadow"],
                                        size=1 if rng.random() < 0.7 else 2, replace=False))
        for kind in distractors:
            light = light * _DISTRACTORS[kind](rng, size, s)
    light *= mean / light.mean()  # like a camera's auto-exposure: the class is not in the mean
    tint = rng.uniform(0.52, 0.78) * (np.array([1.0, 0.975, 0.935]) + rng.normal(0, 0.008, 3))
    return np.clip(light[..., None] * tint * 255 + 0.5, 0, 255).astype(np.uint8), mask, distractors


def _noise(rng, grid: int, size: int) -> np.ndarray:
    """Unit-variance noise on a ``grid`` x ``grid`` lattice, bicubic-upsampled to ``size``."""
    small = rng.standard_normal((grid + 2, grid + 2)).astype(np.float32)  # margins hide edges
    return np.asarray(Image.fromarray(small, "F").resize((size, size), Image.BICUBIC,
                                                         box=(1, 1, grid + 1, grid + 1)))


def _texture(rng, size: int, s: float) -> np.ndarray:
    """Relative brightness around 1: mottling, grain, aggregate, pores, uneven light."""
    rough = rng.uniform(0.7, 1.4)
    light = np.ones((size, size), np.float32)
    for cells, amp in ((3, 0.05), (6, 0.04), (12, 0.03), (28, 0.03), (56, 0.03), (112, 0.035)):
        grid = min(size - 2, cells if cells <= 12 else max(2, round(cells * s)))
        light += amp * rough * rng.uniform(0.6, 1.4) * _noise(rng, grid, size)
    light += 0.05 * rough * rng.standard_normal((size, size)).astype(np.float32)
    for count, sigma, amp in ((700, 0.8, 0.12), (80, 1.8, 0.07), (45, 0.7, -0.45)):
        dots = np.zeros((size, size), np.float32)  # soft blobs: blurred impulses
        n = rng.poisson(count * s * s)
        dots[tuple(rng.integers(0, size, (2, n)))] = rng.uniform(0.4, 1.0, n) * (
            rng.choice([-1, 1], n) if amp > 0 else 1)
        peak = 2 * np.pi * 3.5 * (sigma * s) ** 2  # a blurred impulse peaks near 1 / peak
        light += amp * np.clip(gaussian_filter(dots, sigma * s) * peak, -1, 1)
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    angle = rng.uniform(0, 2 * np.pi)
    return light * (1 + rng.uniform(0, 0.12) * (x * np.cos(angle) + y * np.sin(angle))
                    - rng.uniform(0, 0.06) * (x * x + y * y))


def _soft_lines(size: int, segments) -> np.ndarray:
    """Soft [0, 1] coverage of line segments ``[((x0, y0), (x1, y1), width), ...]``.

    Drawn at 3x with round joints and box-shrunk, for antialiased edges.
    """
    k = _SUPERSAMPLE
    canvas = Image.new("L", (size * k, size * k), 0)
    draw = ImageDraw.Draw(canvas)
    for start, end, width in segments:
        (x0, y0), (x1, y1), w = np.multiply(start, k), np.multiply(end, k), width * k
        draw.line([(x0, y0), (x1, y1)], fill=255, width=max(1, round(w)))
        draw.ellipse([x1 - w / 2, y1 - w / 2, x1 + w / 2, y1 + w / 2], fill=255)
    return np.asarray(canvas.resize((size, size), Image.BOX), np.float32) / 255


def _crack_coverage(rng, size: int, s: float) -> np.ndarray:
    """Soft coverage of one or two branching cracks, redrawn until 0.6-8% of the tile."""
    for _attempt in range(20):
        walks = []
        for _ in range(1 if rng.random() < 0.75 else 2):
            side = rng.uniform(0.1, 0.9) * size
            start, heading = [((side, 0), np.pi / 2), ((side, size), -np.pi / 2),
                              ((0, side), 0.0), ((size, side), np.pi)][rng.integers(4)]
            walks += _walk(rng, np.array(start, float), heading + rng.normal(0, 0.5),
                           rng.uniform(1.3, 3.4) * s, rng.uniform(0.7, 1.4) * size, s, depth=0)
        coverage = _soft_lines(size, walks)
        if 0.006 <= (coverage >= 0.35).mean() <= 0.08:
            break
    return coverage


def _walk(rng, point, heading, width, length, s, depth) -> list:
    """Segments (start, end, width) of a random walk with momentum, and of its branches."""
    n = max(2, int(length / (2.5 * s)))
    momentum = np.zeros(n)  # the deviation from the drifting course reverts: no loops
    kicks = rng.normal(0, 0.1, n)
    for k in range(1, n):
        momentum[k] = 0.9 * momentum[k - 1] + kicks[k]
    angles = heading + np.cumsum(rng.normal(0, 0.025, n)) + momentum + rng.normal(0, 0.35, n)
    steps = 2.5 * s * np.stack([np.cos(angles), np.sin(angles)], 1)
    path = np.vstack([point, point + np.cumsum(steps, 0)])
    k = np.arange(n)
    widths = np.maximum(max(1.0, s), width * np.minimum(1, np.minimum((k + 1) / 6, (n - k) / 10))
                        * rng.uniform(0.75, 1.0, n))
    segments = [(path[i], path[i + 1], widths[i]) for i in range(n)]
    branch_at = np.flatnonzero(rng.random(n) < (0.035 if depth == 0 else 0.015))
    for b in branch_at if depth < 2 else []:
        segments += _walk(rng, path[b + 1], angles[b] + rng.choice([-1, 1]) * rng.uniform(0.35, 1.1),
                          max(1.0, s, width * rng.uniform(0.4, 0.75)),
                          length * rng.uniform(0.15, 0.45), s, depth + 1)
    return segments


def _saw_cut(rng, size, s):
    """A straight joint of uniform width right across the tile, mostly near-axis-aligned."""
    angle = rng.choice([0, np.pi / 2]) + rng.normal(0, 0.04) if rng.random() < 0.7 \
        else rng.uniform(0, np.pi)
    cx, cy = rng.uniform(0.15, 0.85, 2) * size
    dx, dy = np.cos(angle) * 2 * size, np.sin(angle) * 2 * size
    line = _soft_lines(size, [((cx - dx, cy - dy), (cx + dx, cy + dy), rng.uniform(2, 4.5) * s)])
    return 1 - rng.uniform(0.35, 0.6) * line


def _scratches(rng, size, s):
    """A few short thin straight marks, light or dark, roughly parallel (like broom texture)."""
    lines = []
    angle = rng.uniform(0, np.pi)
    for _ in range(rng.integers(3, 10)):
        a, half = angle + rng.normal(0, 0.12), rng.uniform(0.04, 0.15) * size
        (cx, cy), dx, dy = rng.uniform(0, size, 2), half * np.cos(a), half * np.sin(a)
        lines.append(((cx - dx, cy - dy), (cx + dx, cy + dy), rng.uniform(0.8, 1.6) * s))
    return 1 + rng.choice([-1, 1]) * rng.uniform(0.2, 0.4) * _soft_lines(size, lines)


def _shadow(rng, size, s):
    """A soft shadow: part of the tile darker, with a blurred straight edge."""
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    angle, (cx, cy) = rng.uniform(0, 2 * np.pi), rng.uniform(-0.6, 0.6, 2)
    distance = ((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)) * size / 2
    return 1 - rng.uniform(0.2, 0.4) / (1 + np.exp(-distance / (rng.uniform(3, 12) * s)))


_DISTRACTORS = {"saw_cut": _saw_cut, "scratches": _scratches, "shadow": _shadow}

__all__ = ["SYNTHETIC_MASK_DIR", "make_synthetic_cracks", "synthetic_mask_path"]
