"""`fdrd bench`: train (if the method trains) and evaluate a method, a named variant or (--ablations) every
variant of a family, per domain and seed; write one results file each under the run label, and print
per-domain and AVG recall with 95% intervals. The work happens in benchmark/bench.py; with --gpus N or
--procs N the command runs itself again under torchrun (benchmark/distributed.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from fdrd.errors import FdrdError

DISTRIBUTED = "Several processes"


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise FdrdError(f"--seeds {text!r}: expected comma-separated integers, e.g. --seeds 1,2,3") from None
    if not seeds:
        raise FdrdError("--seeds: give at least one seed, e.g. --seeds 1,2,3")
    if len(set(seeds)) != len(seeds):
        raise FdrdError(f"--seeds {text!r}: a seed is listed twice")
    return seeds


def parse_domains(text: str | None) -> list[str] | None:
    if text is None:
        return None
    domains = [part.strip() for part in text.split(",") if part.strip()]
    if not domains:
        raise FdrdError("--domains: give at least one domain name, or leave the option out for all")
    return domains


def command_line(context: typer.Context) -> list[str]:
    """The command as given, rebuilt from its parsed parameters: what every rank runs under torchrun."""
    args = [context.info_name or "bench"]
    for param in context.command.params:
        value = context.params.get(param.name)
        if param.param_type_name == "argument":
            args.append(str(value))
            continue
        if value is None or value == param.default or (param.multiple and not value):
            continue
        flag = param.opts[0]
        if getattr(param, "is_flag", False):
            args += [flag] if value else []
            continue
        for item in value if param.multiple else [value]:
            args += [flag, str(item)]
    return args


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        context: typer.Context,
        method: str = typer.Argument(
            ..., help="Method or named variant (zeroshot, coop, clip_adapter, maple, dcar, dcar-novisual, ...)."
        ),
        data: Path = typer.Option(..., "--data", help="A dataset directory written by `fdrd build`."),
        domains: str = typer.Option(None, "--domains", help="Comma-separated domains; default: all of them."),
        model: str = typer.Option(
            None, "--model", help="CLIP checkpoint: Hub id or local folder (default: openai/clip-vit-base-patch32, the paper's)."
        ),
        shots: int = typer.Option(16, "--shots", help="Training records per category; 0 takes every record."),
        seeds: str = typer.Option("1,2,3", "--seeds", help="Comma-separated seeds; one results file each."),
        set_: list[str] = typer.Option(None, "--set", help="Override a config field: --set lr=0.01 (repeatable)."),
        preset: str = typer.Option(None, "--preset", help="A named preset of the method, e.g. quick (short schedules)."),
        label: str = typer.Option(
            None, "--label", help="Name this configuration (keys its results); default: variant/method, +preset, +hash of --set."
        ),
        ablations: bool = typer.Option(
            False, "--ablations", help="Run every named variant of METHOD's family, each its own run label."
        ),
        recall_backend: str = typer.Option(
            "auto", "--recall-backend", help="Recall@K backend: auto, torch or triton (recorded in every results file)."
        ),
        out: Path = typer.Option(Path("runs"), "--out", help="Where results files and checkpoints go."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
        resume: bool = typer.Option(False, "--resume", help="Continue training from the last checkpoints."),
        allow_fewer_shots: bool = typer.Option(
            False, "--allow-fewer-shots", help="Take all records of categories that have fewer than --shots."
        ),
        feature_cache: Path = typer.Option(
            None, "--feature-cache", help="Folder to keep frozen image features in between runs."
        ),
        eval_batch_size: int = typer.Option(256, "--eval-batch-size", help="Batch size for encoding splits."),
        workers: int = typer.Option(
            None, "--workers", help="Loader processes per rank that decode and augment images; 0: the main process "
            "(default: on a GPU the rank's CPUs minus one, at most 8; on CPU 0, the model already uses every core)."
        ),
        gpus: int = typer.Option(0, "--gpus", help="Run on N GPUs of this node: one process each, NCCL.",
                                 rich_help_panel=DISTRIBUTED),
        procs: int = typer.Option(0, "--procs", help="Run as N CPU processes on this node, gloo.",
                                  rich_help_panel=DISTRIBUTED),
        nodes: int = typer.Option(1, "--nodes", help="Nodes taking part (each runs the same command).",
                                  rich_help_panel=DISTRIBUTED),
        node_rank: int = typer.Option(0, "--node-rank", help="This node's index, 0..nodes-1 (static rendezvous).",
                                      rich_help_panel=DISTRIBUTED),
        rdzv_endpoint: str = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT of a c10d rendezvous every node "
                                          "reaches.", rich_help_panel=DISTRIBUTED),
        master_addr: str = typer.Option(None, "--master-addr", help="Node 0's address (static rendezvous).",
                                        rich_help_panel=DISTRIBUTED),
        master_port: int = typer.Option(None, "--master-port", help="A free port on node 0 (static rendezvous).",
                                        rich_help_panel=DISTRIBUTED),
        dist_timeout: float = typer.Option(
            None, "--dist-timeout", help="Seconds a process waits for the others in one exchange before failing "
            "(default: 900).", rich_help_panel=DISTRIBUTED,
        ),
    ) -> None:
        """Train and evaluate METHOD on FDRD; write one results JSON per (run label, domain, seed)."""
        from benchmark.bench import BenchOptions, run_bench
        from benchmark.distributed import LaunchOptions, relaunch, under_launcher
        from benchmark.methods.base import parse_set_options
        from benchmark.results import summary_table

        if shots < 0:
            raise FdrdError(f"--shots must be 0 (every record) or positive, got {shots}")
        launch = LaunchOptions(
            gpus=gpus, procs=procs, nodes=nodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint,
            master_addr=master_addr, master_port=master_port,
            **({"timeout": dist_timeout} if dist_timeout is not None else {}),
        )
        if launch.requested and not under_launcher():
            # Parse everything first, so that a typo fails here once rather than in every rank.
            parse_seeds(seeds)
            parse_domains(domains)
            parse_set_options(set_)
            relaunch(launch, "fdrd.cli", command_line(context), device=device)
            return
        console = Console(stderr=True)
        options = BenchOptions(
            method=method,
            data=data,
            domains=parse_domains(domains),
            **({"model": model} if model else {}),
            shots=shots or None,
            seeds=parse_seeds(seeds),
            overrides=parse_set_options(set_),
            preset=preset,
            label=label,
            ablations=ablations,
            recall_backend=recall_backend,
            out=out,
            device=device,
            resume=resume,
            allow_fewer_shots=allow_fewer_shots,
            feature_cache_dir=feature_cache,
            eval_batch_size=eval_batch_size,
            workers=workers,
            launch=launch,
        )
        results = run_bench(options, console=console)
        if not results:  # a rank other than 0: rank 0 prints the table
            return
        table_console = Console()
        if not table_console.is_terminal:
            table_console = Console(width=200)  # piped to a file: the whole table, never squeezed to 80 columns
        table_console.print(summary_table(results))
