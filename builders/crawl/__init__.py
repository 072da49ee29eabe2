"""The crawler, one package: `fdrd crawl URLS --out DIR` downloads the images of a URL list.

    run.py    the crawl itself: shards, workers, per-host limits, resumption (`crawl`, `CrawlOptions`)
    fetch.py  one URL: retries, backoff, redirects, size cap, content checks, named failures
    lists.py  reading URL lists (CSV, TSV, Parquet, JSONL) into `UrlRow`s
    store.py  the crawl folder on disk: content-addressed images, shard journals, the manifest

The folder it writes is a build source afterwards (builders/sources/urls.py).
"""

from builders.crawl.run import CrawlOptions, crawl, parse_shard_range

__all__ = ["CrawlOptions", "crawl", "parse_shard_range"]
