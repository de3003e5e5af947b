"""``vitl demo``: the main job, end to end on the tutorial's data.

Get the ML.NET tutorial's SDNET2018 deck sample (or a synthetic stand-in,
saying so), split it like the tutorial, train (bottleneck phase, then the
head with an ML.NET-style epoch log), evaluate on validation and test, choose
a threshold for 95% crack recall, save the model and use it on a few test images.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from .. import _paths
from ..data import load_image_folder, tutorial_split
from ..datasets import tutorial_data
from . import train

TARGET_RECALL = 0.95


def default_out() -> Path:
    """Where the demo saves its model: ``VITL_HOME/demo-model``.

    Returns:
        The folder (it may not exist).

    Example:
        >>> default_out().name
        'demo-model'
    """
    return _paths.vitl_home() / "demo-model"


def register(subparsers) -> None:
    """Add the ``demo`` sub-command.

    Args:
        subparsers: the ``vitl`` parser's sub-parsers.

    Returns:
        None.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> register(parser.add_subparsers())
        >>> parser.parse_args(["demo"]).backbone
        'auto'
    """
    parser = subparsers.add_parser(
        "demo", help="the main job: get the tutorial's data, split it, train, evaluate, save",
        description="Get the ML.NET tutorial's SDNET2018 deck sample (mirror, then download, "
                    "then a synthetic set as a last resort), split it like the tutorial, train "
                    "a classifier, evaluate it, save it and classify a few test images.")
    parser.add_argument("--out", default=None, metavar="MODEL_DIR",
                        help="where to save the model (default VITL_HOME/demo-model, "
                             "i.e. ~/.vitl/demo-model)")
    train.add_training_options(parser, verbose=2)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Get the data, split, train, evaluate, choose a threshold, save, classify; return 0.

    Args:
        args: the parsed ``vitl demo`` arguments.

    Returns:
        The exit code, 0.

    Example:
        Trains a model (minutes; tested end to end in ``tests/test_cli_models.py``):

        >>> from vitl.cli import main
        >>> main(["demo", "--backbone", "mobilenetv2-tv"])  # doctest: +SKIP
        data: SDNET2018 deck sample, ...
        0
    """
    start = time.perf_counter()
    out, backbone, reason = train.check_before_work(args, args.out or default_out())
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

    print(f"\n{reason or f'backbone: {backbone} (chosen with --backbone)'}")
    record = {"kind": "tutorial", "seed": args.seed,
              "counts": {name: part.counts() for name, part in parts._asdict().items()}}
    clf, metrics, reports = train.train_on_split(parts, backbone, args, str(folder), record)

    validation = reports["validation"]
    print(f"\n== validation ({len(parts.validation)} images) ==\n{validation}")
    test = reports.get("test")
    if test is not None:
        print(f"\n== test ({len(parts.test)} images) ==\n{test}")
    if len(validation.class_names) == 2:
        choice = validation.threshold_for_recall(TARGET_RECALL)
        metrics["threshold"] = choice.to_dict()
        print(f"\nthreshold for {TARGET_RECALL:.0%} recall of '{choice.positive_class}', chosen "
              f"on validation: score >= {choice.threshold:.4f} (validation: recall "
              f"{choice.recall:.3f}, precision {choice.precision:.3f}, false alarms "
              f"{choice.fp} of {choice.fp + choice.tn})")
        if test is not None:
            on_test = test.at_threshold(choice.threshold)
            print(f"  on test: recall {on_test.recall:.3f}, precision {on_test.precision:.3f}, "
                  f"tp={on_test.tp} fp={on_test.fp} fn={on_test.fn} tn={on_test.tn}")

    metrics["data_source_line"] = source
    train.save_model_dir(clf, out, metrics)
    print(f"\nsaved the model to {out} (model.keras, labels.txt, metrics.json)")

    sample = parts.test if len(parts.test) else parts.validation
    picks = [round(i * (len(sample) - 1) / 2) for i in range(3)] if len(sample) >= 3 \
        else list(range(len(sample)))
    chosen = sample.subset(picks)
    print(f"\nusing the model on {len(chosen)} test images:")
    truths = [chosen.class_names[label] for label in chosen.labels]
    for prediction, truth in zip(clf.classify(chosen), truths):
        mark = "right" if prediction.label == truth else "WRONG"
        print(f"  {Path(prediction.path).name}: predicted {prediction.label} "
              f"({prediction.score:.3f}), true {truth} -> {mark}")

    seconds = time.perf_counter() - start
    print(f"\ndone in {seconds:.0f} s with backbone {backbone} on "
          f"{'synthetic data' if source.startswith('synthetic') else 'the SDNET2018 sample'}: "
          f"validation accuracy {validation.accuracy:.3f}"
          + (f", test accuracy {test.accuracy:.3f}" if test is not None else ""))
    print(f"next: vitl predict {out} IMAGE...   |   vitl export {out} --format tflite")
    return 0
