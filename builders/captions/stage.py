"""The caption stage of a build: fills caption, attributes and negatives of source items.

`annotate` is what builders/pipeline.py calls once per domain, after normalization. It only fills
what is missing (None): a caption the source already has is kept, attributes are extracted from the
caption, negatives are made from caption + attributes + taxonomy. Captioners:

- template:  from structured labels in item.extra["attributes"] (builders/captions/template.py);
             items without labels (CoOp) get a category caption and category-swap negatives only
- vlm:       a vision-language model (builders/captions/vlm.py), then the category name is inserted
- fdrd-json: the released FDRD caption files (builders/captions/fdrd_json.py), defects repaired
- none:      no captioning; items without a caption are rejected
- auto:      template when items carry extra["attributes"], fdrd-json when captions_path is set,
             else vlm
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.captions.attributes import Vocabulary, load_vocabulary
from builders.captions.insert import find_name
from builders.captions.negatives import make_negatives, record_rng, swap_candidates
from builders.captions.repair import Unrepairable, clean_caption, domain_checker
from builders.captions.vlm import DEFAULT_PROMPT as DEFAULT_VLM_PROMPT  # cheap: torch loads on use
from builders.captions.vlm import DEFAULT_VLM_MODEL
from builders.sources.base import Rejection, SourceItem
from builders.taxonomy import Taxonomy
from fdrd.errors import FdrdError
from fdrd.schema import record_id

CAPTIONERS = ("auto", "none", "template", "vlm", "fdrd-json")
CAPTION_CACHE_FILE = "captions.sqlite"


@dataclass
class CaptionOptions:
    captioner: str = "auto"  # auto | none | template | vlm | fdrd-json
    captions_path: str | None = None  # fdrd-json: a released-format file or a folder of them
    model: str = DEFAULT_VLM_MODEL  # vlm: Hub id or local folder
    prompt: str = DEFAULT_VLM_PROMPT  # vlm: asks for attributes of object and scene, not the category
    trust_remote_code: bool = False  # vlm: run code shipped with the model only when asked
    gpus: int = 0  # vlm: one captioning process per GPU; 0 = one process on the default device
    batch_size: int = 8  # vlm: images per generate() call
    negatives: int = 4  # negatives per record, half category swaps, half attribute swaps
    seed: int = 0  # negatives and template sentence forms derive from it and the record id
    data_root: str | None = None  # fdrd-json: where the images are (paths must stay inside)
    vocabulary: str | None = None  # extra attribute vocabulary file, added to vocabulary.json
    max_new_tokens: int = 60  # vlm: caption length cap in tokens


@dataclass
class AnnotationResult:
    report: dict[str, int]  # counts merged into the manifest (captioned, cache_hits, repaired_records, ...)
    rejected: dict[int, str]  # item index -> reason (goes to rejected.jsonl)
    # fdrd-json only. Facts about the released records themselves rather than about these items:
    # records refused outright (path outside the data root; they have no item) and record counts.
    # They depend only on the captions files, the domain and the data root, so every call for one
    # domain returns the same ones: keep one copy per domain, do not add them up across calls.
    record_rejections: list[Rejection] = field(default_factory=list)
    record_report: dict[str, int] = field(default_factory=dict)
    # What wrote the captions, for the manifest: {"name": captioner} plus, for vlm, the model's
    # provenance (id, revision, commit, architecture, trust_remote_code, prompt key).
    captioner: dict[str, Any] = field(default_factory=dict)


def resolve_captioner(items: list[SourceItem], options: CaptionOptions) -> str:
    if options.captioner not in CAPTIONERS:
        raise FdrdError(f"unknown captioner {options.captioner!r}; use one of {', '.join(CAPTIONERS)}")
    if options.captioner != "auto":
        return options.captioner
    if any(item.caption is None and "attributes" in item.extra for item in items):
        return "template"
    if options.captions_path:
        return "fdrd-json"
    return "vlm"


def annotate(
    items: list[SourceItem],
    image_bytes: list[bytes],
    image_sha256: list[str],
    taxonomy: Taxonomy,
    options: CaptionOptions,
    cache_dir: Path,
) -> AnnotationResult:
    """Fill item.caption / item.attributes / item.negatives where None, in place."""
    if not (len(items) == len(image_bytes) == len(image_sha256)):
        raise FdrdError("caption stage: items, image bytes and hashes differ in length (a pipeline bug)")
    if options.negatives < 0:
        raise FdrdError(f"--negatives must be at least 0, got {options.negatives}")
    for item in items:
        if item.domain != taxonomy.domain:
            raise FdrdError(f"caption stage: item {item.original} is in {item.domain}, not {taxonomy.domain}")
    vocabulary = load_vocabulary(options.vocabulary)
    report: Counter[str] = Counter()
    rejected: dict[int, str] = {}
    kept_negatives: dict[int, list[dict[str, Any]]] = {}
    record_rejections: list[Rejection] = []
    record_report: dict[str, int] = {}
    captioner = resolve_captioner(items, options)
    todo = [i for i, item in enumerate(items) if item.caption is None]
    report["captions_from_source"] = len(items) - len(todo)
    provenance: dict[str, Any] = {"name": captioner}

    if captioner == "template":
        _template_captions(items, todo, taxonomy, options, report, rejected)
    elif captioner == "vlm":
        provenance.update(
            _vlm_captions(items, todo, image_bytes, image_sha256, taxonomy, vocabulary, options, cache_dir, report,
                          rejected)
        )
    elif captioner == "fdrd-json":
        record_report, record_rejections = _released_captions(
            items, todo, taxonomy, vocabulary, options, report, rejected, kept_negatives
        )
    for i in todo:
        if items[i].caption is None and i not in rejected:
            rejected[i] = (
                f"no caption: captioner {captioner!r} made none and the source gave none"
                + ("; --captioner template writes category captions without a VLM" if captioner == "none" else "")
            )

    _attributes_and_negatives(items, taxonomy, vocabulary, options, report, rejected, kept_negatives)
    report["rejected_by_caption_stage"] = len(rejected)
    return AnnotationResult(
        {k: int(v) for k, v in sorted(report.items())}, rejected, record_rejections, record_report, provenance
    )


def _template_captions(
    items: list[SourceItem], todo: list[int], taxonomy: Taxonomy, options: CaptionOptions, report: Counter[str],
    rejected: dict[int, str],
) -> None:
    from builders.captions.template import category_caption, template_caption

    for i in todo:
        item = items[i]
        key = record_id(item.domain, item.original)
        labels = item.extra.get("attributes")
        if labels is None:
            # Nothing known beyond the class: a category caption, no attribute invented.
            item.caption = category_caption(
                taxonomy.domain, item.category, item.meta_category, taxonomy.categories, key, options.seed
            )
            if item.attributes is None:
                item.attributes = []
            report["captioned_category_template"] += 1
            continue
        if not isinstance(labels, dict):
            rejected[i] = f"template captioner: extra['attributes'] is a {type(labels).__name__}, not {{type: value}}"
            continue
        caption, spans = template_caption(item.category, labels, key, options.seed)
        item.caption = caption
        if item.attributes is None:
            item.attributes = spans
        report["captioned_template"] += 1


def _vlm_captions(
    items: list[SourceItem], todo: list[int], image_bytes: list[bytes], image_sha256: list[str],
    taxonomy: Taxonomy, vocabulary: Vocabulary, options: CaptionOptions, cache_dir: Path, report: Counter[str],
    rejected: dict[int, str],
) -> dict[str, Any]:
    """Caption `todo` with the VLM; returns the model's provenance for the manifest ({} when
    nothing needed a caption, so no model is touched)."""
    if not todo:
        return {}
    from builders.captions.cache import CaptionCache
    from builders.captions.vlm import VLMOptions, caption_images, model_provenance

    vlm_options = VLMOptions(
        model=options.model,
        prompt=options.prompt,
        trust_remote_code=options.trust_remote_code,
        batch_size=options.batch_size,
        procs=max(1, options.gpus),
        # "auto" puts process i on cuda:i when GPUs exist and on the CPU otherwise, so `--gpus N`
        # still shards the work on a machine without GPUs instead of failing.
        device="auto",
        max_new_tokens=options.max_new_tokens,
    )
    vlm_options.validate()
    cache_path = Path(cache_dir) / CAPTION_CACHE_FILE
    images = [(image_sha256[i], image_bytes[i]) for i in todo]
    with CaptionCache(cache_path, vlm_options.cache_model_key(), vlm_options.cache_prompt_key()) as cache:
        report["cache_hits"] = len(cache.get_many({sha for sha, _ in images}))
    raw = caption_images(images, vlm_options, cache_path)
    checker = domain_checker(taxonomy.domain, taxonomy.categories, vocabulary)
    nouns, compounds = vocabulary.nouns_for(taxonomy.domain), vocabulary.compounds_for(taxonomy.domain)
    for i in todo:
        caption = " ".join(raw.get(image_sha256[i], "").split())
        if not caption:
            continue  # an empty caption is rejected by the caller: nothing to describe the image with
        caption = caption[0].upper() + caption[1:]  # small models often start in lower case
        item = items[i]
        try:
            repair = clean_caption(caption, item.category, taxonomy, checker, nouns, compounds)
        except Unrepairable as reason:
            rejected[i] = f"VLM caption {caption!r} cannot be made to read as English: {reason}"
            report["captions_not_english"] += 1
            continue
        item.caption = repair.caption
        report.update(repair.notes)
        report["captioned_vlm"] += 1
    return {"model_provenance": model_provenance(vlm_options)}


def _released_captions(
    items: list[SourceItem], todo: list[int], taxonomy: Taxonomy, vocabulary: Vocabulary,
    options: CaptionOptions, report: Counter[str], rejected: dict[int, str],
    kept_negatives: dict[int, list[dict[str, Any]]],
) -> tuple[dict[str, int], list[Rejection]]:
    from builders.captions.fdrd_json import (
        load_released,
        match_records,
        record_level_report,
        sound_released_negatives,
    )

    if not options.captions_path:
        raise FdrdError("captioner fdrd-json needs --captions FILE_OR_DIR (released FDRD caption files)")
    records = load_released(options.captions_path)
    data_root = Path(options.data_root) if options.data_root else None
    record_report, refused = record_level_report(records, taxonomy.domain, data_root)
    match = match_records(records, [items[i].original for i in todo], [taxonomy.domain], data_root)
    # A second record for an item already matched, or a file name shared by several items, would
    # give an image someone else's caption: such records are not used.
    report["duplicate_records"] += len(match.duplicates)
    report["ambiguous_records"] += len(match.ambiguous)
    nouns = vocabulary.nouns_for(taxonomy.domain)
    compounds = vocabulary.compounds_for(taxonomy.domain)
    checker = domain_checker(taxonomy.domain, taxonomy.categories, vocabulary)
    quota = options.negatives - options.negatives // 2
    for position, record in match.matches.items():
        i = todo[position]
        item = items[i]
        positive = " ".join(record.positive.split())
        if not positive:
            rejected[i] = f"{record.source_file}: record {record.key!r} has an empty positive caption"
            continue
        try:
            # Undoes the released substitutions, then makes the caption read as English and name its
            # class; articles before the name are fixed too (the released text says "A Abyssinian").
            repair = clean_caption(positive, item.category, taxonomy, checker, nouns, compounds, released=True)
        except Unrepairable as reason:
            rejected[i] = f"{record.source_file}: record {record.key!r}: the positive cannot be made English: {reason}"
            report["captions_not_english"] += 1
            continue
        caption = repair.caption
        report.update(repair.notes)
        item.caption = caption
        report["imported"] += 1
        if item.negatives is None:
            kept, defective = sound_released_negatives(
                caption, item.category, record.negatives, swap_candidates(item.category, taxonomy)
            )
            # Sound released negatives fill the category view; attribute swaps are always ours.
            kept_negatives[i] = kept[:quota]
            report["released_negatives_kept"] += len(kept_negatives[i])
            report["released_negatives_replaced"] += defective
            report["repaired_records"] += int(defective > 0)
    for i in todo:
        if items[i].caption is None and i not in rejected:
            rejected[i] = f"no caption record for {items[i].original} in {options.captions_path}"
            report["items_without_caption_record"] += 1
    return record_report, [
        Rejection(taxonomy.domain, "", record.file_path, f"{record.source_file}: record {record.key!r}: {reason}")
        for record, reason in refused
    ]


def _attributes_and_negatives(
    items: list[SourceItem], taxonomy: Taxonomy, vocabulary: Vocabulary, options: CaptionOptions,
    report: Counter[str], rejected: dict[int, str], kept_negatives: dict[int, list[dict[str, Any]]],
) -> None:
    from builders.captions.attributes import extract_attributes

    for i, item in enumerate(items):
        if i in rejected or item.caption is None:
            continue
        if item.attributes is None:
            protected = find_name(item.caption, item.category)
            item.attributes = extract_attributes(item.caption, vocabulary, taxonomy.domain, protected)
            report["attributes_extracted"] += 1
        report["records_with_attributes"] += int(bool(item.attributes))
        report["attribute_spans"] += len(item.attributes)
        if item.negatives is not None:
            continue
        made = make_negatives(
            item.caption, item.category, item.attributes, taxonomy, vocabulary, options.negatives,
            record_rng(options.seed, record_id(item.domain, item.original)), keep=kept_negatives.get(i),
        )
        if options.negatives > 0 and not made.negatives:
            rejected[i] = (
                "no negative could be made: the caption names no swappable category and has no attribute "
                "from the vocabulary (extend it with --vocabulary)"
            )
            continue
        item.negatives = made.negatives
        report.update(made.notes)
        report["negatives_made"] += len(made.negatives)
