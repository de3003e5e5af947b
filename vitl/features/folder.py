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

Both engines decode with :func:`~vitl.features.pipeline.load_model_image` and
run the same fixed-batch extractor call, so features are bit-identical.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._errors import check_int, problem
from .cache import FeatureCache, content_hash
from .pipeline import Featurizer, load_model_image

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
        """Return the :class:`~vitl.backbones.FeatureExtractor`."""
        import keras

        from ..backbones import build_feature_extractor

        if self.weights is None:
            keras.utils.set_random_seed(self.seed)
        return build_feature_extractor(self.backbone, weights=self.weights,
                                       input_size=self.input_size, precision=self.precision)


@dataclass
class FolderStats:
    """What :func:`featurize_folder` did.

    Attributes:
        engine: ``"local"`` or ``"ray"``.
        backbone: the backbone's name.
        precision: the concrete precision that ran.
        images: image files listed.
        cached: of those, files whose vectors were already cached.
        computed: vectors run through the backbone now (identical files once).
        imported: vectors added to the cache from shard files (ray engine).
        bad: ``(path, reason)`` of files that could not be featurized.
        shards: ``{"total", "skipped", "imported", "run"}`` shard counts (ray engine).
        workers: shards computed per worker (``host:pid``) in this run.
        seconds: wall time.

    Example:
        >>> print(FolderStats("local", "mobilenetv2", "float32", 4, 1, 3, seconds=2.0))
        featurized 4 images with mobilenetv2 (float32, local engine): 1 cached, 3 computed in 2.0 s (1.5 img/s)
    """

    engine: str
    backbone: str
    precision: str
    images: int
    cached: int
    computed: int
    imported: int = 0
    bad: list = field(default_factory=list)
    shards: dict = field(default_factory=dict)
    workers: dict = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        text = (f"featurized {self.images} images with {self.backbone} ({self.precision}, "
                f"{self.engine} engine): {self.cached} cached, {self.computed} computed in "
                f"{self.seconds:.1f} s")
        if self.computed and self.seconds > 0:
            text += f" ({self.computed / self.seconds:.1f} img/s)"
        if self.shards:
            s = self.shards
            text += (f"; shards: {s['run']} run on {len(self.workers)} workers, "
                     f"{s['imported']} imported from earlier runs, {s['skipped']} already cached")
        if self.bad:
            text += f"; {len(self.bad)} unreadable files skipped"
        return text


def compute_vectors(extractor, items, threads: int = 2, chunk: int = 64):
    """Featurize ``(content, path)`` items: the Ray workers' inner loop.

    Files are re-hashed (a file changed since it was listed is an error, not a
    wrong vector) and decoded by :func:`~vitl.features.pipeline.load_model_image`
    in ``threads`` threads while the previous chunk runs through
    ``extractor(images)``, the fixed-batch call local featurizing uses.

    Args:
        extractor: a :class:`~vitl.backbones.FeatureExtractor`.
        items: ``(content hash, path)`` pairs.
        threads: decoding threads.
        chunk: images per backbone call (a multiple of the fixed batch is best).

    Returns:
        ``(contents, float32 (n, dim) vectors, [(content, path, reason)])``.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> folder = Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (40, 40), "red").save(folder / "a.png")
        >>> _ = (folder / "b.png").write_bytes(b"oops")
        >>> items = [(content_hash(folder / n), folder / n) for n in ("a.png", "b.png")]
        >>> fx = ExtractorRecipe("mobilenetv2", None, 32).build()
        >>> contents, vectors, errors = compute_vectors(fx, items)
        >>> vectors.shape, Path(errors[0][1]).name
        ((1, 1280), 'b.png')
    """
    items = [(str(c), str(p)) for c, p in items]
    size, dim = int(extractor.input_size), int(extractor.feature_dim)

    def load(item):
        content, path = item
        try:
            if content_hash(path) != content:
                return None, "file changed since it was listed (content hash differs)"
            return load_model_image(path, size), None
        except Exception as err:  # noqa: BLE001 - one bad file is an error row, not a failed shard
            return None, getattr(err, "reason", None) or f"{type(err).__name__}: {err}"

    contents, vectors, errors = [], [], []
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending = [pool.submit(load, item) for item in chunks[0]] if chunks else []
        for k, part in enumerate(chunks):
            loaded = [f.result() for f in pending]
            if k + 1 < len(chunks):  # decode the next chunk while this one is computed
                pending = [pool.submit(load, item) for item in chunks[k + 1]]
            good = [(item, image) for item, (image, _) in zip(part, loaded) if image is not None]
            errors += [(c, p, reason) for (c, p), (_, reason) in zip(part, loaded) if reason]
            if good:
                vectors.append(extractor(np.stack([image for _, image in good])))
                contents += [c for (c, _), _ in good]
    stacked = np.concatenate(vectors) if vectors else np.empty((0, dim), np.float32)
    return contents, stacked, errors


def shard_name(space_id: str, contents) -> str:
    """A shard's file name: the space id's prefix and a digest of the contents it covers.

    Example:
        >>> shard_name("0123456789abcdef" * 2, ["ab" * 32])
        '0123456789ab-...parquet'
    """
    digest = hashlib.sha256("\n".join(contents).encode()).hexdigest()[:16]
    return f"{space_id[:12]}-{digest}.parquet"


def _check(engine, workers, cpus_per_worker, gpus_per_worker, shard_size):
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
                     seed: int = 0, progress: bool = True) -> FolderStats:
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
        progress: a progress bar and the summary line on stderr.

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
        ...                          cache=folder / "cache", progress=False)
        >>> stats.computed, [Path(p).name for p, _ in stats.bad]
        (3, ['broken.png'])
        >>> featurize_folder(folder, "mobilenetv2", weights=None, input_size=32,
        ...                  cache=folder / "cache", progress=False).cached
        3
    """
    from ..backbones.precision import resolve_precision
    from ..data import list_images

    _check(engine, workers, cpus_per_worker, gpus_per_worker, shard_size)
    if cache is None or cache is False:
        raise ValueError(problem("cache", "a feature cache to fill", cache,
                                 "pass cache='default' or a folder"))
    start = time.perf_counter()
    paths = list_images(data)
    concrete = resolve_precision(precision, backbone,
                                 gpus=True if engine == "ray" and gpus_per_worker else None)
    recipe = ExtractorRecipe(backbone, weights, input_size, concrete, seed)
    featurizer = Featurizer(recipe.build(), cache=cache, progress=progress)
    if engine == "local":
        featurizer.featurize(paths, errors="skip")
        s = featurizer.last_stats
        return FolderStats("local", s.backbone, concrete, s.images, s.hits, s.computed,
                           bad=s.bad, seconds=time.perf_counter() - start)
    return _featurize_ray(paths, featurizer, recipe, start, address, workers, cpus_per_worker,
                          gpus_per_worker, shard_dir, shard_size, progress)


def _featurize_ray(paths, featurizer, recipe, start, address, workers, cpus_per_worker,
                   gpus_per_worker, shard_dir, shard_size, progress) -> FolderStats:
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
        with tqdm(total=sum(len(t["items"]) for t in tasks), unit="img", disable=not progress,
                  desc=f"featurizing on ray ({recipe.backbone})", file=sys.stderr) as bar:
            for done in ray_engine.run(tasks, recipe, space, featurizer.extractor.fingerprint,
                                       shard_dir, address=address, workers=workers,
                                       cpus_per_worker=cpus_per_worker,
                                       gpus_per_worker=gpus_per_worker):
                shards.import_shard(shards.read_shard(shard_dir / done["name"], expect=space),
                                    cache, result)
                workers_done[done["worker"]] += 1
                bar.update(done["rows"])
    bad_contents = {c: (p, e) for c, p, e in result.errors}
    bad_contents.update(known_bad)
    bad = sorted({bad_contents[k.content] for k in keys if k.content in bad_contents})
    computed = result.added - imported_before
    stats = FolderStats("ray", recipe.backbone, recipe.precision, len(paths),
                        sum(1 for k in keys if k.content in cached_contents), computed,
                        imported=result.added, bad=bad,
                        shards={"total": skipped + len(earlier) + len(tasks), "skipped": skipped,
                                "imported": len(earlier), "run": len(tasks)},
                        workers=dict(workers_done), seconds=time.perf_counter() - start)
    return stats
