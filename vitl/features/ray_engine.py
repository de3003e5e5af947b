"""Every Ray call vitl makes: shards featurized by a Ray Data actor pool.

Imported only for ``engine="ray"``. :func:`featurize_on_ray` (the driver) plans
the shards; :func:`run` computes them and yields one summary per finished shard
while the others compute; the driver imports each into the sqlite cache. Ray does
the distribution; vitl adds only this module.

Pitfalls handled here:

- one backbone per actor, built once in ``__init__``; TensorFlow intra/inter-op
  threads set to the actor's CPUs before TensorFlow starts (otherwise every
  actor starts one thread per core and they thrash); GPU memory growth per actor
  (otherwise the first actor on a GPU reserves all its memory);
- the backbone runs through ``FeatureExtractor.__call__`` (fixed batches on a
  traced function), not ``model.predict`` per batch, which rebuilds its data
  pipeline on every call;
- a local instance declares more logical CPUs than cores (actors + 2) so Ray
  Data's own tasks are not starved by the actors on a small machine;
- ``max_tasks_in_flight_per_actor=1``: a shard is queued only on an idle actor,
  so shards spread over all actors instead of piling up on the first one ready.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

from .._errors import problem
from .._hashing import sha256_file
from .folder import FolderStats
from .pipeline import CHANGED, Featurizer
from .shards import import_shards, known_errors, write_shard


class ShardWorker:
    """A Ray Data actor: builds the backbone once, then featurizes one shard per call.

    Args:
        recipe: the driver's :class:`~vitl.features.folder.ExtractorRecipe`.
        space: the shards' :class:`~vitl.features.cache.FeatureSpace`; its weights
            fingerprint is the driver's, and a worker with other weights is an error.
        shard_dir: where shard files are written.
        threads: TensorFlow intra-op threads (the actor's CPUs).
    """

    def __init__(self, recipe, space, shard_dir: str, threads: int):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        self.featurizer = Featurizer(recipe.build(), cache=None, verbose=0)
        if self.featurizer.extractor.fingerprint != space.fingerprint:
            raise ValueError(problem(
                "worker weights", f"fingerprint {space.fingerprint} (the driver's)",
                self.featurizer.extractor.fingerprint,
                "install the same weights file on every node (vitl weights ...)"))
        self.space, self.shard_dir = space, Path(shard_dir)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        """Featurize the batch's one shard (``batch_size=1``), write it; return its summary row.

        A file that changed since the driver hashed it is an error row, never a vector
        stored under the key of other bytes.
        """
        start = time.perf_counter()
        name, items = str(batch["name"][0]), json.loads(batch["items"][0])
        why = {path: _changed(content, path) for content, path in items}
        readable = [(content, path) for content, path in items if not why[path]]
        vectors = self.featurizer.featurize([path for _, path in readable], errors="skip")
        why.update((str(path), reason) for path, reason in self.featurizer.last_stats.bad)
        keep = [i for i, (_, path) in enumerate(readable) if not why[path]]
        errors = [(content, path, why[path]) for content, path in items if why[path]]
        seconds = time.perf_counter() - start
        write_shard(self.shard_dir / name, self.space, self.featurizer.extractor.feature_dim,
                    [readable[i][0] for i in keep], vectors[keep], errors,
                    writer={"worker": self.worker, "seconds": round(seconds, 3), "engine": "ray"})
        return {"name": [name], "rows": [len(items)], "worker": [self.worker]}


def _changed(content: str, path) -> str | None:
    """Why the file no longer has ``content`` (None when it still has)."""
    try:
        return None if sha256_file(path) == content else CHANGED
    except OSError as err:
        return f"{type(err).__name__}: {err}"


def _one_line(err: BaseException) -> str:
    """vitl's own one-line message from inside Ray's wrappers, else a summary of the failure."""
    for line in reversed(str(err).splitlines()):
        if "Fix:" in line:  # a vitl problem(...) line, e.g. "ValueError: worker weights: ..."
            head, _, rest = line.strip().partition(": ")
            return rest if head.endswith(("Error", "Exception")) else line.strip()
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return problem("ray engine", "a reachable Ray cluster ('auto' or ray://HOST:PORT) computing "
                   "every shard", f"{type(err).__name__}: {first}",
                   "start one (ray start --head) or check --address; or rerun the same command: "
                   "finished shards are kept, only missing ones run "
                   "(Ray's logs: /tmp/ray/session_latest/logs)")


def run(tasks, recipe, space, shard_dir, *, address=None, workers=None,
        cpus_per_worker: int = 1, gpus_per_worker: float = 0):
    """Featurize shards on a Ray actor pool; yield ``{"name", "rows", "worker"}`` per shard written.

    Args:
        tasks: ``[{"name": file name, "items": [(content, path), ...]}]``.
        recipe: an :class:`~vitl.features.folder.ExtractorRecipe` with a concrete precision.
        space: the :class:`~vitl.features.cache.FeatureSpace` written into the shards.
        shard_dir: the shard folder (shared storage on a real cluster).
        address, workers, cpus_per_worker, gpus_per_worker: see
            :func:`vitl.features.folder.featurize_folder`.

    Returns:
        A generator of one summary dict per finished shard.

    Raises:
        ValueError: Ray missing or unreachable, or a shard failed (one line; a rerun resumes).

    Example:
        >>> from vitl.features.folder import ExtractorRecipe  # doctest: +SKIP
        >>> recipe = ExtractorRecipe("mobilenetv2", None, 32)  # doctest: +SKIP
        >>> space = Featurizer(recipe.build(), cache=None).space()  # doctest: +SKIP
        >>> tasks = [{"name": "x.parquet", "items": [(sha256_file(p), str(p))]}]  # doctest: +SKIP
        >>> [d["rows"] for d in run(tasks, recipe, space, "shards", workers=1)]  # doctest: +SKIP
        [1]
    """
    if not tasks:
        return
    try:
        import ray
        import ray.data  # the "data" extra
    except ImportError:
        raise ValueError(problem("engine 'ray'", "ray[data] installed", "not installed",
                                 "pip install 'vitl[ray]', or use --engine local")) from None
    # Start-up notices and Ray Data's stack dumps: failures are reported in one line below.
    logging.getLogger("ray").setLevel(logging.ERROR)
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    options = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):  # Ray's own variable wins
        # More logical CPUs than cores, so Ray Data's own tasks are not starved by the actors.
        actors = workers or os.cpu_count() or 1
        options["num_cpus"] = max(os.cpu_count() or 1, actors * cpus_per_worker + 2)
    started = not ray.is_initialized()
    try:  # one error path: connecting, a failed actor or shard (a rerun resumes)
        with warnings.catch_warnings():  # the one-line error below says it all; max_restarts=0
            warnings.simplefilter("ignore")  # (a dead actor fails the run) is "deprecated"
            if started:
                ray.init(address=address, **options)
            if workers is None:
                free = ray.cluster_resources()
                workers = (int(free.get("GPU", 0) // gpus_per_worker) if gpus_per_worker else
                           int(free.get("CPU", 1) // cpus_per_worker) - 2 * started)
            workers = max(1, min(int(workers), len(tasks)))
            ray.data.DataContext.get_current().enable_progress_bars = False  # the driver's bar
            Path(shard_dir).mkdir(parents=True, exist_ok=True)
            items = [{"name": t["name"], "items": json.dumps(t["items"])} for t in tasks]
            dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                ShardWorker, batch_size=1, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
                num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or None, max_restarts=0,
                fn_constructor_kwargs={"recipe": recipe, "space": space,
                                       "shard_dir": str(Path(shard_dir).absolute()),
                                       "threads": int(cpus_per_worker)})
        for row in dataset.iter_rows():
            yield {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    except (ray.exceptions.RayError, ConnectionError, RuntimeError, ValueError) as err:
        raise ValueError(_one_line(err)) from None
    finally:
        if started:
            ray.shutdown()


def featurize_on_ray(paths, featurizer: Featurizer, recipe, shard_dir, shard_size: int,
                     **ray_options) -> FolderStats:
    """The ray engine of :func:`~vitl.features.featurize_folder`: plan, run and import shards.

    The driver hashes the files and cuts the distinct contents the cache lacks
    (and no earlier shard reported as failed) into deterministic shards named by
    their contents; shard files already written are imported, the others are
    computed by :func:`run` and imported as each one finishes.

    Args:
        paths: the image files.
        featurizer: the driver's :class:`~vitl.features.Featurizer` (with a cache).
        recipe: its :class:`~vitl.features.folder.ExtractorRecipe`.
        shard_dir: the shard folder (default ``<cache>/shards``).
        shard_size: distinct images per shard.
        **ray_options: ``address``, ``workers``, ``cpus_per_worker``, ``gpus_per_worker``.

    Returns:
        :class:`~vitl.features.FolderStats` with ``engine="ray"`` (``seconds`` is the caller's).

    Example:
        Runs Ray (tested in ``tests/test_ray_engine.py``):

        >>> featurize_folder("photos", engine="ray", workers=2)  # doctest: +SKIP
    """
    from tqdm import tqdm

    cache, space = featurizer.cache, featurizer.space()
    shard_dir = Path(shard_dir) if shard_dir is not None else cache.directory / "shards"
    keys = featurizer.keys(paths)
    path_of = {}  # each content's first path: duplicates are read, and named, from it
    for key, path in zip(keys, paths):
        path_of.setdefault(key.content, str(Path(path).absolute()))
    cached = {key.content for key in cache.lookup(keys).found}
    known_bad = known_errors(shard_dir, space)  # failed in an earlier run: not retried
    contents = sorted(path_of)
    tasks, earlier, skipped = [], [], 0
    for i in range(0, len(contents), shard_size):
        missing = [c for c in contents[i:i + shard_size] if c not in cached and c not in known_bad]
        digest = hashlib.sha256("\n".join(missing).encode()).hexdigest()[:16]
        name = f"{space.id[:12]}-{digest}.parquet"  # a rerun finds the files a killed run wrote
        if not missing:
            skipped += 1
        elif (shard_dir / name).is_file():
            earlier.append(shard_dir / name)
        else:
            tasks.append({"name": name, "items": [(c, path_of[c]) for c in missing]})

    result = import_shards(earlier, cache, expect=space)
    imported_before, workers = result.added, Counter()
    with tqdm(total=sum(len(t["items"]) for t in tasks), unit="img", file=sys.stderr,
              disable=not (featurizer.verbose and tasks),
              desc=f"featurizing on ray ({recipe.backbone})") as bar:
        for done in run(tasks, recipe, space, shard_dir, **ray_options):
            import_shards([shard_dir / done["name"]], cache, expect=space, stats=result)
            workers[done["worker"]] += 1
            bar.update(done["rows"])
    bad_contents = {**{c: (p, e) for c, p, e in result.errors}, **known_bad}
    bad = sorted({bad_contents[k.content] for k in keys if k.content in bad_contents})
    return FolderStats(recipe.backbone, len(paths), sum(k.content in cached for k in keys),
                       result.added - imported_before, 0, 0.0,
                       recipe.precision, bad, engine="ray", imported=result.added,
                       shards={"total": skipped + len(earlier) + len(tasks), "skipped": skipped,
                               "imported": len(earlier), "run": len(tasks)},
                       workers=dict(workers),
                       identical=sum(k.content not in cached for k in keys)
                       - len({k.content for k in keys} - cached))
