"""Reading what a user hands us as if it were hostile: JSON without traps, paths that stay in their folder.

The readers of a user's JSON (split, caption, vocabulary and meta files, manifests, the build's staging
files, rejected.jsonl) go through `parse_json`/`read_json_file`, so a NUL character, nesting deep enough
to exhaust the parser's recursion, a 100,000-digit number or bytes that are not UTF-8 become one
FdrdError naming the file and what to do, never a traceback. A NUL cannot be part of a file name or a
caption, and a path holding one would fail later, far from its cause. `containment_problem` (and
`contained_path`, which raises) is the one rule for a relative path read from a file (a manifest's
shard, a crawl journal's image): it must name something inside its folder.
"""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from typing import Any

from fdrd.errors import FdrdError


def find_nul(value: Any) -> str | None:
    """Where in a parsed JSON value a string (key or value) holds a NUL character, as `$.a[3]`, or None.
    Iterative, so any depth json.loads returned is walked."""
    stack: list[tuple[str, Any]] = [("$", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return f"{where} (a key)"
                stack.append((f"{where}.{key[:40]}", child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None


def parse_json(text: str, where: str, fix: str) -> Any:
    """json.loads with every failure a FdrdError `"{where}: {reason}; {fix}"`."""
    if "\x00" in text:
        raise FdrdError(f"{where}: holds a NUL byte (at character {text.index(chr(0))}); {fix}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise FdrdError(f"{where}: JSON nested too deeply to read; {fix}") from None
    except ValueError as error:  # JSONDecodeError, and ints beyond Python's digit limit
        raise FdrdError(f"{where}: not valid JSON ({str(error)[:200]}); {fix}") from None
    nul = find_nul(value)
    if nul is not None:
        raise FdrdError(f"{where}: a NUL character (\\u0000) in {nul}; {fix}")
    return value


def read_json_file(path: str | os.PathLike, fix: str) -> Any:
    """A JSON file's value (see parse_json); a missing, unreadable or non-UTF-8 file is a FdrdError too."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise FdrdError(f"{path}: not found; {fix}") from None
    except UnicodeDecodeError as error:
        raise FdrdError(f"{path}: not UTF-8 text ({error}); {fix}") from None
    except OSError as error:
        raise FdrdError(f"{path}: cannot be read ({error.strerror or error}); {fix}") from None
    return parse_json(text, str(path), fix)


def path_problem(relative: Any) -> str | None:
    """Why `relative` (read from a file) cannot name something inside its folder, or None. Only the
    text is checked: absolute, a drive, a `..` component, a NUL, backslashes, empty."""
    if not isinstance(relative, str) or not relative:
        return "not a non-empty path"
    if "\x00" in relative:
        return "holds a NUL character"
    if "\\" in relative or (len(relative) > 1 and relative[1] == ":"):
        return "is a Windows path"
    if posixpath.isabs(relative):
        return "is an absolute path"
    if ".." in relative.split("/"):
        return "climbs out with '..'"
    return None


def containment_problem(root: str | os.PathLike, relative: Any) -> str | None:
    """Why root/relative is not inside root (path_problem of the text, or a symbolic link on the way
    leading out), or None when it is."""
    problem = path_problem(relative)
    if problem is None and not (Path(root) / relative).resolve().is_relative_to(Path(root).resolve()):
        return "leads out of the folder through a symbolic link"
    return problem


def contained_path(root: str | os.PathLike, relative: Any, where: str, fix: str) -> Path:
    """root/relative when it stays inside root (symbolic links followed); else a FdrdError naming
    `where` (the file and record the path came from) and `fix`."""
    problem = containment_problem(root, relative)
    if problem is None:
        return Path(root) / relative
    raise FdrdError(f"{where}: path {str(relative)[:200]!r} {problem}; it must name a file inside {root}; {fix}")
