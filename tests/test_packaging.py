"""pyproject.toml and environment.yml must name the same packages."""

import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
# conda-forge names that differ from PyPI names; TensorFlow comes from pip in both.
TENSORFLOW_DISTS = {"tensorflow", "tensorflow-cpu"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():  # conda users get every extra
        requirements += extra
    return {_name(r) for r in requirements}


def _environment_packages() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(r) for r in dep["pip"] if not r.startswith("-")}
        else:
            names.add(_name(dep))
    return names - {"python", "pip"}


def _normalise(names: set[str]) -> set[str]:
    return {"tensorflow" if n in TENSORFLOW_DISTS else n for n in names}


def test_environment_yml_matches_pyproject():
    missing = _normalise(_pyproject_packages()) - _normalise(_environment_packages())
    extra = _normalise(_environment_packages()) - _normalise(_pyproject_packages())
    assert not missing, f"in pyproject.toml but not environment.yml: {sorted(missing)}"
    assert not extra, f"in environment.yml but not pyproject.toml: {sorted(extra)}"


def test_environment_yml_versions_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    extras = [r for extra in project["optional-dependencies"].values() for r in extra]
    for r in project["dependencies"] + extras:
        match = re.search(r">=\s*([\d.]+)", r)
        if match and _name(r) not in TENSORFLOW_DISTS:
            pins[_name(r)] = match.group(1)
    text = (ROOT / "environment.yml").read_text()
    for name, version in pins.items():
        assert re.search(rf"- {re.escape(name)}(\[[\w,]+\])?>={re.escape(version)}\b", text), (
            f"environment.yml should pin {name}>={version} like pyproject.toml"
        )


def test_console_script_points_at_main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["vitl"] == "vitl.cli:main"
    from vitl.cli import main

    assert callable(main)


def test_data_folder_tracks_only_readme_and_gitignore():
    ignore = (ROOT / "data" / ".gitignore").read_text().split()
    assert ignore[ignore.index("*"):] == ["*", "!.gitignore", "!README.md"]
