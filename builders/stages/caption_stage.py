"""Caption stage: one call of builders.captions.stage.annotate per domain (it matches released
records and spots ambiguous file names across all items of a domain); the result is staged in
ann.json, so an interrupted build redoes the call, cheaply, from the stage's cache only when missing.

The stage runs for every captioner, `none` included (it then writes no caption, rejects items
without one and completes attributes and negatives of captions the source gave). A row without
caption text is not an FDRD row: whatever still has none afterwards is rejected here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress

from builders.report import RejectedInput
from builders.stages.options import STAGING, BuildOptions, CaptionSettings
from builders.stages.staged import Staged, StagedImages
from fdrd.errors import FdrdError
from fdrd.manifest import read_json, write_json_atomic

EMPTY_CAPTION = (
    "empty caption: the source gave an empty one and --captioner {captioner} wrote none "
    "(rows need caption text; --captioner template writes category captions without a VLM)"
)


@dataclass
class CaptionOutcome:
    """What the caption stage tells the manifest about one domain."""

    report: dict[str, int] = field(default_factory=dict)
    captioner: dict[str, Any] = field(default_factory=dict)
    rejections: list[RejectedInput] = field(default_factory=list)  # released records with no source item


def load_caption_stage(settings: CaptionSettings, seed: int, data_root: Path | None):
    """(annotate, CaptionOptions instance) from builders.captions.stage, imported only when used."""
    try:
        from builders.captions.stage import CaptionOptions, annotate
    except ImportError as error:
        raise FdrdError(
            f"the caption stage (builders.captions.stage) cannot be imported ({error}); "
            "reinstall fdrd (pip install -e .) and rerun"
        ) from error
    # Unset options keep the stage's own defaults (its default model, prompt, batch size).
    given = {
        "captioner": settings.captioner,
        "captions_path": settings.captions_path,
        "model": settings.model,
        "prompt": settings.prompt,
        "trust_remote_code": settings.trust_remote_code,
        "gpus": settings.gpus,
        "batch_size": settings.batch_size,
        "negatives": settings.negatives,
        "seed": seed,
        "data_root": str(data_root) if data_root is not None else None,
    }
    options = CaptionOptions(**{k: v for k, v in given.items() if v is not None})
    return annotate, options


def annotate_domain(
    domain: str,
    staged: list[Staged],
    stage_dir: Path,
    source: Any,
    options: BuildOptions,
    progress: Progress,
    task: Any,
) -> CaptionOutcome:
    """Fill captions, attributes and negatives of the staged items still alive; an item the
    captioner refuses gets its reason (stage "captions")."""
    settings = options.captions
    members = [entry for entry in staged if entry.reason is None]
    path = stage_dir / "ann.json"
    progress.update(task, description=f"{domain}: captions", total=len(members), completed=0)
    if not path.is_file():
        annotate, caption_options = load_caption_stage(settings, options.seed, options.data_root)
        cache_dir = options.caption_cache_dir or options.out / STAGING / "caption-cache"
        cache_dir.mkdir(parents=True, exist_ok=True)
        result = annotate(
            [m.item for m in members],
            StagedImages(stage_dir, members),
            [m.sha256 for m in members],
            source.taxonomy(domain),
            caption_options,
            cache_dir,
        )
        write_json_atomic(
            path,
            {
                # Per-record facts of released caption files come once per domain (see AnnotationResult).
                "report": {**result.report, **result.record_report},
                "captioner": result.captioner,
                "rejected": {str(k): v for k, v in result.rejected.items()},
                "record_rejections": [
                    RejectedInput(r.domain, r.split, r.original, r.reason, "captions").to_json()
                    for r in result.record_rejections
                ],
                "annotations": [
                    {"caption": m.item.caption, "attributes": m.item.attributes, "negatives": m.item.negatives}
                    for m in members
                ],
            },
        )
    saved = read_json(path)
    for k, member in enumerate(members):
        annotation = saved["annotations"][k]
        member.item.caption = annotation["caption"]
        member.item.attributes = annotation["attributes"]
        member.item.negatives = annotation["negatives"]
        if str(k) in saved["rejected"]:
            member.reason, member.stage = saved["rejected"][str(k)], "captions"
        elif not (member.item.caption or "").strip():
            member.reason, member.stage = EMPTY_CAPTION.format(captioner=settings.captioner), "captions"
    progress.update(task, completed=len(members))
    return CaptionOutcome(
        saved["report"], saved["captioner"], [RejectedInput(**r) for r in saved["record_rejections"]]
    )
