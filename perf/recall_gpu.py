"""The fused Triton recall kernel against what it replaces, on a CUDA GPU: time, ratio and peak memory.

For each N (images = captions = N, width D, bf16 embeddings), in one process, best of R after a warm-up:
- kernel:  `retrieval_recall(..., backend="triton")`, the whole call (validation, grouping, both launches);
- gemm:    a bare `torch.mm` of the same sizes (bf16 in, bf16 out), the floor of any exact method; when
           the N x N output does not fit, the same GEMM in row chunks into one reused buffer;
- torch:   `retrieval_recall(..., backend="torch")`, the streaming path (float32 tiles);
- topk:    the naive evaluator, the full bf16 score matrix then top-10 along both axes, where it fits.
Ratios are to the bare GEMM; the goal is kernel <= 1.15x gemm at N = 230k. Peak memory is
torch.cuda.max_memory_allocated above what the inputs hold. `--configs` times the kernel's launch alone
with other tile configurations (BMxBNxBK/warps/stages, e.g. 128x256x64/8/3) to compare them.

    PYTHONPATH=. python3 perf/recall_gpu.py --sizes 10000 50000 230000 --repeats 3 --json out/recall_gpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmark.metrics.recall import positive_ranks, retrieval_recall

TOPK = 10
GOAL = 1.15


def best_time(function, repeats: int) -> float:
    function()  # warm-up: compiles the kernel, fills caches
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_extra_bytes(function) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    function()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def free_bytes() -> int:
    free, _ = torch.cuda.mem_get_info()
    return free


def bare_gemm(image: torch.Tensor, text: torch.Tensor):
    """torch.mm over the whole N x M output, or over row chunks of it when the whole does not fit."""
    rows, cols = image.shape[0], text.shape[0]
    if rows * cols * image.element_size() < 0.4 * free_bytes():
        return (lambda: torch.mm(image, text.T)), "one torch.mm"
    chunk = max(1024, int(8 * 2**30 // (cols * image.element_size())) // 1024 * 1024)
    buffer = torch.empty(chunk, cols, dtype=image.dtype, device=image.device)

    def chunked():
        for start in range(0, rows, chunk):
            block = image[start : start + chunk]
            torch.mm(block, text.T, out=buffer[: len(block)])

    return chunked, f"torch.mm in {chunk}-row chunks"


def full_matrix_topk(image: torch.Tensor, text: torch.Tensor) -> dict[str, float]:
    scores = image @ text.T
    truth = torch.arange(len(image), device=image.device)
    i2t = scores.topk(TOPK, dim=1).indices
    t2i = scores.topk(TOPK, dim=0).indices.T
    del scores
    return {
        f"{name}_r{k}": 100.0 * float((hits[:, :k] == truth[:, None]).any(1).float().mean())
        for name, hits in (("i2t", i2t), ("t2i", t2i))
        for k in (1, 5, 10)
    }


def parse_config(text: str):
    from benchmark.metrics.triton_recall import TileConfig

    tile, warps, stages = text.split("/")
    block_m, block_n, block_k = (int(part) for part in tile.split("x"))
    return TileConfig(block_m, block_n, block_k, num_warps=int(warps), num_stages=int(stages))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000, 230000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-block-size", type=int, default=8192, help="tile edge of the torch path")
    parser.add_argument("--skip-torch-above", type=int, default=230000, help="largest N for the torch path")
    parser.add_argument("--configs", nargs="*", default=[], help="other kernel tiles, e.g. 128x256x64/8/3")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "perf/recall_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); on CPU use "
            "perf/recall_bench.py",
            file=sys.stderr,
        )
        raise SystemExit(2)
    import triton

    from benchmark.metrics.triton_recall import default_tiles, triton_ranks

    device = torch.device("cuda")
    card = torch.cuda.get_device_name(device)
    print(
        f"{card}; torch {torch.__version__}, triton {triton.__version__}; D={args.dim}, bf16, best of {args.repeats}"
    )
    print(f"kernel tiles: {default_tiles(torch.bfloat16, args.dim, 2048)}")
    rows = []
    for size in args.sizes:
        generator = torch.Generator(device=device).manual_seed(size)
        image = torch.nn.functional.normalize(
            torch.randn(size, args.dim, device=device, generator=generator), dim=1
        )
        noise = torch.randn(size, args.dim, device=device, generator=generator)
        text = torch.nn.functional.normalize(image + 0.5 * noise, dim=1).to(torch.bfloat16)
        image = image.to(torch.bfloat16)
        del noise
        owners = torch.arange(size, device=device)
        row = {"n": size, "card": card}

        def kernel(image=image, text=text, owners=owners):
            return retrieval_recall(image, text, owners, backend="triton")

        gemm, gemm_mode = bare_gemm(image, text)
        row["gemm_mode"] = gemm_mode
        row["kernel_s"] = best_time(kernel, args.repeats)
        row["gemm_s"] = best_time(gemm, args.repeats)
        row["kernel_peak_mib"] = peak_extra_bytes(kernel) / 2**20
        row["gemm_peak_mib"] = peak_extra_bytes(gemm) / 2**20
        row["ratio"] = row["kernel_s"] / row["gemm_s"]
        metrics = kernel()
        row["kernel_i2t_r1"], row["kernel_t2i_r1"] = metrics["i2t_r1"], metrics["t2i_r1"]
        print(
            f"N={size:>7}  kernel {row['kernel_s'] * 1e3:9.2f} ms  gemm {row['gemm_s'] * 1e3:9.2f} ms "
            f"({gemm_mode})  ratio {row['ratio']:5.3f}x"
            + (f"  goal <= {GOAL}x: {'met' if row['ratio'] <= GOAL else 'NOT met'}" if size >= 230000 else "")
        )
        print(
            f"           peak extra memory: kernel {row['kernel_peak_mib']:9.1f} MiB, gemm "
            f"{row['gemm_peak_mib']:9.1f} MiB (a full N x N bf16 matrix is {size * size * 2 / 2**20:9.1f} MiB)"
        )

        for text_config in args.configs:
            tiles = parse_config(text_config)
            inputs = (image, text, owners)
            seconds = best_time(
                lambda tiles=tiles, inputs=inputs: triton_ranks(*inputs, 2048, tiles), args.repeats
            )
            row[f"kernel_s[{text_config}]"] = seconds
            print(
                f"           tiles {text_config:>16}: {seconds * 1e3:9.2f} ms  ratio {seconds / row['gemm_s']:5.3f}x"
            )

        if size <= args.skip_torch_above:

            def torch_path(image=image, text=text, owners=owners):
                return retrieval_recall(
                    image, text, owners, backend="torch", block_size=args.torch_block_size
                )

            row["torch_s"] = best_time(torch_path, max(1, args.repeats - 1))
            row["torch_peak_mib"] = peak_extra_bytes(torch_path) / 2**20
            torch_metrics = torch_path()
            # Both accumulate in float32 but in different orders: near-ties may fall either way.
            row["torch_vs_kernel_max_metric_diff"] = max(abs(torch_metrics[k] - metrics[k]) for k in metrics)
            print(
                f"           torch path (block {args.torch_block_size}) {row['torch_s'] * 1e3:9.2f} ms, "
                f"{row['torch_s'] / row['gemm_s']:6.2f}x gemm, peak {row['torch_peak_mib']:9.1f} MiB; "
                f"largest metric difference to the kernel {row['torch_vs_kernel_max_metric_diff']:.4f}"
            )

        if 3 * size * size * 2 < free_bytes():

            def topk(image=image, text=text):
                return full_matrix_topk(image, text)

            row["topk_s"] = best_time(topk, args.repeats)
            row["topk_peak_mib"] = peak_extra_bytes(topk) / 2**20
            top_metrics = topk()
            print(
                f"           full matrix + top-{TOPK} {row['topk_s'] * 1e3:9.2f} ms, "
                f"{row['topk_s'] / row['gemm_s']:6.2f}x gemm, peak {row['topk_peak_mib']:9.1f} MiB "
                f"(R@1 {top_metrics['i2t_r1']:.2f}/{top_metrics['t2i_r1']:.2f} vs kernel "
                f"{metrics['i2t_r1']:.2f}/{metrics['t2i_r1']:.2f}; top-k breaks ties its own way)"
            )
        else:
            print(
                f"           full matrix + top-{TOPK}: skipped, it needs about {3 * size * size * 2 / 2**30:.0f} GiB"
            )

        # The kernel's ranks agree with an independent check on the first rows: a plain float32 count.
        probe = slice(0, min(size, 256))
        image_ranks, text_ranks = positive_ranks(image, text, owners, backend="triton")
        scores = image[probe].float() @ text.float().T
        own = scores[torch.arange(probe.stop), torch.arange(probe.stop)]
        plain = (scores >= own[:, None]).sum(1)  # the positive counts itself: the 1 of a 1-based rank
        row["probe_rank_mismatches"] = int((plain != image_ranks[probe]).sum())
        print(
            f"           image -> text ranks of the first {probe.stop} images vs a plain float32 count: "
            f"{row['probe_rank_mismatches']} differ (near-ties only)"
        )
        rows.append(row)
        del image, text, owners
        torch.cuda.empty_cache()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
