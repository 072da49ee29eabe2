"""Commands of this area (filled by its owner)."""

import typer


def register(app: typer.Typer) -> None:
    pass
