"""The one-screen public API in vitl/__init__.py: every name resolves, lazily."""

import subprocess
import sys
from pathlib import Path

import vitl


def test_every_public_name_resolves():
    for name in vitl.__all__:
        assert getattr(vitl, name) is not None, name


def test_unknown_name_is_an_attribute_error():
    try:
        vitl.fit_everything  # noqa: B018
    except AttributeError as err:
        assert "no attribute 'fit_everything'" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_lazy_and_does_not_load_tensorflow():
    code = "import sys, vitl; vitl.load_image_folder; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_api_fits_on_one_screen():
    source = Path(vitl.__file__).read_text()
    assert len(source.splitlines()) <= 70


def test_a_function_named_like_its_module_stays_the_function():
    # Importing vitl.explain (for plot_explanations) used to leave vitl.explain the module.
    code = ("import vitl; vitl.plot_explanations; print(callable(vitl.explain), "
            "vitl.explain.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "explain"]


def test_the_types_public_functions_return_are_exported():
    # What fit/classify/evaluate/featurize/split/run_grid hand back is nameable from vitl alone.
    for name in ("Prediction", "TrainingHistory", "EvaluationReport", "FeatureStats", "Split",
                 "ExperimentResults", "FeatureExtractor", "BackboneChoice", "FineTuneConfig",
                 "Explanation", "LoadReport", "ThresholdChoice"):
        assert name in vitl.__all__, name
        assert getattr(vitl, name).__name__ == name


def test_type_checkers_see_the_same_names_as_the_lazy_table():
    import ast

    tree = ast.parse(Path(vitl.__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If))
    assert ast.unparse(block.test) == "TYPE_CHECKING"
    imported = sorted(alias.name for node in block.body for alias in node.names)
    assert imported == vitl.__all__
