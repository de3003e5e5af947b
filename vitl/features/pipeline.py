"""Featurize images with a frozen backbone, computing only what the cache lacks.

The flow: sha256 every file (a cheap read) -> look the keys up in the
:class:`~vitl.features.cache.FeatureCache` -> stream only the misses through a
``tf.data`` pipeline (parallel :func:`vitl.data.read_image` -> batch ->
prefetch) into the backbone -> store each batch's vectors as soon as it is
computed, so an interrupted run keeps its work. Memory stays bounded by a few
batches whatever the number of images; only the (N, D) result is held.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .. import _paths
from .._errors import check_int, check_verbose, problem
from .._hashing import sha256_file
from ..data import BadImageError, read_image
from .cache import FeatureCache, FeatureKey, FeatureSpace, Lookup

_HASH_THREADS = 8  # hashlib and file reads release the GIL
_DECODE_THREADS = min(8, os.cpu_count() or 2)  # Pillow releases the GIL while decoding
#: Why a file whose bytes are no longer those its cache key was made from gets no vector.
CHANGED = "file changed while it was featurized (content hash differs): featurize it again"


@dataclass
class FeatureStats:
    """Numbers of one featurize call (or :func:`~vitl.features.featurize_folder` run).

    Attributes:
        backbone: the backbone's name.
        images: rows returned (images x views).
        hits: rows served from the cache.
        computed: vectors run through the backbone (identical files once).
        repaired: damaged cache entries detected, recomputed and replaced.
        seconds: wall time of the whole call.
        precision: the backbone precision that ran (``""`` when unknown).
        bad: ``(path, reason)`` of files that could not be read, with ``errors="skip"``.
        engine: ``"local"`` or ``"ray"`` when made by :func:`~vitl.features.featurize_folder`.
        imported: vectors added to the cache from shard files (ray engine).
        shards: ``{"total", "skipped", "imported", "run"}`` shard counts (ray engine).
        workers: shards computed per worker (``host:pid``) in this run (ray engine).
        identical: rows served by an identical file computed (or skipped) in the same call,
            so ``images = hits + imported-from-earlier + computed + identical + len(bad)``.

    ``images_per_second`` is shown in the example.

    Example:
        >>> stats = FeatureStats("resnet101v2", 400, 380, 20, 0, 4.0, "bfloat16")
        >>> print(stats)  # doctest: +NORMALIZE_WHITESPACE
        featurized 400 images with resnet101v2: 380 cached, 20 computed in 4.0 s
        (5.0 img/s); precision bfloat16
        >>> stats.images_per_second
        5.0
        >>> print(FeatureStats("mobilenetv2", 4, 1, 3, 0, 2.0, "float32", engine="local"))
        ... # doctest: +NORMALIZE_WHITESPACE
        featurized 4 images with mobilenetv2 (float32, local engine): 1 cached, 3 computed
        in 2.0 s (1.5 img/s)
    """

    backbone: str
    images: int
    hits: int
    computed: int
    repaired: int
    seconds: float
    precision: str = ""
    bad: list = field(default_factory=list)
    engine: str = ""
    imported: int = 0
    shards: dict = field(default_factory=dict)
    workers: dict = field(default_factory=dict)
    identical: int = 0

    @property
    def images_per_second(self) -> float:
        """Computed vectors per second of the call (0 when all came from the cache)."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        where = f" ({self.precision}, {self.engine} engine)" if self.engine else ""
        speed = f" ({self.images_per_second:.1f} img/s)" if self.computed else ""
        shards = self.shards
        earlier = self.imported - self.computed  # ray: vectors read from a killed run's shards
        earlier = f"{earlier} from earlier shards, " if earlier > 0 else ""
        parts = [(f"featurized {self.images} images with {self.backbone}{where}: {self.hits} "
                  f"cached, {earlier}{self.computed} computed in {self.seconds:.1f} s{speed}")]
        parts += [text for shown, text in (
            (self.repaired, f"{self.repaired} damaged cache entries recomputed"),
            (self.identical, f"{self.identical} identical files computed once"),
            (self.bad, f"{len(self.bad)} unreadable files skipped"),
            (self.precision and not self.engine, f"precision {self.precision}"),
            (shards, shards and f"shards: {shards['run']} run on {len(self.workers)} workers, "
                                f"{shards['imported']} imported from earlier runs, "
                                f"{shards['skipped']} already cached")) if shown]
        return "; ".join(parts)


def _open_cache(cache) -> FeatureCache | None:
    if cache is None or cache is False:
        return None
    if isinstance(cache, FeatureCache):
        return cache
    if isinstance(cache, (str, Path)):
        return FeatureCache(_paths.default_cache_dir() if cache == "default" else cache)
    raise ValueError(problem("cache", "'default', None/False, a folder path or a FeatureCache",
                             cache, "pass cache='default' or cache=None to disable caching"))


def _view_ids(view, views, transform, transform_id, cache) -> tuple[list[int], str | None]:
    """The view ids to compute and the augmentation policy's id for cache keys (checked)."""
    given = [view] if views is None else views
    listed = not isinstance(given, (str, bytes)) and hasattr(given, "__iter__")
    ids = [check_int("view", v, minimum=0, fix="pass view=0 (the original image)")
           for v in (list(given) if listed else [])]
    transform_id = transform_id or getattr(transform, "transform_id", None)
    for failed, what, expected, received, fix in (
            (views is not None and view != 0, "view / views", "one of them",
             f"view={view}, views={views}", "pass views=[...] alone"),
            (not ids, "views", "a sequence of view ids such as [0, 1, 2], not empty", views,
             "pass views=[0, 1, 2]"),
            (any(ids) and transform is None, "transform",
             "a function transform(image, view) for views > 0", None,
             "pass transform=..., or use view=0"),
            (any(ids) and cache is not None and not transform_id, "transform_id",
             "a string naming the augmentation policy (part of cache keys)", transform_id,
             "pass transform_id='flip-v1' (or cache=None)")):
        if failed:
            raise ValueError(problem(what, expected, received, fix))
    return ids, transform_id


def to_model_image(image, size: int) -> np.ndarray:
    """Bring a transform's output back to a uint8 ``(size, size, 3)`` model image.

    Args:
        image: an RGB array ``(H, W, 3)``, any real dtype (rounded and clipped to 0..255).
        size: the extractor's input size.

    Returns:
        uint8 array ``(size, size, 3)``.

    Example:
        >>> to_model_image(np.full((8, 8, 3), 300.0), 4)[0, 0].tolist()
        [255, 255, 255]
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(problem("transform output", "an RGB image array (H, W, 3)",
                                 f"shape {image.shape}", "return the transformed image"))
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return image


def model_image_loader(paths, size: int, views=None, transform=None, errors: dict | None = None,
                       contents=None):
    """Return a ``tf.data`` map function decoding ``paths[index]`` into the backbone's input.

    The one tf.data image loader: featurizing and fine-tuning both map it over
    a dataset of indices (plus whatever travels with them, such as labels).
    Local featurizing and the Ray engine's workers both decode through it, so
    the same bytes give the same pixels (and, through the fixed-batch extractor
    call, the same feature bits) wherever they are computed.

    Args:
        paths: image files.
        size: the model's input size.
        views: per-index view ids (default: all 0, the images themselves).
        transform: ``transform(image, view) -> image`` for views > 0.
        errors: when given, a file that cannot be read gives a black image and
            its exception is stored as ``errors[index]``; else the error stops the dataset.
        contents: per-index sha256 the file must still have after decoding (None: any);
            a file being written while it is featurized is then an error, never a
            vector stored under the key of other bytes.

    Returns:
        ``load(index, *rest) -> (uint8 (size, size, 3) image, *rest)``.

    Example:
        >>> import tempfile, tensorflow as tf
        >>> path = Path(tempfile.mkdtemp()) / "a.png"
        >>> Image.new("RGB", (40, 20), "red").save(path)
        >>> load = model_image_loader([path], 32)
        >>> image, label = next(iter(tf.data.Dataset.from_tensor_slices(([0], [7])).map(load)))
        >>> image.shape.as_list(), int(label)
        ([32, 32, 3], 7)
    """
    import tensorflow as tf

    def load(index):
        index = int(index)
        try:
            image = read_image(paths[index], size)
            if views and views[index]:
                image = to_model_image(transform(image, views[index]), size)
            if contents and contents[index] and sha256_file(paths[index]) != contents[index]:
                raise BadImageError(paths[index], CHANGED)
            return image
        except Exception as err:  # handed to the caller with its index
            if errors is None:
                raise
            errors[index] = err
            return np.zeros((size, size, 3), np.uint8)

    @tf.autograph.experimental.do_not_convert
    def load_tf(index, *rest):
        image = tf.numpy_function(load, [index], tf.uint8, stateful=False)
        image.set_shape((size, size, 3))
        return (image, *rest)

    return load_tf


class Featurizer:
    """A frozen feature extractor bound to a feature cache: the one featurizing engine.

    :func:`featurize`, :func:`~vitl.features.featurize_folder` (local and Ray
    workers) and :class:`vitl.ImageClassifier` all featurize files through
    :meth:`featurize`. The extractor is treated as frozen: build a new
    ``Featurizer`` if you change its weights.

    Args:
        extractor: a :class:`vitl.backbones.FeatureExtractor`.
        cache: ``"default"`` (:func:`vitl._paths.default_cache_dir`), a folder,
            a :class:`FeatureCache`, or None/False to compute everything.
        verbose: 0 silent; 1 (or 2) a tqdm bar and a one-line summary on stderr.

    Attributes:
        last_stats: the last call's :class:`FeatureStats`.

    Raises:
        ValueError: ``extractor`` is not a feature extractor, or a bad ``cache`` / ``verbose``.

    Example:
        >>> import tempfile
        >>> from vitl.backbones import build_feature_extractor
        >>> folder = Path(tempfile.mkdtemp())
        >>> for i in range(3):
        ...     Image.new("RGB", (40, 40), (80 * i, 0, 0)).save(folder / f"{i}.png")
        >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
        >>> featurizer = Featurizer(fx, cache=folder / "cache", verbose=0)
        >>> featurizer.featurize(sorted(folder.glob("*.png"))).shape
        (3, 1280)
        >>> featurizer.featurize(sorted(folder.glob("*.png"))).shape
        (3, 1280)
        >>> featurizer.last_stats.hits, featurizer.last_stats.computed
        (3, 0)
    """

    def __init__(self, extractor, cache="default", verbose: int = 1):
        needed = ("model", "name", "input_size", "feature_dim", "fingerprint", "precision")
        if not all(hasattr(extractor, attribute) for attribute in needed):
            raise ValueError(problem(
                "extractor", f"a FeatureExtractor ({', '.join(needed)})", type(extractor).__name__,
                "build one with vitl.backbones.build_feature_extractor(...)"))
        self.extractor = extractor
        self.cache = _open_cache(cache)
        self.verbose = check_verbose(verbose)
        self.last_stats: FeatureStats | None = None
        from ..backbones.registry import PREPROCESSING_VERSION

        # Once: the fingerprint of random weights hashes them all.
        self._space = FeatureSpace(extractor.name, extractor.fingerprint, int(extractor.input_size),
                                   PREPROCESSING_VERSION, extractor.precision)

    def __repr__(self) -> str:
        return (f"Featurizer({self.extractor.name}@{self.extractor.input_size}, "
                f"cache={self.cache!r})")

    def space(self, view: int = 0, transform_id: str | None = None) -> FeatureSpace:
        """Return the cache's :class:`FeatureSpace` for this extractor and view.

        Args:
            view: the view id (0: the image itself).
            transform_id: the augmentation policy's id, kept for views > 0 only.

        Returns:
            A :class:`FeatureSpace`.

        Example:
            >>> from vitl.backbones import build_feature_extractor
            >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
            >>> Featurizer(fx, cache=None).space(2, "flip").view
            2
        """
        return replace(self._space, view=view, transform_id=transform_id if view else None)

    def keys(self, paths, views=(0,), transform_id: str | None = None,
             unreadable_ok: bool = False) -> list[FeatureKey]:
        """Return the cache key of every (view, file): the one place a path becomes a key.

        Each file is hashed once (its bytes' sha256), whatever the number of
        views; the Ray engine keys files with this method too, so both engines
        read and write the same entries.

        Args:
            paths: image files.
            views: view ids (0: the image itself).
            transform_id: the augmentation policy's id, for views > 0.
            unreadable_ok: a file that cannot be hashed (missing, a FIFO, ...) gets a key of
                no content, matching no cache entry, instead of an error: decoding it then
                names it as a bad file.

        Returns:
            One :class:`FeatureKey` per view and path, view by view (``views[v], paths[i]``
            at ``v * len(paths) + i``).

        Raises:
            FileNotFoundError: a file does not exist.

        Example:
            >>> import tempfile
            >>> from vitl.backbones import build_feature_extractor
            >>> path = Path(tempfile.mkdtemp()) / "a.png"
            >>> Image.new("RGB", (40, 40), "red").save(path)
            >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
            >>> key = Featurizer(fx, cache=None).keys([path])[0]
            >>> key.content == sha256_file(path), key.space.input_size
            (True, 32)
        """
        def one(path):
            try:
                return sha256_file(path)
            except OSError as err:
                if unreadable_ok:
                    return f"unreadable {path}"  # in no cache; decoding names the file
                if isinstance(err, FileNotFoundError):
                    raise FileNotFoundError(problem("image file", "an existing file", str(path),
                                                    "check the path or reload the folder")) from None
                raise

        with ThreadPoolExecutor(_HASH_THREADS) as pool:
            hashes = list(pool.map(one, paths))
        return [FeatureKey(h, self.space(v, transform_id)) for v in views for h in hashes]

    def featurize(self, images, *, view: int = 0, views=None, transform=None,
                  transform_id: str | None = None, errors: str = "raise") -> np.ndarray:
        """Return the feature vectors of ``images``, in their order, computing only cache misses.

        Args:
            images: an :class:`vitl.data.ImageCollection` or a sequence of
                image paths.
            view: 0 for the original images; k > 0 for the k-th augmented view,
                made by ``transform(image, k)``.
            views: several view ids at once, e.g. ``[0, 1, 2]``; then the
                result has shape ``(len(views), N, D)``. Do not also pass ``view``.
            transform: ``transform(image, view) -> image`` applied to the
                ``uint8 (S, S, 3)`` image from ``read_image(path, S)`` for views
                > 0 (S is the input size; other output sizes are resized back).
                It must be a deterministic function of (image, view): view k of
                an image is cached like an original. Ignored for view 0.
            transform_id: names the augmentation policy in cache keys (change it
                when the policy changes); defaults to ``transform.transform_id``.
                Required for views > 0 when caching.
            errors: ``"raise"`` stops at the first unreadable file (after caching
                the batches before it); ``"skip"`` leaves its rows NaN, caches
                nothing for it and lists it in ``last_stats.bad``.

        Returns:
            float32 array ``(N, D)``, or ``(len(views), N, D)`` with ``views``.

        Raises:
            ValueError: bad arguments; :class:`vitl.data.BadImageError` (a
                ValueError) naming the file that cannot be read (vectors of
                the batches before it are cached).
            FileNotFoundError: a listed file does not exist.

        Example:
            >>> import tempfile
            >>> from vitl.backbones import build_feature_extractor
            >>> folder = Path(tempfile.mkdtemp())
            >>> Image.new("RGB", (40, 40), "red").save(folder / "a.png")
            >>> _ = (folder / "b.png").write_bytes(b"oops")
            >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
            >>> featurizer = Featurizer(fx, cache=None, verbose=0)
            >>> rows = featurizer.featurize([folder / "a.png", folder / "b.png"], errors="skip")
            >>> np.isnan(rows).any(axis=1).tolist(), featurizer.last_stats.bad[0][0].name
            ([False, True], 'b.png')
        """
        start = time.perf_counter()
        if errors not in ("raise", "skip"):
            raise ValueError(problem("errors", "'raise' or 'skip'", errors,
                                     "pass errors='skip' to go on past unreadable files"))
        view_ids, transform_id = _view_ids(view, views, transform, transform_id, self.cache)
        paths = [Path(p) for p in getattr(images, "paths", images)]
        n, dim = len(paths), int(self.extractor.feature_dim)
        out = np.full((len(view_ids) * n, dim), np.nan, dtype=np.float32)
        # One row per (view, image): row = v * n + i. A job (key, rows) is one vector to
        # compute; identical files share one.
        keys = self.keys(paths, view_ids, transform_id, unreadable_ok=errors == "skip")
        lookup = self.cache.lookup(keys) if self.cache is not None else Lookup({}, [])
        rows_of = {}
        for row, key in enumerate(keys):
            if len(lookup.found.get(key, ())) == dim:  # else (planted?): recompute, replace
                out[row] = lookup.found[key]
            else:
                rows_of.setdefault(key, []).append(row)
        jobs = list(rows_of.items())
        hits = len(keys) - sum(len(rows) for _, rows in jobs)
        import tensorflow as tf

        from ..backbones.extractor import BACKBONE_BATCH

        failures = {}
        load = model_image_loader([paths[rows[0] % n] for _, rows in jobs],
                                  int(self.extractor.input_size),
                                  [key.space.view for key, _ in jobs], transform, failures,
                                  [key.content for key, _ in jobs])
        # Autotuning off: with it (TF 2.21), deleting the finished iterator often blocked
        # for seconds, until the call had lasted a multiple of ~5.1 s. Decoding is a few
        # percent of the backbone's time, so fixed parallelism is plenty.
        options = tf.data.Options()
        options.autotune.enabled = False
        dataset = (tf.data.Dataset.range(len(jobs))
                   .map(lambda index: load(index, index), num_parallel_calls=_DECODE_THREADS)
                   .batch(BACKBONE_BATCH)
                   .prefetch(2)
                   .with_options(options))
        computed, bad = 0, []
        with tqdm(total=len(out), initial=hits, unit="img", disable=not (self.verbose and jobs),
                  desc=f"featurizing ({self.extractor.name})", file=sys.stderr) as bar:
            for batch, indices in dataset:
                vectors, indices = self.extractor(batch.numpy()), indices.numpy()
                done = [(jobs[i], vector) for i, vector in zip(indices, vectors)
                        if i not in failures]
                for (_, rows), vector in done:
                    out[rows] = vector
                if self.cache is not None:
                    self.cache.put_many((key, vector) for (key, _), vector in done)
                computed += len(done)
                bar.update(sum(len(jobs[i][1]) for i in indices))
                failed = [(paths[jobs[i][1][0] % n], failures.pop(i)) for i in indices
                          if i in failures]
                if failed and errors == "raise":
                    raise failed[0][1]
                bad += [(path, getattr(err, "reason", str(err))) for path, err in failed]

        self.last_stats = stats = FeatureStats(
            self.extractor.name, len(out), hits, computed, len(lookup.damaged),
            time.perf_counter() - start, str(self.extractor.precision), bad,
            identical=sum(len(rows) for _, rows in jobs) - len(jobs))
        if self.cache is not None and n:
            self.cache.record_run(stats)
        if self.verbose:
            print(stats, file=sys.stderr)
        return out.reshape(len(view_ids), n, dim) if views is not None else out

    __call__ = featurize


def featurize(images, extractor, *, cache="default", verbose: int = 1, return_stats: bool = False,
              **options):
    """Featurize images with a frozen backbone, through the shared feature cache.

    The function form of :class:`Featurizer`. Only images whose (content,
    backbone, weights, input size, preprocessing, precision, view,
    augmentation) key is not cached are computed; renamed or moved files still
    hit, edited files miss.

    Args:
        images: an :class:`vitl.data.ImageCollection` or a sequence of paths.
        extractor: a :class:`vitl.backbones.FeatureExtractor`.
        cache: ``"default"``, a folder, a :class:`FeatureCache`, or None/False.
        verbose: 0 silent; 1 a tqdm bar and a one-line summary on stderr.
        return_stats: also return the call's :class:`FeatureStats`.
        **options: ``view``, ``views``, ``transform``, ``transform_id``, ``errors``: see
            :meth:`Featurizer.featurize`.

    Returns:
        float32 ``(N, D)`` features aligned with ``images`` (``(V, N, D)``
        with ``views``), or ``(features, stats)`` with ``return_stats=True``.

    Raises:
        ValueError, FileNotFoundError: see :meth:`Featurizer.featurize`.

    Example:
        >>> import tempfile
        >>> from vitl.backbones import build_feature_extractor
        >>> folder = Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (40, 40), "red").save(folder / "a.png")
        >>> fx = build_feature_extractor("mobilenetv2", weights=None, input_size=32)
        >>> features, stats = featurize([folder / "a.png"], fx, cache=None, verbose=0,
        ...                             return_stats=True)
        >>> features.shape, stats.computed
        ((1, 1280), 1)
    """
    featurizer = Featurizer(extractor, cache=cache, verbose=verbose)
    features = featurizer.featurize(images, **options)
    return (features, featurizer.last_stats) if return_stats else features
