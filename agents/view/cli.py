"""`python -m agents.view PATH [PATH ...]`: write the viewer page for run or evaluation folders and print its path."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from collections.abc import Sequence
from pathlib import Path

from agents.view.data import ViewerError, load_folder, page_data
from agents.view.page import render_page

PAGE = "dialogues.html"


def default_output(folders: Sequence[Path]) -> Path:
    """`<folder>/dialogues.html` for one folder; beside the first for several, named after the others."""
    if len(folders) == 1:
        return folders[0] / PAGE
    return folders[0] / f"dialogues-vs-{'-'.join(f.name for f in folders[1:])}.html"


def write_view(paths: Sequence[str | Path], output: str | Path | None = None) -> Path:
    """Read the folders, write the page, return its path."""
    folders = [load_folder(p) for p in paths]
    for folder in folders:
        if not folder.records:
            raise ViewerError(f"{folder.path}: transcripts.jsonl holds no dialogue yet")
    target = Path(output) if output else default_output([f.path for f in folders])
    title = " vs ".join(f.path.name for f in folders) + " · sage-gym dialogues"
    page = render_page(page_data(folders), title)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agents.view",
        description="Write one self-contained HTML page (no network) showing the dialogues of a training run or an evaluation; "
        "two folders (e.g. the untrained and the trained model's evaluations) also show the same scenario and seed side by side.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a training run folder (or runs/grpo: its 'latest' run), or an evaluation folder")
    parser.add_argument("--output", "-o", help=f"where to write the page (default: {PAGE} in the first folder)")
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    args = parser.parse_args(argv)
    try:
        target = write_view(args.paths, args.output)
    except (ViewerError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(target)
    if args.open:
        webbrowser.open(target.resolve().as_uri())
    return 0
