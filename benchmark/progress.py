"""The progress bar every long step of `fdrd bench` shows (training, encoding, feature caching)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(console: Console | None) -> Progress:
    """A transient bar with a status field; silent without a console or with a quiet one (ranks other than
    rank 0 get a quiet console)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=console is None or console.quiet,
    )
