"""On-disk state of a crawl: content-addressed images, per-shard results, and the crawl manifest.

    DIR/crawl.json                 the list it was crawled from (path, sha256, rows) and the shard size
    DIR/urls.jsonl                 the list's rows (builders/crawl/lists.UrlRow), read by the urls source
    DIR/images/ab/abcd....jpg      every stored image, named by its sha256 (identical images stored once)
    DIR/shards/00007.partial.jsonl results of shard 7 so far, one line per finished URL (the resume journal)
    DIR/shards/00007.jsonl         results of shard 7 once every URL of it has ended (written atomically)
    DIR/shards/00007.done.json     shard 7's stats; its presence marks the shard finished
    DIR/manifest.json              every finished shard's stats and the totals

A shard is an independent task: which machine or run finished it does not matter, and the manifest
is rebuilt from the done markers, so several machines can share one DIR with disjoint shard ranges.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from builders.crawl.lists import UrlRow
from fdrd.errors import FdrdError
from fdrd.manifest import write_json_atomic, write_manifest, write_text_atomic
from fdrd.untrusted import containment_problem

CRAWL_FORMAT = "fdrd-crawl/1"
# Where put_image stores bytes: images/<first two hex digits>/<sha256>.<kind>. A journal or result
# record naming any other path (`..`, absolute, a link out of DIR) is not ours and is never read.
IMAGE_PATH = re.compile(r"images/([0-9a-f]{2})/(\1[0-9a-f]{62})\.(jpg|png|gif|webp|bmp|tiff)")


def shard_name(shard: int) -> str:
    return f"{shard:05d}"


def _load(text: str, where: str) -> Any:
    """One JSON value of a crawl file; FdrdError naming `where` when it is not JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise FdrdError(f"{where}: nested too deeply to read; restore it or start a new --out") from None
    except ValueError as error:
        raise FdrdError(f"{where}: not valid JSON ({str(error)[:200]}); restore it or start a new --out") from None


def _jsonl(records: list[dict]) -> str:
    """One JSON object per line, as the journals and shard results are written (a shard is small)."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


class CrawlStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.images = self.root / "images"
        self.shards = self.root / "shards"

    # -- the list -------------------------------------------------------------------------------
    def bind_list(self, list_path: Path, list_sha256: str, rows: list[UrlRow], shard_size: int) -> None:
        """Record which list this DIR crawls, or check that a rerun uses the same list and shard size
        (shards are ranges of row positions: another list or size would mix up finished work)."""
        config_path = self.root / "crawl.json"
        config = {"format": CRAWL_FORMAT, "list": str(list_path), "list_sha256": list_sha256,
                  "rows": len(rows), "shard_size": shard_size}
        if config_path.is_file():
            recorded = self.config()
            if recorded.get("list_sha256") != list_sha256:
                raise FdrdError(f"{self.root}: was crawled from another URL list ({recorded.get('list')}, sha256 "
                                f"{str(recorded.get('list_sha256'))[:12]}); {list_path} differs; use a new --out")
            if recorded.get("shard_size") != shard_size:
                raise FdrdError(f"{self.root}: was crawled with --shard-size {recorded.get('shard_size')}, not "
                                f"{shard_size}; rerun with --shard-size {recorded.get('shard_size')}")
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.shards.mkdir(exist_ok=True)
        tmp = self.root / f".urls.jsonl.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
        os.replace(tmp, self.root / "urls.jsonl")
        write_json_atomic(config_path, config)

    def config(self) -> dict[str, Any]:
        path = self.root / "crawl.json"
        if not path.is_file():
            raise FdrdError(f"{self.root}: no crawl.json; is this a directory written by `fdrd crawl`?")
        config = _load(path.read_bytes().decode("utf-8", errors="replace"), str(path))
        ok = (isinstance(config, dict) and isinstance(config.get("list"), str)
              and isinstance(config.get("list_sha256"), str)
              and all(isinstance(config.get(k), int) and not isinstance(config.get(k), bool) for k in ("rows", "shard_size"))
              and config["rows"] >= 0 and config["shard_size"] >= 1)
        if not ok:
            raise FdrdError(f"{path}: not a crawl.json written by `fdrd crawl` (needs list, list_sha256, rows >= 0 and "
                            "shard_size >= 1); restore it or start a new --out")
        return config

    def rows(self) -> list[UrlRow]:
        path = self.root / "urls.jsonl"
        rows = []
        try:
            lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            raise FdrdError(f"{path}: missing; rerun `fdrd crawl` with the same list to write it again") from None
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    rows.append(UrlRow(**_load(line, f"{path}: line {number}")))
                except TypeError as error:
                    raise FdrdError(f"{path}: line {number} is not a URL list row ({error}); rerun `fdrd crawl` "
                                    "with the same list to write it again") from None
        return rows

    def image_file(self, relative: Any) -> Path | None:
        """The stored image a record names, when the name is one put_image writes and stays inside DIR."""
        if not isinstance(relative, str) or not IMAGE_PATH.fullmatch(relative):
            return None
        return self.root / relative if containment_problem(self.root, relative) is None else None

    # -- images ---------------------------------------------------------------------------------
    def put_image(self, data: bytes, suffix: str) -> tuple[str, str]:
        """Store bytes under their sha256; returns (sha256, path relative to the crawl root)."""
        sha = hashlib.sha256(data).hexdigest()
        relative = Path("images") / sha[:2] / f"{sha}.{suffix}"
        path = self.root / relative
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            # A unique temporary name: two workers may store the same bytes at the same moment.
            handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; images are meant to be shared
            os.replace(tmp, path)  # a crash never leaves a half image under the final name
        return sha, relative.as_posix()

    # -- shards ---------------------------------------------------------------------------------
    def is_done(self, shard: int) -> bool:
        return (self.shards / f"{shard_name(shard)}.done.json").is_file()

    def journal_path(self, shard: int) -> Path:
        return self.shards / f"{shard_name(shard)}.partial.jsonl"

    def journaled(self, shard: int) -> dict[int, dict]:
        """Results a killed run of this shard finished, by row index. A torn last line (the kill
        came mid-write) and successes whose image file is gone are dropped: they are fetched again."""
        path = self.journal_path(shard)
        results: dict[int, dict] = {}
        if not path.is_file():
            return results
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if not _is_record(record):
                    continue  # not a line the crawler wrote: that URL is fetched again
                if record["status"] == "ok":
                    image = self.image_file(record.get("path"))
                    if image is None or not image.is_file():
                        continue
                results[record["index"]] = record
        return results

    def results(self, shard: int) -> list[dict]:
        path = self.shards / f"{shard_name(shard)}.jsonl"
        records = []
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    record = _load(line, f"{path}: line {number}")
                    if not _is_record(record):
                        raise FdrdError(f"{path}: line {number} is not a crawl record; delete {path.name} and its "
                                        ".done.json to crawl the shard again")
                    records.append(record)
        return records

    def finish_shard(self, shard: int, records: list[dict], stats: dict[str, Any]) -> None:
        """Results first (atomically), then the done marker, then drop the journal: a crash between
        any two steps leaves a state the next run reads correctly."""
        name = shard_name(shard)
        write_text_atomic(self.shards / f"{name}.jsonl", _jsonl(sorted(records, key=lambda r: r["index"])))
        write_json_atomic(self.shards / f"{name}.done.json", stats)
        self.journal_path(shard).unlink(missing_ok=True)

    def reopen_shard(self, shard: int, keep: list[dict]) -> None:
        """Turn a finished shard back into an unfinished one whose journal holds `keep`, so the next
        run fetches the rest. Journal first, then the marker: a crash in between leaves it finished."""
        name = shard_name(shard)
        write_text_atomic(self.journal_path(shard), _jsonl(keep))
        (self.shards / f"{name}.done.json").unlink()
        (self.shards / f"{name}.jsonl").unlink(missing_ok=True)

    def write_manifest(self) -> dict[str, Any]:
        """manifest.json from every done marker: per-shard stats and totals over finished shards."""
        config = self.config()
        shard_count = -(-config["rows"] // config["shard_size"])
        shards = {}
        for shard in range(shard_count):
            marker = self.shards / f"{shard_name(shard)}.done.json"
            if marker.is_file():
                stats = _load(marker.read_text(encoding="utf-8", errors="replace"), str(marker))
                if not isinstance(stats, dict) or not all(k in stats for k in ("failed", "urls", "ok", "bytes")):
                    raise FdrdError(f"{marker}: not a shard's stats; delete it to crawl shard {shard} again")
                shards[shard_name(shard)] = stats
        failed: Counter[str] = Counter()
        for stats in shards.values():
            failed.update(stats["failed"])
        manifest = {
            "format": CRAWL_FORMAT,
            "list": config["list"],
            "list_sha256": config["list_sha256"],
            "rows": config["rows"],
            "shard_size": config["shard_size"],
            "shards_total": shard_count,
            "shards_done": len(shards),
            "totals": {
                "urls": sum(s["urls"] for s in shards.values()),
                "ok": sum(s["ok"] for s in shards.values()),
                "failed": dict(sorted(failed.items())),
                "bytes": sum(s["bytes"] for s in shards.values()),
            },
            "shards": shards,
        }
        write_manifest(self.root, manifest)
        return manifest


def _is_record(record: Any) -> bool:
    """A journal or result line as _crawl_row writes it (index, status, and a reason when failed)."""
    return (isinstance(record, dict) and isinstance(record.get("index"), int) and record.get("status") in ("ok", "failed")
            and (record["status"] == "ok" or isinstance(record.get("reason"), str)))
