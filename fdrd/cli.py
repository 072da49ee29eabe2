"""The `fdrd` command line. Thin on purpose: each command parses its options, then calls into
builders/ or benchmark/. Commands live in cli_*.py by area, each adding itself through `register`."""

from __future__ import annotations

import typer

from fdrd import cli_bench, cli_build, cli_captions

app = typer.Typer(
    name="fdrd",
    help="Build the FDRD fine-grained retrieval dataset and benchmark CLIP prompt learners on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for area in (cli_build, cli_captions, cli_bench):
    area.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
