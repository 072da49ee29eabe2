"""`fdrd audit`: count the defects of FDRD captions in released-format JSON files or a built dataset.

Parsing and printing only; the counting is in builders/audit.py, imported inside the command so that
`fdrd --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

# Column headers of the table, in the order of builders.audit.AUDIT_KEYS.
_LONG_NAMES = {
    "records": "records",
    "negatives": "negatives",
    "identical_to_positive": "negatives identical to the positive",
    "duplicate_negative_records": "records with two or more identical negatives",
    "in_word_replacements": "negatives with a class name inside another word",
    "true_class_survives": "records whose every swap left the true class",
    "cross_meta_category": "negatives naming a class of another meta-category",
    "non_words": "captions with a word in no dictionary",
    "repeated_names": "captions repeating a name back to back",
    "names_other_class": "positives naming a class not their own",
}


def _table(results: list[dict[str, Any]]) -> Table:
    """One column per file (files are few, the counts many), one row per count."""
    table = Table(title="FDRD caption audit", caption="-: the domain has no natural meta-categories")
    table.add_column("count")
    for result in results:
        table.add_column(Path(result["file"]).name, justify="right")
    for key, name in _LONG_NAMES.items():
        table.add_row(name, *("-" if r[key] is None else f"{r[key]:,}" for r in results))
    return table


def _print_examples(console: Console, results: list[dict[str, Any]]) -> None:
    for result in results:
        for kind, examples in result["examples"].items():
            if not examples:
                continue
            console.print(f"[bold]{result['file']}[/]: {_LONG_NAMES[kind]} (first {len(examples)})", highlight=False)
            for example in examples:
                detail = {k: v for k, v in example.items() if k not in ("record", "class")}
                text = detail.pop("negative", None) or detail.pop("positive", "")
                extra = ", ".join(f"{k}={v}" for k, v in detail.items())
                console.print(
                    f"  {example['record']} (class {example['class']}{'; ' + extra if extra else ''}): {text}",
                    highlight=False,
                    markup=False,
                )


def register(app: typer.Typer) -> None:
    @app.command()
    def audit(
        path: Path = typer.Argument(..., help="A released-format .json file, a folder of them, or a built dataset."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file instead of a table."),
        data_root: Path = typer.Option(
            None, help="CoOp data root: class names and record classes from the CoOp split files."
        ),
        domain: str = typer.Option(None, help="Domain of released files whose name and paths do not tell it."),
    ) -> None:
        """Count caption defects: negatives identical to the positive, repeated negatives, class names
        replaced inside words, swaps that leave the true class, negatives from another meta-category,
        words in no dictionary, names repeated back to back, positives naming another class."""
        from builders.audit import audit_path, dumps

        results = audit_path(path, domain=domain, data_root=data_root, progress=True)
        if as_json:
            typer.echo(dumps(results))
            return
        console = Console()
        console.print(_table(results))
        _print_examples(console, results)
