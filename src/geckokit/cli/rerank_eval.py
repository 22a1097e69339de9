"""``geckokit rerank-eval``: how well the LLM reranks, on a benchmark with labels."""

from __future__ import annotations

import json
from pathlib import Path

import click

from geckokit.cli.options import encoder_option, llm_option
from geckokit.cli.settings import setting_option
from geckokit.pipeline.config import DistillConfig


@click.command("rerank-eval")
@click.option(
    "--beir",
    "beir_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A BEIR folder with qrels/test.tsv.",
)
@encoder_option
@llm_option
@click.option(
    "--top-k", type=int, default=20, show_default=True, help="Candidates per query to rerank."
)
@click.option(
    "--queries",
    "n_queries",
    type=int,
    default=50,
    show_default=True,
    help="The first N test queries by id (0: all).",
)
@setting_option(
    DistillConfig,
    "rerank_prompt",
    "--prompt",
    "prompt_spec",
    help="Rerank prompt: binary, graded, or a TOML file.",
)
@click.option(
    "--task",
    default=None,
    help="Task string for the queries (default: per benchmark, after Gecko's Table 9).",
)
@click.option(
    "--gecko-format",
    is_flag=True,
    help="Embed in the unified task/title format (for models trained on it).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the results as JSON here.",
)
def rerank_eval(
    beir_dir: Path,
    encoder: str | None,
    llm_spec: str | None,
    top_k: int,
    n_queries: int,
    prompt_spec: str,
    task: str | None,
    gecko_format: bool,
    out: Path | None,
) -> None:
    """Reproduce Gecko's Appendix A check: nDCG@10 of the encoder's order, of query
    likelihood, of relevance classification and of their fusions."""
    from rich.console import Console
    from rich.table import Table

    from geckokit.encoder import EncoderRef
    from geckokit.fret.rerank import load_rerank_prompt
    from geckokit.fret.rerank_eval import rerank_eval as run
    from geckokit.llm import load_llm

    result = run(
        beir_dir,
        llm=load_llm(llm_spec),
        encoder=EncoderRef.load(encoder),
        prompt=load_rerank_prompt(prompt_spec),
        top_k=top_k,
        n_queries=n_queries or None,
        task=task,
        gecko_format=gecko_format,
    )
    table = Table(
        title=f"{result['benchmark']}: {result['queries']} queries, top {top_k} reranked by {result['llm']} ({result['prompt']['version']})"
    )
    table.add_column("ordering")
    table.add_column("nDCG@10", justify="right")
    table.add_column("Recall@10", justify="right")
    for name, r in result["results"].items():
        table.add_row(name, f"{r['ndcg@10']:.2f}", f"{r['recall@10']:.2f}")
    Console().print(table)
    Console().print(
        f"{result['pairs']} pairs in {result['llm_seconds']}s, {result['prompt_tokens_per_second']} prompt tokens/s"
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
