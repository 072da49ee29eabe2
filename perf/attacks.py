"""Plant the attacks of issue 9 against the `fdrd` command line in a temporary folder; print held/failed.

    .venv/bin/python perf/attacks.py              # every class (several minutes on 2 busy cores)
    .venv/bin/python perf/attacks.py --only 1,3   # some classes
    .venv/bin/python perf/attacks.py --keep DIR   # plant into DIR and keep it for inspection

Each attack runs the real command line (`python -m fdrd.cli ...` in a subprocess) on planted files. It
*holds* when the command answers as promised: a named one-line error (exit 2, no traceback), a validate
problem (exit 1), a rejection row, or a named crawl failure; and its side effect did not happen (the
marker a planted pickle or script would create, a file --overwrite must not delete, a results file
citing data that was not read). Disk-full and read-only output are injected into the subprocess (an
OSError raised by the shard writer), then the same command is rerun to check that it resumes.
Exit status 1 when any attack failed. docs/reliability.md records a run.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

CLASSES = {
    1: "code execution from user files",
    2: "--overwrite deleting what is not ours",
    3: "results citing data they did not read",
    4: "one bad URL stopping a crawl",
    5: "tracebacks instead of named errors",
    6: "silent skips",
    7: "resource limits",
}
BOOT = (
    "import os, sys\n"
    "exec(os.environ.get('FDRD_ATTACK_INJECT', ''))\n"
    "from fdrd.cli import main\n"
    "sys.argv = ['fdrd', *sys.argv[1:]]\n"
    "main()\n"
)
# Raised by the shard writer on its second call: a disk that fills up, or goes read-only, mid-build.
INJECT_OSERROR = (
    "import builders.stages.write_stage as _w\n"
    "_real, _calls = _w.write_shard, []\n"
    "def _failing(path, rows):\n"
    "    _calls.append(path)\n"
    "    if len(_calls) == 2:\n"
    "        raise OSError({code}, os.strerror({code}), str(path))\n"
    "    return _real(path, rows)\n"
    "_w.write_shard = _failing\n"
)
DOMAINS = "synthetic_flowers,synthetic_beetles"


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def named_error(self) -> bool:
        return self.code == 2 and "error:" in self.err and "Traceback" not in self.err + self.out

    def brief(self) -> str:
        text = (self.err.strip() or self.out.strip()).splitlines()
        return f"exit {self.code}: {text[-1][:150] if text else ''}"


def fdrd(*args, inject: str = "", env: dict | None = None, timeout: int = 600) -> Run:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200",
                   "FDRD_ATTACK_INJECT": inject, **(env or {})}
    done = subprocess.run([sys.executable, "-c", BOOT, *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


class Planted:
    """Unpickling this creates `marker`: the proof of code execution."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def jpeg(colour, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


class Lab:
    """Shared ingredients, made once: a synthetic build, a tiny model, a finished bench checkpoint."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[str, Path] = {}

    def fresh(self, name: str) -> Path:
        path = self.root / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def once(self, name: str, make: Callable[[Path], None]) -> Path:
        if name not in self._cache:
            path = self.root / "shared" / name
            make(path)
            self._cache[name] = path
        return self._cache[name]

    @property
    def data(self) -> Path:
        def make(path):
            run = fdrd("build", "--source", "synthetic", "--per-category", "2", "--domains", DOMAINS,
                       "--captioner", "none", "--out", path)
            assert run.code == 0, run.err
        return self.once("data", make)

    def data_copy(self, name: str) -> Path:
        target = self.fresh(name) / "data"
        shutil.rmtree(target.parent)
        shutil.copytree(self.data, target)
        return target

    @property
    def model(self) -> Path:
        def make(path):
            captions = self.root / "shared" / "captions.txt"
            captions.parent.mkdir(parents=True, exist_ok=True)
            captions.write_text("\n".join(f"a {c} {s} on a {b} background" for c in ("red", "blue", "green")
                                          for s in ("star", "leaf", "shell") for b in ("dark", "light")) + "\n")
            run = fdrd("model", "tiny", "--out", path, "--captions", captions, "--image-size", "32", "--width", "32",
                       "--layers", "1", "--embed-dim", "16")
            assert run.code == 0, run.err
        return self.once("model", make)

    def bench(self, data: Path, out: Path, *extra) -> Run:
        return fdrd("bench", "coop", "--data", data, "--model", self.model, "--out", out, "--device", "cpu",
                    "--shots", "1", "--seeds", "1", "--domains", "synthetic_flowers", "--set", "epochs=1",
                    "--set", "batch_size=4", *extra)


# ---------------------------------------------------------------- class 1


def resume_with(lab: Lab, name: str, plant: Callable[[Path, Path], None]) -> tuple[bool, str]:
    work = lab.fresh(name)
    first = lab.bench(lab.data, work / "runs")
    checkpoints = sorted((work / "runs").rglob("latest.json"))
    if first.code != 0 or not checkpoints:
        return False, f"setup: bench left no checkpoint ({first.brief()})"
    marker = work / "pwned"
    for latest in checkpoints:
        plant(latest.parent, marker)
    run = lab.bench(lab.data, work / "runs", "--resume")
    return run.named_error and not marker.exists(), run.brief() + (" MARKER CREATED" if marker.exists() else "")


def pickled_state(folder: Path, marker: Path) -> None:
    for epoch in folder.glob("epoch-*"):
        for child in epoch.iterdir():
            if child.name != "trainable.safetensors":
                child.unlink()
        (epoch / "state.pt").write_bytes(pickle.dumps({"optimizer": Planted(marker)}))


def latest_pointing_out(folder: Path, marker: Path) -> None:
    latest = json.loads((folder / "latest.json").read_text())
    outside = folder.parent / "elsewhere"
    shutil.copytree(folder / latest["path"], outside, dirs_exist_ok=True)
    (outside / "state.pt").write_bytes(pickle.dumps(Planted(marker)))
    (folder / "latest.json").write_text(json.dumps({**latest, "path": "../elsewhere"}))


def pickled_model(lab: Lab) -> tuple[bool, str]:
    work = lab.fresh("c1-model")
    model = work / "model"
    shutil.copytree(lab.model, model)
    (model / "model.safetensors").unlink()
    marker = work / "pwned"
    (model / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": Planted(marker)}))
    run = fdrd("bench", "zeroshot", "--data", lab.data, "--model", model, "--out", work / "runs", "--device", "cpu")
    return run.named_error and not marker.exists(), run.brief()


def loading_script(lab: Lab) -> tuple[bool, str]:
    data = lab.data_copy("c1-script")
    marker = data.parent / "pwned"
    (data / "data.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    run = fdrd("bench", "zeroshot", "--data", data, "--model", lab.model, "--out", data.parent / "runs", "--device", "cpu")
    return run.named_error and not marker.exists(), run.brief()


# ---------------------------------------------------------------- class 2


def overwrite_keeps(lab: Lab, name: str, plant: Callable[[Path], Path]) -> tuple[bool, str]:
    out = lab.data_copy(name)
    precious = plant(out)
    before = precious.read_bytes()
    run = fdrd("build", "--source", "synthetic", "--per-category", "1", "--domains", DOMAINS, "--captioner", "none",
               "--seed", "7", "--out", out, "--overwrite")
    kept = precious.exists() and precious.read_bytes() == before
    return run.named_error and kept, run.brief() + ("" if kept else " DELETED")


def planted_file(relative: str) -> Callable[[Path], Path]:
    def plant(out: Path) -> Path:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"precious")
        return path
    return plant


def symlinked_domain(out: Path) -> Path:
    elsewhere = out.parent / "elsewhere"
    (out / "synthetic_flowers").rename(elsewhere)
    (out / "synthetic_flowers").symlink_to(elsewhere, target_is_directory=True)
    return next(elsewhere.glob("*.parquet"))


def manifest_listing_a_victim(out: Path) -> Path:
    victim = out.parent / "victim" / "data.parquet"
    victim.parent.mkdir()
    victim.write_bytes(b"someone else's")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"].append({**manifest["shards"][0], "path": "../victim/data.parquet"})
    (out / "manifest.json").write_text(json.dumps(manifest))
    # A file nobody listed keeps the build refused, so only the manifest decides what would be deleted
    # (an empty folder would not: a domain that made no row leaves one, and it is no stranger).
    (out / "mine").mkdir()
    (out / "mine" / "note.txt").write_text("not a build's")
    return victim


def pretrain_overwrite(lab: Lab) -> tuple[bool, str]:
    out = lab.fresh("c2-pretrain") / "model"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "thesis.tex").write_text("precious")
    run = fdrd("pretrain", "--data", lab.data, "--out", out, "--overwrite", "--steps", "1")
    kept = (out / "thesis.tex").exists()
    return run.named_error and kept, run.brief()


# ---------------------------------------------------------------- class 3


def tampered_bench(lab: Lab, name: str, tamper: Callable[[Path], None]) -> tuple[bool, str]:
    data = lab.data_copy(name)
    tamper(data)
    run = fdrd("bench", "zeroshot", "--data", data, "--model", lab.model, "--out", data.parent / "runs",
               "--device", "cpu", "--domains", "synthetic_flowers")
    cited = list((data.parent / "runs").rglob("seed-*.json"))
    return run.named_error and not cited, run.brief() + (" RESULTS WRITTEN" if cited else "")


def shard_of(data: Path, split: str = "test") -> Path:
    shards = json.loads((data / "manifest.json").read_text())["shards"]
    return data / next(s["path"] for s in shards if s["split"] == split and s["domain"] == "synthetic_flowers")


def flip_byte(data: Path) -> None:
    path = shard_of(data)
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


def rewrite_caption(data: Path) -> None:
    import pyarrow.parquet as pq

    from builders.writer import write_shard

    path = shard_of(data)
    rows = pq.read_table(path).to_pylist()
    rows[0]["caption"] += " (edited)"
    write_shard(path, rows)


def stray_shard(data: Path) -> None:
    shutil.copy(shard_of(data), shard_of(data).parent / "test-99999-of-99999.parquet")


def card_elsewhere(data: Path) -> None:
    card = data / "README.md"
    card.write_text(card.read_text().replace("synthetic_flowers/test-*.parquet", "synthetic_flowers/train-*.parquet", 1))


# ---------------------------------------------------------------- class 4


class BadServer:
    """Loopback server: an image, redirects without Location or to malformed URLs."""

    def __init__(self):
        body = jpeg((200, 30, 30))
        routes = {
            "/good.jpg": (200, {"Content-Type": "image/jpeg"}, body),
            "/no-location": (302, {}, b""),
            "/to-bad-port": (302, {"Location": "http://127.0.0.1:70000/x.jpg"}, b""),
            "/to-broken-ipv6": (302, {"Location": "http://[::1/x.jpg"}, b""),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                status, headers, content = routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(content))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


def crawl_one(lab: Lab, server: BadServer, name: str, url: str, reason: str) -> tuple[bool, str]:
    work = lab.fresh(name)
    urls = work / "urls.jsonl"
    urls.write_text(json.dumps({"url": url, "category": "a"}) + "\n"
                    + json.dumps({"url": f"{server.base}/good.jpg", "category": "b"}) + "\n")
    args = ("crawl", urls, "--out", work / "crawl", "--no-progress", "--retries", "0", "--connect-timeout", "2")
    first, second = fdrd(*args), fdrd(*args)
    records = [json.loads(line) for line in (work / "crawl" / "shards" / "00000.jsonl").read_text().splitlines()] \
        if (work / "crawl" / "shards" / "00000.jsonl").is_file() else []
    named = len(records) == 2 and records[0].get("reason") == reason and records[1]["status"] == "ok"
    return first.code == 0 and second.code == 0 and named, first.brief() + f"; first record {records[:1]}"[:200]


def journal_escape(lab: Lab, server: BadServer) -> tuple[bool, str]:
    work = lab.fresh("c4-journal")
    urls = work / "urls.jsonl"
    urls.write_text("".join(json.dumps({"url": f"{server.base}/good.jpg", "category": c}) + "\n" for c in "ab"))
    fdrd("crawl", urls, "--out", work / "crawl", "--no-progress")
    secret = work / "secret.jpg"
    secret.write_bytes(jpeg((1, 2, 3)))
    results = work / "crawl" / "shards" / "00000.jsonl"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    records[0]["path"] = "../secret.jpg"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    run = fdrd("build", "--source", "urls", "--data-root", work / "crawl", "--captioner", "none", "--out", work / "out")
    rejected = (work / "out" / "rejected.jsonl").read_text() if (work / "out" / "rejected.jsonl").is_file() else ""
    return "not an image stored inside the crawl folder" in rejected, run.brief()


# ---------------------------------------------------------------- classes 5-7


def manifest_attack(lab: Lab, name: str, change: Callable[[dict], object], command: str) -> tuple[bool, str]:
    data = lab.data_copy(name)
    manifest = json.loads((data / "manifest.json").read_text())
    (data / "manifest.json").write_text(json.dumps(change(manifest)))
    args = {"info": ("info", data), "validate": ("validate", data),
            "bench": ("bench", "zeroshot", "--data", data, "--model", lab.model, "--out", data.parent / "runs",
                      "--device", "cpu")}[command]
    run = fdrd(*args)
    return run.named_error, run.brief()


def damaged_shard(lab: Lab, name: str, damage: str, command: str) -> tuple[bool, str]:
    data = lab.data_copy(name)
    shard = shard_of(data)
    shard.unlink() if damage == "deleted" else shard.write_bytes(shard.read_bytes()[:400])
    args = ("info", data) if command == "info" else (
        "bench", "zeroshot", "--data", data, "--model", lab.model, "--out", data.parent / "runs", "--device", "cpu")
    run = fdrd(*args)
    return run.named_error, run.brief()


def validate_problem(lab: Lab, name: str, tamper: Callable[[Path], None], words: str) -> tuple[bool, str]:
    data = lab.data_copy(name)
    tamper(data)
    run = fdrd("validate", data)
    return run.code == 1 and words in run.out and "Traceback" not in run.err, run.brief()


def edit(data: Path, change: Callable[[dict], dict]) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    (data / "manifest.json").write_text(json.dumps(change(manifest)))


def coop_split_trap(lab: Lab, name: str, content: bytes) -> tuple[bool, str]:
    root = lab.fresh(name) / "root"
    (root / "oxford_pets" / "images").mkdir(parents=True)
    (root / "oxford_pets" / "images" / "a.jpg").write_bytes(jpeg((9, 9, 9)))
    (root / "oxford_pets" / "split_zhou_OxfordPets.json").write_bytes(content)
    run = fdrd("build", "--source", "coop", "--data-root", root, "--captioner", "none", "--out", root.parent / "out")
    return run.named_error and "split_zhou_OxfordPets.json" in run.err, run.brief()


def caption_trap(lab: Lab, name: str, content: bytes) -> tuple[bool, str]:
    work = lab.fresh(name)
    (work / "oxford_pets.json").write_bytes(content)
    run = fdrd("audit", work / "oxford_pets.json")
    return run.named_error and "oxford_pets.json" in run.err, run.brief()


def disk_fault(lab: Lab, name: str, code: int) -> tuple[bool, str]:
    out = lab.fresh(name) / "out"
    args = ("build", "--source", "synthetic", "--per-category", "2", "--domains", DOMAINS, "--captioner", "none",
            "--out", out)
    failed = fdrd(*args, inject=INJECT_OSERROR.format(code=code))
    resumed = fdrd(*args)
    same = (out / "manifest.json").is_file() and json.loads((out / "manifest.json").read_text())["content_hash"] == \
        json.loads((lab.data / "manifest.json").read_text())["content_hash"]
    return failed.named_error and resumed.code == 0 and same, failed.brief() + ("; rerun resumed to the same hash"
                                                                                  if same else "; RERUN DIFFERS")


def out_is_a_file(lab: Lab, name: str, command: list) -> tuple[bool, str]:
    work = lab.fresh(name)
    (work / "out").write_text("mine")
    (work / "urls.csv").write_text("url,category\nhttp://127.0.0.1:9/x.jpg,a\n")
    stand_ins = {"OUT": work / "out", "DATA": lab.data, "MODEL": lab.model, "URLS": work / "urls.csv"}
    run = fdrd(*(stand_ins.get(a, a) if isinstance(a, str) else a for a in command))
    return run.named_error and (work / "out").read_text() == "mine", run.brief()


def folder_named_like_an_image(lab: Lab) -> tuple[bool, str]:
    root = lab.fresh("c6-folder") / "birds"
    (root / "wren" / "b.jpg").mkdir(parents=True)
    (root / "wren" / "a.jpg").write_bytes(jpeg((30, 60, 90)))
    run = fdrd("build", "--source", "imagefolder", "--data-root", root, "--captioner", "none", "--out", root.parent / "out")
    rejected = root.parent / "out" / "rejected.jsonl"
    text = rejected.read_text() if rejected.is_file() else ""
    return "b.jpg is a folder" in text, run.brief()


def audit_folder_with_bad_json(lab: Lab) -> tuple[bool, str]:
    work = lab.fresh("c6-audit")
    (work / "oxford_pets.json").write_text(json.dumps({"a.jpg": {"file_path": "oxford_pets/images/a.jpg",
                                                                 "positive": "a bengal cat", "negative": ["a pug"]}}))
    (work / "broken.json").write_text('{"b.jpg": {"positive": "a ph')
    run = fdrd("audit", work)
    return run.named_error and "broken.json" in run.err, run.brief()


def huge_input(lab: Lab) -> tuple[bool, str]:
    root = lab.fresh("c7-huge") / "birds"
    (root / "wren").mkdir(parents=True)
    (root / "wren" / "a.jpg").write_bytes(jpeg((30, 60, 90)))
    with open(root / "wren" / "huge.jpg", "wb") as handle:
        handle.truncate(3 * 2**30)  # sparse: 3 GB that occupy no disk
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    run = fdrd("build", "--source", "imagefolder", "--data-root", root, "--captioner", "none", "--out", root.parent / "out")
    peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    rejected = root.parent / "out" / "rejected.jsonl"
    text = rejected.read_text() if rejected.is_file() else ""
    return "file too large" in text and peak_mb < 2048, f"{run.brief()}; peak child RSS {peak_mb:.0f} MB"


def stale_staging(lab: Lab) -> tuple[bool, str]:
    cache = lab.fresh("c7-cache")
    stale = cache / "tiny-clip" / (".0123456789abcdef0123-killed")
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    run = fdrd("pretrain", "--data", lab.data, "--out", cache / "model", "--steps", "1", "--batch-size", "8",
               "--image-size", "16", "--patch", "8", "--width", "16", "--layers", "1", "--embed-dim", "8",
               env={"FDRD_CACHE": str(cache)})
    return run.code == 0 and not stale.exists(), run.brief()


def attacks(lab: Lab, server: BadServer) -> list[tuple[int, str, Callable[[], tuple[bool, str]]]]:
    deep = b"[" * 100_000 + b"]" * 100_000
    traps = {"raw NUL byte": b'{"a": "x\x00"}', "escaped NUL": b'{"train": [["a\\u0000.jpg", 0, "x"]]}',
             "100,000-deep nesting": deep, "not UTF-8": b'{"\xff": 1}'}
    plan: list[tuple[int, str, Callable[[], tuple[bool, str]]]] = [
        (1, "bench --resume on a pickled state.pt", lambda: resume_with(lab, "c1-state", pickled_state)),
        (1, "bench --resume, latest.json pointing out of its folder", lambda: resume_with(lab, "c1-latest", latest_pointing_out)),
        (1, "bench --model folder holding pickled weights", lambda: pickled_model(lab)),
        (1, "bench on a dataset folder holding a loading script", lambda: loading_script(lab)),
        (2, "--overwrite with a folder holding only .parquet", lambda: overwrite_keeps(lab, "c2-parquet", planted_file("mine/data.parquet"))),
        (2, "--overwrite with an unlisted shard in a domain folder", lambda: overwrite_keeps(
            lab, "c2-unlisted", planted_file("synthetic_flowers/extra-00000-of-00001.parquet"))),
        (2, "--overwrite with a note in a domain folder", lambda: overwrite_keeps(lab, "c2-note", planted_file("synthetic_flowers/notes.txt"))),
        (2, "--overwrite with a symlinked domain folder", lambda: overwrite_keeps(lab, "c2-link", symlinked_domain)),
        (2, "--overwrite with a manifest listing ../victim", lambda: overwrite_keeps(lab, "c2-victim", manifest_listing_a_victim)),
        (2, "pretrain --overwrite on a folder that is not a model", lambda: pretrain_overwrite(lab)),
        (3, "bench on a shard with a flipped byte", lambda: tampered_bench(lab, "c3-flip", flip_byte)),
        (3, "bench on a shard rewritten with an edited caption", lambda: tampered_bench(lab, "c3-caption", rewrite_caption)),
        (3, "bench on a truncated shard", lambda: tampered_bench(lab, "c3-trunc", lambda d: shard_of(d).write_bytes(shard_of(d).read_bytes()[:500]))),
        (3, "bench on a deleted shard", lambda: tampered_bench(lab, "c3-deleted", lambda d: shard_of(d).unlink())),
        (3, "bench with an unlisted shard the card would read", lambda: tampered_bench(lab, "c3-stray", stray_shard)),
        (3, "bench with README.md pointing at other files", lambda: tampered_bench(lab, "c3-card", card_elsewhere)),
        (3, "bench with README.md deleted", lambda: tampered_bench(lab, "c3-nocard", lambda d: (d / "README.md").unlink())),
    ]
    for url, reason in (("http://127.0.0.1:99999/x.jpg", "bad_url"), ("http://[::1/x.jpg", "bad_url"),
                        ("http://example.com/" + "a" * 70_000, "bad_url"), (f"{server.base}/no-location", "bad_redirect"),
                        (f"{server.base}/to-bad-port", "bad_redirect"), (f"{server.base}/to-broken-ipv6", "bad_redirect")):
        plan.append((4, f"crawl {url[:45]}{'...' if len(url) > 45 else ''}",
                     lambda url=url, reason=reason, name=f"c4-{len(plan)}": crawl_one(lab, server, name, url, reason)))
    plan.append((4, "build from a crawl journal naming ../secret.jpg", lambda: journal_escape(lab, server)))
    for label, change in (("a list", lambda m: [m]), ("bytes as text", lambda m: {**m, "shards": [
            {**s, "bytes": str(s["bytes"])} for s in m["shards"]]}), ("no shards", lambda m: {k: v for k, v in m.items() if k != "shards"})):
        for command in ("info", "validate", "bench"):
            plan.append((5, f"{command} on a manifest that is {label}",
                         lambda change=change, command=command, name=f"c5-m{len(plan)}": manifest_attack(lab, name, change, command)))
    plan += [
        (5, "validate with a garbage line in rejected.jsonl", lambda: validate_problem(
            lab, "c5-rejected", lambda d: (d / "rejected.jsonl").write_text("garbage\n"), "rejected.jsonl: line 1")),
        (5, "info on a deleted shard", lambda: damaged_shard(lab, "c5-info-del", "deleted", "info")),
        (5, "info on a truncated shard", lambda: damaged_shard(lab, "c5-info-trunc", "truncated", "info")),
        (5, "bench on a truncated shard", lambda: damaged_shard(lab, "c5-bench-trunc", "truncated", "bench")),
    ]
    for label, content in traps.items():
        plan.append((5, f"CoOp split file with {label}", lambda content=content, name=f"c5-s{len(plan)}": coop_split_trap(lab, name, content)))
        plan.append((5, f"caption file with {label}", lambda content=content, name=f"c5-c{len(plan)}": caption_trap(lab, name, content)))
    plan += [
        (5, "build on a full disk (ENOSPC), then rerun", lambda: disk_fault(lab, "c5-enospc", errno.ENOSPC)),
        (5, "build on a read-only disk (EROFS), then rerun", lambda: disk_fault(lab, "c5-erofs", errno.EROFS)),
        (5, "build --out an existing file", lambda: out_is_a_file(lab, "c5-out-build", ["build", "--out", "OUT"])),
        (5, "crawl --out an existing file", lambda: out_is_a_file(lab, "c5-out-crawl", ["crawl", "URLS", "--out", "OUT"])),
        (5, "bench --out an existing file", lambda: out_is_a_file(lab, "c5-out-bench", [
            "bench", "zeroshot", "--data", "DATA", "--model", "MODEL", "--device", "cpu", "--out", "OUT"])),
        (5, "pretrain --out an existing file", lambda: out_is_a_file(lab, "c5-out-pretrain", ["pretrain", "--data", "DATA", "--out", "OUT"])),
        (5, "bench --set epochs=0", lambda: named(lab.bench(lab.data, lab.fresh("c5-epochs") / "runs", "--set", "epochs=0"))),
        (5, "bench --set epochs=-1", lambda: named(lab.bench(lab.data, lab.fresh("c5-epochs-neg") / "runs", "--set", "epochs=-1"))),
        (5, "bench --set n_ctx=0", lambda: named(lab.bench(lab.data, lab.fresh("c5-nctx") / "runs", "--set", "n_ctx=0"))),
    ]
    for option, value in (("--patch", "0"), ("--width", "0"), ("--lr", "-1")):
        plan.append((5, f"pretrain {option} {value}", lambda option=option, value=value: named(fdrd(
            "pretrain", "--data", lab.data, "--out", lab.fresh(f"c5-p{option}") / "m", option, value))))
    for label, change, words in (
        ("an absolute shard path", lambda d: edit(d, lambda m: {**m, "shards": [
            {**m["shards"][0], "path": str(d / m["shards"][0]["path"])}, *m["shards"][1:]]}), "absolute path"),
        ("a shard path leaving the folder", lambda d: edit(d, lambda m: {**m, "shards": [
            {**m["shards"][0], "path": "../data/" + m["shards"][0]["path"]}, *m["shards"][1:]]}), "climbs out"),
        ("an edited top-level row count", lambda d: edit(d, lambda m: {**m, "rows": m["rows"] + 1}), "rows in the shards"),
        ("README.md deleted", lambda d: (d / "README.md").unlink(), "README.md: missing"),
        ("README.md edited to load other files", card_elsewhere, "README.md: config"),
    ):
        plan.append((6, f"validate with {label}", lambda change=change, words=words, name=f"c6-v{len(plan)}": validate_problem(
            lab, name, change, words)))
    plan += [
        (6, "audit DIR holding a truncated JSON file", lambda: audit_folder_with_bad_json(lab)),
        (6, "image folder with a folder named b.jpg", lambda: folder_named_like_an_image(lab)),
        (7, "a sparse 3 GB file named .jpg", lambda: huge_input(lab)),
        (7, "pretrain after a killed run left staging", lambda: stale_staging(lab)),
    ]
    return plan


def named(run: Run) -> tuple[bool, str]:
    return run.named_error, run.brief()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated class numbers (default: all)")
    parser.add_argument("--keep", type=Path, help="plant into this folder and keep it")
    args = parser.parse_args()
    only = {int(c) for c in args.only.split(",") if c.strip()} or set(CLASSES)
    root = args.keep or Path(tempfile.mkdtemp(prefix="fdrd-attacks-"))
    root.mkdir(parents=True, exist_ok=True)
    lab, server = Lab(root), BadServer()
    tally: dict[int, list[int]] = {c: [0, 0] for c in CLASSES}
    try:
        for number, name, attack in attacks(lab, server):
            if number not in only:
                continue
            try:
                held, detail = attack()
            except Exception as error:  # the script's own setup failing counts as a failed attack
                held, detail = False, f"attack crashed: {type(error).__name__}: {str(error)[:150]}"
            tally[number][0] += 1
            tally[number][1] += held
            print(f"[{'held' if held else 'FAILED'}] class {number}: {name} -- {detail}", flush=True)
    finally:
        server.httpd.shutdown()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print("\n| class | attacks | tried | held |\n|---|---|---|---|")
    for number, (tried, held) in tally.items():
        if tried:
            print(f"| {number} | {CLASSES[number]} | {tried} | {held} |")
    return 0 if all(tried == held for tried, held in tally.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
