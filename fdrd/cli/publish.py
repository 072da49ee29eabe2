"""`fdrd publish dataset|leaderboard DIR --repo ORG/NAME`: upload a built FDRD folder (after `fdrd validate`
passes on it) or a leaderboard folder to a Hub dataset repo. The upload is benchmark/publish.py; the
validation is builders/validate.py, which only this top floor may combine with it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from fdrd.errors import FdrdError

publish_app = typer.Typer(
    help="Upload a built dataset or a leaderboard to the Hugging Face Hub (a dataset repo).", no_args_is_help=True
)

REPO = typer.Option(..., "--repo", help="ORG/NAME of the Hub dataset repo (created if missing).")
PRIVATE = typer.Option(False, "--private", help="Create the repo private (an existing repo keeps its visibility).")
REVISION = typer.Option(None, "--revision", help="Branch to commit to (created if missing); default main.")
TOKEN = typer.Option(None, "--token", help="Hub token with write access; default HF_TOKEN, else the stored login.")
DRY_RUN = typer.Option(False, "--dry-run", help="List every file and byte count that would go up; upload nothing.")


def _show(plan, console: Console) -> None:
    for planned in plan.files:
        console.print(f"{planned.size:>14,d}  {planned.path}", highlight=False)
    where = f"{plan.repo_id}" + (f"@{plan.revision}" if plan.revision else "")
    console.print(f"{len(plan.files)} files, {plan.total_bytes:,d} bytes -> dataset repo {where}", highlight=False)


def _publish(plan, token: str | None, dry_run: bool) -> None:
    from benchmark.publish import resolve_token, upload

    console = Console()
    _show(plan, console)
    if dry_run:
        console.print("dry run: nothing was uploaded")
        return
    url = upload(plan, resolve_token(token))
    console.print(f"[green]published[/]: {url}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(publish_app, name="publish")


@publish_app.command("dataset")
def dataset(
    directory: Path = typer.Argument(..., help="A folder written by `fdrd build`."),
    repo: str = REPO,
    private: bool = PRIVATE,
    revision: str = REVISION,
    token: str = TOKEN,
    dry_run: bool = DRY_RUN,
) -> None:
    """Validate a built FDRD folder, then upload it with its dataset card (README.md)."""
    from benchmark.publish import plan_upload, resolve_token
    from builders.validate import validate_build

    plan = plan_upload("dataset", directory, repo, private=private, revision=revision)
    if not dry_run:
        token = resolve_token(token)  # before minutes of validation, not after
    report = validate_build(directory, console=Console(stderr=True))
    if report.problems:
        errors = Console(stderr=True)
        for problem in report.problems:
            errors.print(f"[red]problem:[/] {problem}", highlight=False)
        raise FdrdError(
            f"{directory}: fails `fdrd validate` ({len(report.problems)} problem(s), listed above); "
            "fix or rebuild it. Nothing was published"
        )
    _publish(plan, token, dry_run)


@publish_app.command("leaderboard")
def leaderboard(
    directory: Path = typer.Argument(..., help="A folder written by `fdrd leaderboard RUNS... --out DIR`."),
    repo: str = REPO,
    private: bool = PRIVATE,
    revision: str = REVISION,
    token: str = TOKEN,
    dry_run: bool = DRY_RUN,
) -> None:
    """Upload a leaderboard folder (tables in every format, the HTML page, README.md as its card)."""
    from benchmark.publish import plan_upload

    _publish(plan_upload("leaderboard", directory, repo, private=private, revision=revision), token, dry_run)
