"""``geckokit train``: contrastive fine-tuning on a mixture (Gecko, section 3.3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geckokit.cli.options import distillation_options
from geckokit.cli.settings import setting_option, setting_overrides
from geckokit.train.trainer import TrainConfig


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
@setting_option(TrainConfig, "base", help="Encoder to fine-tune: registry name, path or hub id.")
@setting_option(TrainConfig, "max_steps", help="Stop after N steps (-1: run --epochs).")
@setting_option(TrainConfig, "epochs", help="Passes over the mixture.")
@setting_option(
    TrainConfig, "batch_size", help="Training batch size (under torchrun: over all processes)."
)
@setting_option(TrainConfig, "learning_rate")
@setting_option(TrainConfig, "temperature", help="Softmax temperature of the loss.")
@setting_option(
    TrainConfig,
    "same_tower",
    "--same-tower/--no-same-tower",
    help="Use the batch's other queries as negatives too (same-tower negatives).",
)
@click.option(
    "--dims",
    default=None,
    help="Matryoshka dims, e.g. 384,256,128,64 (default: full, 2/3, 1/3, 1/6 of the width).",
)
@setting_option(
    TrainConfig,
    "gradcache_mini_batch",
    help="Gradient caching: embed in mini-batches of N so large batches fit in memory (0: off; "
    "-1: auto, on with 32 when a step embeds more than 128 texts, as --objective kl does).",
)
@setting_option(
    TrainConfig,
    "gather_across_devices",
    "--gather-across-devices/--no-gather-across-devices",
    help="Under torchrun: each process's queries meet the global batch's in-batch and "
    "same-tower negatives (gathered from all processes); --batch-size is the global batch.",
)
@setting_option(TrainConfig, "save_steps", help="Checkpoint every N steps.")
@click.option(
    "--prefinetune",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Pre-finetune first on these text pairs with in-batch negatives only: a JSONL/Parquet/"
    "CSV file with query/positive, question/answer or title/text columns, a corpus or BEIR "
    "folder (title-body pairs), or a `geckokit mix` folder.",
)
@setting_option(
    TrainConfig, "prefinetune_steps", help="Pre-finetuning steps (-1: --prefinetune-epochs)."
)
@setting_option(TrainConfig, "prefinetune_epochs")
@distillation_options(TrainConfig)
@setting_option(TrainConfig, "seed")
@click.pass_context
def train(
    ctx: click.Context,
    mixture_dir: Path,
    out: Path,
    dims: str | None,
    prefinetune: Path | None,
    **settings: Any,  # the TrainConfig flags, read by setting_overrides
) -> None:
    """Fine-tune an encoder with in-batch, same-tower and hard negatives over Matryoshka
    dimensions, optionally after pre-finetuning on text pairs (--prefinetune) and with the
    LLM's scores of each FRet query's candidates distilled in (--objective kl or
    margin-mse). Rerun the same command to continue from the newest checkpoint. The result
    loads with SentenceTransformer(OUT/model)."""
    from geckokit.train.distributed import is_main_process
    from geckokit.train.trainer import train as run

    try:
        dim_list = [int(d) for d in dims.split(",")] if dims else []
    except ValueError:
        raise click.BadParameter(
            f"expected integers like 384,256,128, got {dims!r}", param_hint="--dims"
        ) from None
    config = TrainConfig(
        **setting_overrides(ctx, TrainConfig, given_only=True), matryoshka_dims=dim_list
    )
    manifest = run(mixture_dir, out, config=config, prefinetune=prefinetune)
    if not is_main_process():  # under torchrun, rank 0 reports the run
        return
    pre = manifest.get("prefinetune")
    if pre:
        click.echo(f"pre-finetuned: {pre['steps']} steps on {pre['pairs']} pairs -> {pre['model']}")
    curve = manifest["loss_curve"]
    first, last = (curve[0]["loss"], curve[-1]["loss"]) if curve else (float("nan"), float("nan"))
    click.echo(
        f"{manifest['steps']} steps in {manifest['seconds']}s; loss {first:.3f} -> {last:.3f}; Matryoshka dims {manifest['matryoshka_dims']}"
    )
    click.echo(f"model: {manifest['model']}")
