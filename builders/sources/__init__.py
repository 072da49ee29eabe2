"""One module per image source; each yields `SourceItem`s or `Rejection`s (see base.py).

`resolve_source` is the one door the pipeline and the command line use: it picks the source from a
name (or from what the data root looks like) and checks the data root and domain names up front, so
that a typo fails at once with the list of known names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builders.sources.protocol import Source
from fdrd.errors import FdrdError
from fdrd.schema import COOP_DOMAINS, SPLITS

SOURCE_NAMES = ("auto", "synthetic", "coop", "imagefolder", "urls")


def looks_like_coop_root(data_root: Path) -> bool:
    """True when `data_root` holds at least one CoOp domain folder (oxford_pets/, dtd/, ...)."""
    return any((data_root / domain).is_dir() for domain in COOP_DOMAINS)


def resolve_source(
    name: str = "auto",
    data_root: str | Path | None = None,
    *,
    domains: Sequence[str] | None = None,
    seed: int = 0,
    per_category: int | None = None,
    meta_encoder: str | None = None,
    **options: Any,
) -> Source:
    """The source called `name` over `data_root`, restricted to `domains` when given.

    "auto": synthetic without a data root; CoOp when the data root holds CoOp domain folders; an
    image folder otherwise. `seed` and `per_category` matter to the synthetic source only,
    `meta_encoder` (a CLIP text encoder grouping classes by meaning) to image folders and URL lists.
    """
    if name not in SOURCE_NAMES:
        raise FdrdError(f"unknown source {name!r}; known sources: {', '.join(SOURCE_NAMES)}")
    root = Path(data_root).expanduser() if data_root is not None else None
    if root is not None and name != "synthetic" and not root.exists():
        raise FdrdError(f"data root {root} does not exist; pass an existing folder with --data-root")
    if name == "auto":
        if root is None:
            name = "synthetic"
        elif root.is_dir() and looks_like_coop_root(root):
            name = "coop"
        else:
            name = "imagefolder"
    domain_list = list(domains) if domains is not None else None
    encoder = {"meta_encoder": meta_encoder} if meta_encoder else {}
    if name == "synthetic":
        from builders.sources.synthetic import SyntheticSource

        return SyntheticSource(domains=domain_list, seed=seed, per_category=per_category, **options)
    if root is None:
        raise FdrdError(f"source {name!r} needs a data root; pass one with --data-root")
    if name == "coop":
        from builders.sources.coop import CoopSource

        return CoopSource(root, domains=domain_list, **options)
    if name == "imagefolder":
        from builders.sources.imagefolder import ImageFolderSource

        return ImageFolderSource(root, domains=domain_list, **encoder, **options)
    from builders.sources.urls import UrlSource  # written by the crawler's owner

    return UrlSource(root, domains=domain_list, **encoder, **options)


def check_domains(requested: Sequence[str] | None, known: Sequence[str], where: str) -> list[str]:
    """`requested` in the order given (all of `known` when None); FdrdError naming the known ones
    when a name is not among them."""
    if requested is None:
        return list(known)
    unknown = [d for d in requested if d not in known]
    if unknown:
        raise FdrdError(
            f"unknown domain {', '.join(map(repr, unknown))} in {where}; known domains: {', '.join(known) or 'none'}"
        )
    return list(dict.fromkeys(requested))


def check_splits(requested: Sequence[str]) -> list[str]:
    """`requested` in the order given, without repeats; FdrdError naming the known splits
    (fdrd.schema.SPLITS) when one is not among them."""
    unknown = [s for s in requested if s not in SPLITS]
    if unknown:
        raise FdrdError(f"unknown split {', '.join(map(repr, unknown))}; known splits: {', '.join(SPLITS)}")
    return list(dict.fromkeys(requested))


__all__ = ["Source", "resolve_source", "check_domains", "check_splits", "looks_like_coop_root", "SOURCE_NAMES"]
