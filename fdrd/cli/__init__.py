"""The `fdrd` command line, the top floor. Thin on purpose: each command parses its options, then calls
into builders/ or benchmark/. Commands live in fdrd/cli/<area>.py, each adding itself through
`register`; heavy imports happen inside the commands so that `fdrd --help` stays fast. Nothing in
fdrd/, builders/ or benchmark/ imports this package (tests/fdrd/test_layers.py checks it): defaults
live with the code that uses them."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from fdrd.cli import bench, build, captions, crawl, leaderboard, models, publish
from fdrd.errors import FdrdError, os_error_message

app = typer.Typer(
    name="fdrd",
    help="Build the FDRD fine-grained retrieval dataset and benchmark CLIP prompt learners on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for area in (build, captions, crawl, models, bench, leaderboard, publish):
    area.register(app)


def main() -> None:
    """Entry point: user-facing errors become one red line and exit status 2, not a traceback."""
    try:
        app()
    except FdrdError as error:
        # escape: a message may quote brackets (a path, a library's error) that rich would read as markup.
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as error:  # disk full, read-only output, ...: the machine's state, not a bug
        message = os_error_message(error)
        if message is None:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)

