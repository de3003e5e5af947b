"""Count code lines of Python files: blank, comment and docstring lines are not counted.

Usage: ``python benchmarks/count_loc.py [PATH ...]`` (default ``vitl``); prints one line per
module, largest first, and the total.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.py"
    >>> q = chr(34) * 3
    >>> _ = path.write_text(f"{q}Doc.{q}\\n\\n# note\\nx = 1\\n\\ndef f():\\n    {q}Doc.{q}\\n    return x\\n")
    >>> code_lines(path)
    3
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path


def code_lines(path) -> int:
    """Return the number of lines of ``path`` holding code (not blank, comment or docstring).

    Args:
        path: a Python source file.

    Returns:
        The count of lines with at least one token other than comments, newlines and
        docstrings.
    """
    source = Path(path).read_text(encoding="utf-8")
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER, tokenize.ENCODING}
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def main(argv: list[str]) -> int:
    """Print code lines per file below the given paths and their total; return 0."""
    files = [f for p in (argv or ["vitl"]) for f in
             (sorted(Path(p).rglob("*.py")) if Path(p).is_dir() else [Path(p)])]
    counts = sorted(((code_lines(f), f) for f in files), reverse=True)
    for count, path in counts:
        print(f"{count:6d}  {path}")
    print(f"{sum(c for c, _ in counts):6d}  total ({len(counts)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
