"""Text renderings of a Leaderboard: Markdown (also the Hub card), LaTeX (booktabs), CSV (one tidy row
per cell) and JSON (everything, including intervals and notes). HTML is leaderboard_html.py.

Cells show mean ± std over seeds with two decimals, as the paper; reported values plain; differences
signed; a missing value is "—". The best measured value per row is bold.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from benchmark.leaderboard import AVG, DIRECTION_NAMES, Cell, Column, Leaderboard, Row
from fdrd.errors import FdrdError
from fdrd.manifest import write_text_atomic

DECIMALS = 2
MISSING = "—"
FORMATS = ("md", "latex", "csv", "html", "json")
FILE_NAMES = {"md": "leaderboard.md", "latex": "leaderboard.tex", "csv": "leaderboard.csv", "html": "leaderboard.html", "json": "leaderboard.json"}


def cell_text(cell: Cell, column: Column) -> str:
    if cell.mean is None:
        return MISSING
    if column.kind == "difference":
        return f"{cell.mean:+.{DECIMALS}f}"
    if cell.std is None:
        return f"{cell.mean:.{DECIMALS}f}"
    return f"{cell.mean:.{DECIMALS}f} ± {cell.std:.{DECIMALS}f}"


DIFFERENCES_NOTE = (
    "Paired bootstrap of each difference: the test items drawn once for both runs (both were scored on them), "
    "each run's seeds drawn on their own; inside the noise when the 95% interval holds 0."
)


def verdict(difference: dict) -> str:
    return "inside the noise" if difference["inside_noise"] else "outside the noise"


def k_text(row: Row) -> str:
    return f"R@{row.k}" if row.k is not None else str(row.kind)


def sections(board: Leaderboard) -> list[tuple[str, str, list[Column], list[Row]]]:
    """(key, title, columns, rows) per table: recall image->text, recall text->image, hard negatives."""
    out = [
        (direction, f"Recall@K (%), {name}", board.columns, [r for r in board.rows if r.section == direction])
        for direction, name in DIRECTION_NAMES.items()
    ]
    if board.hard_negative_rows:
        out.append(("hard_negatives", "Hard-negative accuracy (%) by kind", board.hard_negative_columns, board.hard_negative_rows))
    return out


def summary_lines(board: Leaderboard) -> list[str]:
    runs = [
        f"run {label} (method {info['method']}): seeds {', '.join(map(str, info['seeds']))}; domains {', '.join(info['domains'])}"
        for label, info in board.runs.items()
    ]
    models = ", ".join(f"{m['id']}@{m['revision']}" for m in board.models)
    return [
        f"dataset content hash: {', '.join(board.datasets)}",
        f"backbone: {models}",
        *runs,
        *board.notes,
    ]


# ------------------------------------------------------------------------------------------ Markdown
def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def render_markdown(board: Leaderboard) -> str:
    lines = [
        "# FDRD leaderboard",
        "",
        "Mean ± std over seeds; **bold**: the best measured value per row. 95% intervals over test items and "
        "seeds are in leaderboard.json, leaderboard.csv and leaderboard.html.",
    ]
    for _key, title, columns, rows in sections(board):
        second = "K" if rows and rows[0].k is not None else "kind"
        lines += ["", f"## {title}", ""]
        lines.append("| " + " | ".join(["domain", second, *(_md_escape(c.label) for c in columns)]) + " |")
        lines.append("|" + "|".join([":--", ":--", *("--:" for _ in columns)]) + "|")
        for row in rows:
            texts = []
            for column in columns:
                cell = row.cells[column.key]
                text = cell_text(cell, column)
                texts.append(f"**{text}**" if cell.best else text)
            domain = f"**{AVG}**" if row.domain == AVG else _md_escape(row.domain)
            lines.append("| " + " | ".join([domain, _md_escape(k_text(row)), *texts]) + " |")
    if board.differences:
        lines += ["", "## Which differences are inside the noise", "", DIFFERENCES_NOTE, ""]
        lines += ["| runs | AVG mean recall difference | 95% interval | verdict |", "|:--|--:|:--|:--|"]
        lines += [f"| {_md_escape(' − '.join(d['runs']))} | {d['difference']:+.{DECIMALS}f} | "
                  f"[{d['interval'][0]:+.{DECIMALS}f}, {d['interval'][1]:+.{DECIMALS}f}] | {verdict(d)} |"
                  for d in board.differences]
    lines += ["", "## About these numbers", ""] + [f"- {_md_escape(line)}" for line in summary_lines(board)]
    return "\n".join(lines) + "\n"


def render_card(board: Leaderboard) -> str:
    """README.md for a Hub repo holding the leaderboard: the Markdown tables under a small YAML header
    (no dataset viewer: these files are tables about a dataset, not the dataset)."""
    return "---\nviewer: false\ntags:\n- fdrd\n- leaderboard\n- image-text-retrieval\n---\n\n" + render_markdown(board)


# ------------------------------------------------------------------------------------------- LaTeX
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def _latex_header(column: Column) -> str:
    if column.kind == "difference":
        return r"$\Delta$ " + latex_escape(str(column.run_label))
    return latex_escape(column.label)


def _latex_cell(cell: Cell, column: Column) -> str:
    text = latex_escape(cell_text(cell, column)).replace(" ± ", r" $\pm$ ").replace("—", "--")
    return rf"\textbf{{{text}}}" if cell.best else text


def _latex_table(columns: list[Column], blocks: list[tuple[str, list[Row]]], second: str) -> list[str]:
    """One booktabs tabular: a header, then per block its title row and rows, AVG rows set apart by a rule."""
    out = [r"\begin{tabular}{ll" + "r" * len(columns) + "}", r"\toprule"]
    out.append(" & ".join(["Domain", second, *(_latex_header(c) for c in columns)]) + r" \\")
    for title, rows in blocks:
        out += [r"\midrule", rf"\multicolumn{{{len(columns) + 2}}}{{l}}{{\textit{{{latex_escape(title)}}}}} \\", r"\midrule"]
        for index, row in enumerate(rows):
            if row.domain == AVG and index > 0 and rows[index - 1].domain != AVG:
                out.append(r"\midrule")
            cells = [_latex_cell(row.cells[c.key], c) for c in columns]
            out.append(" & ".join([latex_escape(row.domain), latex_escape(k_text(row)), *cells]) + r" \\")
    return out + [r"\bottomrule", r"\end{tabular}"]


def render_latex(board: Leaderboard) -> str:
    """The recall table with its image->text and text->image blocks; hard negatives as a second tabular."""
    tables = sections(board)
    out = [
        "% FDRD leaderboard, written by `fdrd leaderboard`; needs \\usepackage{booktabs}.",
        "% Mean $\\pm$ std over seeds; bold: the best measured value per row.",
        "",
        *_latex_table(board.columns, [(title, rows) for key, title, _, rows in tables if key in DIRECTION_NAMES], "K"),
    ]
    for key, title, columns, rows in tables:
        if key == "hard_negatives":
            out += ["", *_latex_table(columns, [(title, rows)], "Kind")]
    return "\n".join(out).replace("→", r"$\to$") + "\n"


# --------------------------------------------------------------------------------------------- CSV
CSV_FIELDS = (
    "table", "domain", "k", "kind", "column", "column_kind", "run_label", "paper_method",
    "mean", "std", "ci_low", "ci_high", "seeds", "best",
)


def render_csv(board: Leaderboard) -> str:
    """One row per non-empty cell; numbers unrounded (rounding is for people)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for key, _title, columns, rows in sections(board):
        for row in rows:
            for column in columns:
                cell = row.cells[column.key]
                if cell.mean is None:
                    continue
                writer.writerow({
                    "table": key, "domain": row.domain, "k": row.k if row.k is not None else "",
                    "kind": row.kind or "", "column": column.label, "column_kind": column.kind,
                    "run_label": column.run_label or "", "paper_method": column.paper_method or "",
                    "mean": repr(cell.mean), "std": "" if cell.std is None else repr(cell.std),
                    "ci_low": "" if cell.interval is None else repr(cell.interval[0]),
                    "ci_high": "" if cell.interval is None else repr(cell.interval[1]),
                    "seeds": ";".join(map(str, cell.seeds)), "best": "true" if cell.best else "false",
                })
    return buffer.getvalue()


def render_json(board: Leaderboard) -> str:
    return json.dumps(board.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render(board: Leaderboard, fmt: str) -> str:
    if fmt == "html":
        from benchmark.leaderboard_html import render_html  # matplotlib only when a page is asked for

        return render_html(board)
    return {"md": render_markdown, "latex": render_latex, "csv": render_csv, "json": render_json}[fmt](board)


CARD_NAME = "README.md"


def write_leaderboard(board: Leaderboard, out_dir: str | Path) -> list[Path]:
    """Every format into `out_dir` (leaderboard.md, .tex, .csv, .html, .json) plus README.md, the card a Hub
    repo shows (`fdrd publish leaderboard`). Each file is replaced atomically."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FdrdError(f"{out}: exists and is not a folder; give --out a folder")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in FORMATS:
        path = out / FILE_NAMES[fmt]
        write_text_atomic(path, render(board, fmt))
        written.append(path)
    write_text_atomic(out / CARD_NAME, render_card(board))
    return [*written, out / CARD_NAME]
