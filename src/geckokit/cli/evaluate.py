"""``geckokit eval``: models side by side on benchmarks through mteb, at Matryoshka dims."""

from __future__ import annotations

from pathlib import Path

import click


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@click.command("eval")
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    help="Registry name, sentence-transformers folder or hub id; repeat to compare models.",
)
@click.option(
    "--tasks",
    multiple=True,
    required=True,
    help="Comma-separated: a BEIR folder, an STS, pair-classification or classification "
    "folder/.jsonl (kind detected), KIND:PATH (e.g. clustering:PATH), or online an MTEB task name.",
)
@click.option(
    "--dims",
    default=None,
    help="Matryoshka dims, e.g. 384,128 (default: the full width plus the dims in geckokit.json).",
)
@click.option(
    "--format",
    "formats",
    default="auto",
    show_default=True,
    help="Comma-separated prompt formats: gecko (unified format with per-task strings), plain "
    "(raw texts, as the MTEB leaderboard), auto (gecko for models with geckokit.json prompts).",
)
@click.option("--plain", is_flag=True, help="Same as --format plain.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: mteb result files, results.md, manifest.json.",
)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--device", default=None, help="torch device (default: sentence-transformers' choice)."
)
@click.option("--overwrite", is_flag=True, help="Recompute results already in --out.")
def evaluate(
    models: tuple[str, ...],
    tasks: tuple[str, ...],
    dims: str | None,
    formats: str,
    plain: bool,
    out: Path,
    batch_size: int,
    device: str | None,
    overwrite: bool,
) -> None:
    """Evaluate models on benchmarks with mteb's evaluators and write a comparison table.

    Results reused from an earlier run into the same --out are not recomputed."""
    from geckokit.evaluate.run import RESULTS_MD
    from geckokit.evaluate.run import evaluate as run

    try:
        dim_list = [int(d) for d in _split((dims,))] if dims else None
    except ValueError:
        raise click.BadParameter(
            f"expected integers like 384,128, got {dims!r}", param_hint="--dims"
        ) from None
    run(
        list(models),
        _split(tasks),
        dims=dim_list,
        formats=["plain"] if plain else _split((formats,)),
        out=out,
        batch_size=batch_size,
        device=device,
        overwrite=overwrite,
    )
    click.echo((out / RESULTS_MD).read_text(), nl=False)
    click.echo(f"results: {out}")
