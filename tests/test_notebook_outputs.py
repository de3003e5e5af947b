"""Committed notebook outputs are quiet: no TF/absl start-up lines, warnings, tracebacks,
errors, or progress bars kept as more than their final line (issue 14)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
COMMITTED = sorted(NOTEBOOKS.glob("*.ipynb")) + sorted(NOTEBOOKS.glob("solutions/*.ipynb"))

# Independent of tidy_outputs.NOISE on purpose: these say what must never be committed.
FORBIDDEN = {
    "TensorFlow/absl start-up line": re.compile(
        r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|port\.cc:\d+\]"),
    "TensorFlow INFO line": re.compile(r"INFO:tensorflow|fully_quantize|XNNPACK"),
    "warning": re.compile(r"\b[A-Za-z]*Warning:|^WARNING\b|warnings\.warn\(", re.MULTILINE),
    "traceback": re.compile(r"Traceback \(most recent call last\)"),
    "download that cannot happen offline": re.compile(r"Downloading data from"),
}
BAR = re.compile(r"^(?P<desc>[^\n|]*?):?\s*\d+%\|", re.MULTILINE)


def problems(notebook: dict) -> list[str]:
    """What in a notebook's outputs must not be committed, one line per finding."""
    found = []
    for number, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        streams = {}
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "error":
                found.append(f"cell {number}: an error output ({output.get('ename')})")
                continue
            if kind == "stream":
                text = "".join(output.get("text", ""))
                streams[output["name"]] = streams.get(output["name"], 0) + 1
            else:
                text = "".join(output.get("data", {}).get("text/plain", ""))
            for what, pattern in FORBIDDEN.items():
                if pattern.search(text):
                    found.append(f"cell {number}: {what}: {pattern.search(text).group(0)!r}")
            if "\r" in text:
                found.append(f"cell {number}: a carriage-return-updated line (a live bar)")
            bars = [m.group("desc").strip() for m in BAR.finditer(text)]
            for desc in sorted({d for d in bars if bars.count(d) > 1}):
                found.append(f"cell {number}: bar {desc!r} kept {bars.count(desc)} times")
        for name, count in streams.items():
            if count > 1:
                found.append(f"cell {number}: {count} separate {name} outputs (not merged)")
    return found


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_committed_outputs_are_quiet(path):
    assert problems(json.loads(path.read_text(encoding="utf-8"))) == []


def _load_tidy():
    spec = importlib.util.spec_from_file_location("tidy_outputs", NOTEBOOKS / "tidy_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NOISY_CELL = {"cell_type": "code", "metadata": {"execution": {"x": 1}}, "outputs": [
    {"output_type": "stream", "name": "stderr",
     "text": "WARNING: All log messages before absl::InitializeLog() is called are written to "
             "STDERR\nI0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\n"},
    {"output_type": "stream", "name": "stderr",
     "text": "/x/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update jupyter\n"
             "  from .autonotebook import tqdm as notebook_tqdm\n"},
    {"output_type": "stream", "name": "stdout", "text": "INFO:tensorflow:Assets written to: /t\n"},
    {"output_type": "stream", "name": "stderr", "text": "\rgrid:   0%|          | 0/6 [00:00<?]"},
    {"output_type": "stream", "name": "stderr", "text": "\rgrid:  50%|█████     | 3/6 [00:03<00:03]"},
    {"output_type": "stream", "name": "stderr", "text": "\rgrid: 100%|██████████| 6/6 [00:06<00:00]"},
    {"output_type": "stream", "name": "stderr",
     "text": "\rgrid: 100%|██████████| 6/6 [00:06<00:00]\nfully_quantize: 0, inference_type: 6\n"
             "/x/interpreter.py:457: UserWarning:     Warning: tf.lite.Interpreter is deprecated "
             "and is scheduled for deletion in\n    TF 2.20. Please use LiteRT.\n    \n"
             "  warnings.warn(_INTERPRETER_DELETION_WARNING)\nINFO: Created TensorFlow Lite "
             "XNNPACK delegate for CPU.\nfeaturized 6 images\n"},
]}


def test_the_check_catches_each_kind_of_noise():
    found = "\n".join(problems({"cells": [NOISY_CELL]}))
    for what in ["start-up line", "INFO line", "warning", "live bar", "separate stderr"]:
        assert what in found, what


def test_tidy_outputs_leaves_only_the_final_bar_line_and_real_output():
    tidy = _load_tidy()
    notebook = tidy.tidy_notebook({"cells": [json.loads(json.dumps(NOISY_CELL))]})
    assert problems(notebook) == []
    cell = notebook["cells"][0]
    assert [(o["name"], "".join(o["text"])) for o in cell["outputs"]] == [
        ("stderr", "grid: 100%|██████████| 6/6 [00:06<00:00]\nfeaturized 6 images\n")]
    assert "execution" not in cell["metadata"]
    assert tidy.tidy_notebook(json.loads(json.dumps(notebook))) == notebook  # idempotent
