"""The bottleneck phase as its own step: featurize every image of a folder into the cache.

:func:`featurize_folder` fills exactly the cache entries that
:meth:`vitl.ImageClassifier.fit` and ``vitl train`` read later (same backbone,
weights, input size, preprocessing and precision: the same keys), so training
afterwards computes nothing. Two engines:

- ``"local"``: this process, through :class:`~vitl.features.Featurizer`;
- ``"ray"``: a Ray Data actor pool (:mod:`vitl.features.ray_engine`). The driver
  hashes the files, cuts the distinct contents the cache lacks into
  deterministic shards, workers write each shard as a Parquet file
  (:mod:`vitl.features.shards`), and the driver imports finished shards into the
  sqlite cache, the single writer. Shard files already written are imported, not
  recomputed, so a rerun after a killed run computes only the missing shards.

Both engines decode with :func:`~vitl.features.pipeline.model_image_loader` and
run the same fixed-batch extractor call, so features are bit-identical.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from .._errors import check_choice, check_fraction, check_int, check_verbose, problem
from .pipeline import FeatureStats, Featurizer

ENGINES = ("local", "ray")
#: vitl train / ImageClassifier's default backbone precision, so a default featurize matches.
DEFAULT_PRECISION = "float32"
SHARD_SIZE = 1000  # images per shard: minutes of work on a GPU, a few MB of Parquet


@dataclass(frozen=True)
class ExtractorRecipe:
    """How to build the same frozen extractor in any process (driver or Ray worker).

    With ``weights=None`` the random weights are seeded with ``seed`` exactly as
    :class:`vitl.ImageClassifier` seeds them, so every process gets the same
    fingerprint (and the same cache keys).

    Example:
        >>> recipe = ExtractorRecipe("mobilenetv2", None, 32, "float32")
        >>> recipe.build().fingerprint == recipe.build().fingerprint
        True
    """

    backbone: str
    weights: str | None = "imagenet"
    input_size: int | None = None
    precision: str = DEFAULT_PRECISION
    seed: int = 0

    def build(self):
        """Build the frozen extractor (random weights seeded with ``seed``).

        Returns:
            A :class:`~vitl.backbones.FeatureExtractor`.

        Example:
            >>> ExtractorRecipe("mobilenetv2", None, 32).build().input_size
            32
        """
        import keras

        from ..backbones import build_feature_extractor

        if self.weights is None:
            keras.utils.set_random_seed(self.seed)
        return build_feature_extractor(self.backbone, weights=self.weights,
                                       input_size=self.input_size, precision=self.precision)


#: What :func:`featurize_folder` returns: a :class:`~vitl.features.FeatureStats` with its
#: ``engine`` and, for the ray engine, its ``imported``, ``shards`` and ``workers`` numbers.
FolderStats = FeatureStats


def featurize_folder(data, backbone: str = "resnet101v2", *, weights="imagenet",
                     input_size: int | None = None, precision: str = DEFAULT_PRECISION,
                     cache="default", engine: str = "local", address: str | None = None,
                     workers: int | None = None, cpus_per_worker: int = 1,
                     gpus_per_worker: float = 0, shard_dir=None, shard_size: int = SHARD_SIZE,
                     seed: int = 0, verbose: int = 1) -> FolderStats:
    """Featurize every image below ``data`` into the feature cache (the bottleneck phase alone).

    Afterwards ``ImageClassifier(backbone, input_size=..., precision=...).fit``
    and ``vitl train`` on the same images compute nothing. Unreadable files are
    skipped and named in the result, never fatal.

    Args:
        data: a folder of images (any depth, e.g. one sub-folder per class) or
            one image file.
        backbone: a registered backbone name.
        weights: ``"imagenet"``, a weights file, or None (random, seeded by ``seed``).
        input_size: square input side; default the backbone's own.
        precision: ``"float32"`` (``vitl train``'s default), ``"bfloat16"``,
            ``"float16"`` or ``"auto"`` (resolved here, before any key is made:
            float16 with ``gpus_per_worker``, else this machine's measured choice).
        cache: ``"default"``, a folder or a :class:`FeatureCache`.
        engine: ``"local"`` (this process) or ``"ray"``.
        address: ray only: None starts a local Ray instance; ``"auto"`` joins
            the cluster this machine belongs to; ``"ray://HOST:PORT"`` a remote one.
        workers: ray only: actors (one backbone each); default one per
            ``cpus_per_worker`` CPUs (or per ``gpus_per_worker`` GPUs) of the cluster.
        cpus_per_worker: ray only: CPUs (and TensorFlow threads) per actor.
        gpus_per_worker: ray only: GPUs per actor (e.g. 1).
        shard_dir: ray only: where workers write shard files, on storage that
            every node and the driver see; default ``<cache>/shards``.
        shard_size: ray only: distinct images per shard.
        seed: seeds random weights (``weights=None``) as ImageClassifier does.
        verbose: 0 silent; 1 (or 2) a progress bar and the summary line on stderr.

    Returns:
        :class:`FolderStats`.

    Raises:
        ValueError: bad arguments or no image files (before any work), or Ray unavailable.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> from pathlib import Path
        >>> folder = Path(tempfile.mkdtemp())
        >>> for i in range(3):
        ...     Image.new("RGB", (40, 40), (80 * i, 0, 0)).save(folder / f"{i}.png")
        >>> _ = (folder / "broken.png").write_bytes(b"not an image")
        >>> stats = featurize_folder(folder, "mobilenetv2", weights=None, input_size=32,
        ...                          cache=folder / "cache", verbose=0)
        >>> stats.computed, [Path(p).name for p, _ in stats.bad]
        (3, ['broken.png'])
        >>> featurize_folder(folder, "mobilenetv2", weights=None, input_size=32,
        ...                  cache=folder / "cache", verbose=0).hits
        3
    """
    from ..backbones.precision import resolve_precision
    from ..data import IMAGE_EXTENSIONS, LoadReport, list_images

    check_verbose(verbose)
    check_choice("engine", engine, ENGINES)
    check_fraction("gpus_per_worker", gpus_per_worker, 0.0, math.inf)
    for name, value in (("workers", 1 if workers is None else workers),
                        ("cpus_per_worker", cpus_per_worker),
                        ("shard_size", shard_size)):
        check_int(name, value, minimum=1)
    if cache is None or cache is False:
        raise ValueError(problem("cache", "a feature cache to fill", cache,
                                 "pass cache='default' or a folder"))
    start = time.perf_counter()
    left_out = LoadReport()  # FIFOs, devices, unlistable folders: named with the bad images
    paths = list_images(data, report=left_out)
    if not paths:
        raise ValueError(problem("data", "a folder (searched recursively) or file with images "
                                 f"({'/'.join(IMAGE_EXTENSIONS)})", f"{data}: no image files",
                                 "check the path"))
    concrete = resolve_precision(precision, backbone,
                                 gpus=True if engine == "ray" and gpus_per_worker else None)
    recipe = ExtractorRecipe(backbone, weights, input_size, concrete, seed)
    featurizer = Featurizer(recipe.build(), cache=cache, verbose=verbose)
    if engine == "local":
        featurizer.featurize(paths, errors="skip")
        stats = replace(featurizer.last_stats, engine="local")
    else:
        from .ray_engine import featurize_on_ray

        stats = featurize_on_ray(paths, featurizer, recipe, shard_dir, shard_size,
                                 address=address, workers=workers,
                                 cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
    skipped = [(item.path, item.reason) for item in left_out.skipped]
    stats = replace(stats, bad=[*skipped, *stats.bad], seconds=time.perf_counter() - start)
    if engine == "ray":  # `vitl cache info`'s last run (the local engine's Featurizer records it)
        featurizer.cache.record_run(stats)
    return stats
