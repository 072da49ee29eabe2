"""Typed attribute spans in captions (colour, pattern, size, shape, pose, count, background).

The vocabulary is data (vocabulary.json next to this file, documented in docs/captions.md) and users
extend it with their own file. Matching is whole-word and case-insensitive, the longest entry wins,
and spans never overlap; every span's offsets slice the caption exactly, which
`fdrd.schema.validate_record` checks on every written row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from fdrd.errors import FdrdError
from fdrd.schema import ATTRIBUTE_TYPES
from fdrd.untrusted import read_json_file

DEFAULT_VOCABULARY = Path(__file__).with_name("vocabulary.json")
_KNOWN_KEYS = {"_about", "attributes", "domain_attributes", "synonyms", "head_nouns", "compound_heads", "roles"}
# Grammatical role of an entry when `roles` does not name it: an attribute swap keeps the role.
_DEFAULT_ROLE = {"count": "plural", "shape": "noun", "background": "noun"}


@dataclass(frozen=True)
class Vocabulary:
    """Attribute entries per type (shared and per domain), synonym groups and head nouns per domain."""

    attributes: dict[str, tuple[str, ...]]
    domain_attributes: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    synonyms: tuple[frozenset[str], ...] = ()
    head_nouns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Nouns that a head noun modifies in a compound ("cat tree", "dog bed"): there the head noun
    # names no animal, so category insertion leaves it alone and imports undo "Bengal tree".
    compound_heads: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # attribute type -> lower-cased entry -> role, for entries whose role is not the type's default.
    roles: dict[str, dict[str, str]] = field(default_factory=dict)

    def for_domain(self, domain: str) -> dict[str, tuple[str, ...]]:
        """Entries per type that apply in `domain`: the shared ones plus the domain's own."""
        cached = self._per_domain.get(domain)
        if cached is None:
            extra = self.domain_attributes.get(domain, {})
            cached = {
                kind: tuple(dict.fromkeys(self.attributes.get(kind, ()) + extra.get(kind, ())))
                for kind in ATTRIBUTE_TYPES
                if self.attributes.get(kind) or extra.get(kind)
            }
            self._per_domain[domain] = cached
        return cached

    def nouns_for(self, domain: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.head_nouns.get(domain, ()) + self.head_nouns.get("default", ())))

    def swap_pool(self, domain: str, kind: str) -> tuple[str, ...]:
        """Entries an attribute swap may write for a span of type `kind` in `domain`: the domain's own
        entries of that type when it lists any ("blooming" -> "wilting", never "jumping"), else the
        shared ones."""
        own = self.domain_attributes.get(domain, {}).get(kind)
        return own if own else self.attributes.get(kind, ())

    def role_of(self, kind: str, value: str) -> str:
        """The grammatical role of an entry: named in `roles`, else the type's default (shape and
        background nouns are plural when they end in s: "petals" is never swapped with "stem")."""
        lower = " ".join(value.lower().split())
        named = self.roles.get(kind, {}).get(lower)
        if named is not None:
            return named
        role = _DEFAULT_ROLE.get(kind, kind)
        if role == "noun" and lower.endswith("s") and not lower.endswith("ss"):
            return "plural noun"
        return role

    def compounds_for(self, domain: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.compound_heads.get(domain, ()) + self.compound_heads.get("default", ())))

    def are_synonyms(self, a: str, b: str) -> bool:
        return b.lower() in self.synonyms_of(a)

    def synonyms_of(self, value: str) -> frozenset[str]:
        """The lower-cased entries that mean the same as `value`, `value` itself included."""
        value = value.lower()
        return self._synonyms_of.get(value) or frozenset((value,))

    # Caches filled on first use (a vocabulary is read once per build and used for every record).
    @cached_property
    def _synonyms_of(self) -> dict[str, frozenset[str]]:
        table: dict[str, set[str]] = {}
        for group in self.synonyms:
            for entry in group:
                table.setdefault(entry, set()).update(group)
        return {entry: frozenset(group) for entry, group in table.items()}

    @cached_property
    def _per_domain(self) -> dict[str, dict[str, tuple[str, ...]]]:
        return {}

    @cached_property
    def _matchers(self) -> dict[str, tuple[re.Pattern[str], dict[str, str]]]:
        return {}

    def matcher(self, domain: str) -> tuple[re.Pattern[str], dict[str, str]]:
        """One regex for the domain's whole vocabulary (longest entry first) and entry -> type."""
        cached = self._matchers.get(domain)
        if cached is None:
            entry_type: dict[str, str] = {}
            for kind, entries in self.for_domain(domain).items():
                for entry in entries:
                    # The first type that lists an entry owns it (documented in docs/captions.md).
                    entry_type.setdefault(entry.lower(), kind)
            ordered = sorted(entry_type, key=lambda e: (-len(e), e))
            body = "|".join(r"\s+".join(re.escape(w) for w in e.split()) for e in ordered) or r"(?!x)x"
            cached = (re.compile(rf"(?<![^\W_])(?:{body})(?![^\W_])", re.IGNORECASE), entry_type)
            self._matchers[domain] = cached
        return cached


def _entries(data: Any, where: str) -> tuple[str, ...]:
    if not isinstance(data, list) or not all(isinstance(e, str) and e.strip() for e in data):
        raise FdrdError(f"{where}: expected a list of non-empty strings; fix the vocabulary file")
    return tuple(" ".join(e.split()) for e in data)


def _typed_entries(data: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict):
        raise FdrdError(f"{where}: expected an object of attribute type -> list of words")
    unknown = sorted(set(data) - set(ATTRIBUTE_TYPES))
    if unknown:
        raise FdrdError(
            f"{where}: unknown attribute type(s) {', '.join(unknown)}; use one of {', '.join(ATTRIBUTE_TYPES)}"
        )
    return {kind: _entries(values, f"{where}.{kind}") for kind, values in data.items()}


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FdrdError(f"{path}: vocabulary file not found; check the --vocabulary path")
    data = read_json_file(path, "fix the vocabulary file")  # NUL, deep nesting: named errors
    if not isinstance(data, dict) or set(data) - _KNOWN_KEYS:
        extra = sorted(set(data) - _KNOWN_KEYS) if isinstance(data, dict) else ["<not an object>"]
        raise FdrdError(f"{path}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(_KNOWN_KEYS))}")
    return data


def _merge(into: dict[str, tuple[str, ...]], more: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    out = dict(into)
    for key, values in more.items():
        out[key] = tuple(dict.fromkeys(out.get(key, ()) + values))
    return out


def load_vocabulary(extra_path: str | Path | None = None) -> Vocabulary:
    """The built-in vocabulary, extended by the entries of `extra_path` (same keys) when given."""
    attributes: dict[str, tuple[str, ...]] = {}
    domain_attributes: dict[str, dict[str, tuple[str, ...]]] = {}
    synonyms: list[frozenset[str]] = []
    head_nouns: dict[str, tuple[str, ...]] = {}
    compound_heads: dict[str, tuple[str, ...]] = {}
    roles: dict[str, dict[str, str]] = {}
    for path in [DEFAULT_VOCABULARY] + ([Path(extra_path)] if extra_path else []):
        data = _read(path)
        attributes = _merge(attributes, _typed_entries(data.get("attributes", {}), f"{path}: attributes"))
        per_domain = data.get("domain_attributes") or {}
        if not isinstance(per_domain, dict):
            raise FdrdError(f"{path}: domain_attributes must be an object of domain -> attribute type -> words")
        for domain, typed in per_domain.items():
            where = f"{path}: domain_attributes.{domain}"
            domain_attributes[domain] = _merge(domain_attributes.get(domain, {}), _typed_entries(typed, where))
        for i, group in enumerate(data.get("synonyms") or []):
            synonyms.append(frozenset(e.lower() for e in _entries(group, f"{path}: synonyms[{i}]")))
        nouns = data.get("head_nouns") or {}
        if not isinstance(nouns, dict):
            raise FdrdError(f"{path}: head_nouns must be an object of domain -> list of nouns")
        head_nouns = _merge(head_nouns, {d: _entries(n, f"{path}: head_nouns.{d}") for d, n in nouns.items()})
        compounds = data.get("compound_heads") or {}
        if not isinstance(compounds, dict):
            raise FdrdError(f"{path}: compound_heads must be an object of domain -> list of nouns")
        compound_heads = _merge(
            compound_heads, {d: _entries(n, f"{path}: compound_heads.{d}") for d, n in compounds.items()}
        )
        for kind, table in (data.get("roles") or {}).items():
            where = f"{path}: roles.{kind}"
            if kind not in ATTRIBUTE_TYPES or not isinstance(table, dict):
                raise FdrdError(f"{where}: expected an attribute type ({', '.join(ATTRIBUTE_TYPES)}) -> role -> entries")
            for role, entries in table.items():
                for entry in _entries(entries, f"{where}.{role}"):
                    roles.setdefault(kind, {})[entry.lower()] = role
    return Vocabulary(attributes, domain_attributes, tuple(synonyms), head_nouns, compound_heads, roles)


# Masks for protected characters: a letter that no entry contains for letters and digits (so that
# word boundaries stay where they were: "red" in "red|dish" must stay inside a word), and a
# character that is neither a word character nor a space for the rest.
_MASK_WORD = "\u01c2"
_MASK_OTHER = "\x00"


def _masked(text: str, protected: list[tuple[int, int]]) -> str:
    """`text` with protected spans blanked out (same length, so offsets stay valid)."""
    chars = list(text)
    for start, end in protected:
        for i in range(max(0, start), min(len(chars), end)):
            chars[i] = _MASK_WORD if chars[i].isalnum() else _MASK_OTHER
    return "".join(chars)


def extract_attributes(
    caption: str,
    vocabulary: Vocabulary,
    domain: str = "",
    protected: list[tuple[int, int]] | None = None,
) -> list[dict[str, Any]]:
    """Attribute spans of `caption` as schema rows (name, value, char_start, char_end), left to right.

    `protected` spans (the category name: "Russian Blue" is a breed, not a colour) are never part
    of an attribute.
    """
    pattern, entry_type = vocabulary.matcher(domain)
    text = _masked(caption, protected or [])
    spans = []
    for match in pattern.finditer(text):
        value = match.group(0)
        kind = entry_type[" ".join(value.lower().split())]
        spans.append({"name": kind, "value": caption[match.start() : match.end()], "char_start": match.start(),
                      "char_end": match.end()})
    return spans
