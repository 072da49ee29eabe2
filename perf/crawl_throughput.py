"""Crawler throughput against a local server, 1 vs 32 requests in flight, measured in one run.

The server (127.0.0.1, threaded) waits `--latency` seconds before every response, standing in for
network round trips: without it a local server answers in microseconds and concurrency would
measure nothing but Python overhead. Each setting crawls the same list of distinct JPEGs into a
fresh directory (so nothing is resumed); images/s counts stored images over the wall time of the
whole `crawl()` call (list reading, shard files and manifest included). The machine may be shared:
the load average is printed alongside.

    .venv/bin/python perf/crawl_throughput.py [--images 400] [--latency 0.02] [--repeats 2]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image
from rich.console import Console

from builders.crawl import CrawlOptions, crawl


def jpeg(seed: int) -> bytes:
    image = Image.new("RGB", (64, 48), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class LatencyServer(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True


def serve(images: dict[str, bytes], latency: float) -> LatencyServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real image hosts do

        def do_GET(self):  # noqa: N802 (http.server's naming)
            time.sleep(latency)
            body = images[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = LatencyServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    images = {f"/img/{i}.jpg": jpeg(i) for i in range(args.images)}
    server = serve(images, args.latency)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    console = Console()
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "list.csv"
        listing.write_text("url,category\n" + "".join(f"{base}{path},thing\n" for path in images))
        for concurrency in (1, 32):
            best = 0.0
            for repeat in range(args.repeats):
                out = Path(scratch) / f"out-{concurrency}-{repeat}"
                options = CrawlOptions(concurrency=concurrency, per_host=concurrency, shard_size=100, progress=False)
                start = time.perf_counter()
                manifest = crawl(listing, out, options)
                seconds = time.perf_counter() - start
                assert manifest["totals"]["ok"] == args.images, manifest["totals"]
                best = max(best, args.images / seconds)
            rates[concurrency] = best
            console.print(f"concurrency {concurrency:>2}: {best:8.1f} images/s (best of {args.repeats})")
    server.shutdown()
    console.print(f"speedup 32 vs 1: {rates[32] / rates[1]:.1f}x  (server latency {args.latency * 1000:.0f} ms, "
                  f"{args.images} images, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
