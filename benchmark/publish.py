"""Uploads to the Hugging Face Hub: a built FDRD folder (its README.md is the dataset card the build wrote)
or a leaderboard folder (written by `fdrd leaderboard --out`), as one commit to a dataset repo.

`plan_upload` checks everything that can be checked offline (the repo name, that the folder is what it
claims to be, no links leading out of it) and lists every file with its byte count: that list is what
`--dry-run` prints and exactly what `upload` sends (hidden files and folders stay home in both).
`upload` uses `HfApi.create_repo` (exist_ok), `create_branch` for a `--revision` and `upload_folder`;
Hub refusals become one FdrdError naming what was refused. Validating a dataset with `fdrd validate`
is the command line's job (fdrd/cli/publish.py): benchmark/ never imports builders/.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from benchmark.leaderboard import LEADERBOARD_SCHEMA
from fdrd.errors import FdrdError
from fdrd.manifest import MANIFEST_FORMAT, MANIFEST_NAME, read_manifest
from fdrd.untrusted import read_json_file

CARD_NAME = "README.md"
LEADERBOARD_FILE = "leaderboard.json"
REPO_TYPE = "dataset"
# Hub repo names: letters, digits, "-", "_", "." (not first, no "--" or ".."), at most 96 characters.
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")  # fullmatch: "$" passes a final newline
# Paths with a component starting with "." (.cache, .git, a build's temporary files) never go up.
# fnmatch's "*" crosses "/", so these two patterns catch such a component at any depth.
HIDDEN_PATTERNS = [".*", "*/.*"]


@dataclass(frozen=True)
class PlannedFile:
    path: str  # relative, "/"-separated: its path in the repo
    size: int


@dataclass(frozen=True)
class UploadPlan:
    kind: str  # "dataset" or "leaderboard"
    folder: Path
    repo_id: str
    files: tuple[PlannedFile, ...]
    private: bool = False
    revision: str | None = None
    commit_message: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def check_repo_id(repo: str) -> str:
    if not REPO_ID.fullmatch(repo) or "--" in repo or ".." in repo or len(repo) > 96 or repo.endswith(".git"):
        raise FdrdError(
            f"--repo {repo!r}: expected ORG/NAME (your user or organization, a slash, the repo name; letters, digits, "
            "'-', '_', '.'), e.g. --repo my-lab/fdrd"
        )
    return repo


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def list_files(folder: Path) -> tuple[PlannedFile, ...]:
    """Every regular file under `folder` except hidden ones, sorted; a link is refused (it could lead out of
    the folder, and the Hub would get its target)."""
    files = []
    for root, directories, names in os.walk(folder):
        base = Path(root)
        for name in sorted(directories + names):
            path = base / name
            relative = path.relative_to(folder)
            if _hidden(relative):
                continue
            if path.is_symlink():
                raise FdrdError(f"{path}: is a link; publish uploads regular files only (copy the file in, or remove the link)")
            if path.is_file():
                files.append(PlannedFile(relative.as_posix(), path.stat().st_size))
        directories[:] = [d for d in directories if not d.startswith(".")]
    return tuple(sorted(files, key=lambda f: f.path))


def _check_dataset(folder: Path) -> str:
    manifest = read_manifest(folder)  # FdrdError when there is none or it is broken
    if manifest.get("format") != MANIFEST_FORMAT:
        raise FdrdError(f"{folder / MANIFEST_NAME}: format {manifest.get('format')!r}, not a folder written by `fdrd build`")
    if not (folder / CARD_NAME).is_file():
        raise FdrdError(f"{folder}: no {CARD_NAME} (the dataset card `fdrd build` writes); rebuild the folder")
    return f"fdrd publish dataset: content hash {manifest.get('content_hash')}"


def _check_leaderboard(folder: Path) -> str:
    try:
        payload = read_json_file(folder / LEADERBOARD_FILE, "")
    except FdrdError:  # missing or broken: said below as "not a leaderboard folder"
        payload = None
    if not isinstance(payload, dict) or payload.get("schema") != LEADERBOARD_SCHEMA:
        raise FdrdError(
            f"{folder}: not a leaderboard folder (no readable {LEADERBOARD_FILE}); write one with "
            f"`fdrd leaderboard RUNS... --out {folder}`"
        )
    if not (folder / CARD_NAME).is_file():
        raise FdrdError(f"{folder}: no {CARD_NAME}; `fdrd leaderboard RUNS... --out {folder}` writes it")
    return f"fdrd publish leaderboard: {', '.join(payload.get('runs', {})) or 'no runs'}"


def plan_upload(kind: str, folder: str | Path, repo: str, private: bool = False, revision: str | None = None) -> UploadPlan:
    folder = Path(folder)
    repo_id = check_repo_id(repo)
    if not folder.is_dir():
        raise FdrdError(f"{folder}: no such folder")
    if revision is not None and not revision.strip():
        raise FdrdError("--revision: give a branch name, or leave the option out for main")
    message = _check_dataset(folder) if kind == "dataset" else _check_leaderboard(folder)
    return UploadPlan(kind, folder, repo_id, list_files(folder), private, revision, message)


def resolve_token(token: str | None) -> str:
    """--token, else HF_TOKEN, else the token `hf auth login` stored."""
    from huggingface_hub import get_token

    resolved = token or get_token()
    if not resolved:
        raise FdrdError(
            "no Hugging Face token: pass --token, set HF_TOKEN, or log in once with `hf auth login` "
            "(a token with write access: https://huggingface.co/settings/tokens)"
        )
    return resolved


def _is_transport_error(error: Exception) -> bool:
    # huggingface_hub's HTTP layer changed library across versions (requests, httpx, httpx2).
    return type(error).__module__.split(".")[0] in {"httpx", "httpx2", "requests", "urllib3"}


def upload(plan: UploadPlan, token: str, endpoint: str | None = None) -> str:
    """Create the repo (and branch) if needed and commit the planned files; returns the commit URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(endpoint=endpoint, token=token)
    step = "create the repo"
    try:
        api.create_repo(plan.repo_id, repo_type=REPO_TYPE, private=plan.private or None, exist_ok=True)
        if plan.revision:
            step = f"create branch {plan.revision!r}"
            api.create_branch(plan.repo_id, repo_type=REPO_TYPE, branch=plan.revision, exist_ok=True)
        step = "commit the files"
        info = api.upload_folder(
            repo_id=plan.repo_id,
            repo_type=REPO_TYPE,
            folder_path=plan.folder,
            revision=plan.revision,
            commit_message=plan.commit_message,
            ignore_patterns=list(HIDDEN_PATTERNS),
        )
    except OfflineModeIsEnabled:
        raise FdrdError("HF_HUB_OFFLINE is set: unset it to publish") from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "no answer"
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FdrdError(
            f"{api.endpoint}: the Hub answered {status} when asked to {step} for {plan.repo_id} ({first_line}); "
            "nothing was committed" + (" (check the token's write access)" if status in (401, 403) else "")
        ) from None
    except ValueError as error:  # e.g. the Hub found the README.md metadata invalid
        raise FdrdError(f"{plan.folder}: the Hub refused to {step}: {error}") from None
    except Exception as error:
        if not _is_transport_error(error):
            raise
        raise FdrdError(f"{api.endpoint}: cannot reach the Hub to {step} ({error}); nothing was committed") from None
    return info.commit_url
