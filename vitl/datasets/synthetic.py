"""Synthetic concrete tiles with and without thin branching cracks, for offline demos and tests.

:func:`make_synthetic_cracks` writes a two-class image folder that
``vitl.data.load_image_folder`` reads; :func:`synthetic_mask_path` finds a
tile's crack mask. A tile is grey-beige noise at several scales (grain, mottling,
pores, uneven light); a crack is a dark meandering walk with a few branches.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_edt, gaussian_filter, gaussian_filter1d
from tqdm import tqdm

from .._errors import check_int, check_verbose, problem
from .._files import atomic_folder, folder_lock

#: Hidden folder (beside the class folders) holding the crack masks; image-folder
#: loaders skip dot-folders, so it is never taken for a class.
SYNTHETIC_MASK_DIR = ".masks"
_MARKER = ".synthetic-cracks.json"
#: Bump when the drawing changes, so earlier folders are regenerated.
_VERSION = 3
_README = """# Synthetic concrete-crack tiles (not real data)

Made by `vitl.datasets.make_synthetic_cracks` with {settings}. `tiles.csv` lists per tile its
class and crack share; `.masks/` (if there) holds crack masks, 255 = crack.
"""


def make_synthetic_cracks(out_dir, n_per_class: int = 50, *, size: int = 224, seed: int = 0,
                          masks: bool = False, class_names=("cracked", "uncracked"),
                          overwrite: bool = False, verbose: int = 1) -> Path:
    """Draw a two-class image folder of synthetic concrete tiles with and without cracks.

    Tiles of the first class get a thin dark branching crack (0.6-8% of the
    pixels, about 1-4% on average). Every tile keeps the mean brightness of its
    texture and the textures' contrast varies, so a tile's brightness mean and
    standard deviation say little about the class.

    Layout: ``out_dir/<class>/<class>_<i:04d>.png``; with ``masks=True`` also
    ``out_dir/.masks/<class>_<i:04d>.png`` (255 = crack) for the cracked class
    (see :func:`synthetic_mask_path`). ``README.md`` says how the folder was made
    and ``tiles.csv`` lists per tile its class and crack share. Tile
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
              "masks": bool(masks), "class_names": list(names)}
    verbose = check_verbose(verbose)
    marker = out_dir / _MARKER
    with folder_lock(out_dir.parent):  # notebooks starting together: one writes, the others wait
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
    rows = ["file,class,crack_share"]
    for class_index, i in tqdm(itertools.product((0, 1), range(n)), total=2 * n,
                               desc="synthetic cracks", disable=not verbose):
        # Tile i's seed depends on (seed, class, i) only, not on n_per_class.
        rng = np.random.default_rng(np.random.SeedSequence(params["seed"],
                                                           spawn_key=(class_index, i)))
        image, mask = _draw_tile(rng, params["size"], crack=class_index == 0)
        name = names[class_index]
        stem = f"{name}_{i:04d}.png"
        Image.fromarray(image).save(folder / name / stem, compress_level=1)  # 5x faster, lossless
        if class_index == 0 and params["masks"]:
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / SYNTHETIC_MASK_DIR / stem)
        rows.append(f"{name}/{stem},{name},{mask.mean():.4f}")
    (folder / "tiles.csv").write_text("\n".join(rows) + "\n")
    settings = ", ".join(f"{k}={v}" for k, v in params.items())
    (folder / "README.md").write_text(_README.format(settings=settings))
    (folder / _MARKER).write_text(json.dumps(params) + "\n")  # last: it marks "complete"


def _draw_tile(rng: np.random.Generator, size: int, *, crack: bool):
    """Draw one tile; return (uint8 RGB image, bool crack mask, all False without a crack)."""
    s = size / 224  # lengths below are in pixels of a 224-px tile
    light = np.ones((size, size))
    rough = rng.uniform(0.7, 1.4)  # texture contrast varies, so a tile's std is no giveaway
    for sigma, amp in ((40, 0.06), (12, 0.05), (4, 0.04), (1.2, 0.05), (0, 0.05)):
        noise = gaussian_filter(rng.standard_normal((size, size)), sigma * s)
        light += amp * rough * noise / noise.std()
    pores = gaussian_filter((rng.random((size, size)) < 0.001).astype(float), 0.8 * s)
    light -= 0.4 * pores / max(pores.max(), 1e-9)
    mean = light.mean()
    coverage = _crack_coverage(rng, size, s) if crack else np.zeros((size, size))
    halo = np.clip(gaussian_filter(coverage, 2.5 * s) * 2.5, 0, 1)
    light *= (1 - rng.uniform(0.06, 0.15) * halo) * (1 - rng.uniform(0.45, 0.75) * coverage)
    light *= mean / light.mean()  # like a camera's auto-exposure: the class is not in the mean
    tint = rng.uniform(0.52, 0.78) * (np.array([1.0, 0.975, 0.935]) + rng.normal(0, 0.008, 3))
    return np.clip(light[..., None] * tint * 255 + 0.5, 0, 255).astype(np.uint8), coverage >= 0.5


def _crack_coverage(rng, size: int, s: float) -> np.ndarray:
    """Soft [0, 1] coverage of a branching crack, redrawn until it covers 0.6-8% of the tile."""
    for _attempt in range(20):  # from the left edge rightwards; turned at the end
        start = (0, rng.uniform(0.1, 0.9) * (size - 1))
        points, widths = _walk(rng, start, 0.0, rng.uniform(0.7, 1.7) * s, size * 1.2)
        for b in rng.choice(len(points), rng.integers(0, 4)):  # branches off the main crack
            turn = rng.choice([-1, 1]) * rng.uniform(0.35, 1.1)
            branch = _walk(rng, points[b], turn, widths[b] * 0.6,
                           size * rng.uniform(0.15, 0.45))
            points, widths = np.vstack([points, branch[0]]), np.concatenate([widths, branch[1]])
        inside = np.all((points >= 0) & (points <= size - 1), 1)
        (col, row), half = np.round(points[inside]).astype(int).T, widths[inside]
        centre, half_width = np.ones((size, size), bool), np.zeros((size, size))
        centre[row, col] = False
        np.maximum.at(half_width, (row, col), half)
        # Each pixel is covered by the nearest centre-line pixel's width: soft edges, 1 px wide.
        distance, (near_row, near_col) = distance_transform_edt(centre, return_indices=True)
        coverage = np.clip(half_width[near_row, near_col] + 0.5 - distance, 0, 1)
        if 0.006 <= (coverage >= 0.5).mean() <= 0.08:
            break
    return np.rot90(coverage, rng.integers(4))


def _walk(rng, start, heading: float, half_width: float, length: float):
    """Points (n, 2) one pixel apart and half-widths (n,) of a meandering walk, tapered ends."""
    n = max(2, int(length))
    meander = gaussian_filter1d(rng.normal(0, 2.0, n), 6) + np.cumsum(rng.normal(0, 0.01, n))
    angles = heading + meander + rng.normal(0, 0.3, n)
    points = start + np.cumsum(np.stack([np.cos(angles), np.sin(angles)], 1), 0)
    taper = np.minimum(1, np.minimum(np.arange(1, n + 1) / 15, np.arange(n, 0, -1) / 25))
    return points, np.maximum(0.5, half_width * taper * rng.uniform(0.75, 1.0, n))


__all__ = ["SYNTHETIC_MASK_DIR", "make_synthetic_cracks", "synthetic_mask_path"]
