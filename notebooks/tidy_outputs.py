"""Tidy executed notebooks' outputs before they are committed.

    python notebooks/tidy_outputs.py notebooks/*.ipynb notebooks/solutions/*.ipynb

A run leaves what a live kernel saw: a progress bar as dozens of ``\\r``-updated
outputs, one stream output per write, and library chatter. This keeps what a
reader needs: consecutive stream outputs of a cell are merged, each ``\\r``-updated
line keeps its final state (a bar's last line), known noise lines are dropped
(see ``NOISE``; vitl already silences most at the source) and nbconvert's
per-cell timing metadata is removed. Running it twice changes nothing.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

#: Lines (or multi-line warning blocks) that mean nothing to a reader of the notebooks.
NOISE = [
    # tqdm.auto in a kernel without ipywidgets
    r"[^\n]*TqdmWarning: IProgress not found[^\n]*\n(  from \.autonotebook[^\n]*\n)?",
    # TensorFlow's SavedModel writer and TFLite converter / interpreter
    r"[^\n]*INFO:tensorflow:Assets written[^\n]*\n",
    r"[^\n]*fully_quantize: [^\n]*\n",
    (r"[^\n]*UserWarning:\s+Warning: tf\.lite\.Interpreter is deprecated.*?"
     r"warnings\.warn\(_INTERPRETER_DELETION_WARNING\)\n"),
    r"[^\n]*XNNPACK delegate[^\n]*\n",
    # TensorFlow's native start-up notices (vitl normally filters them at import)
    r"[^\n]*All log messages before absl::InitializeLog\(\)[^\n]*\n",
    r"[^\n]*oneDNN custom operations are on[^\n]*\n",
    (r"[^\n]*(cpu_feature_guard|This TensorFlow binary is optimized|rebuild TensorFlow with)"
     r"[^\n]*\n"),
]
_NOISE = re.compile("|".join(f"(?:{pattern})" for pattern in NOISE), re.DOTALL)


def final_lines(text: str) -> str:
    """Keep each line's state after its last carriage return (a bar's final line).

    Example:
        >>> final_lines("\\rbar  0%\\rbar 50%\\rbar 100%\\rbar 100% done\\nnext\\n")
        'bar 100% done\\nnext\\n'
    """
    lines = []
    for line in text.split("\n"):
        states = [state for state in line.split("\r") if state.strip()]
        lines.append(states[-1] if states else "")
    return "\n".join(lines)


def tidy_text(text: str) -> str:
    """Final bar states, no noise, no blank lines left where noise or bars were.

    Example:
        >>> tidy_text("INFO:tensorflow:Assets written to: /tmp/x\\n\\rcalib:  0%\\rcalib: 100%\\n")
        'calib: 100%\\n'
    """
    text = final_lines(text)
    text = _NOISE.sub("", text if text.endswith("\n") else text + "\n")
    kept = [line for line in text.split("\n") if line.strip()]
    return "\n".join(kept) + "\n" if kept else ""


def tidy_outputs(outputs: list) -> list:
    """Merge the stream outputs of one name between rich outputs (figures), then tidy their
    text; drop empty ones.

    A kernel flushes stdout and stderr separately, so which comes first is a race: one run
    printed stderr, stdout, stderr for a cell whose two stderr lines came first. Merging by
    name, at the first one's place, makes the committed outputs the same from run to run.

    Example:
        >>> outputs = [{"output_type": "stream", "name": n, "text": t}
        ...            for n, t in [("stderr", "a\\n"), ("stdout", "b\\n"), ("stderr", "c\\n")]]
        >>> [(o["name"], o["text"]) for o in tidy_outputs(outputs)]
        [('stderr', ['a\\n', 'c\\n']), ('stdout', ['b\\n'])]
    """
    merged, streams = [], {}
    for output in outputs:
        if output.get("output_type") != "stream":
            merged.append(output)
            streams = {}  # streams after a figure stay after it
        elif output["name"] in streams:
            streams[output["name"]]["text"] += _text(output)
        else:
            streams[output["name"]] = dict(output, text=_text(output))
            merged.append(streams[output["name"]])
    tidy = []
    for output in merged:
        if output.get("output_type") == "stream":
            text = tidy_text(output["text"])
            if not text:
                continue
            output = dict(output, text=text.splitlines(True))
        tidy.append(output)
    return tidy


def tidy_notebook(notebook: dict) -> dict:
    """Tidy every code cell's outputs and drop nbconvert's execution timing metadata."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = tidy_outputs(cell.get("outputs", []))
            cell.get("metadata", {}).pop("execution", None)
    return notebook


def _text(output: dict) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def main(paths: list[str]) -> int:
    if not paths:
        print("usage: python notebooks/tidy_outputs.py NOTEBOOK.ipynb ...", file=sys.stderr)
        return 2
    for name in paths:
        path = Path(name)
        notebook = json.loads(path.read_text(encoding="utf-8"))
        before = json.dumps(notebook, sort_keys=True)
        tidy_notebook(notebook)
        if json.dumps(notebook, sort_keys=True) != before:
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n",
                            encoding="utf-8")
            print(f"tidied {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
