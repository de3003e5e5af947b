"""``vitl demo``: the main job, end to end on the tutorial's data."""

from __future__ import annotations

import argparse
import warnings

from ..data import load_image_folder, tutorial_split
from ..datasets import tutorial_data


def register(subparsers) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo", help="the main job: get the tutorial's data, split it, train, evaluate, save",
        description="Get the ML.NET tutorial's SDNET2018 deck sample (mirror, then download, "
                    "then a synthetic set as a last resort), summarise and split it.")
    parser.add_argument("--seed", type=int, default=None, help="split seed")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    folder, source = tutorial_data()
    print(f"data: {source}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are listed in the report below
        images = load_image_folder(folder)
    print(images.summary())
    print(images.report)
    parts = tutorial_split(images, seed=args.seed)
    print("\nsplit (ML.NET tutorial: 70% train, the rest 90/10 into validation/test):")
    print(parts)
    return 0
