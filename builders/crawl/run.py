"""`fdrd crawl URLS --out DIR`: download the images of a URL list, resumably, shard by shard.

The list's rows are cut into shards of `shard_size` consecutive rows; `shards=(start, end)` takes
a range of them, so several machines can split one list. Within a run, `concurrency` workers share
one queue of every pending URL of the range (a shard boundary never idles workers), at most
`per_host` of them talk to one host at a time, and each finished URL is appended to its shard's
journal at once, so a killed run refetches only URLs that had not ended. Images are stored by
sha256 (store.py); normalization happens later, in the build, like for every source.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from builders.crawl.fetch import (
    TRANSIENT_REASONS,
    FetchPolicy,
    FetchResult,
    HostLimiter,
    fetch_image,
    image_kind,
)
from builders.crawl.lists import UrlRow, read_url_list
from builders.crawl.store import CrawlStore
from fdrd.errors import FdrdError
from fdrd.manifest import sha256_file

MANIFEST_REFRESH_S = 30.0  # how often a long run refreshes manifest.json (always at the end)


@dataclass
class CrawlOptions:
    concurrency: int = 32  # requests in flight in total
    per_host: int = 8  # requests in flight to one host; politeness towards each server
    shard_size: int = 1000  # rows per shard; fixed for the life of an output DIR
    shards: tuple[int, int] | None = None  # [start, end) shard range this run takes; None: all
    policy: FetchPolicy = field(default_factory=FetchPolicy)
    progress: bool = True
    seed: int = 0  # backoff jitter only; never changes what is stored
    retry_failed: bool = False  # fetch again the transient failures (timeouts, 5xx, ...) of finished shards


def parse_shard_range(text: str) -> tuple[int, int]:
    """"START:END" (END exclusive; either may be empty: "4:", ":10")."""
    start_text, sep, end_text = text.partition(":")
    try:
        if not sep:
            raise ValueError(text)
        start = int(start_text) if start_text else 0
        end = int(end_text) if end_text else -1
        if start < 0 or (end_text and end < 0):  # -1 stands for an empty END only
            raise ValueError(text)
    except ValueError:
        raise FdrdError(f"--shards {text!r}: expected START:END, e.g. 0:10 (END exclusive; either may be empty)") from None
    return start, end


class _Shard:
    """Bookkeeping of one shard during a run: its results so far and its open journal."""

    def __init__(self, index: int, rows: list[UrlRow], done: dict[int, dict], journal_path: Path):
        self.index = index
        self.rows = rows
        self.records = dict(done)
        self.resumed = len(done)
        self.remaining = len(rows) - len(done)
        self.started: float | None = None  # when this run took the shard's first URL
        self.journal_path = journal_path
        self.journal: TextIO | None = None  # opened at the shard's first URL: a range of many
        # shards must not hold one open file per shard

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()
            self.journal = open(self.journal_path, "a", encoding="utf-8")

    def pending(self) -> list[UrlRow]:
        return [row for row in self.rows if row.index not in self.records]

    def add(self, record: dict) -> None:
        self.records[record["index"]] = record
        self.journal.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.journal.flush()
        self.remaining -= 1

    def stats(self) -> dict[str, Any]:
        records = list(self.records.values())
        ok = [r for r in records if r["status"] == "ok"]
        seconds = time.monotonic() - self.started if self.started is not None else 0.0
        fetched_ok = len(ok) - sum(1 for r in records if r["status"] == "ok" and r.get("resumed"))
        return {
            "shard": self.index,
            "rows": [self.rows[0].index, self.rows[-1].index + 1],
            "urls": len(records),
            "ok": len(ok),
            "failed": dict(sorted(Counter(r["reason"] for r in records if r["status"] != "ok").items())),
            "bytes": sum(r["bytes"] for r in ok),
            "resumed": self.resumed,
            "seconds": round(seconds, 3),
            "images_per_s": round(fetched_ok / seconds, 2) if seconds > 0 else 0.0,
        }

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None


def crawl(list_path: str | Path, out_dir: str | Path, options: CrawlOptions | None = None,
          on_result: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Crawl the shards of `options.shards` (all by default) and return the crawl manifest."""
    options = options or CrawlOptions()
    if options.concurrency < 1 or options.per_host < 1 or options.shard_size < 1:
        raise FdrdError("crawl: --concurrency, --per-host and --shard-size must all be at least 1")
    if options.policy.retries < 0 or options.policy.max_redirects < 0:
        # A negative count would leave fetch_image no attempt to make (an AssertionError per URL).
        raise FdrdError(f"crawl: --retries ({options.policy.retries}) and --max-redirects "
                        f"({options.policy.max_redirects}) must be at least 0")
    list_path = Path(list_path)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise FdrdError(f"--out {out_dir} is a file, not a folder; choose a new folder or an earlier crawl's")
    rows = read_url_list(list_path)
    store = CrawlStore(out_dir)
    store.bind_list(list_path, sha256_file(list_path), rows, options.shard_size)
    shard_count = -(-len(rows) // options.shard_size)
    start, end = options.shards or (0, shard_count)
    end = shard_count if end < 0 else end
    if not (0 <= start < end <= shard_count):
        raise FdrdError(f"--shards {start}:{end}: {list_path} has {len(rows)} rows = {shard_count} shards of "
                        f"{options.shard_size}; pick a range within 0:{shard_count}")
    if options.retry_failed:
        _reopen_transient_failures(store, range(start, end))
    shards = []
    for index in range(start, end):
        if store.is_done(index):
            continue
        shard_rows = rows[index * options.shard_size:(index + 1) * options.shard_size]
        done = {i: {**r, "resumed": True} for i, r in store.journaled(index).items()}
        shards.append(_Shard(index, shard_rows, done, store.journal_path(index)))
    try:
        for shard in [s for s in shards if s.remaining == 0]:  # killed after its last URL, before the marker
            _finish(store, shard)
        pending = [s for s in shards if s.remaining > 0]
        if pending:
            asyncio.run(_crawl_shards(store, pending, options, on_result))
    finally:
        for shard in shards:
            shard.close()
        manifest = store.write_manifest()  # also after an interruption: shards it finished count
    return manifest


def _reopen_transient_failures(store: CrawlStore, shards: range) -> None:
    for index in shards:
        if not store.is_done(index):
            continue
        records = store.results(index)
        keep = [r for r in records if not (r["status"] != "ok" and r["reason"] in TRANSIENT_REASONS)]
        if len(keep) < len(records):
            store.reopen_shard(index, keep)


def _finish(store: CrawlStore, shard: _Shard) -> None:
    shard.close()
    records = [{k: v for k, v in r.items() if k != "resumed"} for r in shard.records.values()]
    store.finish_shard(shard.index, records, shard.stats())


async def _crawl_shards(store: CrawlStore, shards: list[_Shard], options: CrawlOptions,
                        on_result: Callable[[dict], None] | None) -> None:
    import httpx
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    policy = options.policy
    queue: asyncio.Queue[tuple[_Shard, UrlRow]] = asyncio.Queue()
    for shard in shards:
        for row in shard.pending():
            queue.put_nowait((shard, row))
    total = queue.qsize()
    counts: Counter[str] = Counter()
    hosts = HostLimiter(options.per_host)
    last_manifest = [time.monotonic()]
    rng = random.Random(options.seed)
    timeout = httpx.Timeout(connect=policy.connect_timeout, read=policy.read_timeout,
                            write=policy.read_timeout, pool=None)
    limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[ok]} ok, {task.fields[failed]} failed"), TimeRemainingColumn())
    async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False,
                                 headers={"User-Agent": policy.user_agent}) as client:
        with Progress(*columns, disable=not options.progress) as bar:
            task = bar.add_task(f"crawling {len(shards)} shards", total=total, ok=0, failed=0)

            async def worker() -> None:
                while True:
                    try:
                        shard, row = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    shard.start()
                    record = await _crawl_row(client, store, row, policy, hosts, rng)
                    shard.add(record)
                    counts["ok" if record["status"] == "ok" else "failed"] += 1
                    bar.update(task, advance=1, ok=counts["ok"], failed=counts["failed"])
                    if shard.remaining == 0:
                        _finish(store, shard)
                        # The manifest reads every done marker: refreshing it per shard would cost
                        # O(shards^2) on lists of many shards, so it is refreshed now and then.
                        if time.monotonic() - last_manifest[0] > MANIFEST_REFRESH_S:
                            store.write_manifest()
                            last_manifest[0] = time.monotonic()
                    if on_result is not None:
                        on_result(record)

            workers = [asyncio.create_task(worker()) for _ in range(min(options.concurrency, total))]
            try:
                await asyncio.gather(*workers)
            finally:
                for running in workers:
                    running.cancel()
                await asyncio.gather(*workers, return_exceptions=True)


async def _crawl_row(client, store: CrawlStore, row: UrlRow, policy: FetchPolicy, hosts: HostLimiter,
                     rng: random.Random) -> dict:
    """One row's outcome as a journal record: stored image or named failure."""
    record: dict[str, Any] = {"index": row.index, "url": row.url}
    if not row.url or not row.category:
        missing = "url" if not row.url else "category"
        return {**record, "status": "failed", "reason": "bad_row", "detail": f"empty {missing}",
                "http_status": None, "attempts": 0}
    try:
        result: FetchResult = await fetch_image(client, row.url, policy, hosts, rng)
    except Exception as error:  # fetch_image names every failure it knows; one URL never stops a crawl
        return {**record, "status": "failed", "reason": "unexpected_error",
                "detail": f"{type(error).__name__}: {str(error)[:200]}", "http_status": None, "attempts": 0}
    if not result.ok:
        return {**record, "status": "failed", "reason": result.reason, "detail": result.detail,
                "http_status": result.http_status, "attempts": result.attempts}
    sha, path = await asyncio.to_thread(store.put_image, result.data, image_kind(result.data))
    return {**record, "status": "ok", "sha256": sha, "path": path, "bytes": len(result.data),
            "http_status": result.http_status, "attempts": result.attempts, "final_url": result.final_url}


__all__ = ["CrawlOptions", "crawl", "parse_shard_range"]
