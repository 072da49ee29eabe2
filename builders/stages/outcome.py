"""Whether a build made something: a domain/split that was asked for and had inputs but ends with
0 rows is a failure (named with its count per reason), a split the source lists nothing for is the
one legitimate empty result (noted, not failed), and a build of 0 rows in all is always a failure."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from fdrd.errors import FdrdError

REASONS_NAMED = 3  # per failed split in the one-line error; the manifest keeps them all


class EmptyBuildError(FdrdError):
    """The build finished (shards, rejected.jsonl, manifest written) but made nothing somewhere."""

    def __init__(self, message: str, manifest: dict[str, Any]):
        super().__init__(message)
        self.manifest = manifest


_BRACKETED = re.compile(r"\s*\([^()]*\)")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_VARIABLE = re.compile(r"[/\\\d]")


def _elide(word: str) -> str:
    """A word naming a particular (path, number, id) as "…", keeping the punctuation after it."""
    if not _VARIABLE.search(word):
        return word
    return "…" + word[len(word.rstrip(";:,.")) :]


def reason_kind(reason: str) -> str:
    """A rejection reason without its particulars (file, entry number, id, path), so that reasons
    of one kind count together: "missing file (split.json: train entry 3)" -> "missing file"."""
    text = _QUOTED.sub("…", _BRACKETED.sub("", reason))
    words = [_elide(word) for word in text.split()]
    kept = [w for k, w in enumerate(words) if not (w == "…" and k and words[k - 1] == "…")]
    return " ".join(kept).replace(" :", ":").strip(" ;:,.") or reason


def expected_splits(source_name: str, splits: Iterable[str]) -> list[str]:
    """The requested splits the source can have: `pretrain` is the synthetic source's alone."""
    return [s for s in splits if s != "pretrain" or source_name == "synthetic"]


def domain_outcome(
    splits: Iterable[str], entries: Mapping[str, int], rows: Mapping[str, int], rejected: Iterable[Mapping[str, str]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """(failures, empty splits) of one domain. A failure is {"split", "entries", "reasons": {kind: n}}
    for a split with entries and no row; an empty split is one the source lists nothing for."""
    reasons: dict[str, Counter[str]] = {}
    for r in rejected:
        reasons.setdefault(r["split"], Counter())[reason_kind(r["reason"])] += 1
    failures, empty = [], []
    for split in splits:
        if not entries.get(split):
            empty.append(split)
        elif not rows.get(split):
            by_kind = reasons.get(split, Counter())
            failures.append({"split": split, "entries": entries[split], "reasons": dict(by_kind.most_common())})
    return failures, empty


def failure_message(manifest: Mapping[str, Any], out: str) -> str | None:
    """The one-line error of a build that made nothing somewhere; None when it made every split."""
    failures = manifest.get("failures", [])
    if not failures and manifest.get("rows", 0) > 0:
        return None
    parts = []
    for failure in failures:
        reasons = list(failure["reasons"].items())
        named = ", ".join(f"{n} {kind}" for kind, n in reasons[:REASONS_NAMED])
        more = f", {sum(n for _, n in reasons[REASONS_NAMED:])} other" if len(reasons) > REASONS_NAMED else ""
        parts.append(f"{failure['domain']}/{failure['split']} ({failure['entries']} inputs: {named}{more})")
    if parts:
        what = "no rows for " + "; ".join(parts)
    else:
        what = "no rows: the source lists no entries for any split asked for"
    return (
        f"the build made {what}; each input's reason is in {out}/rejected.jsonl; "
        "fix the inputs or options and rerun with --overwrite"
    )
