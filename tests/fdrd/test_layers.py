"""The house's floors: the command line (fdrd/cli/) sits on top and nothing below imports it;
builders/ never imports benchmark/ and benchmark/ never imports builders/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]


def offenders(files: list[Path], forbidden: str) -> list[str]:
    found = []
    for path in files:
        names = imported_modules(path)
        if any(name == forbidden or name.startswith(forbidden + ".") for name in names):
            found.append(f"{path.name} imports {forbidden}")
    return found


def test_the_command_line_is_a_package_at_the_top():
    assert (ROOT / "fdrd" / "cli" / "__init__.py").is_file()
    assert not list((ROOT / "fdrd").glob("cli_*.py")), "command-line modules belong in fdrd/cli/"
    below = [p for p in python_files("fdrd", "builders", "benchmark") if "cli" not in p.relative_to(ROOT).parts[:2]]
    assert below, "no modules found below the command line"
    assert offenders(below, "fdrd.cli") == []


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [("fdrd", "builders"), ("fdrd", "benchmark"), ("builders", "benchmark"), ("benchmark", "builders")],
)
def test_no_arrow_points_backwards(folder, forbidden):
    files = [p for p in python_files(folder) if "cli" not in p.relative_to(ROOT).parts[:2]]
    assert offenders(files, forbidden) == []


@pytest.mark.parametrize("line", ["import fdrd.cli", "from fdrd.cli import bench", "from fdrd import cli"])
def test_the_checker_sees_every_spelling_of_an_import(tmp_path, line):
    # Without this the tests above could pass on a scan that sees nothing.
    module = tmp_path / "m.py"
    module.write_text(line + "\n")
    assert offenders([module], "fdrd.cli") == ["m.py imports fdrd.cli"]
