"""What several ranks of one `fdrd bench` exchange (benchmark/distributed.py starts them): the split of a
global batch, in-batch negatives gathered across ranks, losses written as shares of the global loss, the
summed trainable gradients, and rows encoded round robin then gathered. On one process every helper is the
identity: no group, no copy, no change to the arithmetic.

The contract that makes a global batch of B behave as B on any number of ranks (docs/benchmark.md, "Several
processes"): every loss term a rank returns is its *share* of the single-process term, so the shares summed
over ranks give the global loss and their gradients summed over ranks give the global gradient.
- A term over this rank's own records (L_cate, L_head): the sum over them divided by the global count
  (`global_total`), not the local mean.
- A term over the whole batch (the contrastive loss over in-batch negatives): every rank computes it in
  full from `gather_rows` (the other ranks' rows as detached copies, its own rows live), so its backward
  gives exactly this rank's part of the global gradient; `replicated_share` then reports 1/K of the value
  while keeping that gradient. This is the gradient open_clip's gather_with_grad gives (its all_gather
  backward would add K identical copies that DDP's average divides away), without a collective in the
  backward, so ranks never have to meet in a backward pass.
`sum_gradients` then all-reduces the trainable gradients (never a frozen one) with the loss shares, in one
bucketed SUM.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

# DDP's default bucket: big enough for few all-reduce calls, small enough to bound the flat copy.
BUCKET_BYTES = 25 * 2**20

_ACTIVE: list[object | None] = [None]  # the process group of the ranks holding records this step (None: all)
_STEP_GROUPS: dict[int, object] = {}


def _dist():
    import torch.distributed as dist

    return dist


def initialized() -> bool:
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return _dist().get_world_size() if initialized() else 1


def rank() -> int:
    return _dist().get_rank() if initialized() else 0


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes checkpoints, results and progress."""
    return rank() == 0


def comm_device() -> torch.device:
    """Where collective tensors must live: the rank's GPU under NCCL, the CPU under gloo."""
    if initialized() and _dist().get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ------------------------------------------------------------------ splitting a global batch
def shard_sizes(count: int, parts: int) -> list[int]:
    """Contiguous split of `count` rows into `parts` (the first `count % parts` get one more)."""
    return [count // parts + (1 if index < count % parts else 0) for index in range(parts)]


def shard_rows(rows: Sequence[int], index: int, parts: int) -> list[int]:
    """Part `index` of `rows` under shard_sizes: rank r's records of a global batch, in batch order."""
    sizes = shard_sizes(len(rows), parts)
    start = sum(sizes[:index])
    return list(rows[start : start + sizes[index]])


def prepare_step_groups(active_counts: set[int]) -> None:
    """Make the process groups of ranks 0..n-1 for every n < world that a step will need (a batch with fewer
    records than ranks). Every rank must call this with the same counts: making a group is collective."""
    for count in sorted(active_counts):
        if 0 < count < world_size() and count not in _STEP_GROUPS:
            _STEP_GROUPS[count] = _dist().new_group(ranks=list(range(count)))


def forget_groups() -> None:
    """Drop the step groups (they die with the process group that made them)."""
    _STEP_GROUPS.clear()
    _ACTIVE[0] = None


@contextlib.contextmanager
def step_group(active: int) -> Iterator[None]:
    """Within the block, the loss helpers exchange with ranks 0..active-1 only (the ranks holding records of
    this step's batch); ranks without records must not compute a loss."""
    if active < world_size() and active not in _STEP_GROUPS:
        raise RuntimeError(f"no process group for {active} ranks: call prepare_step_groups before the steps")
    previous = _ACTIVE[0]
    _ACTIVE[0] = _STEP_GROUPS[active] if active < world_size() else None
    try:
        yield
    finally:
        _ACTIVE[0] = previous


def _active_size() -> int:
    if not initialized():
        return 1
    group = _ACTIVE[0]
    return _dist().get_world_size(group) if group is not None else world_size()


# ------------------------------------------------------------------ losses as shares
def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Every active rank's rows of a batch-aligned tensor, in global batch order. This rank's rows are
    `local` itself (gradients reach them); the others' are copies without a graph."""
    parts = _active_size()
    if parts == 1:
        return local
    dist, group = _dist(), _ACTIVE[0]
    sizes = _gather_ints(local.shape[0], group)
    padded = local.new_zeros((max(sizes), *local.shape[1:]))
    padded[: local.shape[0]] = local.detach()
    received = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(received, padded, group=group)
    rows = [tensor[:size] for tensor, size in zip(received, sizes, strict=True)]
    rows[dist.get_rank(group)] = local
    return torch.cat(rows)


def replicated_share(value: torch.Tensor) -> torch.Tensor:
    """A term every active rank computes in full (from gather_rows): worth 1/K of its value, with the whole
    gradient it gives this rank's own rows (value/K + (1 - 1/K)(value - value) in the forward)."""
    parts = _active_size()
    if parts == 1:
        return value
    return value - value.detach() * (1 - 1 / parts)


def global_total(local: torch.Tensor | int | float) -> torch.Tensor:
    """The sum of `local` over the active ranks (no gradient), e.g. the global batch size or token count."""
    value = torch.as_tensor(local, dtype=torch.float64).detach()
    if _active_size() == 1:
        return value
    buffer = value.to(comm_device()).reshape(1)
    _dist().all_reduce(buffer, group=_ACTIVE[0])
    return buffer[0].cpu()


def per_record_mean(values: torch.Tensor) -> torch.Tensor:
    """This rank's share of the mean of a per-record term over the global batch."""
    return values.sum() / global_total(values.shape[0]).to(values.device, values.dtype)


def _gather_ints(value: int, group=None) -> list[int]:
    dist = _dist()
    size = dist.get_world_size(group) if group is not None else world_size()
    mine = torch.tensor([value], dtype=torch.int64, device=comm_device())
    received = [torch.empty_like(mine) for _ in range(size)]
    dist.all_gather(received, mine, group=group)
    return [int(tensor.item()) for tensor in received]


# ------------------------------------------------------------------ gradients
def sum_gradients(
    parameters: Sequence[torch.nn.Parameter], values: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Sum the trainable gradients and the loss shares `values` over every rank (the world group) in
    buckets of about BUCKET_BYTES; return the summed values. A parameter that no rank gave a gradient keeps
    none, so the optimizer skips it as it would on one process."""
    if world_size() == 1:
        return {name: float(value.detach().float()) for name, value in values.items()}
    device = comm_device()
    names = list(values)
    tail = torch.stack([values[name].detach().float().reshape(()) for name in names]).to(device)
    has_grad = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=device)
    buckets: list[list[torch.nn.Parameter]] = [[]]
    filled = 0
    for parameter in parameters:
        if buckets[-1] and filled + parameter.numel() * 4 > BUCKET_BYTES:
            buckets.append([])
            filled = 0
        buckets[-1].append(parameter)
        filled += parameter.numel() * 4
    dist = _dist()
    for index, bucket in enumerate(buckets):
        pieces = [
            (p.grad if p.grad is not None else torch.zeros_like(p)).float().reshape(-1).to(device)
            for p in bucket
        ]
        if index == len(buckets) - 1:
            pieces += [has_grad, tail]
        flat = torch.cat(pieces)
        dist.all_reduce(flat)
        offset = 0
        for parameter in bucket:
            count = parameter.numel()
            summed = flat[offset : offset + count].view_as(parameter).to(parameter.device, parameter.dtype)
            if parameter.grad is None:
                parameter.grad = summed.clone()
            else:
                parameter.grad.copy_(summed)
            offset += count
    has_grad, tail = flat[offset : offset + len(parameters)], flat[offset + len(parameters) :]
    for parameter, present in zip(parameters, has_grad.tolist(), strict=True):
        if present == 0:
            parameter.grad = None
    return dict(zip(names, tail.cpu().tolist(), strict=True))


def broadcast_parameters(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Make every rank's trainable parameters rank 0's (a run starts or resumes from one state)."""
    if world_size() == 1 or not parameters:
        return
    device = comm_device()
    flat = torch.cat([p.detach().float().reshape(-1).to(device) for p in parameters])
    _dist().broadcast(flat, src=0)
    offset = 0
    with torch.no_grad():
        for parameter in parameters:
            parameter.copy_(flat[offset : offset + parameter.numel()].view_as(parameter))
            offset += parameter.numel()


def parameters_agree(parameters: Sequence[torch.nn.Parameter]) -> bool:
    """Whether every rank holds bit-identical trainable parameters (compares rank 0's copy on every rank)."""
    if world_size() == 1 or not parameters:
        return True
    device = comm_device()
    mine = torch.cat([p.detach().float().reshape(-1).to(device) for p in parameters])
    reference = mine.clone()
    _dist().broadcast(reference, src=0)
    differs = torch.tensor([0 if torch.equal(mine, reference) else 1], dtype=torch.int64, device=device)
    _dist().all_reduce(differs)
    return int(differs.item()) == 0


# ------------------------------------------------------------------ work split round robin
def my_chunks(count: int) -> list[int]:
    """The chunks this rank computes when `count` chunks are dealt round robin (chunk c to rank c % K)."""
    return list(range(rank(), count, world_size()))


def gather_chunks(local: list[torch.Tensor], chunk_sizes: Sequence[int]) -> torch.Tensor:
    """All chunks in order, on the CPU, from each rank's own (`local`: its chunks of my_chunks, in order,
    `chunk_sizes[c]` rows each). Each chunk was computed once, by one rank, exactly as one process would."""
    if world_size() == 1:
        return torch.cat(local) if local else torch.zeros(0)
    dist, parts = _dist(), world_size()
    rows = sum(chunk.shape[0] for chunk in local)
    shapes: list[object] = [None] * parts
    dist.all_gather_object(
        shapes, (rows, tuple(local[0].shape[1:]), str(local[0].dtype)) if local else (0, None, None)
    )
    _, trailing, dtype_name = next(shape for shape in shapes if shape[1] is not None)
    dtype = getattr(torch, dtype_name.removeprefix("torch."))
    largest = max(shape[0] for shape in shapes)
    device = comm_device()
    padded = torch.zeros((largest, *trailing), dtype=dtype, device=device)
    if local:
        padded[:rows] = torch.cat(local).to(device)
    received = [torch.empty_like(padded) for _ in range(parts)]
    dist.all_gather(received, padded)
    chunks: list[torch.Tensor] = []
    taken = [0] * parts
    for index, size in enumerate(chunk_sizes):
        owner = index % parts
        chunks.append(received[owner][taken[owner] : taken[owner] + size])
        taken[owner] += size
    return torch.cat(chunks).cpu() if chunks else torch.zeros((0, *trailing), dtype=dtype)


def sum_counts(counts: torch.Tensor) -> torch.Tensor:
    """Integer counts summed over every rank (exact)."""
    if world_size() == 1:
        return counts
    buffer = counts.to(comm_device(), torch.int64)
    _dist().all_reduce(buffer)
    return buffer.to(counts.device)


def from_rank_zero(compute):
    """`compute()` run on rank 0 alone and its result handed to every rank (through a pickle of rank 0's own
    objects over the process group, never of a file); an FdrdError there is raised on every rank, so no rank
    waits for a partner that has stopped."""
    from fdrd.errors import FdrdError

    if world_size() == 1:
        return compute()
    box: list[object] = [None]
    if is_main():
        try:
            box[0] = ("ok", compute())
        except FdrdError as error:
            box[0] = ("error", str(error))
    _dist().broadcast_object_list(box, src=0)
    status, payload = box[0]
    if status == "error":
        raise FdrdError(payload)
    return payload
