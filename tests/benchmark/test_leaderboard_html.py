"""The HTML leaderboard in a real browser: headless Chromium loads the page written by `fdrd leaderboard
--out`, runs its JavaScript and dumps the DOM; the test reads the table cells from it and compares them
with numbers it computes itself from the results files it wrote, checks the plots decoded (the page
records naturalWidth > 0 per image once loaded), that nothing is fetched from elsewhere, and that
clicking a header sorts the rows.

Chromium is Debian's `chromium` (.ci/run installs it). Without it the test fails in CI (CI set) and
skips elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fdrd.cli import app

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=10000",  # let load handlers and clicks finish before the DOM is dumped
]
# (run, domain, seed) -> image->text and text->image counts of 20 test items within K = 1, 5, 10
COUNTS = {
    ("coop", "oxford_pets", 1): ((8, 14, 17), (6, 12, 15)),
    ("coop", "oxford_pets", 2): ((9, 15, 18), (7, 12, 16)),
    ("coop", "dtd", 1): ((4, 10, 13), (3, 9, 12)),
    ("coop", "dtd", 2): ((6, 11, 13), (5, 9, 14)),
    ("zeroshot", "oxford_pets", 1): ((7, 13, 16), (6, 11, 13)),
    ("zeroshot", "dtd", 1): ((5, 12, 15), (2, 8, 11)),
}
ITEMS = 20
HARD = {("coop", "oxford_pets"): 70.0, ("coop", "dtd"): 55.0, ("zeroshot", "oxford_pets"): 60.0, ("zeroshot", "dtd"): 45.0}


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing in CI: .ci/run must install Debian's chromium package")
    pytest.skip("chromium not installed (apt-get install chromium); CI runs this test")


def write_runs(root: Path) -> None:
    for (label, domain, seed), counts in COUNTS.items():
        ranks = {
            direction: [1] * c[0] + [3] * (c[1] - c[0]) + [7] * (c[2] - c[1]) + [99] * (ITEMS - c[2])
            for direction, c in zip(("i2t", "t2i"), counts, strict=True)
        }
        metrics = {f"{d}_r{k}": 100.0 * n / ITEMS for d, c in zip(("i2t", "t2i"), counts, strict=True) for k, n in zip((1, 5, 10), c, strict=True)}
        payload = {
            "schema": "fdrd-bench-result", "schema_version": 2, "run_label": label, "method": label,
            "named_variant": None, "preset": None, "overrides": {},
            "model": {"id": "tiny-clip", "revision": "r1"}, "dataset": {"content_hash": "h"},
            "domain": domain, "split": "test", "seed": seed, "metrics": metrics, "ranks": ranks,
            "hard_negatives": {"category": {"accuracy": HARD[label, domain] + seed, "images": ITEMS}},
        }
        path = root / label / domain / f"seed-{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload))


def expected_values(label: str, domain: str, direction: int, k_index: int) -> list[float]:
    """Per seed, the recall a cell summarizes, computed here from COUNTS (for AVG: the mean over domains)."""
    seeds = sorted({s for (run, _, s) in COUNTS if run == label})  # every domain of a run has the same seeds here
    domains = ("oxford_pets", "dtd") if domain == "AVG" else (domain,)
    return [statistics.fmean(100.0 * COUNTS[label, d, s][direction][k_index] / ITEMS for d in domains) for s in seeds]


def expected_text(label: str, domain: str, direction: int, k_index: int) -> str:
    """What a cell must read: mean ± sample std over seeds, 2 decimals; the mean alone for one seed."""
    values = expected_values(label, domain, direction, k_index)
    mean = statistics.fmean(values)
    return f"{mean:.2f}" if len(values) == 1 else f"{mean:.2f} ± {statistics.stdev(values):.2f}"


class DomReader(HTMLParser):
    """Tables (id -> header labels, rows of (text, attributes) per cell), <body> attributes, every src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self.body: dict[str, str] = {}
        self.links: list[str] = []
        self.table = None
        self.cell = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.links += [value for name, value in attrs if name in ("src", "href") and value]
        if tag == "body":
            self.body = attributes
        elif tag == "table":
            self.table = self.tables.setdefault(attributes.get("id", ""), {"headers": [], "rows": []})
        elif tag == "tr" and self.table is not None:
            self.table["rows"].append([])
        elif tag in ("td", "th") and self.table is not None:
            self.cell = [tag, "", attributes]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.table["rows"][-1].append((self.cell[1], self.cell[2]))
            self.cell = None
        elif tag == "table":
            self.table = None


def dump_dom(page: Path, profile: Path) -> DomReader:
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0 and "</html>" in result.stdout, result.stderr[-2000:]
    reader = DomReader()
    reader.feed(result.stdout)
    return reader


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("html-board")
    write_runs(root / "runs")
    result = CliRunner().invoke(app, ["leaderboard", str(root / "runs"), "--out", str(root / "board"), "--format", "html"])
    assert result.exit_code == 0, result.output
    return root / "board" / "leaderboard.html"


def table_rows(dom: DomReader, table: str) -> tuple[list[str], list[list[tuple[str, dict]]]]:
    rows = dom.tables[table]["rows"]
    return [text for text, _ in rows[0]], rows[1:]


def test_the_page_shows_the_results_and_its_plots_load(page, tmp_path):
    chromium()
    dom = dump_dom(page, tmp_path / "profile")
    for index, direction in enumerate(("i2t", "t2i")):
        headers, rows = table_rows(dom, f"table-{direction}")
        assert headers == ["domain", "K", "zeroshot", "coop"]
        assert [(r[0][0], r[1][0]) for r in rows] == [
            (d, f"R@{k}") for d in ("oxford_pets", "dtd", "AVG") for k in (1, 5, 10)
        ]
        for row in rows:
            domain, k_index = row[0][0], ("R@1", "R@5", "R@10").index(row[1][0])
            for label, (text, attributes) in zip(("zeroshot", "coop"), row[2:], strict=True):
                assert text == expected_text(label, domain, index, k_index), (direction, domain, label)
                assert attributes["data-column"] == label
                assert "95% interval" in attributes["title"]
    _, hard_rows = table_rows(dom, "table-hard_negatives")
    by_domain = {r[0][0]: [c[0] for c in r[2:]] for r in hard_rows}
    assert by_domain["oxford_pets"] == ["61.00", f"{statistics.fmean([71, 72]):.2f} ± {statistics.stdev([71, 72]):.2f}"]
    assert by_domain["AVG"][0] == f"{(61 + 46) / 2:.2f}"
    # The plots decoded in the browser: R@1 per domain, recall against K, hard negatives by kind.
    assert dom.body["data-images-total"] == "3"
    assert dom.body["data-images-loaded"] == "3"
    assert all(link.startswith("data:image/png;base64,") for link in dom.links)  # nothing fetched from elsewhere
    assert "http://" not in page.read_text() and "https://" not in page.read_text()


def test_clicking_a_header_sorts_the_rows_and_a_broken_image_is_noticed(page, tmp_path):
    chromium()
    # Click coop's header in the text->image table once (ascending) and record the order, then again.
    clicks = """
<script>
window.addEventListener("load", () => {
  const header = document.querySelector('#table-t2i th[data-column="coop"]');
  const order = () => Array.from(document.querySelectorAll("#table-t2i tbody tr"), (r) => r.dataset.domain + " " + r.dataset.k);
  header.click();
  document.body.dataset.ascending = JSON.stringify(order());
  header.click();
});
</script>
"""
    clicked = tmp_path / "clicked.html"
    broken_image = '<img alt="broken on purpose" src="data:image/png;base64,AAAA">'  # the load check must see it
    clicked.write_text(page.read_text().replace("</body>", broken_image + clicks + "</body>"))
    dom = dump_dom(clicked, tmp_path / "profile")
    _, rows = table_rows(dom, "table-t2i")
    values = [float(row[3][1]["data-value"]) for row in rows]  # coop's column, as now in the DOM
    assert values == sorted(values, reverse=True) and len(values) == 9
    coop = {
        (d, f"R@{k}"): statistics.fmean(expected_values("coop", d, 1, index))
        for d in ("oxford_pets", "dtd", "AVG")
        for index, k in enumerate((1, 5, 10))
    }
    ascending = [tuple(item.split(" ")) for item in json.loads(dom.body["data-ascending"])]
    assert [coop[key] for key in ascending] == sorted(coop.values())
    headers = dom.tables["table-t2i"]["rows"][0]
    assert headers[3][1]["aria-sort"] == "descending"
    assert (dom.body["data-images-total"], dom.body["data-images-loaded"]) == ("4", "3")
