"""Render docs/images/synthetic_grid.png: synthetic cracked tiles (top), uncracked ones (bottom).

The bottom row shows one tile per kind of distractor (saw-cut joint, scratches,
soft shadow, hard edge) and two plain ones. Run: python docs/make_synthetic_grid.py
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image

from vitl.datasets import make_synthetic_cracks

OUT = Path(__file__).resolve().parent / "images" / "synthetic_grid.png"
COLUMNS = 6


def main() -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_synthetic_cracks(Path(tmp) / "syn", 30, seed=0, verbose=0)
        with open(folder / "tiles.csv", newline="") as handle:
            tiles = list(csv.DictReader(handle))
        cracked = [t for t in tiles if t["class"] == "cracked"][:COLUMNS]
        negatives = [t for t in tiles if t["class"] == "uncracked"]
        tricky = []  # the first tile showing each kind of distractor
        for kind in ("saw_cut", "scratches", "shadow", "edge"):
            tricky += [t for t in negatives if kind in t["distractors"] and t not in tricky][:1]
        plain = [t for t in negatives if not t["distractors"]][: COLUMNS - len(tricky)]
        fig, axes = plt.subplots(2, COLUMNS, figsize=(2.2 * COLUMNS, 5.6))
        for row, chosen in enumerate((cracked, tricky + plain)):
            for ax, tile in zip(axes[row], chosen, strict=True):
                ax.imshow(Image.open(folder / tile["file"]))
                note = tile["distractors"] or ("crack" if tile["class"] == "cracked" else "plain")
                ax.set_title(f"{Path(tile['file']).stem}\n{note}", fontsize=8)
                ax.axis("off")
        fig.suptitle("vitl.datasets.make_synthetic_cracks(seed=0): cracked (top), "
                     "uncracked with and without distractors (bottom)", fontsize=10)
        fig.tight_layout()
        OUT.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
    # 64 grey-beige colours look the same and keep the committed file small.
    Image.open(buffer).convert("RGB").quantize(64).save(OUT, optimize=True)
    return OUT


if __name__ == "__main__":
    print(main())
