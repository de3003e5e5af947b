"""The main job: get the tutorial's data, split it, train, evaluate, save.

Get the ML.NET tutorial's SDNET2018 deck sample (mirror, then
download, then a synthetic set as a last resort, saying so), split it like the tutorial,
train a classifier (bottleneck phase, then the head with an ML.NET-style epoch log),
evaluate it on validation and test, choose a threshold for 95% crack recall, save it and
classify a few test images.

Example:
    The steps are ``vitl train``'s with ``--split tutorial`` (minutes; tested end to end in
    ``tests/test_cli_models.py``):

    >>> from vitl.cli import build_parser, main
    >>> args = build_parser().parse_args(["demo"])
    >>> args.backbone, args.split, args.verbose, args.out
    ('auto', 'tutorial', 2, None)
    >>> main(["demo", "--backbone", "mobilenetv2-tv"])  # doctest: +SKIP
    data: SDNET2018 deck sample, ...
    0
"""

import time
from pathlib import Path

from .. import _paths
from ..datasets import tutorial_data
from . import train

TARGET_RECALL = 0.95


def register(parser) -> None:
    """Add ``vitl demo``'s arguments to its parser: ``--out`` and ``train``'s training options.

    Args:
        parser: the ``demo`` sub-command's parser.

    Returns:
        None (see the module's example).
    """
    parser.add_argument("--out", default=None, metavar="MODEL_DIR",
                        help="where to save the model (default VITL_HOME/demo-model, "
                             "i.e. ~/.vitl/demo-model)")
    train.add_training_options(parser, verbose=2)
    parser.set_defaults(split="tutorial", validation=None, test=None, validation_fraction=0.1)


def run(args) -> int:
    """Get the data, split, train, evaluate, choose a threshold, save, classify; return 0.

    Args:
        args: the parsed ``vitl demo`` arguments.

    Returns:
        The exit code, 0 (see the module's example).
    """
    start = time.perf_counter()
    out, backbone, reason = train.check_before_work(args, args.out or
                                                    _paths.vitl_home() / "demo-model")
    folder, source = tutorial_data()
    print(f"data: {source}\n{reason or f'backbone: {backbone} (chosen with --backbone)'}")
    clf, metrics, parts, reports = train.train_and_evaluate(folder, backbone, args)
    validation, test = reports["validation"], reports["test"]
    for name, report in reports.items():
        if report is not None:
            print(f"\n== {name} ({len(getattr(parts, name))} images) ==\n{report}")
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
    chosen = sample.subset(sorted({round(i * (len(sample) - 1) / 2) for i in range(3)}))
    print(f"\nusing the model on {len(chosen)} test images:")
    for prediction, label in zip(clf.classify(chosen), chosen.labels):
        truth = chosen.class_names[label]
        print(f"  {Path(prediction.path).name}: predicted {prediction.label} "
              f"({prediction.score:.3f}), true {truth} -> "
              f"{'right' if prediction.label == truth else 'WRONG'}")
    print(f"\ndone in {time.perf_counter() - start:.0f} s with backbone {backbone} on "
          f"{'synthetic data' if source.startswith('synthetic') else 'the SDNET2018 sample'}: "
          f"validation accuracy {validation.accuracy:.3f}"
          + (f", test accuracy {test.accuracy:.3f}" if test is not None else ""))
    print(f"next: vitl predict {out} IMAGE...   |   vitl export {out} --format tflite")
    return 0
