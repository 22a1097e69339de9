"""``geckokit train``: contrastive fine-tuning on a mixture (Gecko, section 3.3)."""

from __future__ import annotations

from pathlib import Path

import click

from geckokit.cli.options import distillation_options


@click.command()
@click.option(
    "--mixture",
    "mixture_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A `geckokit mix` output folder.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Run folder: model/, checkpoints/, manifest.json.",
)
@click.option(
    "--base",
    default="all-minilm-l6-v2",
    show_default=True,
    help="Encoder to fine-tune: registry name, path or hub id.",
)
@click.option(
    "--max-steps",
    type=int,
    default=-1,
    show_default=True,
    help="Stop after N steps (-1: run --epochs).",
)
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--learning-rate", type=float, default=2e-5, show_default=True)
@click.option(
    "--temperature",
    type=float,
    default=0.05,
    show_default=True,
    help="Softmax temperature of the loss.",
)
@click.option("--no-same-tower", is_flag=True, help="Leave out the query-query negatives.")
@click.option(
    "--dims",
    default=None,
    help="Matryoshka dims, e.g. 384,256,128,64 (default: full, 2/3, 1/3, 1/6 of the width).",
)
@click.option(
    "--gradcache-mini-batch",
    type=int,
    default=0,
    show_default=True,
    help="Gradient caching: embed in mini-batches of N so large batches fit in memory (0: off).",
)
@click.option(
    "--save-steps", type=int, default=500, show_default=True, help="Checkpoint every N steps."
)
@click.option(
    "--prefinetune",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Pre-finetune first on these text pairs with in-batch negatives only: a JSONL/Parquet/"
    "CSV file with query/positive, question/answer or title/text columns, a corpus or BEIR "
    "folder (title-body pairs), or a `geckokit mix` folder.",
)
@click.option(
    "--prefinetune-steps",
    type=int,
    default=-1,
    show_default=True,
    help="Pre-finetuning steps (-1: --prefinetune-epochs).",
)
@click.option("--prefinetune-epochs", type=float, default=1.0, show_default=True)
@distillation_options(show_defaults=True)
@click.option("--seed", type=int, default=0, show_default=True)
def train(
    mixture_dir: Path,
    out: Path,
    base: str,
    max_steps: int,
    epochs: float,
    batch_size: int,
    learning_rate: float,
    temperature: float,
    no_same_tower: bool,
    dims: str | None,
    gradcache_mini_batch: int,
    save_steps: int,
    prefinetune: Path | None,
    prefinetune_steps: int,
    prefinetune_epochs: float,
    objective: str,
    distill_weight: float,
    teacher: str,
    teacher_temperature: float,
    distill_candidates: int,
    seed: int,
) -> None:
    """Fine-tune an encoder with in-batch, same-tower and hard negatives over Matryoshka
    dimensions, optionally after pre-finetuning on text pairs (--prefinetune) and with the
    LLM's scores of each FRet query's candidates distilled in (--objective kl or
    margin-mse). Rerun the same command to continue from the newest checkpoint. The result
    loads with SentenceTransformer(OUT/model)."""
    from geckokit.train.trainer import TrainConfig
    from geckokit.train.trainer import train as run

    try:
        dim_list = [int(d) for d in dims.split(",")] if dims else []
    except ValueError:
        raise click.BadParameter(
            f"expected integers like 384,256,128, got {dims!r}", param_hint="--dims"
        ) from None
    config = TrainConfig(
        base=base,
        max_steps=max_steps,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        temperature=temperature,
        same_tower=not no_same_tower,
        matryoshka_dims=dim_list,
        gradcache_mini_batch=gradcache_mini_batch,
        save_steps=save_steps,
        prefinetune_steps=prefinetune_steps,
        prefinetune_epochs=prefinetune_epochs,
        objective=objective,
        distill_weight=distill_weight,
        teacher=teacher,
        teacher_temperature=teacher_temperature,
        distill_candidates=distill_candidates,
        seed=seed,
    )
    manifest = run(mixture_dir, out, config=config, prefinetune=prefinetune)
    pre = manifest.get("prefinetune")
    if pre:
        click.echo(f"pre-finetuned: {pre['steps']} steps on {pre['pairs']} pairs -> {pre['model']}")
    curve = manifest["loss_curve"]
    first, last = (curve[0]["loss"], curve[-1]["loss"]) if curve else (float("nan"), float("nan"))
    click.echo(
        f"{manifest['steps']} steps in {manifest['seconds']}s; loss {first:.3f} -> {last:.3f}; Matryoshka dims {manifest['matryoshka_dims']}"
    )
    click.echo(f"model: {manifest['model']}")
