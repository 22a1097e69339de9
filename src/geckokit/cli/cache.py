"""``geckokit cache``: what the embeddings cache holds, and pruning it."""

from __future__ import annotations

import time

import click


def _human(size: float) -> str:
    if size < 1000:
        return f"{size:,.0f} B"
    for unit in ("KB", "MB"):
        size /= 1000
        if round(size, 1) < 1000:
            return f"{size:,.1f} {unit}"
    return f"{size / 1000:,.1f} GB"


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


@click.group()
def cache() -> None:
    """Corpus embeddings kept by mining and evaluation ($GECKOKIT_EMBEDDINGS, else
    $GECKOKIT_HOME/embeddings, default ~/.cache/geckokit/embeddings): every run over the same
    passages with a registry encoder reuses them, and nothing removes them but `geckokit
    cache prune`. Deleting them is always safe: they are computed again when missing."""


@cache.command("list")
def list_cache() -> None:
    """Show each cached array: its file, encoder, passages, size and last use."""
    from rich.console import Console
    from rich.table import Table

    from geckokit.cache import cached_embeddings
    from geckokit.registry import embeddings_dir

    folder = embeddings_dir()
    entries = cached_embeddings(folder)
    total = sum(e.size_bytes for e in entries)
    table = Table()
    for col in ("file", "encoder", "texts", "size", "last used"):
        table.add_column(col, overflow="fold")
    now = time.time()
    for e in entries:
        table.add_row(
            e.path.name,
            e.encoder or "(incomplete: no sidecar)",
            f"{e.count:,}" if e.count is not None else "?",
            _human(e.size_bytes),
            _age(now - e.last_used),
        )
    if entries:
        Console(width=max(Console().width, 120)).print(table)
    n = len(entries)
    click.echo(f"{n} cached array{'s' * (n != 1)}, {_human(total)}, in {folder}")


@cache.command()
@click.option(
    "--older-than",
    "older_than",
    type=click.FloatRange(min=0),
    default=None,
    help="Remove the arrays last used more than this many days ago.",
)
@click.option("--all", "everything", is_flag=True, help="Remove every cached array.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def prune(older_than: float | None, everything: bool, dry_run: bool) -> None:
    """Remove cached embeddings: those unused for --older-than DAYS, or --all. Leftovers of
    a stopped write (an array without its sidecar, a temporary file of a process that has
    ended) go either way."""
    from geckokit.cache import is_array, prune_embeddings
    from geckokit.registry import embeddings_dir

    if (older_than is None) == (not everything):
        raise click.UsageError("give one of --older-than DAYS and --all")
    folder = embeddings_dir()
    removed = prune_embeddings(folder, older_than_days=older_than, dry_run=dry_run)
    freed = sum(removed.values())
    verb = "would remove" if dry_run else "removed"
    for path in removed:
        click.echo(f"{verb} {path}")
    arrays = sum(map(is_array, removed))
    click.echo(
        f"{verb} {len(removed)} file{'s' * (len(removed) != 1)} ({arrays} "
        f"array{'s' * (arrays != 1)}, {_human(freed)}) from {folder}"
    )
