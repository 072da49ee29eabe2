"""`fdrd leaderboard`: results files -> the paper's table (md, LaTeX, CSV, HTML, JSON). The work happens in
benchmark/leaderboard.py (layout) and benchmark/leaderboard_render.py (formats)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from fdrd.errors import FdrdError

FORMATS = ("md", "latex", "csv", "html", "json")  # benchmark.leaderboard_render.FORMATS; a test checks they agree


def register(app: typer.Typer) -> None:
    @app.command("leaderboard")
    def leaderboard(
        runs: list[Path] = typer.Argument(..., help="Results folders (searched recursively) or results files of `fdrd bench`."),
        fmt: str = typer.Option("md", "--format", help="What goes to standard output: md, latex, csv, html or json."),
        out: Path = typer.Option(None, "--out", help="Also write every format, and README.md (the Hub card), into this folder."),
        reported: bool = typer.Option(False, "--reported", help="Add the DCAR paper's numbers beside the measured ones, with the difference."),
        allow_mixed: bool = typer.Option(False, "--allow-mixed", help="Show results of different datasets or backbones in one table."),
    ) -> None:
        """Tables of Recall@K per domain and K (image->text and text->image blocks, AVG rows), one column per run."""
        if fmt not in FORMATS:
            raise FdrdError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
        from benchmark.leaderboard import build_leaderboard
        from benchmark.leaderboard_render import render, write_leaderboard

        board = build_leaderboard(runs, reported=reported, allow_mixed=allow_mixed)
        errors = Console(stderr=True)
        if out is not None:
            for path in write_leaderboard(board, out):
                errors.print(f"wrote {path}", highlight=False)
            if fmt == "html":
                return  # the page is in --out; tens of kilobytes of base64 on a terminal help nobody
        sys.stdout.write(render(board, fmt))
