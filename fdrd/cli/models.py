"""Model commands: `fdrd model tiny` builds an untrained tiny CLIP, `fdrd pretrain` trains it on the
synthetic `pretrain` split. Both write folders that `--model DIR` of `fdrd bench` loads like a Hub id."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from rich.console import Console

from fdrd.errors import FdrdError

model_app = typer.Typer(help="Build model checkpoints for offline use.", no_args_is_help=True)


def _spec(image_size: int, patch: int, width: int, layers: int, heads: int, embed_dim: int, context_length: int,
          vocab_size: int):
    from benchmark.tiny import TinyClipSpec

    spec = TinyClipSpec(
        image_size=image_size, patch_size=patch, vision_width=width, vision_layers=layers, text_width=width,
        text_layers=layers, heads=heads, embed_dim=embed_dim, context_length=context_length, vocab_size=vocab_size,
    )
    spec.check()
    return spec


# What a model folder written by `fdrd model tiny` / `fdrd pretrain` holds (save_pretrained of the model,
# tokenizer and image processor, plus the report): --overwrite replaces only such a folder.
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".txt", ".jinja")


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, or a folder holding anything but one of our model folders
    (with --overwrite) or nothing (without)."""
    if out.exists() and not out.is_dir():
        raise FdrdError(f"--out {out} is a file, not a folder; choose a new or empty folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FdrdError(f"{out}: folder exists and is not empty; pass --overwrite or another --out")
    strangers = [p.name for p in out.iterdir() if not p.is_file() or p.suffix not in MODEL_FILE_SUFFIXES]
    if strangers or not (out / "config.json").is_file():
        what = f"holds {', '.join(sorted(strangers)[:5])}" if strangers else "has no config.json"
        raise FdrdError(f"--out {out} {what}: not a model folder written by fdrd, which is the only kind of "
                        "folder fdrd replaces; choose another --out")


def _captions_from(captions_file: Path | None, data: Path | None) -> list[str]:
    if captions_file is not None:
        if not captions_file.is_file():
            raise FdrdError(f"{captions_file}: no such captions file (one caption per line)")
        return [line.strip() for line in captions_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if data is not None:
        from benchmark.pretrain import load_pairs

        return load_pairs(data, "pretrain").captions
    raise FdrdError("fdrd model tiny: give --captions FILE or --data DIR to train the tokenizer on")


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")

    @model_app.command("tiny")
    def tiny(
        out: Path = typer.Option(..., "--out", help="Folder to write the model to (save_pretrained layout)."),
        captions: Path = typer.Option(None, "--captions", help="Text file, one caption per line, for the tokenizer."),
        data: Path = typer.Option(None, "--data", help="A built dataset: its pretrain captions train the tokenizer."),
        image_size: int = typer.Option(64, "--image-size"),
        patch: int = typer.Option(8, "--patch"),
        width: int = typer.Option(64, "--width", help="Width of both towers."),
        layers: int = typer.Option(2, "--layers", help="Depth of both towers."),
        heads: int = typer.Option(2, "--heads"),
        embed_dim: int = typer.Option(64, "--embed-dim", help="Shared image-text embedding width."),
        context_length: int = typer.Option(77, "--context-length"),
        vocab_size: int = typer.Option(1000, "--vocab-size", help="Upper bound; small corpora give fewer tokens."),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Build an untrained tiny CLIP with a tokenizer trained on your captions."""
        from benchmark.tiny import save_tiny_clip

        spec = _spec(image_size, patch, width, layers, heads, embed_dim, context_length, vocab_size)
        _check_out(out, overwrite=True)  # save_pretrained replaces a model folder's files in place
        folder = save_tiny_clip(out, spec, _captions_from(captions, data), seed=seed)
        Console().print(f"tiny CLIP written to {folder}")

    @app.command("pretrain")
    def pretrain(
        data: Path = typer.Option(..., "--data", help="A built synthetic FDRD folder (with its pretrain split)."),
        out: Path = typer.Option(..., "--out", help="Folder to write the pretrained model to."),
        steps: int = typer.Option(500, "--steps", help="AdamW steps; 500 x batch 128 is ~28 epochs of the default synthetic build's pretrain split (2,304 images)."),
        minutes: float = typer.Option(None, "--minutes", help="Stop after this much wall-clock time."),
        batch_size: int = typer.Option(128, "--batch-size"),
        lr: float = typer.Option(2e-3, "--lr"),
        seed: int = typer.Option(0, "--seed"),
        image_size: int = typer.Option(64, "--image-size"),
        patch: int = typer.Option(8, "--patch"),
        width: int = typer.Option(64, "--width"),
        layers: int = typer.Option(2, "--layers"),
        heads: int = typer.Option(2, "--heads"),
        embed_dim: int = typer.Option(64, "--embed-dim"),
        context_length: int = typer.Option(77, "--context-length"),
        vocab_size: int = typer.Option(1000, "--vocab-size"),
        no_cache: bool = typer.Option(False, "--no-cache", help="Train even if the cache holds this model."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    ) -> None:
        """Contrastive pretraining of a tiny CLIP (cached under $FDRD_CACHE or ~/.cache/fdrd)."""
        from benchmark.pretrain import REPORT_NAME, PretrainConfig, pretrained_tiny_clip, train_and_save

        _check_out(out, overwrite)
        spec = _spec(image_size, patch, width, layers, heads, embed_dim, context_length, vocab_size)
        config = PretrainConfig(steps=steps, minutes=minutes, batch_size=batch_size, lr=lr, seed=seed)
        if out.exists():
            shutil.rmtree(out)
        if no_cache:
            train_and_save(data, out, spec, config)
        else:
            shutil.copytree(pretrained_tiny_clip(data, spec, config), out)
        _print_report(out / REPORT_NAME)


def _print_report(path: Path) -> None:
    from rich.table import Table

    from fdrd.manifest import read_json

    report = read_json(path)
    table = Table(title=f"zero-shot test recall of {path.parent} (%)")
    for column in ("domain", "n", "i2t R@1", "R@5", "R@10", "t2i R@1", "R@5", "R@10", "chance R@1", "R@5", "R@10"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    rows = dict(report["zero_shot_test"]["domains"])
    rows["mean"] = report["zero_shot_test"]["mean"]
    for domain, m in rows.items():
        cells = [domain, str(m.get("n", ""))]
        for prefix in ("i2t", "t2i", "chance"):
            cells += [f"{m[f'{prefix}_r{k}']:.1f}" for k in (1, 5, 10)]
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(
        f"{report['steps_done']} steps in {report['train_seconds']} s on {report['torch_threads']} threads, "
        f"loss {report['first_loss']:.3f} -> {report['last_loss']:.3f}, temperature {report['temperature']:.4f}"
    )
