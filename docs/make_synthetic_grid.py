"""Render docs/images/synthetic_grid.png: synthetic cracked tiles (top), uncracked ones (bottom).

Each title gives the tile's file and, for cracked tiles, the share of crack pixels.
Run: python docs/make_synthetic_grid.py
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
        rows = [[t for t in tiles if t["class"] == name][:COLUMNS]
                for name in ("cracked", "uncracked")]
        fig, axes = plt.subplots(2, COLUMNS, figsize=(2.2 * COLUMNS, 5.6))
        for row, chosen in enumerate(rows):
            for ax, tile in zip(axes[row], chosen, strict=True):
                ax.imshow(Image.open(folder / tile["file"]))
                share = float(tile["crack_share"])
                note = f"crack {share:.1%}" if tile["class"] == "cracked" else "no crack"
                ax.set_title(f"{Path(tile['file']).stem}\n{note}", fontsize=8)
                ax.axis("off")
        fig.suptitle("vitl.datasets.make_synthetic_cracks(seed=0): cracked (top), "
                     "uncracked (bottom)", fontsize=10)
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
