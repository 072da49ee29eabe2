"""`fdrd crawl URLS --out DIR`: download the images of a URL list (builders/crawl/ does the work).

The output DIR is a build source afterwards: `fdrd build --source urls --data-root DIR`.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("crawl")
    def crawl_command(
        urls: Path = typer.Argument(..., help="URL list: CSV, TSV, Parquet or JSONL with columns url and category "
                                              "(optional: caption, meta_category, domain, split, license)."),
        out: Path = typer.Option(..., "--out", help="Crawl directory; rerunning with the same list resumes it."),
        concurrency: int = typer.Option(32, help="Requests in flight in total."),
        per_host: int = typer.Option(8, help="Requests in flight to one host."),
        shard_size: int = typer.Option(1000, help="Rows per shard (fixed for the life of --out)."),
        shards: str = typer.Option("", help="START:END range of shards this run takes (END exclusive); default all."),
        connect_timeout: float = typer.Option(10.0, help="Seconds to connect."),
        read_timeout: float = typer.Option(20.0, help="Seconds between bytes before giving up on a response."),
        total_timeout: float = typer.Option(120.0, help="Seconds for one URL, retries and waits included."),
        retries: int = typer.Option(3, help="Extra attempts on 429, 5xx, timeouts, broken connections."),
        backoff: float = typer.Option(0.5, help="Seconds before the first retry; doubles per retry, with jitter."),
        max_retry_after: float = typer.Option(60.0, help="Cap in seconds on an honoured Retry-After header."),
        max_bytes: int = typer.Option(20_000_000, help="Largest image in bytes; bigger ones stop streaming."),
        max_redirects: int = typer.Option(5, help="Redirects followed per URL."),
        user_agent: str = typer.Option("fdrd-crawler/0.1 (+https://github.com/fdrd)", help="User-Agent header."),
        retry_failed: bool = typer.Option(False, help="Fetch again the transient failures (timeout, "
                                                      "connection_error, truncated, http 429/5xx) of finished shards."),
        progress: bool = typer.Option(True, help="Show a live progress bar."),
    ) -> None:
        """Download the images of a URL list into DIR, resumably and shard by shard."""
        from rich.console import Console

        from builders.crawl import CrawlOptions, crawl, parse_shard_range
        from builders.crawl.fetch import FetchPolicy

        policy = FetchPolicy(
            connect_timeout=connect_timeout, read_timeout=read_timeout, total_timeout=total_timeout,
            retries=retries, backoff_base=backoff, max_retry_after=max_retry_after, max_bytes=max_bytes,
            max_redirects=max_redirects, user_agent=user_agent,
        )
        options = CrawlOptions(
            concurrency=concurrency, per_host=per_host, shard_size=shard_size,
            shards=parse_shard_range(shards) if shards else None, policy=policy, progress=progress,
            retry_failed=retry_failed,
        )
        manifest = crawl(urls, out, options)
        totals = manifest["totals"]
        failed = ", ".join(f"{reason} {count}" for reason, count in totals["failed"].items()) or "none"
        Console().print(
            f"{out}: {manifest['shards_done']}/{manifest['shards_total']} shards done; "
            f"{totals['ok']} of {totals['urls']} URLs stored ({totals['bytes'] / 1e6:.1f} MB); failed: {failed}",
            highlight=False,
        )
