"""How fast the synthetic source makes items, against a bare PIL loop, measured in the same run.

    .venv/bin/python perf/synthetic_source_bench.py [--per-category N] [--repeats R]

Prints ms per item for: the whole item (attributes, drawing, PNG, caption, negatives), drawing
only, and a bare loop (new 128 px image, one ellipse, PNG encode at the same compression), and the
ratios between them. The brief's budget is < 3 ms per image; the best of R repeats is reported
because the machine is shared.
"""

from __future__ import annotations

import argparse
import io
import random
import time

from PIL import Image, ImageDraw

from builders.sources.synthetic import DEFAULT_IMAGE_SIZE, SyntheticSource, item_rng
from builders.sources.synthetic_specimens import DOMAINS, draw_attributes, draw_specimen
from fdrd.schema import SPLITS

BUDGET_MS = 3.0


def best_of(repeats: int, work) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        count = work()
        best = min(best, (time.perf_counter() - start) * 1000 / count)
    return best


def full_items(per_category: int) -> int:
    source = SyntheticSource(per_category=per_category)
    return sum(1 for d in source.domains() for _ in source.iter_items(d, list(SPLITS)))


def drawing_only(count: int) -> int:
    metas = [(m, v) for d in DOMAINS for m in d.metas for v in m.values]
    for i in range(count):
        meta, value = metas[i % len(metas)]
        rng = item_rng(0, "bench", "train", i)
        draw_specimen(meta, value, draw_attributes(rng), DEFAULT_IMAGE_SIZE, rng)
    return count


def bare_pil(count: int) -> int:
    rng = random.Random(0)
    for _ in range(count):
        image = Image.new("RGB", (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE), (200, 200, 200))
        x, y = rng.uniform(20, 60), rng.uniform(20, 60)
        ImageDraw.Draw(image).ellipse((x, y, x + 40, y + 40), fill=(200, 40, 40))
        image.save(io.BytesIO(), "PNG", compress_level=1)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    count = SyntheticSource(per_category=args.per_category).count_items
    total = sum(count(d.name, list(SPLITS)) for d in DOMAINS)
    full = best_of(args.repeats, lambda: full_items(args.per_category))
    draw = best_of(args.repeats, lambda: drawing_only(total))
    bare = best_of(args.repeats, lambda: bare_pil(total))
    print(f"items per run: {total} (all synthetic domains and splits, per_category={args.per_category})")
    print(f"whole item   {full:6.2f} ms   ({full / BUDGET_MS:.2f} of the {BUDGET_MS} ms budget)")
    print(f"drawing only {draw:6.2f} ms")
    print(f"bare PIL     {bare:6.2f} ms   (one ellipse + PNG encode)")
    print(f"ratio whole/bare {full / bare:.2f}   drawing/bare {draw / bare:.2f}")


if __name__ == "__main__":
    main()
