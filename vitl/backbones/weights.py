"""Weight resolution for backbones (to be completed: see issue 3).

The full order is: explicit file -> VITL_HOME/weights -> Keras cache -> Keras'
download -> (mobilenetv2-tv) the offline package.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .._errors import problem


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's weights came from.

    Attributes:
        kind: ``"random"``, ``"file"``, ``"vitl-home"``, ``"keras-cache"``,
            ``"download"`` or ``"offline-package"``.
        path: the weights file handed to Keras (None for random).
        sha256: the file's sha256 (None for random).
    """

    kind: str
    path: str | None
    sha256: str | None

    def describe(self) -> str:
        if self.path is None:
            return "random initialisation (no pretrained weights)"
        return f"{self.kind}: {self.path} (sha256 {self.sha256[:12]}...)"


def sha256_file(path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(spec, weights) -> WeightsSource:
    """Find the weights file for ``spec``; see the module docstring for the order."""
    if weights is None:
        return WeightsSource("random", None, None)
    if weights != "imagenet":
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                problem("weights", "'imagenet', None or an existing weights file", str(weights),
                        "check the path")
            )
        return WeightsSource("file", str(path), sha256_file(path))
    raise NotImplementedError("imagenet weight resolution is being written (issue 3)")
