"""``geckokit mix``: FRet plus human-labelled sets, in the unified format, in one folder."""

from __future__ import annotations

from pathlib import Path

import click

from geckokit.cli.settings import setting_option
from geckokit.pipeline.config import MixSources


def _weights(value: str | None) -> dict[str, float] | None:
    if not value:
        return None
    out = {}
    for part in value.split(","):
        name, sep, w = part.rpartition("=")
        try:
            out[name.strip()] = float(w)
        except ValueError:
            sep = ""
        if not sep:
            raise click.BadParameter(
                f"expected SOURCE=WEIGHT[,SOURCE=WEIGHT...], got {part!r}", param_hint="--weights"
            )
    return out


@click.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder (mixture/, manifest.json).",
)
@click.option(
    "--fret",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A `geckokit mine` output folder (repeatable).",
)
@click.option(
    "--nli",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="SNLI/MNLI-style JSONL: premise, hypothesis, label.",
)
@click.option(
    "--classification",
    multiple=True,
    help="JSONL with text, label; PATH or PATH:TASK (repeatable).",
)
@click.option(
    "--sts",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="STS JSONL: sentence1, sentence2, score.",
)
@setting_option(
    MixSources,
    "sts_min_score",
    help="STS pairs at or above this score become positives.",
)
@click.option(
    "--qa",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Answer-selection JSONL: question, answer_sentence, label.",
)
@click.option(
    "--pairs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A BEIR folder whose train qrels become (query, passage) pairs.",
)
@click.option(
    "--claims",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Fact-checking JSONL (Climate-FEVER layout): claim, evidences with evidence_label.",
)
@click.option(
    "--weights",
    default=None,
    help="Sampling weights per source, e.g. fret:run=2,nli:snli_esnli=1 (default: uniform over sources).",
)
@click.option("--seed", type=int, default=0, show_default=True)
def mix(
    out: Path,
    fret: tuple[Path, ...],
    nli: tuple[Path, ...],
    classification: tuple[str, ...],
    sts: tuple[Path, ...],
    sts_min_score: float,
    qa: tuple[Path, ...],
    pairs: tuple[Path, ...],
    claims: tuple[Path, ...],
    weights: str | None,
    seed: int,
) -> None:
    """Build the training mixture (Gecko, section 3.1): every source as (task, query,
    positive, negative, source) rows in the unified format."""
    from rich.console import Console

    from geckokit.mixture.build import build_mixture

    cls = []
    for spec in classification:
        path, _, task = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
        if not Path(path).exists():
            raise click.BadParameter(f"{path} does not exist", param_hint="--classification")
        cls.append((Path(path), task or None))
    manifest = build_mixture(
        out,
        fret=list(fret),
        nli=list(nli),
        classification=cls,
        sts=list(sts),
        qa=list(qa),
        pairs=list(pairs),
        claims=list(claims),
        weights=_weights(weights),
        sts_min_score=sts_min_score,
        seed=seed,
    )
    console = Console()
    for source, n in manifest["sources"].items():
        console.print(f"{source}: {n} rows (weight {manifest['weights'][source]})")
    console.print(f"{manifest['rows']} rows in {out / 'mixture'}")
