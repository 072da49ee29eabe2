"""`fdrd publish`: the dry run lists every file and byte count; the upload, against a stand-in for the
Hub's HTTP API on 127.0.0.1, delivers exactly those bytes; a dataset failing `fdrd validate` never goes
up; a missing token, a bad repo name, a folder of the wrong kind, links and Hub errors are named.

The stand-in answers the endpoints huggingface_hub's create_repo, create_branch and upload_folder call
(repos/create, validate-yaml, branch, preupload, commit), telling the client to send every file inline
("regular" upload mode), and keeps what arrived.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from typer.testing import CliRunner

from benchmark.publish import UploadPlan, check_repo_id, plan_upload, resolve_token, upload
from fdrd.cli import app
from fdrd.errors import FdrdError

TOKEN = "hf_test_token_0123456789"


class StandInHub(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StandInHandler)
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[str] = []
        self.authorizations: set[str | None] = set()
        self.created: list[dict] = []
        self.branches: list[tuple[str, str]] = []
        self.commits: list[dict] = []
        self.failures: dict[str, int] = {}  # endpoint name -> status to answer instead

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class StandInHandler(BaseHTTPRequestHandler):
    server: StandInHub

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def _answer(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        # Newer clients fetch a registry of AI-agent harnesses for their user agent, best effort: errors
        # are swallowed, so "not here" is a fine answer. Anything else is unexpected.
        if urlsplit(self.path).path != "/api/agent-harnesses":
            self.server.unknown.append(f"GET {self.path}")
        self._answer(404, {"error": "the stand-in has no such endpoint"})

    def do_POST(self) -> None:
        hub = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = urlsplit(self.path).path
        hub.authorizations.add(self.headers.get("Authorization"))
        match = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)", path)
        name = "create" if path == "/api/repos/create" else "validate-yaml" if path == "/api/validate-yaml" else match and match[2]
        hub.requests.append((str(name), path))
        if name in hub.failures:
            return self._answer(hub.failures[name], {"error": f"stand-in refuses {name}"})
        if name == "create":
            payload = json.loads(body)
            hub.created.append(payload)
            return self._answer(200, {"url": f"{hub.url}/datasets/{payload['organization']}/{payload['name']}"})
        if name == "validate-yaml":
            return self._answer(200, {"errors": [], "warnings": []})
        if name == "branch":
            hub.branches.append((match[1], unquote(match[3])))
            return self._answer(200, {})
        if name == "preupload":
            files = json.loads(body)["files"]
            return self._answer(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if name == "commit":
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            files = {}
            for line in lines[1:]:
                assert line["key"] == "file" and line["value"]["encoding"] == "base64", line["key"]
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            hub.commits.append({"repo": match[1], "revision": unquote(match[3]), "message": lines[0]["value"]["summary"], "files": files})
            oid = "a" * 40
            return self._answer(200, {"commitUrl": f"{hub.url}/datasets/{match[1]}/commit/{oid}", "commitOid": oid})
        hub.unknown.append(f"POST {path}")
        return self._answer(404, {"error": "the stand-in has no such endpoint"})


@pytest.fixture
def hub(monkeypatch):
    """A running stand-in; the Hub client is pointed at it and allowed online (the suite sets HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    server = StandInHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)  # what HfApi() uses without an endpoint (the CLI)
    yield server
    server.shutdown()
    server.server_close()
    assert server.unknown == [], "the client called endpoints the stand-in does not know"


@pytest.fixture
def no_stored_token(monkeypatch, tmp_path):
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """What should go up, read here: every file except hidden ones."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


@pytest.fixture
def board(tmp_path) -> Path:
    """A leaderboard folder written by `fdrd leaderboard --out` from one hand-written results file."""
    results = tmp_path / "runs" / "zeroshot" / "dtd" / "seed-1.json"
    results.parent.mkdir(parents=True)
    metrics = {f"{d}_r{k}": v for d in ("i2t", "t2i") for k, v in ((1, 20.0), (5, 50.0), (10, 70.0))}
    results.write_text(json.dumps({
        "schema": "fdrd-bench-result", "schema_version": 2, "run_label": "zeroshot", "method": "zeroshot",
        "model": {"id": "m", "revision": "r"}, "dataset": {"content_hash": "h"}, "domain": "dtd", "seed": 1,
        "metrics": metrics,
    }))
    out = tmp_path / "board"
    assert CliRunner().invoke(app, ["leaderboard", str(tmp_path / "runs"), "--out", str(out)]).exit_code == 0
    (out / ".notes").write_text("mine, not for the Hub")
    return out


# --------------------------------------------------------------------------------------- dry run
def test_the_dry_run_lists_every_file_and_its_bytes_and_sends_nothing(board, hub):
    result = CliRunner().invoke(app, ["publish", "leaderboard", str(board), "--repo", "my-lab/fdrd-board", "--dry-run"])
    assert result.exit_code == 0, result.output
    expected = folder_bytes(board)
    assert set(expected) == {"README.md", "leaderboard.csv", "leaderboard.html", "leaderboard.json", "leaderboard.md", "leaderboard.tex"}
    listed = dict(
        (match[2], int(match[1].replace(",", ""))) for match in re.finditer(r"^\s*([\d,]+)  (\S+)$", result.stdout, re.M)
    )
    assert listed == {name: len(data) for name, data in expected.items()}
    assert f"{len(expected)} files, {sum(map(len, expected.values())):,d} bytes -> dataset repo my-lab/fdrd-board" in result.stdout
    assert ".notes" not in result.stdout and "nothing was uploaded" in result.stdout
    assert hub.requests == []


def test_the_dataset_dry_run_validates_first_and_lists_the_build(synthetic_fdrd, hub):
    result = CliRunner().invoke(app, ["publish", "dataset", str(synthetic_fdrd), "--repo", "my-lab/fdrd", "--dry-run"])
    assert result.exit_code == 0, result.output
    expected = folder_bytes(synthetic_fdrd)
    assert "README.md" in expected and "manifest.json" in expected and any(n.endswith(".parquet") for n in expected)
    for name, data in expected.items():
        assert re.search(rf"^\s*{len(data):,d}  {re.escape(name)}$", result.stdout, re.M), name
    assert hub.requests == []


# ---------------------------------------------------------------------------------------- upload
def test_the_leaderboard_upload_delivers_exactly_the_planned_bytes(board, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = CliRunner().invoke(app, ["publish", "leaderboard", str(board), "--repo", "my-lab/fdrd-board"])
    assert result.exit_code == 0, result.output
    (commit,) = hub.commits
    assert commit["repo"] == "my-lab/fdrd-board" and commit["revision"] == "main"
    assert commit["files"] == folder_bytes(board)  # .notes stayed home
    assert commit["message"].startswith("fdrd publish leaderboard: zeroshot")
    assert hub.created == [{"name": "fdrd-board", "organization": "my-lab", "type": "dataset"}]
    assert hub.authorizations == {f"Bearer {TOKEN}"}
    assert "published" in result.stdout and "/datasets/my-lab/fdrd-board/commit/" in result.stdout


def test_the_dataset_upload_goes_private_to_a_branch(synthetic_fdrd, hub):
    plan = plan_upload("dataset", synthetic_fdrd, "my-lab/fdrd", private=True, revision="v1")
    url = upload(plan, TOKEN, endpoint=hub.url)
    assert url.endswith("/datasets/my-lab/fdrd/commit/" + "a" * 40)
    assert hub.created[0]["visibility"] == "private"
    assert hub.branches == [("my-lab/fdrd", "v1")]
    (commit,) = hub.commits
    assert commit["revision"] == "v1" and commit["files"] == folder_bytes(synthetic_fdrd)
    manifest = json.loads((synthetic_fdrd / "manifest.json").read_text())
    assert commit["message"] == f"fdrd publish dataset: content hash {manifest['content_hash']}"
    assert [name for name, _ in hub.requests] == ["create", "branch", "validate-yaml", "preupload", "commit"]


def test_a_dataset_that_fails_validation_is_not_published(synthetic_fdrd, hub, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_fdrd, broken)
    shard = sorted(broken.rglob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes() + b"tampered")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = CliRunner().invoke(app, ["publish", "dataset", str(broken), "--repo", "my-lab/fdrd"])
    assert result.exit_code != 0
    assert "fails `fdrd validate`" in str(result.exception) and "Nothing was published" in str(result.exception)
    assert hub.requests == []


@pytest.mark.parametrize(("endpoint", "status", "words"), [("create", 500, "create the repo"), ("commit", 403, "write access")])
def test_a_hub_error_is_named(board, hub, endpoint, status, words):
    hub.failures[endpoint] = status
    with pytest.raises(FdrdError) as refused:
        upload(plan_upload("leaderboard", board, "my-lab/fdrd-board"), TOKEN, endpoint=hub.url)
    message = str(refused.value)
    assert f"answered {status}" in message and words in message and "my-lab/fdrd-board" in message
    assert hub.commits == []


def test_an_unreachable_hub_is_named(board, hub):
    closed = StandInHub()
    url = closed.url
    closed.server_close()  # nothing listens there any more
    with pytest.raises(FdrdError, match="cannot reach the Hub"):
        upload(plan_upload("leaderboard", board, "my-lab/fdrd-board"), TOKEN, endpoint=url)


# ---------------------------------------------------------------------------------------- errors
def test_a_missing_token_is_named(board, hub, no_stored_token):
    with pytest.raises(FdrdError, match="no Hugging Face token: pass --token, set HF_TOKEN"):
        resolve_token(None)
    result = CliRunner().invoke(app, ["publish", "leaderboard", str(board), "--repo", "my-lab/fdrd-board"])
    assert result.exit_code != 0 and "no Hugging Face token" in str(result.exception)
    assert resolve_token("hf_given") == "hf_given"
    assert hub.requests == []


@pytest.mark.parametrize("repo", ["fdrd", "my-lab/fdrd/extra", "my lab/fdrd", "my-lab/", "/fdrd", "my-lab/fd--rd", "../fdrd", "my-lab/.fdrd",
                                  "my-lab/fdrd\n"])
def test_a_repo_name_that_is_not_org_slash_name_is_refused(repo):
    with pytest.raises(FdrdError, match="expected ORG/NAME"):
        check_repo_id(repo)


def test_good_repo_names_pass():
    assert check_repo_id("my-lab/fdrd_v1.0") == "my-lab/fdrd_v1.0"


def test_a_folder_of_the_wrong_kind_is_refused(tmp_path, board):
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("hello")
    result = CliRunner().invoke(app, ["publish", "dataset", str(stray), "--repo", "my-lab/fdrd", "--dry-run"])
    assert result.exit_code != 0 and "is this a directory written by `fdrd build`" in str(result.exception)
    with pytest.raises(FdrdError, match="not a leaderboard folder"):
        plan_upload("leaderboard", stray, "my-lab/fdrd")
    with pytest.raises(FdrdError, match="no such folder"):
        plan_upload("leaderboard", tmp_path / "missing", "my-lab/fdrd")
    (board / "README.md").unlink()
    with pytest.raises(FdrdError, match="no README.md"):
        plan_upload("leaderboard", board, "my-lab/fdrd")
    for hostile in ("[" * 100_000 + "]" * 100_000, '{"schema": ' + "1" * 5000 + "}"):
        (board / "leaderboard.json").write_text(hostile)
        with pytest.raises(FdrdError, match="not a leaderboard folder"):
            plan_upload("leaderboard", board, "my-lab/fdrd")


def test_a_link_in_the_folder_is_refused(board, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the Hub")
    (board / "extra.txt").symlink_to(secret)
    with pytest.raises(FdrdError, match="extra.txt: is a link"):
        plan_upload("leaderboard", board, "my-lab/fdrd")


def test_the_plan_skips_hidden_files_at_any_depth(board):
    (board / "sub" / ".cache").mkdir(parents=True)
    (board / "sub" / ".cache" / "x.bin").write_bytes(b"x")
    (board / "sub" / "kept.txt").write_bytes(b"12345")
    plan: UploadPlan = plan_upload("leaderboard", board, "my-lab/fdrd")
    names = [f.path for f in plan.files]
    assert "sub/kept.txt" in names and not any("/." in n or n.startswith(".") for n in names)
    assert plan.total_bytes == sum(len(b) for b in folder_bytes(board).values())
