"""MkDocs hooks: the reference pages generated from the source, so that they cannot drift.

``<!-- rlrec: config reference -->`` becomes a table of every key of every shipped YAML file with
its default and the comment beside it; ``<!-- rlrec: cli reference -->`` becomes each command's
own ``--help``, as its parser prints it.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "rlrec" / "conf"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!-- rlrec: config reference -->" in markdown:
        markdown = markdown.replace("<!-- rlrec: config reference -->", config_reference())
    if "<!-- rlrec: cli reference -->" in markdown:
        markdown = markdown.replace("<!-- rlrec: cli reference -->", cli_reference())
    return markdown


def _keys(text: str) -> list[tuple[str, str, str]]:
    """(dotted key, default, comment) of each scalar line of a YAML file, nesting by indent."""
    found, stack = [], []
    for line in text.splitlines():
        match = re.match(r"^( *)([\w@/-]+):(.*)$", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(match[1]), match[2], match[3]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        value, _, comment = rest.partition(" #")
        value = value.strip()
        if key == "defaults" and not stack:
            stack.append((indent, key))
            continue
        if value == "":
            stack.append((indent, key))
            continue
        if stack and stack[0][1] == "defaults":
            continue
        dotted = ".".join([k for _, k in stack] + [key])
        found.append((dotted, value, comment.strip().lstrip("#").strip()))
    return found


def _table(rows: list[tuple[str, str, str]]) -> str:
    cells = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, value, comment in rows:
        cells.append(f"| `{key}` | `{value}` | {comment.replace('|', '/')} |")
    return "\n".join(cells)


def config_reference() -> str:
    parts = ["## Every key, as shipped", "", "### `config.yaml` (the top level)", ""]
    parts.append(_table([k for k in _keys((CONF / "config.yaml").read_text())
                         if not k[0].startswith("hydra.")]))  # fmt: skip
    for group in sorted(p for p in CONF.iterdir() if p.is_dir()):
        for option in sorted(group.rglob("*.yaml")):
            name = option.relative_to(CONF).with_suffix("").as_posix()
            rows = _keys(option.read_text())
            if not rows:
                continue
            prefix = "" if group.name in ("experiment", "sweep", "hydra") else f"{group.name}."
            if group.name == "sinks":
                prefix = "sinks."
            parts += ["", f"### `{name}`", "", _table([(prefix + k, v, c) for k, v, c in rows])]
    return "\n".join(parts)


def _help(main: Any) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["--help"])
    return out.getvalue()


def cli_reference() -> str:
    import importlib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    parts = []
    run = subprocess.run([sys.executable, str(ROOT / "run.py"), "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)  # fmt: skip
    parts += ["## `python run.py` and `rlrec-run`", "", "```text", run.stdout.strip(), "```", ""]
    for name, target in sorted(scripts.items()):
        if name == "rlrec-run":
            continue
        module, _, function = target.partition(":")
        text = _help(getattr(importlib.import_module(module), function))
        parts += [f"## `{name}`", "", "```text", text.strip(), "```", ""]
    return "\n".join(parts)
