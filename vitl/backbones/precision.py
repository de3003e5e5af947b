"""``precision="auto"``: the backbone precision that is fastest on this machine, measured once.

Which precision is fastest depends on the hardware, not on the code (figures:
benchmarks/README.md, "Precision: the `auto` probe and accuracy"). So ``auto`` resolves to:

- ``"float16"`` (Keras mixed float16) when TensorFlow sees a GPU;
- ``"float32"`` on an x86 Linux CPU without bfloat16 instructions (no probe needed);
- otherwise the faster of float32 and bfloat16 in a short timed probe (a few
  batches of 16 random images through random weights, in a child process so the
  caller's random state and memory are untouched), run the first time per
  machine (CPU model and flags) and backbone and kept in
  ``VITL_HOME/precision.json``.

``auto`` always resolves before any cache key is made: keys hold the concrete precision.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
import timeit
from pathlib import Path

from .. import _paths
from .._errors import check_choice
from .._files import folder_lock, write_bytes_atomic

AUTO = "auto"
PRECISIONS = ("float32", "bfloat16", "float16")
PROBE_FILE = "precision.json"
#: bfloat16 is chosen only when it is clearly faster: timings on shared cores are noisy.
MIN_SPEEDUP = 1.15
_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_description() -> tuple[str, set[str]]:
    """Return this CPU's model name and instruction-set flags (from ``/proc/cpuinfo``).

    Returns:
        ``(model name, flags)``; flags are empty where unknown.

    Example:
        >>> name, flags = cpu_description()
        >>> isinstance(name, str) and isinstance(flags, set)
        True
    """
    try:
        first_cpu = Path("/proc/cpuinfo").read_text(errors="replace").split("\n\n")[0]
    except OSError:
        first_cpu = ""
    fields = {key.strip(): value.strip() for key, _, value in
              (line.partition(":") for line in first_cpu.splitlines())}
    name = fields.get("model name") or platform.processor() or platform.machine()
    return name, set(fields.get("flags", "").split())


def machine_id() -> str:
    """Return a short id of this machine's CPU (model and flags), the key of stored probes.

    Returns:
        16 hex digits.

    Example:
        >>> len(machine_id())
        16
    """
    name, flags = cpu_description()
    text = json.dumps([name, sorted(flags), platform.machine()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(precision: str, backbone: str, *, gpus: bool | None = None) -> str:
    """Return a concrete precision for ``precision``, running the probe for ``"auto"`` if needed.

    Args:
        precision: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        backbone: registry name (the probe result is kept per backbone).
        gpus: whether the featurizing devices are GPUs; None asks TensorFlow here.

    Returns:
        ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    Raises:
        ValueError: an unknown precision.

    Example:
        >>> resolve_precision("float32", "resnet101v2")
        'float32'
        >>> resolve_precision("auto", "resnet101v2", gpus=True)
        'float16'
    """
    if check_choice("precision", precision, (AUTO, *PRECISIONS)) != AUTO:
        return precision
    if gpus if gpus is not None else _has_gpu():
        return "float16"
    path = _paths.vitl_home() / PROBE_FILE
    # Runs starting together: one measures (alone on the CPU), the others wait and read its
    # result; no run's write drops another backbone's.
    with folder_lock(path.parent):
        try:
            probes = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            probes = {}
        probes = probes if isinstance(probes, dict) else {}
        if not isinstance(probes.get(machine_id()), dict):  # a damaged entry is measured again
            probes[machine_id()] = {}
        stored = probes[machine_id()].get(backbone)
        if isinstance(stored, dict) and stored.get("precision") in PRECISIONS:
            return stored["precision"]
        result = probe(backbone)
        probes[machine_id()][backbone] = result
        write_bytes_atomic(path, (json.dumps(probes, indent=1) + "\n").encode())
    return result["precision"]


def probe(backbone: str) -> dict:
    """Measure float32 vs bfloat16 featurizing speed of ``backbone`` on this CPU (no caching).

    Args:
        backbone: registry name.

    Returns:
        ``{"precision", "reason", "images_per_second": {precision: img/s},
        "cpu", "measured"}``.

    Example:
        A probe takes a minute or more, so doctests skip it:

        >>> probe("mobilenetv2")["precision"] in PRECISIONS  # doctest: +SKIP
        True
    """
    cpu, flags = cpu_description()
    result = {"cpu": cpu, "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
              "precision": "float32", "images_per_second": {}}
    if flags and platform.machine() in ("x86_64", "AMD64") and not flags & _BF16_FLAGS:
        return {**result, "reason": "no bfloat16 instructions (avx512_bf16 / amx_bf16) on this CPU"}
    # A child process: the caller's random state and memory stay untouched.
    run = subprocess.run([sys.executable, "-m", "vitl.backbones.precision", backbone],
                         check=False, capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        error = (run.stderr.strip().splitlines() or ["?"])[-1]
        return {**result, "reason": f"probe failed ({error})"}
    speed = json.loads(run.stdout.splitlines()[-1])
    ratio = speed["bfloat16"] / speed["float32"]
    chosen = "bfloat16" if ratio >= MIN_SPEEDUP else "float32"
    return {**result, "precision": chosen, "images_per_second": speed,
            "reason": f"bfloat16 / float32 = {ratio:.2f}x (threshold {MIN_SPEEDUP}x)"}


def _measure(backbone: str, rounds: int = 3) -> dict:
    """Best-of-``rounds`` img/s of both precisions, interleaved so they share the load."""
    import numpy as np

    from .extractor import BACKBONE_BATCH, build_feature_extractor

    extractors = {p: build_feature_extractor(backbone, weights=None, precision=p)
                  for p in ("float32", "bfloat16")}
    size = extractors["float32"].input_size
    images = np.random.default_rng(0).uniform(0, 255, (BACKBONE_BATCH, size, size, 3))
    seconds = {p: [] for p in extractors}
    for _ in range(rounds + 1):  # round 0 warms up (tracing, oneDNN kernel selection): slowest
        for p, fx in extractors.items():
            seconds[p].append(timeit.timeit(lambda: fx(images), number=1))  # noqa: B023 - run now
    return {p: len(images) / min(times) for p, times in seconds.items()}


if __name__ == "__main__":  # the probe's child process: prints {"float32": img/s, ...}
    print(json.dumps(_measure(sys.argv[1])))
