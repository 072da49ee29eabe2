"""`fdrd bench --gpus N` / `--procs N`: relaunch under torchrun, and each rank's process group.

The command line parses the options into `LaunchOptions` and calls `relaunch`, which checks them against the
machine (clear errors before anything starts), then runs the same command under `torch.distributed.run`
(torchrun's own entry point and argument parser): N processes per node, NCCL on GPUs, gloo on CPU, `--nodes`,
`--node-rank` and the rendezvous (`--rdzv-endpoint`, or `--master-addr`/`--master-port`) passed through. In
each child `worker_session` joins the process group (with a timeout, so a collective that waits for a stuck
rank fails instead of hanging), picks the device from LOCAL_RANK, and writes the rank's error where torchrun's
agent reads it. When a rank fails, the agent stops the others (no restarts) and `relaunch` raises one
FdrdError naming the rank and its error. What the ranks exchange is in benchmark/collectives.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from benchmark import collectives
from fdrd.errors import FdrdError

# A collective that waits longer than this for a partner fails (the rank is stuck, not dead: a dead rank is
# seen by torchrun's agent within a second). Long enough for rank 0's checkpoint, results and cache writes.
DEFAULT_TIMEOUT_SECONDS = 900.0
RDZV_ID = "fdrd-bench"
# Fault injection for tests and drills: "RANK:STEP:MODE" makes that rank raise, exit or hang at that
# training step (1-based global step); MODE is raise, exit or hang.
FAULT_VARIABLE = "FDRD_FAULT"
# Marks, in a rank's error file, an error raised inside torch.distributed (see record_failure).
WAITING_KEY = "fdrd_in_collective"


@dataclass(frozen=True)
class LaunchOptions:
    """How many processes run one `fdrd bench`, and how nodes find each other."""

    gpus: int = 0  # per node, NCCL
    procs: int = 0  # per node, CPU with gloo
    nodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # host:port of a c10d rendezvous (every node gives the same)
    master_addr: str | None = None  # static rendezvous: node 0's address and a free port
    master_port: int | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    @property
    def requested(self) -> bool:
        return self.gpus > 0 or self.procs > 0

    @property
    def per_node(self) -> int:
        return self.gpus or self.procs or 1

    @property
    def backend(self) -> str | None:
        if not self.requested:
            return None
        return "nccl" if self.gpus else "gloo"


def check_launch(options: LaunchOptions, device: str = "auto") -> None:
    """Refuse, before anything starts, what cannot run here; each message says what to do instead."""
    import torch.distributed as dist

    if options.gpus < 0 or options.procs < 0:
        raise FdrdError(
            f"--gpus and --procs count processes per node; got --gpus {options.gpus} --procs {options.procs}"
        )
    if options.gpus and options.procs:
        raise FdrdError(
            "--gpus N (one process per GPU, NCCL) and --procs N (CPU processes, gloo) exclude each other; "
            "give one"
        )
    if not options.requested:
        if options.nodes != 1 or options.rdzv_endpoint or options.master_addr:
            raise FdrdError("--nodes and the rendezvous options need --gpus N or --procs N")
        return
    if not dist.is_available():
        raise FdrdError(
            "this torch build has no torch.distributed; --gpus/--procs need it (install torch from pytorch.org)"
        )
    if options.timeout <= 0:
        raise FdrdError(f"--dist-timeout must be positive seconds, got {options.timeout}")
    if options.nodes < 1 or not 0 <= options.node_rank < options.nodes:
        raise FdrdError(
            f"--node-rank {options.node_rank} must lie in 0..{options.nodes - 1} (--nodes {options.nodes})"
        )
    if options.nodes > 1 and not (options.rdzv_endpoint or options.master_addr):
        raise FdrdError(
            f"--nodes {options.nodes}: give every node the same --rdzv-endpoint HOST:PORT (or --master-addr "
            "and --master-port of node 0) so that they find each other"
        )
    if options.rdzv_endpoint and options.master_addr:
        raise FdrdError(
            "give --rdzv-endpoint (c10d rendezvous) or --master-addr/--master-port (static), not both"
        )
    if options.procs:
        if device not in ("auto", "cpu"):
            raise FdrdError(
                f"--procs {options.procs} runs CPU processes with gloo, but --device {device} asks for a GPU; "
                f"use --gpus {options.procs} for one process per GPU, or drop --device"
            )
        return
    if device not in ("auto", "cuda"):
        raise FdrdError(
            f"--gpus gives each process the GPU of its LOCAL_RANK; --device {device} contradicts it, drop it"
        )
    if not torch.cuda.is_available():
        raise FdrdError(
            f"--gpus {options.gpus}: this machine has no CUDA device (torch.cuda.is_available() is False); "
            f"use --procs {options.gpus} to run {options.gpus} CPU processes instead"
        )
    present = torch.cuda.device_count()
    if options.gpus > present:
        names = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(present))
        raise FdrdError(
            f"--gpus {options.gpus}: this machine has {present} CUDA device(s) ({names}); use --gpus {present} "
            "or fewer"
        )
    if not dist.is_nccl_available():
        raise FdrdError(
            f"--gpus {options.gpus}: this torch build has no NCCL (torch.distributed.is_nccl_available() is "
            f"False); install a CUDA build of torch with NCCL, or use --procs {options.gpus} on CPU"
        )


def under_launcher() -> bool:
    """Whether this process is a rank started by torchrun (its environment names the rank and world)."""
    return all(name in os.environ for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))


def torchrun_arguments(options: LaunchOptions, module: str, args: Sequence[str]) -> list[str]:
    """torchrun's command line for `python -m module args` on this node."""
    command = ["--nproc-per-node", str(options.per_node), "--max-restarts", "0"]
    if options.rdzv_endpoint:
        command += [
            "--nnodes",
            str(options.nodes),
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            options.rdzv_endpoint,
            "--rdzv-id",
            RDZV_ID,
        ]
    elif options.master_addr or options.master_port is not None or options.nodes > 1:
        command += [
            "--nnodes",
            str(options.nodes),
            "--node-rank",
            str(options.node_rank),
            "--rdzv-backend",
            "static",
            "--master-addr",
            options.master_addr or "127.0.0.1",
            "--master-port",
            str(options.master_port or 29500),
        ]
    else:
        command += ["--standalone"]  # one node: a rendezvous on a free local port
    return [*command, "-m", module, *args]


def relaunch(options: LaunchOptions, module: str, args: Sequence[str], device: str = "auto") -> None:
    """Run `python -m module args` as options.per_node ranks on this node; return when all succeeded, raise
    an FdrdError naming the failed rank and its error otherwise."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    check_launch(options, device)
    if "OMP_NUM_THREADS" not in os.environ:
        # torchrun would set 1; the node's cores shared among its ranks keep a CPU rank as fast as it can be.
        os.environ["OMP_NUM_THREADS"] = str(max(1, available_cpus() // options.per_node))
    try:
        run(parse_args(torchrun_arguments(options, module, args)))
    except ChildFailedError as error:
        raise FdrdError(failure_message(error.failures, options)) from None
    except Exception as error:  # rendezvous errors: a node that never came, a port in use
        if type(error).__module__.startswith("torch.distributed"):
            raise FdrdError(
                f"the processes could not start together ({type(error).__name__}: {error}); check "
                "--nodes, --node-rank and the rendezvous address on every node"
            ) from None
        raise


def failure_message(failures: dict[int, Any], options: LaunchOptions) -> str:
    """One line: which rank failed first, how, and with what error (from the file its session wrote). The
    cause is chosen before its consequences: a rank's own error, then a rank that exited or crashed without
    one, then a rank whose exchange broke or timed out waiting for a partner (its error raised inside
    torch.distributed), then a rank stopped by SIGTERM (what the agent sends when it tears the job down)."""
    import signal

    def consequence(rank: int) -> int:
        failure = failures[rank]
        if failure.exitcode == -signal.SIGTERM:
            return 3
        if failure.error_file_data.get(WAITING_KEY):
            return 2
        return 0 if failure.error_file_data else 1

    first = min(failures, key=lambda rank: (consequence(rank), failures[rank].timestamp, rank))
    failure = failures[first]
    message = failure.message if isinstance(failure.message, str) else json.dumps(failure.message)[:500]
    if failure.exitcode < 0:
        how = f"was killed by signal {failure.signal_name()} (out of memory, or killed from outside?)"
    else:
        how = f"exited with code {failure.exitcode}"
    if not failure.error_file_data or failure.error_file == "<N/A>":
        detail = " without reporting an error (see its output above)" if failure.exitcode >= 0 else ""
    else:
        detail = f": {message}"
    if failure.error_file_data.get(WAITING_KEY):
        detail += " (while waiting for the other ranks: one of them stopped or hung)"
    others = sorted(rank for rank in failures if rank != first)
    tail = (
        f"; rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} failed too" if others else ""
    )
    world = options.per_node * options.nodes
    kind = "GPU" if options.gpus else "CPU"
    return (
        f"rank {first} of {world} {kind} processes (local rank {failure.local_rank}) {how}{detail}{tail}; "
        "the job was stopped"
    )


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Session:
    """This process's place in a `fdrd bench` run (one process: rank 0 of 1, no backend)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    backend: str | None
    device: torch.device
    nodes: int

    def describe(self, workers: int) -> dict[str, Any]:
        """The results file's `distributed` field."""
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "nodes": self.nodes,
            "workers": workers,
        }


@contextlib.contextmanager
def worker_session(options: LaunchOptions, device: torch.device) -> Iterator[Session]:
    """Join the process group when launched with --gpus/--procs (else yield the single process as it is);
    record an error that ends this rank where torchrun's agent reads it; leave the group at the end."""
    if not options.requested:
        yield Session(0, 1, 0, 1, None, device, 1)
        return
    import torch.distributed as dist

    if not under_launcher():
        raise FdrdError(
            "--gpus/--procs: this process was not started by torchrun (no RANK/LOCAL_RANK/WORLD_SIZE); "
            "run `fdrd bench ... --procs N`, which starts them"
        )
    local_rank, local_world = (
        int(os.environ["LOCAL_RANK"]),
        int(os.environ.get("LOCAL_WORLD_SIZE", options.per_node)),
    )
    try:
        if options.gpus:
            if local_rank >= torch.cuda.device_count():
                raise FdrdError(
                    f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}"
                )
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        dist.init_process_group(options.backend, timeout=timedelta(seconds=options.timeout))
        yield Session(
            dist.get_rank(),
            dist.get_world_size(),
            local_rank,
            local_world,
            options.backend,
            device,
            options.nodes,
        )
        # Leave together: a rank that tore its connections down while rank 0 still wrote results was seen
        # to abort (gloo, "terminate called without an active exception") under load.
        dist.barrier()
    except BaseException as error:
        record_failure(error)
        raise
    finally:
        collectives.forget_groups()
        if dist.is_initialized():
            dist.destroy_process_group()


def record_failure(error: BaseException) -> None:
    """Write the error that ends this rank to TORCHELASTIC_ERROR_FILE (torchrun's agent reports it), marked
    when it was raised inside torch.distributed (a broken or timed-out exchange: a consequence, most often)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path or (isinstance(error, SystemExit) and not error.code):
        return
    frames = traceback.extract_tb(error.__traceback__)
    waiting = bool(frames) and f"torch{os.sep}distributed{os.sep}" in frames[-1].filename
    record = {
        "message": f"{type(error).__name__}: {error}",
        "timestamp": int(time.time()),
        WAITING_KEY: waiting,
    }
    with contextlib.suppress(OSError):
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(record, handle)


def inject_fault(step: int) -> None:
    """Fail this rank at global training step `step` when FDRD_FAULT says so (tests of a dying rank)."""
    spec = os.environ.get(FAULT_VARIABLE)
    if not spec:
        return
    try:
        rank_text, step_text, mode = spec.split(":")
        target_rank, target_step = int(rank_text), int(step_text)
    except ValueError:
        raise FdrdError(f"{FAULT_VARIABLE}={spec!r}: expected RANK:STEP:MODE, e.g. 1:2:raise") from None
    if target_rank != collectives.rank() or target_step != step:
        return
    if mode == "raise":
        raise RuntimeError(f"fault injected by {FAULT_VARIABLE} at step {step}")
    if mode == "exit":
        os._exit(3)
    if mode == "hang":
        while True:
            time.sleep(60)
    raise FdrdError(f"{FAULT_VARIABLE}={spec!r}: MODE must be raise, exit or hang")
