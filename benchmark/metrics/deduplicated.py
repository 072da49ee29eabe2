"""Exact ranks when some embeddings are identical: each distinct vector is scored once, so duplicates tie.

A BLAS rounds a dot product according to where it sits in a matmul call and to the call's shape (edge
micro-kernels, a GEMV for one row, ...): two identical caption vectors in different tiles, or even in
one tile, can score one ulp apart, and a duplicate of a positive would then rank above or below it by
chance. The streaming torch path therefore finds identical rows first (`first_occurrences`); when there
are some, it ranks here: scores are computed between the distinct image vectors and the distinct caption
vectors only, and every image and caption takes the score of its vector, weighted by how many share it.
A duplicate of the positive then has the positive's very score and counts against it, as every tie does.

The positive scores come from the tiles that hold them (one pass over those tiles), and the counting
pass takes the positives' own entries back by index, from the values it counted.
"""

from __future__ import annotations

import torch

from benchmark.metrics.counting import count_true_per_column, count_true_per_row
from benchmark.metrics.shards import WHOLE, RowShard

_HASH_ROWS = 4096
_INTEGER_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _row_bits(rows: torch.Tensor) -> torch.Tensor:
    # x + 0 turns -0.0 into +0.0 (and keeps every other value): equal vectors, equal bits.
    return (rows + 0).view(_INTEGER_VIEW[rows.element_size()])


def first_occurrences(emb: torch.Tensor) -> torch.Tensor | None:
    """For each row, the index of the first row equal to it, or None when all rows are distinct.

    Rows are hashed exactly (integer arithmetic on their bits, the same for every position), and only
    rows whose hashes collide are compared in full.
    """
    num_rows, dim = emb.shape
    bits_width = 8 * emb.element_size()
    # Weights small enough that dim products of (bits x weight) cannot overflow int64.
    weight_bits = max(1, 62 - bits_width - dim.bit_length())
    generator = torch.Generator().manual_seed(0)
    weights = torch.randint(1, 2**weight_bits, (dim,), generator=generator).to(emb.device)
    hashes = torch.empty(num_rows, dtype=torch.int64, device=emb.device)
    for start in range(0, num_rows, _HASH_ROWS):
        bits = _row_bits(emb[start : start + _HASH_ROWS]).to(torch.int64)
        torch.mv(bits, weights, out=hashes[start : start + _HASH_ROWS])
    _, hash_group, hash_count = torch.unique(hashes, return_inverse=True, return_counts=True)
    suspects = torch.nonzero(hash_count[hash_group] > 1).squeeze(1)
    if suspects.numel() == 0:
        return None
    _, group = torch.unique(_row_bits(emb[suspects]), dim=0, return_inverse=True)
    first_in_group = torch.full((int(group.max()) + 1,), num_rows, dtype=torch.int64, device=emb.device)
    first_in_group.scatter_reduce_(0, group, suspects, reduce="amin")
    first = torch.arange(num_rows, device=emb.device)
    first[suspects] = first_in_group[group]
    if bool((first == torch.arange(num_rows, device=emb.device)).all()):
        return None  # the hashes collided, the rows differ
    return first


def _distinct(
    first: torch.Tensor | None, count: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices of the distinct rows in first-occurrence order, distinct-row id of every row)."""
    everything = torch.arange(count, device=device)
    if first is None:
        return everything, everything
    keep = first == everything
    ids = torch.cumsum(keep, 0) - 1
    return torch.nonzero(keep).squeeze(1), ids[first]


def _weighted_count(mask: torch.Tensor, weights: torch.Tensor, dim: int, unweighted: bool) -> torch.Tensor:
    """Per row (dim=1) or column (dim=0), the sum of the weights of the True entries."""
    if unweighted:
        return count_true_per_row(mask) if dim == 1 else count_true_per_column(mask)
    shaped = weights[None, :] if dim == 1 else weights[:, None]
    return (mask * shaped).sum(dim)


def _sorted_ranges(keys: torch.Tensor, bounds: list[int]) -> tuple[torch.Tensor, list[int]]:
    """The indices of `keys` in ascending key order, and where each [bounds[b], bounds[b + 1]) starts."""
    order = torch.argsort(keys, stable=True)
    edges = torch.searchsorted(keys[order], torch.tensor(bounds, device=keys.device))
    return order, edges.tolist()


def deduplicated_ranks(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_to_image: torch.Tensor,
    block_size: int,
    image_first: torch.Tensor | None,
    text_first: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact 1-based ranks (image -> text, text -> image) where identical vectors share one score."""
    image_beaten, text_beaten = deduplicated_counts(
        image_emb, text_emb, text_to_image, block_size, image_first, text_first, WHOLE
    )
    return image_beaten + 1, text_beaten + 1


def deduplicated_counts(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    text_to_image: torch.Tensor,
    block_size: int,
    image_first: torch.Tensor | None,
    text_first: torch.Tensor | None,
    shard: RowShard,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The beaten counts of `shard`'s blocks of distinct image rows (benchmark/metrics/shards.py); every
    shard finds every positive score (pass 1), and summed over shards the counts are the whole table's."""
    device = image_emb.device
    num_images, num_texts = image_emb.shape[0], text_emb.shape[0]
    image_rows, image_id = _distinct(image_first, num_images, device)
    text_rows, text_id = _distinct(text_first, num_texts, device)
    num_rows, num_cols = len(image_rows), len(text_rows)
    positive_row = image_id[text_to_image]
    # Distinct captions ordered by the first distinct image they describe: most positives then fall in
    # the diagonal tiles, as in the streaming path (exactness does not depend on it).
    first_row = torch.full((num_cols,), num_rows, dtype=torch.int64, device=device)
    first_row.scatter_reduce_(0, text_id, positive_row, reduce="amin")
    column_order = torch.argsort(first_row, stable=True)
    column_of = torch.empty_like(column_order)
    column_of[column_order] = torch.arange(num_cols, device=device)
    positive_col = column_of[text_id]
    rows_table = image_emb[image_rows]
    cols_table = text_emb[text_rows[column_order]]
    row_weight = torch.bincount(image_id, minlength=num_rows)
    col_weight = torch.bincount(positive_col, minlength=num_cols)

    row_bounds = list(range(0, num_rows, block_size)) + [num_rows]
    col_bounds = list(range(0, num_cols, block_size)) + [num_cols]
    widest = min(block_size, num_cols)
    tile_buffer = torch.empty(min(block_size, num_rows) * widest, dtype=torch.float32, device=device)

    def tile_of(b: int, c: int) -> torch.Tensor:
        shape = (row_bounds[b + 1] - row_bounds[b], col_bounds[c + 1] - col_bounds[c])
        tile = tile_buffer[: shape[0] * shape[1]].view(shape)
        rows = rows_table[row_bounds[b] : row_bounds[b + 1]]
        return torch.matmul(rows, cols_table[col_bounds[c] : col_bounds[c + 1]].T, out=tile)

    # Pass 1: each caption's positive score, from the tile that holds it.
    num_col_tiles = len(col_bounds) - 1
    tile_key = (positive_row // block_size) * num_col_tiles + positive_col // block_size
    by_tile = torch.argsort(tile_key, stable=True)
    keys, counts = torch.unique_consecutive(tile_key[by_tile], return_counts=True)
    captions_in_tile = dict(zip(keys.tolist(), torch.split(by_tile, counts.tolist()), strict=True))
    positive = torch.empty(num_texts, dtype=torch.float32, device=device)
    for key, captions in captions_in_tile.items():
        b, c = divmod(key, num_col_tiles)
        tile = tile_of(b, c)
        positive[captions] = tile[
            positive_row[captions] - row_bounds[b], positive_col[captions] - col_bounds[c]
        ]
    best = torch.full((num_images,), float("-inf"), dtype=torch.float32, device=device)
    best.scatter_reduce_(0, text_to_image, positive, reduce="amax")

    # Pass 2: every tile, counted for every image whose vector is one of its rows and every caption
    # whose vector is one of its columns, each distinct candidate weighted by its number of copies.
    images_by_row, image_edges = _sorted_ranges(image_id, row_bounds)
    captions_by_col, caption_edges = _sorted_ranges(positive_col, col_bounds)
    image_beaten = torch.zeros(num_images, dtype=torch.int64, device=device)
    text_beaten = torch.zeros(num_texts, dtype=torch.int64, device=device)
    for b in shard.blocks(len(row_bounds) - 1):
        row_start, row_stop = row_bounds[b], row_bounds[b + 1]
        weights_b = row_weight[row_start:row_stop]
        rows_unweighted = bool((weights_b == 1).all())
        images = images_by_row[image_edges[b] : image_edges[b + 1]]
        for c in range(num_col_tiles):
            col_start, col_stop = col_bounds[c], col_bounds[c + 1]
            tile = tile_of(b, c)
            weights_c = col_weight[col_start:col_stop]
            cols_unweighted = bool((weights_c == 1).all())
            captions = captions_by_col[caption_edges[c] : caption_edges[c + 1]]
            for chunk in torch.split(captions, block_size):
                values = tile[:, positive_col[chunk] - col_start]
                beaten = _weighted_count(values >= positive[chunk], weights_b, 0, rows_unweighted)
                text_beaten.index_add_(0, chunk, beaten)
            for chunk in torch.split(images, block_size):
                values = tile[image_id[chunk] - row_start]
                beaten = _weighted_count(values >= best[chunk, None], weights_c, 1, cols_unweighted)
                image_beaten.index_add_(0, chunk, beaten)
            # Take back the positives the counts include, by index: each caption's own image (with its
            # copies, which are added back as ties below) and each image's own captions.
            own = captions_in_tile.get(b * num_col_tiles + c)
            if own is not None:
                values = tile[positive_row[own] - row_start, positive_col[own] - col_start]
                text_beaten.index_add_(0, own, -row_weight[positive_row[own]] * (values >= positive[own]))
                owners = text_to_image[own]
                image_beaten.index_add_(0, owners, -(values >= best[owners]).long())
    if shard.index == 0:  # the copies of each caption's own image tie with it: counted once, by one shard
        text_beaten += row_weight[positive_row] - 1
    return image_beaten, text_beaten
