"""The leaderboard as one self-contained HTML page: no external URL, plots inlined as data: URIs, a few
lines of inline JavaScript that sort a table by the column whose header is clicked (click again to
reverse; empty cells stay last) and, once the page has loaded, record on <body> how many images
decoded (data-images-loaded of data-images-total), which is what tests and checks read.

Every cell keeps its number in data-value (unrounded) and its interval and seeds in a tooltip.
"""

from __future__ import annotations

import base64
import html

from benchmark.leaderboard import AVG, Cell, Column, Leaderboard, Row
from benchmark.leaderboard_render import DIFFERENCES_NOTE, cell_text, k_text, sections, summary_lines, verdict

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 2rem; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th:nth-child(-n+2), td:nth-child(-n+2) { text-align: left; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
th[data-kind=reported], td[data-kind=reported] { color: #666; font-style: italic; }
th[data-kind=difference], td[data-kind=difference] { color: #666; }
td.best { font-weight: bold; } tr.avg td { background: #fafafa; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; }
"""

SCRIPT = """
function sortTable(table, index) {
  const header = table.tHead.rows[0].cells[index];
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  for (const other of table.tHead.rows[0].cells) other.setAttribute("aria-sort", "none");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const key = (row) => {
    const cell = row.cells[index];
    if (cell.dataset.value === undefined) return cell.textContent;
    return cell.dataset.value === "" ? null : Number(cell.dataset.value);
  };
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null || y === null) return (x === null) - (y === null);
    const order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
    return ascending ? order : -order;
  });
  rows.forEach((row) => body.appendChild(row));
}
document.querySelectorAll("table.sortable").forEach((table) => {
  Array.from(table.tHead.rows[0].cells).forEach((header, index) => {
    header.addEventListener("click", () => sortTable(table, index));
  });
});
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesLoaded = images.filter((image) => image.complete && image.naturalWidth > 0).length;
});
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _tooltip(cell: Cell, column: Column) -> str:
    parts = []
    if cell.interval is not None:
        parts.append(f"95% interval {cell.interval[0]:.2f} to {cell.interval[1]:.2f} (test items and seeds)")
    if cell.seeds:
        parts.append(f"seeds {','.join(map(str, cell.seeds))}")
    if column.kind == "reported":
        parts.append("reported in the DCAR paper")
    return "; ".join(parts)


def _table(key: str, columns: list[Column], rows: list[Row]) -> str:
    second = "K" if rows and rows[0].k is not None else "kind"
    head = [f'<th data-column="domain">domain</th><th data-column="{second}">{second}</th>']
    head += [f'<th data-column="{_e(c.key)}" data-kind="{c.kind}" aria-sort="none">{_e(c.label)}</th>' for c in columns]
    body = []
    for row in rows:
        k_value = f' data-value="{row.k}"' if row.k is not None else ""
        cells = [f"<td>{_e(row.domain)}</td><td{k_value}>{_e(k_text(row))}</td>"]
        for column in columns:
            cell = row.cells[column.key]
            value = "" if cell.mean is None else repr(cell.mean)
            best = ' class="best"' if cell.best else ""
            cells.append(
                f'<td data-column="{_e(column.key)}" data-kind="{column.kind}" data-value="{value}"{best} '
                f'title="{_e(_tooltip(cell, column))}">{_e(cell_text(cell, column))}</td>'
            )
        avg = ' class="avg"' if row.domain == AVG else ""
        body.append(f'<tr{avg} data-domain="{_e(row.domain)}" data-k="{_e(k_text(row))}">{"".join(cells)}</tr>')
    return (
        f'<table class="sortable" id="table-{key}"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>\n{chr(10).join(body)}\n</tbody></table>"
    )


def render_html(board: Leaderboard) -> str:
    from benchmark.plots import PLOTS  # matplotlib loads only when a page is rendered

    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>FDRD leaderboard</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>FDRD leaderboard</h1>",
        "<p>Mean ± std over seeds; bold: the best measured value per row; hover a cell for its 95% interval "
        "over test items and seeds. Click a column header to sort.</p>",
    ]
    for key, title, columns, rows in sections(board):
        parts += [f"<h2>{_e(title)}</h2>", _table(key, columns, rows)]
    figures = [(title, draw(board)) for title, draw in PLOTS.items()]
    figures = [(title, png) for title, png in figures if png is not None]
    if figures:
        parts.append("<h2>Plots</h2>")
    for title, png in figures:
        source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(f'<figure><img alt="{_e(title)}" src="{source}"><figcaption>{_e(title)}</figcaption></figure>')
    if board.differences:
        rows = "".join(
            f'<tr data-runs="{_e(" / ".join(d["runs"]))}"><td>{_e(" − ".join(d["runs"]))}</td>'
            f'<td data-value="{d["difference"]!r}">{d["difference"]:+.2f}</td>'
            f'<td>[{d["interval"][0]:+.2f}, {d["interval"][1]:+.2f}]</td><td>{verdict(d)}</td></tr>'
            for d in board.differences
        )
        parts += ["<h2>Which differences are inside the noise</h2>", f"<p>{_e(DIFFERENCES_NOTE)}</p>",
                  '<table class="sortable" id="table-differences"><thead><tr><th aria-sort="none">runs</th>'
                  '<th aria-sort="none">AVG mean recall difference</th><th aria-sort="none">95% interval</th>'
                  f'<th aria-sort="none">verdict</th></tr></thead><tbody>{rows}</tbody></table>']
    parts.append("<h2>About these numbers</h2><ul>" + "".join(f"<li>{_e(line)}</li>" for line in summary_lines(board)) + "</ul>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"
