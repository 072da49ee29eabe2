"""The caption cache: one sqlite file mapping (image sha256, model, prompt key) -> caption.

Captioning is the most expensive build step, so every caption is stored as soon as its batch is done
and is never computed twice: a rerun, a resumed build or another shard process reads it back.
sqlite in WAL mode lets several processes (one per GPU) write the same file safely; each write is
one short transaction, and a busy timeout makes concurrent writers wait instead of failing.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from fdrd.errors import FdrdError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS captions (
    sha256 TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_key TEXT NOT NULL,
    caption TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (sha256, model, prompt_key)
)
"""
# sqlite limits the number of bound parameters per statement; look-ups go in chunks below it.
_LOOKUP_CHUNK = 500
_BUSY_TIMEOUT_S = 60.0


def prompt_key(prompt: str, **generation_settings: object) -> str:
    """Hash of the prompt plus every setting that changes the generated text (e.g. max_new_tokens),
    so that a changed prompt or setting never returns a stale caption."""
    settings = "".join(f"\x00{name}={generation_settings[name]!r}" for name in sorted(generation_settings))
    return hashlib.sha256((prompt + settings).encode()).hexdigest()


class CaptionCache:
    """Captions of one (model, prompt key) pair in a shared sqlite file. Use as a context manager."""

    def __init__(self, path: str | Path, model: str, prompt_key: str):
        self.path = Path(path)
        self.model = model
        self.prompt_key = prompt_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = None
        try:
            self._db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as error:
            if self._db is not None:  # the error's traceback keeps `self` alive: not the open file too
                self._db.close()
            raise FdrdError(
                f"{self.path}: not a usable caption cache ({error}); delete it to recaption from scratch"
            ) from error

    def __enter__(self) -> CaptionCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def get_many(self, shas: Iterable[str]) -> dict[str, str]:
        """Cached captions of those images that have one."""
        shas = list(dict.fromkeys(shas))
        found: dict[str, str] = {}
        for start in range(0, len(shas), _LOOKUP_CHUNK):
            chunk = shas[start:start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT sha256, caption FROM captions WHERE model = ? AND prompt_key = ? AND sha256 IN ({marks})",
                (self.model, self.prompt_key, *chunk),
            )
            found.update(rows)
        return found

    def put_many(self, captions: dict[str, str]) -> None:
        """Store captions in one transaction: a crash leaves either all of them or none."""
        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO captions VALUES (?, ?, ?, ?, ?)",
                [(sha, self.model, self.prompt_key, text, now) for sha, text in captions.items()],
            )

    def __len__(self) -> int:
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM captions WHERE model = ? AND prompt_key = ?", (self.model, self.prompt_key)
        ).fetchone()
        return count
