"""Run by tests/benchmark/test_distributed.py under torchrun with 2 CPU ranks (gloo): each rank does its part
of several distributed computations and rank 0 writes what they gave to OUT; the test compares it with one
process. Usage: python -m torch.distributed.run --standalone --nproc-per-node 2 gloo_checks.py DATA MODEL OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from benchmark import collectives
from benchmark.backbone import ClipBackbone
from benchmark.data import SplitBatches, available_domains, load_split
from benchmark.distributed import LaunchOptions, worker_session
from benchmark.evaluation import encode_split, encode_texts_once, split_ranks
from benchmark.feature_cache import FeatureCache
from benchmark.methods.base import Method, MethodConfig, resolve_run
from benchmark.train import seed_everything, train

CPU = torch.device("cpu")
# Global batches of the gradient check: 9 records (5 + 4 over two ranks) and 1 (rank 1 idle).
GRADIENT_BATCHES = {"nine": [0, 2, 3, 5, 8, 11, 13, 17, 20], "one": [4]}
KEY = "7:0"


def planted_tables(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised random embeddings with copies planted across 8-row blocks, several captions per image."""
    generator = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(61, 12, generator=generator), dim=1)
    owners = torch.cat([torch.arange(61), torch.randint(0, 61, (19,), generator=generator)])
    texts = F.normalize(images[owners] + 0.7 * torch.randn(len(owners), 12, generator=generator), dim=1)
    images[40] = images[3]
    texts[70] = texts[1]
    return images, texts, owners


class IdSpy(Method):
    """A linear map over cached frozen features that records the ids of every batch its loss sees."""

    name = "id-spy"
    frozen_prompt_free_images = True

    def __init__(self, backbone, config):
        super().__init__(backbone, config)
        self.mix = nn.Parameter(torch.eye(backbone.embed_dim))
        self.seen: list[list[str]] = []

    def images_from_features(self, features):
        return F.normalize(features @ self.mix, dim=-1)

    def loss(self, batch):
        self.seen.append(list(batch["ids"]))
        return super().loss(batch)


def spy_config() -> MethodConfig:
    return MethodConfig(epochs=2, batch_size=7, optimizer="adamw", lr=0.01, warmup_epochs=0, weight_decay=0.0)


def gradients(method, batches: SplitBatches, rows: list[int]) -> tuple[dict[str, torch.Tensor], float]:
    """This rank's part of one step on the global batch `rows`, then the gradients summed over ranks."""
    ranks, me = collectives.world_size(), collectives.rank()
    collectives.prepare_step_groups({len(rows)})
    method.train()
    parameters = method.trainable_parameters()
    for parameter in parameters:
        parameter.grad = None
    mine = collectives.shard_rows(rows, me, ranks)
    share = torch.zeros(())
    if mine:
        batch = batches.to_device(batches.cpu_batch(mine, KEY, batches.captions.longest(rows)), CPU)
        with collectives.step_group(min(ranks, len(rows))):
            losses = method.loss(batch)
            losses["loss"].backward()
        share = losses["loss"].detach()
    loss = collectives.sum_gradients(parameters, {"loss": share})["loss"]
    named = {id(p): name for name, p in method.named_parameters()}
    return {named[id(p)]: p.grad.clone() for p in parameters if p.grad is not None}, loss


def main(data: Path, model: Path, out: Path) -> None:
    with worker_session(LaunchOptions(procs=2), CPU):
        backbone = ClipBackbone.from_pretrained(model)
        domain = available_domains(data)[0]
        train_split, test_split = load_split(data, domain, "train"), load_split(data, domain, "test")
        tensors: dict[str, torch.Tensor] = {}
        facts: dict[str, object] = {}

        # Ranking split by row blocks.
        images, texts, owners = planted_tables(5)
        tensors["i2t"], tensors["t2i"] = split_ranks(
            images, texts, owners, device=CPU, backend="torch", block_size=8
        )

        # Gradients of one global batch, for CoOp and DCAR (negatives, teacher, head, augmentation).
        for name, overrides in (("coop", {"n_ctx": 2}), ("dcar", {})):
            spec = resolve_run(name, overrides)
            seed_everything(0)
            method = spec.method_cls(backbone, spec.config)
            batches = SplitBatches(train_split, method, training=True)
            batches.prepare(CPU)
            for label, rows in GRADIENT_BATCHES.items():
                grads, loss = gradients(method, batches, rows)
                facts[f"{name}-{label}-loss"] = loss
                tensors.update({f"{name}-{label}-{key}": value for key, value in grads.items()})

        # The trainer's batches, from sharded cached features; the spy sees this rank's records.
        seed_everything(3)
        spy = IdSpy(backbone, spy_config())
        features = FeatureCache().features(spy, train_split, device=CPU, batch_size=5, precision="fp32")
        tensors["cached-features"] = features
        report = train(spy, SplitBatches(train_split, spy, features), seed=3, device=CPU)
        seen: list[object] = [None] * collectives.world_size()
        torch.distributed.all_gather_object(seen, spy.seen)
        facts["seen"] = seen
        facts["spy-losses"] = report.loss_per_epoch
        tensors["spy-mix"] = spy.mix.detach().clone()

        # Evaluation encoding and the hard negatives' texts, in batches of 5 dealt round robin.
        zeroshot = resolve_run("zeroshot")
        method = zeroshot.method_cls(backbone, zeroshot.config)
        tensors["encoded-images"], tensors["encoded-texts"] = encode_split(
            method, SplitBatches(test_split, method), device=CPU, batch_size=5
        )
        tensors["negative-texts"] = encode_texts_once(
            method, list(test_split["caption"]), device=CPU, batch_size=5
        )

        if collectives.is_main():
            save_file(
                {key: value.contiguous() for key, value in tensors.items()}, str(out / "tensors.safetensors")
            )
            (out / "facts.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
