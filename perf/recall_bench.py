"""How much streaming recall@K costs over the bare blocked GEMM it is built on, and how much memory it takes.

For each N (images = captions = N, width D) it times, in one process and interleaved so that the noise
of a shared machine hits both alike:
- the bare blocked GEMM: every (block x block) score tile computed and dropped;
- `retrieval_recall` with the same block size (the torch backend).
It prints the best-of-R times, their ratio (goal <= 1.3), and the peak memory allocated during one
recall call (tracemalloc does not see torch's allocator, so on CPU we read torch's own counter when
there is one and otherwise sample the process's resident set size), next to what a full N x N float32
matrix would need.

    .venv/bin/python perf/recall_bench.py --sizes 20000 50000 --dim 512 --repeats 3
"""

from __future__ import annotations

import argparse
import resource
import threading
import time

import torch

from benchmark.metrics.recall import DEFAULT_BLOCK_SIZE, retrieval_recall


def bare_blocked_gemm(image_emb: torch.Tensor, text_emb: torch.Tensor, block_size: int) -> None:
    """Every score tile computed into one reused buffer and dropped: the floor any exact method pays."""
    buffer = torch.empty(block_size * block_size, dtype=image_emb.dtype, device=image_emb.device)
    for row in range(0, image_emb.shape[0], block_size):
        rows = image_emb[row : row + block_size]
        for col in range(0, text_emb.shape[0], block_size):
            cols = text_emb[col : col + block_size]
            torch.matmul(rows, cols.T, out=buffer[: len(rows) * len(cols)].view(len(rows), len(cols)))
    if image_emb.is_cuda:
        torch.cuda.synchronize()


def timed(function) -> float:
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def peak_rss_during(function) -> tuple[int, object]:
    """Peak resident set size while `function` runs (sampled every millisecond, above the start), and
    what `function` returned."""
    baseline = rss_bytes()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = function()
    finally:
        done.set()
        sampler.join()
    return peak - baseline, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 50000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} dim={args.dim} block={args.block_size}")
    for size in args.sizes:
        generator = torch.Generator().manual_seed(size)
        image_emb = torch.nn.functional.normalize(torch.randn(size, args.dim, generator=generator), dim=1)
        text_emb = torch.nn.functional.normalize(
            image_emb + 0.5 * torch.randn(size, args.dim, generator=generator), dim=1
        )
        image_emb, text_emb = image_emb.to(device), text_emb.to(device)
        owners = torch.arange(size, device=device)

        def run_recall(image_emb=image_emb, text_emb=text_emb, owners=owners):
            return retrieval_recall(image_emb, text_emb, owners, block_size=args.block_size, backend="torch")

        def run_gemm(image_emb=image_emb, text_emb=text_emb):
            bare_blocked_gemm(image_emb, text_emb, args.block_size)

        # Memory first, in a process that has not yet allocated any tile: later, freed buffers of the
        # timed runs would be reused and hide the growth.
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            metrics = run_recall()
            peak = torch.cuda.max_memory_allocated() - before
            how = "torch.cuda.max_memory_allocated"
        else:
            peak, metrics = peak_rss_during(run_recall)
            how = "sampled RSS growth, first call"
        run_gemm()  # warm the BLAS threads and caches once
        gemm_times, recall_times = [], []
        for _ in range(args.repeats):
            gemm_times.append(timed(run_gemm))
            recall_times.append(timed(run_recall))
        inputs = 2 * size * args.dim * 4
        full_matrix = size * size * 4
        print(
            f"N={size:>6}  gemm {min(gemm_times):7.3f}s  recall {min(recall_times):7.3f}s  "
            f"ratio {min(recall_times) / min(gemm_times):5.2f}x  "
            f"peak extra memory {peak / 2**20:8.1f} MiB ({how}); inputs {inputs / 2**20:.1f} MiB, "
            f"a full N x N float32 matrix would be {full_matrix / 2**20:8.1f} MiB  "
            f"(i2t_r1={metrics['i2t_r1']:.2f} t2i_r1={metrics['t2i_r1']:.2f})"
        )


if __name__ == "__main__":
    main()
