"""Issue 9, class 4: a malformed URL or redirect is one URL's named failure and the crawl goes on (and a
rerun does not trip on it again); a crawl journal naming a path outside the crawl folder is never read."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from builders.crawl import CrawlOptions, crawl
from builders.crawl.fetch import FetchPolicy
from builders.crawl.store import CrawlStore
from builders.sources.base import Rejection, SourceItem
from builders.sources.urls import UrlSource
from fdrd.errors import FdrdError


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 12), colour).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server():
    routes = {
        "/good.jpg": (200, {"Content-Type": "image/jpeg"}, jpeg((200, 10, 10))),
        "/other.jpg": (200, {"Content-Type": "image/jpeg"}, jpeg((10, 200, 10))),
        "/no-location": (302, {}, b""),
        "/to-bad-port": (301, {"Location": "http://127.0.0.1:70000/x.jpg"}, b""),
        "/to-broken-ipv6": (302, {"Location": "http://[::1/x.jpg"}, b""),
        "/to-ftp": (302, {"Location": "ftp://127.0.0.1/x.jpg"}, b""),
        "/to-huge": (302, {"Location": "http://127.0.0.1/" + "a" * 70_000}, b""),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            status, headers, body = routes.get(self.path, (404, {}, b""))
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# URL -> the reason its journal record must name (None: stored).
def cases(base):
    return {
        f"{base}/good.jpg": None,
        "http://127.0.0.1:99999/x.jpg": "bad_url",  # port out of range
        "http://127.0.0.1:0/x.jpg": "bad_url",
        "http://[::1/x.jpg": "bad_url",  # broken IPv6 literal
        "http://[zz::1]/x.jpg": "bad_url",
        "http://example.com/" + "a" * 70_000 + ".jpg": "bad_url",  # 70k characters
        "http:///x.jpg": "bad_url",  # no host
        "http://exa\tmple.com/x.jpg": "bad_url",  # a control character
        f"{base}/no-location": "bad_redirect",
        f"{base}/to-bad-port": "bad_redirect",
        f"{base}/to-broken-ipv6": "bad_redirect",
        f"{base}/to-ftp": "bad_redirect",
        f"{base}/to-huge": "bad_redirect",
        f"{base}/other.jpg": None,  # after every bad one: the crawl went on
    }


def write_list(path, urls):
    with open(path, "w", encoding="utf-8") as handle:
        for i, url in enumerate(urls):
            handle.write(json.dumps({"url": url, "category": f"c{i % 2}"}) + "\n")
    return path


OPTIONS = CrawlOptions(concurrency=4, per_host=2, shard_size=5, progress=False,
                       policy=FetchPolicy(retries=0, connect_timeout=2, read_timeout=2, total_timeout=10))


def test_malformed_urls_are_named_failures_and_the_crawl_goes_on(server, tmp_path):
    expected = cases(server)
    urls = list(expected)
    listing = write_list(tmp_path / "urls.jsonl", urls)
    manifest = crawl(listing, tmp_path / "out", OPTIONS)
    assert manifest["shards_done"] == manifest["shards_total"] == 3
    store = CrawlStore(tmp_path / "out")
    records = {r["index"]: r for shard in range(3) for r in store.results(shard)}
    assert len(records) == len(urls)
    for index, url in enumerate(urls):
        record = records[index]
        if expected[url] is None:
            assert record["status"] == "ok", record
        else:
            assert (record["status"], record["reason"]) == ("failed", expected[url]), (url[:60], record)
            assert record["detail"]
    # A rerun (same list, same folder) does not crash on them either, and refetches nothing.
    again = crawl(listing, tmp_path / "out", OPTIONS)
    assert again["totals"] == manifest["totals"]


def test_a_malformed_url_journaled_mid_shard_is_not_retried_into_a_crash(server, tmp_path):
    """The crash of the issue: every rerun died on the same URL. Here an unfinished shard holds it."""
    urls = ["http://[::1/x.jpg", f"{server}/good.jpg", "http://127.0.0.1:99999/"]
    listing = write_list(tmp_path / "urls.jsonl", urls)
    crawl(listing, tmp_path / "out", CrawlOptions(**{**OPTIONS.__dict__, "shard_size": 10}))
    CrawlStore(tmp_path / "out").reopen_shard(0, [])
    manifest = crawl(listing, tmp_path / "out", CrawlOptions(**{**OPTIONS.__dict__, "shard_size": 10}))
    assert manifest["totals"]["failed"] == {"bad_url": 2} and manifest["totals"]["ok"] == 1


def crawled(server, tmp_path):
    listing = write_list(tmp_path / "urls.jsonl", [f"{server}/good.jpg", f"{server}/other.jpg"])
    crawl(listing, tmp_path / "out", CrawlOptions(**{**OPTIONS.__dict__, "shard_size": 10}))
    return tmp_path / "out"


@pytest.mark.parametrize("path", ["../secret.jpg", "/etc/hostname", "images/../../secret.jpg", "urls.jsonl",
                                  "images/ab/" + "cd" * 32 + ".jpg", None, 7])
def test_a_journal_path_leaving_the_crawl_folder_is_refused_at_build_time(server, tmp_path, path):
    out = crawled(server, tmp_path)
    (tmp_path / "secret.jpg").write_bytes(jpeg((1, 2, 3)))
    results = out / "shards" / "00000.jsonl"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    records[0]["path"] = path
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    items = list(UrlSource(out).iter_items("urls", ["train", "val", "test"]))
    refused = [i for i in items if isinstance(i, Rejection)]
    kept = [i for i in items if isinstance(i, SourceItem)]
    assert len(refused) == 1 and "not an image stored inside the crawl folder" in refused[0].reason
    assert len(kept) == 1 and kept[0].image_path.startswith(str(out / "images"))


def test_a_tampered_journal_line_is_fetched_again_not_followed(server, tmp_path):
    listing = write_list(tmp_path / "urls.jsonl", [f"{server}/good.jpg"])
    store = CrawlStore(tmp_path / "out")
    crawl(listing, tmp_path / "out", OPTIONS)
    store.reopen_shard(0, [{"index": 0, "url": "x", "status": "ok", "path": "../../etc/hostname", "sha256": "0",
                            "bytes": 1}])
    with open(store.journal_path(0), "a") as handle:
        handle.write("[" * 50_000 + "\n" + '{"index": "zero"}\n')
    manifest = crawl(listing, tmp_path / "out", OPTIONS)
    assert manifest["totals"]["ok"] == 1
    assert store.results(0)[0]["path"].startswith("images/")


@pytest.mark.parametrize("content", ["[]", '{"list": "x", "list_sha256": "y", "rows": -1, "shard_size": 5}', "{" * 9000])
def test_a_damaged_crawl_json_is_a_named_error(server, tmp_path, content):
    out = crawled(server, tmp_path)
    (out / "crawl.json").write_text(content)
    with pytest.raises(FdrdError, match="crawl.json"):
        UrlSource(out)


def test_out_that_is_a_file_is_refused(tmp_path, server):
    listing = write_list(tmp_path / "urls.jsonl", [f"{server}/good.jpg"])
    (tmp_path / "out").write_text("mine")
    with pytest.raises(FdrdError, match="is a file, not a folder"):
        crawl(listing, tmp_path / "out", OPTIONS)
    assert (tmp_path / "out").read_text() == "mine"
