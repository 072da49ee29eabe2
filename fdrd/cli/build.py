"""`fdrd build`, `fdrd validate`, `fdrd info`: make an FDRD directory, check it, describe it.

Parsing only; the work is in builders/pipeline.py, builders/validate.py and builders/info.py,
imported inside the commands so that `fdrd --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from fdrd.errors import FdrdError


def _domains(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise FdrdError(f"--domains {value!r} names no domain; give comma-separated names, e.g. oxford_pets,dtd")
    return names


def register(app: typer.Typer) -> None:
    # Defaults repeat builders.pipeline.BuildOptions' (importing it here would slow `fdrd --help`);
    # tests/builders/test_cli_build.py checks that they agree.
    @app.command()
    def build(
        split: str = typer.Option("all", help="all (train, val, test, and pretrain for synthetic), train, val or test."),
        domains: str = typer.Option(None, help="Comma-separated domains to build (default: all of the source's)."),
        source: str = typer.Option("auto", help="auto, synthetic, coop, imagefolder or urls."),
        data_root: Path = typer.Option(None, help="Folder with the source data (none: the synthetic source)."),
        out: Path = typer.Option(Path("fdrd-data"), help="Output directory."),
        workers: int = typer.Option(1, min=1, help="Processes normalizing images in parallel."),
        per_category: int = typer.Option(None, help="Synthetic source: images per category and split."),
        seed: int = typer.Option(0, help="Seed of the synthetic source and of the caption stage."),
        short_side: int = typer.Option(336, min=1, help="Shrink images so their short side is at most this."),
        jpeg_quality: int = typer.Option(95, min=1, max=100, help="JPEG quality of the stored images."),
        max_input_mb: int = typer.Option(512, min=1, help="Input files larger than this (MiB) are rejected unread."),
        phash_threshold: int = typer.Option(4, min=0, max=32, help="Hamming distance (of 64 bits) for near duplicates."),
        overwrite: bool = typer.Option(False, help="Replace a different build already in --out."),
        captioner: str = typer.Option(
            "auto",
            help="Caption stage: auto, none (keep the source's captions), template (labels or category captions, "
            "no model), vlm or fdrd-json.",
        ),
        captions: Path = typer.Option(None, help="Captions file for the caption stage."),
        caption_model: str = typer.Option(None, help="Vision-language model of the caption stage."),
        caption_prompt: str = typer.Option(None, help="Prompt of the caption stage."),
        trust_remote_code: bool = typer.Option(False, help="Let the caption model run its own code."),
        gpus: int = typer.Option(None, min=0, help="Caption stage: one captioning process per GPU (0: default device)."),
        caption_batch_size: int = typer.Option(None, min=1, help="Images per caption-model batch."),
        negatives: int = typer.Option(4, min=0, help="Negatives per row."),
        meta_encoder: str = typer.Option(
            None, help="CLIP checkpoint (Hub id or folder) grouping image-folder and URL classes into meta-categories by meaning."
        ),
    ) -> None:
        """Build FDRD shards, card and manifest into --out; rerun with the same options to resume."""
        from builders.normalize import NormalizeOptions
        from builders.pipeline import BuildOptions, CaptionSettings, EmptyBuildError
        from builders.pipeline import build as run_build
        from builders.report import summary_table

        options = BuildOptions(
            out=out,
            source=source,
            data_root=data_root,
            domains=_domains(domains),
            split=split,
            per_category=per_category,
            seed=seed,
            workers=workers,
            normalize=NormalizeOptions(short_side=short_side, jpeg_quality=jpeg_quality,
                                       max_input_bytes=max_input_mb * 2**20),
            phash_threshold=phash_threshold,
            captions=CaptionSettings(
                captioner=captioner,
                captions_path=str(captions) if captions else None,
                model=caption_model,
                prompt=caption_prompt,
                trust_remote_code=trust_remote_code,
                gpus=gpus,
                batch_size=caption_batch_size,
                negatives=negatives,
            ),
            overwrite=overwrite,
            meta_encoder=meta_encoder,
        )
        console = Console()
        try:
            manifest = run_build(options)
        except EmptyBuildError as failed:
            console.print(summary_table(failed.manifest))  # what was made, then the one red line
            raise
        console.print(summary_table(manifest))
        console.print(f"wrote {out} ({manifest['rejected']['count']} rejected inputs in {out / 'rejected.jsonl'})")

    @app.command()
    def validate(
        directory: Path = typer.Argument(..., help="A directory written by `fdrd build`."),
        allow_leaks: bool = typer.Option(False, help="Do not count test images near-duplicating training images as problems."),
    ) -> None:
        """Check schema, checksums, content hash, ids, rows and split leaks; exit 1 listing problems."""
        from builders.report import summary_table
        from builders.validate import validate_build

        console = Console()
        report = validate_build(directory, allow_leaks=allow_leaks, console=Console(stderr=True))
        console.print(summary_table(report.manifest, title="FDRD validate"))
        for warning in report.warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        if report.problems:
            for problem in report.problems:
                console.print(f"[red]problem:[/] {problem}", highlight=False)
            console.print(f"[bold red]{len(report.problems)} problem(s)[/] in {directory}")
            raise typer.Exit(1)
        console.print(f"[green]ok[/]: {report.rows} rows in {report.shards} shards, content hash {report.content_hash}")

    @app.command()
    def info(
        directory: Path = typer.Argument(..., help="A directory written by `fdrd build`."),
        categories: bool = typer.Option(True, help="Also print counts per category."),
    ) -> None:
        """Counts per domain/split/category, caption lengths, attribute coverage, negatives per row."""
        from builders.info import collect_info, render_info

        render_info(collect_info(directory), Console(), categories=categories)
