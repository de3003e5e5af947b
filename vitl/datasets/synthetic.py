"""Synthetic concrete tiles with and without thin branching cracks, for offline demos and tests.

:func:`make_synthetic_cracks` writes a two-class image folder that
``vitl.data.load_image_folder`` reads; :func:`synthetic_mask_path` finds a
tile's crack mask.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from .._errors import check_fraction, check_int, problem
from .folders import replacing_folder

#: Hidden folder (beside the class folders) holding the crack masks; image-folder
#: loaders skip dot-folders, so it is never taken for a class.
SYNTHETIC_MASK_DIR = ".masks"
_SYNTH_MARKER = ".synthetic-cracks.json"
#: Bump when the drawing changes, so earlier folders are regenerated.
_SYNTH_VERSION = 1
_BASE = 224.0  # sizes below are in pixels of a 224-px tile and scale with ``size``


def make_synthetic_cracks(
    out_dir,
    n_per_class: int = 50,
    *,
    size: int = 224,
    seed: int = 0,
    masks: bool = False,
    class_names=("cracked", "uncracked"),
    distractor_fraction: float = 0.5,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Draw a two-class image folder of synthetic concrete tiles with and without cracks.

    Every tile is concrete-like texture (multi-scale grain, aggregate
    speckle, pores, stains, uneven light, a grey-beige tint that varies a
    little). Tiles of the first class get thin dark branching cracks; a share
    ``distractor_fraction`` of the second class get crack-like distractors
    (saw-cut joints, scratches, soft shadows, a hard edge), so "any dark line"
    is not the answer. Cracks are thin (about 1-3% of the pixels) and every
    tile keeps the mean brightness of its texture, so global brightness
    statistics say next to nothing about the class.

    Layout: ``out_dir/<class>/<class>_<i:04d>.png``; with ``masks=True`` also
    ``out_dir/.masks/<class>_<i:04d>.png`` (255 = crack) for the cracked class
    only (see :func:`synthetic_mask_path`; the dot keeps image-folder loaders
    from taking it for a class). ``README.md`` says how the folder was made and
    ``tiles.csv`` lists per tile its class, crack share and distractors. Image
    ``i`` depends only on ``seed``, its class and ``i`` (not on
    ``n_per_class``), and the same arguments give byte-identical files.

    Calling again with the same arguments returns at once; other arguments or
    ``overwrite=True`` regenerate into a temporary sibling folder that then
    replaces ``out_dir``. A non-empty ``out_dir`` this function did not make is
    never touched.

    Args:
        out_dir: the folder to write.
        n_per_class: tiles per class.
        size: tile width and height in pixels (>= 32).
        seed: the random seed (integer >= 0).
        masks: also write binary crack masks.
        class_names: (cracked, uncracked) folder names.
        distractor_fraction: share of uncracked tiles that get distractors.
        overwrite: regenerate even when ``out_dir`` already matches.
        progress: show a tqdm bar.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ValueError: an argument is out of range.
        FileExistsError: ``out_dir`` is a file, or a non-empty folder not made by
            this function.

    Example:
        >>> import tempfile
        >>> out = make_synthetic_cracks(tempfile.mkdtemp() + "/syn", 2, size=64, progress=False)
        >>> sorted(p.name for p in (out / "cracked").iterdir())
        ['cracked_0000.png', 'cracked_0001.png']
        >>> Image.open(out / "uncracked" / "uncracked_0001.png").size
        (64, 64)
    """
    out_dir = Path(out_dir).expanduser()
    params = _check_synthetic_args(n_per_class, size, seed, masks, class_names, distractor_fraction)
    marker = out_dir / _SYNTH_MARKER
    if not overwrite and _read_json(marker) == params:
        return out_dir
    if out_dir.exists() and not marker.is_file() and (
        not out_dir.is_dir() or any(out_dir.iterdir())
    ):
        raise FileExistsError(
            problem("out_dir", "a new or empty folder, or one made by make_synthetic_cracks",
                    f"{out_dir} (not empty, no {_SYNTH_MARKER})",
                    "pass another out_dir or empty that folder yourself")
        )
    with replacing_folder(out_dir) as tmp:
        _write_synthetic(tmp, params, progress)
    return out_dir


def synthetic_mask_path(image_path) -> Path:
    """Return where :func:`make_synthetic_cracks` put the crack mask of ``image_path``.

    ``out_dir/<class>/<name>.png`` -> ``out_dir/.masks/<name>.png``. The file
    exists only for cracked tiles made with ``masks=True``; uncracked tiles have
    no crack pixels and no mask file.

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


def _check_synthetic_args(n_per_class, size, seed, masks, class_names, distractor_fraction):
    check_int("n_per_class", n_per_class, minimum=1)
    check_int("size", size, minimum=32, fix="pass size=224 (or at least 32)")
    check_int("seed", seed, minimum=0, fix="pass a seed such as 0")
    names = tuple(class_names) if isinstance(class_names, (list, tuple)) else None
    if (
        names is None
        or len(names) != 2
        or len(set(names)) != 2
        or not all(isinstance(n, str) and n and n[0] != "." and "/" not in n and "\\" not in n
                   for n in names)
    ):
        raise ValueError(
            problem("class_names", "two different folder names (cracked, uncracked), no dot first",
                    class_names, "pass class_names=('cracked', 'uncracked')")
        )
    return {
        "generator_version": _SYNTH_VERSION,
        "n_per_class": n_per_class,
        "size": size,
        "seed": seed,
        "masks": bool(masks),
        "class_names": list(names),
        "distractor_fraction": check_fraction("distractor_fraction", distractor_fraction),
    }


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_synthetic(folder: Path, params: dict, progress: bool) -> None:
    cracked, uncracked = params["class_names"]
    n, size = params["n_per_class"], params["size"]
    for name in (cracked, uncracked):
        (folder / name).mkdir()
    if params["masks"]:
        (folder / SYNTHETIC_MASK_DIR).mkdir()
    coverage, rows = [], ["file,class,crack_share,distractors"]
    with tqdm(total=2 * n, desc="synthetic cracks", disable=not progress) as bar:
        for class_index, name in enumerate((cracked, uncracked)):
            for i in range(n):
                # Image i's seed depends on (seed, class, i) only, not on n_per_class.
                rng = np.random.default_rng(
                    np.random.SeedSequence(params["seed"], spawn_key=(class_index, i))
                )
                image, mask, distractors = _draw_tile(
                    rng, size, crack=class_index == 0,
                    distractor_fraction=params["distractor_fraction"],
                )
                stem = f"{name}_{i:04d}.png"
                # compress_level=1: 5x faster than the default and still lossless.
                Image.fromarray(image).save(folder / name / stem, compress_level=1)
                share = 0.0 if mask is None else float(mask.mean())
                if mask is not None:
                    coverage.append(share)
                    if params["masks"]:
                        Image.fromarray(mask.astype(np.uint8) * 255).save(
                            folder / SYNTHETIC_MASK_DIR / stem
                        )
                rows.append(f"{name}/{stem},{name},{share:.4f},{'+'.join(distractors)}")
                bar.update()
    (folder / "tiles.csv").write_text("\n".join(rows) + "\n")
    (folder / "README.md").write_text(_synthetic_readme(params, float(np.mean(coverage))))
    (folder / _SYNTH_MARKER).write_text(json.dumps(params, indent=1) + "\n")  # last: "complete"


def _synthetic_readme(params: dict, mean_coverage: float) -> str:
    cracked, uncracked = params["class_names"]
    n = params["n_per_class"]
    masks = (
        f"- `{SYNTHETIC_MASK_DIR}/{cracked}_<i>.png`: binary crack masks (255 = crack) of the "
        f"`{cracked}` tiles; the dot keeps image-folder loaders from taking it for a class.\n"
        if params["masks"] else ""
    )
    return (
        "# Synthetic concrete-crack tiles\n\n"
        "Made by `vitl.datasets.make_synthetic_cracks` (numpy + Pillow) with "
        f"seed={params['seed']}, size={params['size']}, n_per_class={n}, "
        f"distractor_fraction={params['distractor_fraction']}, "
        f"generator version {params['generator_version']}.\n\n"
        f"- `{cracked}/`: {n} tiles with thin dark branching cracks "
        f"(cracks cover {100 * mean_coverage:.1f}% of a tile on average).\n"
        f"- `{uncracked}/`: {n} tiles without cracks; about "
        f"{100 * params['distractor_fraction']:.0f}% carry distractors (saw-cut joints, "
        "scratches, soft shadows, hard edges).\n"
        f"{masks}"
        "- `tiles.csv`: per tile its class, the share of crack pixels and the distractors "
        "drawn (`saw_cut`, `scratches`, `shadow`, `edge`).\n\n"
        "Texture: multi-scale grain noise, aggregate speckle, pores, stains, uneven light, "
        "grey-beige tint. Not real data: use it for demos, tests and teaching, never to "
        "claim how well a model inspects real concrete.\n"
    )


# ---- drawing (all lengths in 224-px units times ``s = size / 224``)


def _draw_tile(rng: np.random.Generator, size: int, *, crack: bool,
               distractor_fraction: float = 0.5):
    """Draw one tile; return (uint8 RGB image, bool crack mask or None, distractor names)."""
    s = size / _BASE
    light = _concrete_luminance(rng, size, s)
    texture_mean = light.mean()
    mask, distractors = None, []
    if crack:
        soft = _crack_coverage(rng, size, s)
        light = _darken_along(light, soft, rng, s)
        mask = soft >= 0.35
    elif rng.random() < distractor_fraction:
        light, distractors = _add_distractors(light, rng, size, s)
    # Cracks and distractors keep the tile's mean brightness (as a camera's auto-exposure
    # would), so the class shows in the crack, not in the mean.
    light = light * (texture_mean / light.mean())
    return _colourise(light, rng), mask, distractors


def _upsampled_noise(rng, grid: int, size: int) -> np.ndarray:
    """Unit-variance noise on a ``grid`` x ``grid`` lattice, smoothly upsampled to ``size``."""
    if grid >= size:
        return rng.standard_normal((size, size)).astype(np.float32)
    # A margin cell each side hides bicubic edge effects and shifts the lattice randomly.
    small = rng.standard_normal((grid + 2, grid + 2)).astype(np.float32)
    big = Image.fromarray(small, "F").resize((size, size), Image.BICUBIC,
                                              box=(1, 1, grid + 1, grid + 1))
    return np.asarray(big)


def _blur(layer: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float layer (Pillow's blur has no float mode); radius 3 sigma."""
    return gaussian_filter(layer.astype(np.float32), sigma, mode="mirror", truncate=3.0)


def _concrete_luminance(rng, size: int, s: float) -> np.ndarray:
    rough = rng.uniform(0.7, 1.4)
    light = np.ones((size, size), np.float32)
    # grid cells per tile -> amplitude (relative brightness); coarse = mottling, fine = grain
    for cells, amp in ((3, 0.05), (6, 0.04), (12, 0.03), (28, 0.03), (56, 0.03), (112, 0.035),
                       (224, 0.05)):
        grid = cells if cells <= 12 else max(2, round(cells * s))
        light += amp * rough * rng.uniform(0.6, 1.4) * _upsampled_noise(rng, min(grid, size), size)
    light += _speckle(rng, size, s)
    light *= 1 + _stains(rng, size)
    light *= _lighting(rng, size)
    return light


def _speckle(rng, size: int, s: float) -> np.ndarray:
    """Aggregate grains (light and dark blobs) and pores (small dark round holes)."""
    out = np.zeros((size, size), np.float32)
    # (count per 224-px tile, blob sigma in px, relative brightness)
    for count, sigma, amp in ((350, 0.8, 0.12), (350, 0.8, -0.12), (40, 1.8, 0.07),
                              (40, 1.8, -0.07), (45, 0.7, -0.45)):
        out += amp * _blobs(rng, size, rng.poisson(count * s * s * rng.uniform(0.5, 1.5)),
                            sigma * s)
    return out


def _blobs(rng, size: int, n: int, sigma: float) -> np.ndarray:
    """Soft round blobs of varied radius (about 0.4 to 1.6 sigma): blurred, clipped impulses."""
    impulses = np.zeros((size, size), np.float32)
    rows, cols = rng.integers(0, size, (2, n))
    impulses[rows, cols] = rng.uniform(0.4, 1.0, n)
    return np.clip(_blur(impulses, sigma) * (2 * np.pi * sigma * sigma * 3.5), 0, 1)


def _stains(rng, size: int) -> np.ndarray:
    """Large soft blotches (water marks, patches): a relative brightness change."""
    out = np.zeros((size, size), np.float32)
    for _ in range(rng.integers(0, 3)):
        field = _upsampled_noise(rng, int(rng.integers(3, 7)), size)
        blot = np.clip((field - rng.uniform(0.6, 1.3)) * rng.uniform(1.0, 3.0), 0, 1)
        out += blot * rng.choice([-1.0, 0.6]) * rng.uniform(0.05, 0.15)
    return out


@functools.lru_cache(maxsize=4)
def _grid(size: int):
    """Pixel coordinates scaled to [-1, 1] (y, x); cached, as every tile needs them."""
    return np.mgrid[-1:1:size * 1j, -1:1:size * 1j].astype(np.float32)


def _lighting(rng, size: int) -> np.ndarray:
    y, x = _grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = rng.uniform(0, 0.12) * (x * np.cos(angle) + y * np.sin(angle))
    cx, cy = rng.uniform(-0.5, 0.5, 2)
    vignette = rng.uniform(0, 0.12) * ((x - cx) ** 2 + (y - cy) ** 2) / 2
    return (1 + ramp - vignette).astype(np.float32)


def _colourise(light: np.ndarray, rng) -> np.ndarray:
    brightness = rng.uniform(0.52, 0.78)
    tint = np.array([1.0, 0.975, 0.935]) + rng.normal(0, [0.006, 0.004, 0.012])
    rgb = light[..., None] * (brightness * tint).astype(np.float32)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


def _crack_coverage(rng, size: int, s: float) -> np.ndarray:
    """Soft [0, 1] coverage of one or two branching cracks, drawn at 3x and shrunk."""
    scale = 3
    for _attempt in range(20):  # redraw cracks that barely touch the tile
        img = Image.new("L", (size * scale, size * scale), 0)
        draw = ImageDraw.Draw(img)
        for _ in range(1 if rng.random() < 0.75 else 2):
            start, heading = _crack_start(rng, size)
            width = rng.uniform(1.3, 3.4) * s
            length = rng.uniform(0.7, 1.4) * size
            _draw_crack(draw, rng, start, heading, width, length, size, scale, depth=0)
        soft = np.asarray(img.resize((size, size), Image.BOX), np.float32) / 255
        share = (soft >= 0.35).mean()
        if 0.006 <= share <= 0.08:
            break
    return soft


def _crack_start(rng, size: int):
    """A start point on a random edge (or inside), heading roughly across the tile."""
    if rng.random() < 0.2:
        point = rng.uniform(0.2, 0.8, 2) * size
        return point, rng.uniform(0, 2 * np.pi)
    side = rng.integers(4)
    t = rng.uniform(0.1, 0.9) * size
    point, heading = {
        0: ((t, 0.0), np.pi / 2), 1: ((t, size), -np.pi / 2),
        2: ((0.0, t), 0.0), 3: ((size, t), np.pi),
    }[int(side)]
    return np.array(point, float), heading + rng.normal(0, 0.5)


def _draw_crack(draw, rng, point, heading, width, length, size, scale, depth):
    """Random walk with momentum: the heading turns smoothly, the path jitters, width varies."""
    s = size / _BASE
    step = 2.5 * s
    n = max(2, int(length / step))
    # The course drifts slowly, the deviation from it reverts to zero (no loops), and
    # each step zig-zags a little: cracks run round aggregate grains.
    course = heading + np.cumsum(rng.normal(0, 0.025, n))
    kicks, turn = rng.normal(0, 0.1, n), np.empty(n)
    acc = 0.0
    for k in range(n):
        acc = 0.9 * acc + kicks[k]
        turn[k] = acc
    angles = course + turn + rng.normal(0, 0.35, n)
    path = point + np.cumsum(step * np.stack([np.cos(angles), np.sin(angles)], 1), 0)
    path = np.vstack([point, path])
    k = np.arange(n)
    taper = np.minimum(1.0, np.minimum((k + 1) / 6, (n - k) / 10))
    wobble = np.sin(np.cumsum(rng.normal(0.25, 0.15, n)) + rng.uniform(0, 2 * np.pi))
    widths = np.maximum(max(1.0, s), width * taper * (0.75 + 0.25 * wobble))
    inside = np.all((path > -0.1 * size) & (path < 1.1 * size), axis=1)
    n = int(np.argmin(inside)) if not inside.all() else n  # stop where it leaves the tile
    branch_p = 0.035 if depth == 0 else 0.015
    if depth < 2:
        for b in np.flatnonzero(rng.random(n) < branch_p):
            side = rng.choice([-1, 1])
            _draw_crack(draw, rng, path[b + 1].copy(), angles[b] + side * rng.uniform(0.35, 1.1),
                        max(1.0, s, width * rng.uniform(0.4, 0.75)),
                        length * rng.uniform(0.15, 0.45), size, scale, depth + 1)
    pts = path * scale
    for i in range(n):
        w = widths[i] * scale
        draw.line([tuple(pts[i]), tuple(pts[i + 1])], fill=255, width=max(1, round(w)))
        x, y = pts[i + 1]
        draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)


def _darken_along(light, soft, rng, s) -> np.ndarray:
    """Darken the crack (varying depth) and, faintly, a halo around it."""
    depth = rng.uniform(0.45, 0.75) * (0.8 + 0.2 * _upsampled_noise(rng, 12, light.shape[0]))
    halo = np.clip(_blur(soft, 2.5 * s) * 2.5, 0, 1)
    return light * (1 - rng.uniform(0.06, 0.15) * halo) * (1 - np.clip(depth, 0, 0.9) * soft)


def _add_distractors(light, rng, size: int, s: float):
    """Add one or two crack-like things that are not cracks; return (light, their names)."""
    drawers = {"saw_cut": _saw_cut, "scratches": _scratches, "shadow": _shadow,
               "edge": _hard_edge}
    kinds = [str(k) for k in rng.choice(list(drawers), size=1 if rng.random() < 0.7 else 2,
                                        replace=False)]
    for kind in kinds:
        light = drawers[kind](light, rng, size, s)
    return light, kinds


def _line_layer(size, lines, scale=3) -> np.ndarray:
    """Soft coverage of straight lines [(x0, y0, x1, y1, width), ...] drawn at ``scale`` x."""
    img = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(img)
    for x0, y0, x1, y1, w in lines:
        draw.line([(x0 * scale, y0 * scale), (x1 * scale, y1 * scale)], fill=255,
                  width=max(1, round(w * scale)))
    return np.asarray(img.resize((size, size), Image.BOX), np.float32) / 255


def _through_tile(rng, size, angle):
    """End points of a straight line through a random point of the tile at ``angle``."""
    cx, cy = rng.uniform(0.15, 0.85, 2) * size
    dx, dy = np.cos(angle) * 2 * size, np.sin(angle) * 2 * size
    return cx - dx, cy - dy, cx + dx, cy + dy


def _saw_cut(light, rng, size, s):
    """A straight joint of uniform width right across the tile, mostly near-axis-aligned."""
    angle = rng.choice([0, np.pi / 2]) + rng.normal(0, 0.04) if rng.random() < 0.7 \
        else rng.uniform(0, np.pi)
    width = rng.uniform(2.0, 4.5) * s
    line = _line_layer(size, [(*_through_tile(rng, size, angle), width)])
    halo = np.clip(_blur(line, 1.5 * s) * 2, 0, 1)
    return light * (1 - 0.08 * halo) * (1 - rng.uniform(0.35, 0.6) * line)


def _scratches(light, rng, size, s):
    """A few short thin straight marks, light or dark, roughly parallel (like broom texture)."""
    angle = rng.uniform(0, np.pi)
    lines = []
    for _ in range(rng.integers(3, 10)):
        a = angle + rng.normal(0, 0.12)
        half = rng.uniform(0.04, 0.15) * size
        cx, cy = rng.uniform(0, size, 2)
        lines.append((cx - half * np.cos(a), cy - half * np.sin(a),
                      cx + half * np.cos(a), cy + half * np.sin(a), rng.uniform(0.8, 1.6) * s))
    sign = rng.choice([-1.0, 1.0])
    return light * (1 + sign * rng.uniform(0.2, 0.4) * _line_layer(size, lines))


def _signed_distance(rng, size):
    """Distance in pixels from a random straight line through the tile (signed)."""
    y, x = _grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    cx, cy = rng.uniform(-0.6, 0.6, 2)
    return ((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)) * (size / 2)


def _shadow(light, rng, size, s):
    """A soft shadow: half the tile darker, with a blurred straight edge."""
    soft = rng.uniform(3, 12) * s
    inside = 1 / (1 + np.exp(-_signed_distance(rng, size) / soft))
    return light * (1 - rng.uniform(0.2, 0.4) * inside)


def _hard_edge(light, rng, size, s):
    """A sharp straight border: a slab edge, kerb or paint line covering part of the tile."""
    d = _signed_distance(rng, size)
    d += (0.3 * size) * (rng.random() - 0.2)  # covers a smaller share more often
    inside = np.clip(d / (0.7 * s) + 0.5, 0, 1)
    factor = rng.choice([rng.uniform(0.45, 0.75), rng.uniform(1.15, 1.35)])
    return light * (1 + (factor - 1) * inside)


__all__ = ["SYNTHETIC_MASK_DIR", "make_synthetic_cracks", "synthetic_mask_path"]
