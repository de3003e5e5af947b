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

import hashlib
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import check_int, check_verbose, problem
from .._hashing import sha256_file
from .cache import FeatureCache
from .pipeline import CHANGED, FeatureStats, Featurizer

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


@dataclass
class FolderStats(FeatureStats):
    """What :func:`featurize_folder` did: a :class:`FeatureStats` plus the engine's numbers.

    Attributes:
        engine: ``"local"`` or ``"ray"``.
        imported: vectors added to the cache from shard files (ray engine).
        shards: ``{"total", "skipped", "imported", "run"}`` shard counts (ray engine).
        workers: shards computed per worker (``host:pid``) in this run.

    Example:
        >>> print(FolderStats("mobilenetv2", 4, 1, 3, 0, 2.0, "float32", engine="local"))
        ... # doctest: +NORMALIZE_WHITESPACE
        featurized 4 images with mobilenetv2 (float32, local engine): 1 cached, 3 computed
        in 2.0 s (1.5 img/s)
    """

    imported: int = 0
    shards: dict = field(default_factory=dict)
    workers: dict = field(default_factory=dict)

    def __str__(self) -> str:
        text = super().__str__()
        if self.shards:
            s = self.shards
            text += (f"; shards: {s['run']} run on {len(self.workers)} workers, "
                     f"{s['imported']} imported from earlier runs, {s['skipped']} already cached")
        return text


def featurize_shard(featurizer: Featurizer, items):
    """Featurize ``(content, path)`` items through ``featurizer``: a Ray worker's job.

    A file that changed since the driver hashed it is an error row, not a
    wrong vector; the vectors come from :meth:`Featurizer.featurize`, the same
    call local featurizing makes, so they are bit-identical.

    Args:
        featurizer: a :class:`~vitl.features.Featurizer` (no cache needed).
        items: ``(content hash, path)`` pairs.

    Returns:
        ``(contents, float32 (n, dim) vectors, [(content, path, reason)])``.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> folder = Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (40, 40), "red").save(folder / "a.png")
        >>> _ = (folder / "b.png").write_bytes(b"oops")
        >>> items = [(sha256_file(folder / n), folder / n) for n in ("a.png", "b.png")]
        >>> featurizer = Featurizer(ExtractorRecipe("mobilenetv2", None, 32).build(), None, 0)
        >>> contents, vectors, errors = featurize_shard(featurizer, items)
        >>> vectors.shape, Path(errors[0][1]).name
        ((1, 1280), 'b.png')
    """
    checked = [(str(content), str(path), _changed(content, path)) for content, path in items]
    errors = [row for row in checked if row[2]]
    listed = [(content, path) for content, path, why in checked if not why]
    vectors = featurizer.featurize([path for _, path in listed], errors="skip")
    bad = {str(path): why for path, why in featurizer.last_stats.bad}
    errors += [(content, path, bad[path]) for content, path in listed if path in bad]
    keep = [i for i, (_, path) in enumerate(listed) if path not in bad]
    return [listed[i][0] for i in keep], vectors[keep], errors


def _changed(content: str, path) -> str | None:
    """Why the file no longer has ``content`` (None when it still has)."""
    try:
        return None if sha256_file(path) == content else CHANGED
    except OSError as err:
        return f"{type(err).__name__}: {err}"


def shard_name(space_id: str, contents) -> str:
    """Return a shard's file name: the space id's prefix and a digest of the contents it covers.

    The same missing contents always give the same name, so a rerun finds the
    shard files an interrupted run wrote.

    Args:
        space_id: the :class:`~vitl.features.FeatureSpace` id.
        contents: the content hashes the shard covers.

    Returns:
        ``"<space id[:12]>-<16 hex digits>.parquet"``.

    Example:
        >>> shard_name("0123456789abcdef" * 2, ["ab" * 32])
        '0123456789ab-...parquet'
    """
    digest = hashlib.sha256("\n".join(contents).encode()).hexdigest()[:16]
    return f"{space_id[:12]}-{digest}.parquet"


def _check(engine, workers, cpus_per_worker, gpus_per_worker, shard_size, verbose):
    check_verbose(verbose)
    if engine not in ENGINES:
        raise ValueError(problem("engine", f"one of {ENGINES}", engine,
                                 "pass engine='local', or engine='ray' for a Ray cluster"))
    if workers is not None:
        check_int("workers", workers, minimum=1, fix="pass workers=2 or more, or None")
    check_int("cpus_per_worker", cpus_per_worker, minimum=1, fix="pass cpus_per_worker=1")
    if isinstance(gpus_per_worker, bool) or not isinstance(gpus_per_worker, (int, float)) or \
            gpus_per_worker < 0:
        raise ValueError(problem("gpus_per_worker", "a number >= 0", gpus_per_worker,
                                 "pass gpus_per_worker=1 on GPU nodes, 0 on CPUs"))
    check_int("shard_size", shard_size, minimum=1, fix="pass shard_size=1000")


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
        ValueError: bad arguments (before any work), or Ray unavailable.

    Example:
        >>> import tempfile
        >>> from PIL import Image
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
    from ..data import list_images

    _check(engine, workers, cpus_per_worker, gpus_per_worker, shard_size, verbose)
    if cache is None or cache is False:
        raise ValueError(problem("cache", "a feature cache to fill", cache,
                                 "pass cache='default' or a folder"))
    start = time.perf_counter()
    paths = list_images(data)
    concrete = resolve_precision(precision, backbone,
                                 gpus=True if engine == "ray" and gpus_per_worker else None)
    recipe = ExtractorRecipe(backbone, weights, input_size, concrete, seed)
    featurizer = Featurizer(recipe.build(), cache=cache, verbose=verbose)
    if engine == "local":
        featurizer.featurize(paths, errors="skip")
        stats = vars(featurizer.last_stats)
        return FolderStats(**{**stats, "seconds": time.perf_counter() - start, "engine": "local"})
    return _featurize_ray(paths, featurizer, recipe, start, shard_dir, shard_size, address=address,
                          workers=workers, cpus_per_worker=cpus_per_worker,
                          gpus_per_worker=gpus_per_worker)


def _featurize_ray(paths, featurizer, recipe, start, shard_dir, shard_size, **ray_options
                   ) -> FolderStats:
    from tqdm import tqdm

    from . import ray_engine, shards

    cache: FeatureCache = featurizer.cache
    space = featurizer.space()
    shard_dir = Path(shard_dir) if shard_dir is not None else cache.directory / "shards"
    keys = featurizer.keys(paths)
    first_path = {}
    for key, path in zip(keys, paths):
        first_path.setdefault(key.content, str(Path(path).absolute()))
    contents = sorted(first_path)
    found = cache.lookup(keys).found
    cached_contents = {k.content for k in found}
    known_bad = shards.known_errors(shard_dir, space)  # failed in an earlier run: not retried

    tasks, earlier, skipped = [], [], 0
    for i in range(0, len(contents), shard_size):
        missing = [c for c in contents[i:i + shard_size]
                   if c not in cached_contents and c not in known_bad]
        if not missing:
            skipped += 1
            continue
        name = shard_name(space.id, missing)
        if (shard_dir / name).is_file():
            earlier.append(shard_dir / name)
        else:
            tasks.append({"name": name, "items": [(c, first_path[c]) for c in missing]})

    result = shards.ImportStats()
    for path in earlier:
        shards.import_shard(shards.read_shard(path, expect=space), cache, result)
    imported_before = result.added
    workers_done = Counter()
    if tasks:
        with tqdm(total=sum(len(t["items"]) for t in tasks), unit="img",
                  disable=not featurizer.verbose,
                  desc=f"featurizing on ray ({recipe.backbone})", file=sys.stderr) as bar:
            for done in ray_engine.run(tasks, recipe, space, shard_dir, **ray_options):
                shards.import_shard(shards.read_shard(shard_dir / done["name"], expect=space),
                                    cache, result)
                workers_done[done["worker"]] += 1
                bar.update(done["rows"])
    bad_contents = {c: (p, e) for c, p, e in result.errors}
    bad_contents.update(known_bad)
    bad = sorted({bad_contents[k.content] for k in keys if k.content in bad_contents})
    computed = result.added - imported_before
    hits = sum(1 for k in keys if k.content in cached_contents)
    return FolderStats(recipe.backbone, len(paths), hits, computed, 0, time.perf_counter() - start,
                       recipe.precision, bad, engine="ray", imported=result.added,
                       shards={"total": skipped + len(earlier) + len(tasks), "skipped": skipped,
                               "imported": len(earlier), "run": len(tasks)},
                       workers=dict(workers_done))
