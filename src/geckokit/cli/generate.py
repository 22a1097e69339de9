"""``geckokit generate``: FRet step 1, a task and a query per passage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geckokit.cli.options import (
    executor_options,
    generate_prompt_option,
    llm_option,
    llm_timeout_option,
    llm_usage_line,
)
from geckokit.cli.settings import setting_option
from geckokit.fret.generate import GenerateConfig
from geckokit.pipeline.config import DistillConfig
from geckokit.runs.executor import ExecutorSettings

if TYPE_CHECKING:
    from rich.console import Console


@click.command()
@click.option(
    "--corpus",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="JSONL, Parquet, CSV, a BEIR folder or a folder of .txt/.md files.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Run folder (queries/, rejects/, manifest.json).",
)
@llm_option
@llm_timeout_option(ExecutorSettings)
@click.option("--limit", type=int, default=None, help="Use only the first N passages.")
@setting_option(GenerateConfig, "seed", help="Seeds task-type draws and sampling, per passage.")
@setting_option(GenerateConfig, "queries_per_passage", help="Query slots per passage.")
@setting_option(
    GenerateConfig,
    "task_types",
    type=str,
    help="Comma-separated task types to draw from (default: the prompt's whole pool), "
    "e.g. 'fact checking' for a corpus meant for claim verification.",
)
@setting_option(GenerateConfig, "max_attempts", help="Tries per query, each with a new seed.")
@setting_option(
    GenerateConfig,
    "validation.max_word_overlap",
    help="Reject a query when more than this share of its content words occur in the "
    "passage or its title (1 = no limit); e.g. 0.6 for queries in other words.",
)
@setting_option(
    GenerateConfig, "temperature", help="Sampling temperature of a query's first attempt."
)
@setting_option(
    GenerateConfig,
    "parallel",
    help="Passages whose answers the LLM writes together, each continuing from the shared "
    "few-shot prefix (llama.cpp backend: one decode runs a token of each). Faster, but some "
    "greedy answers then change with the passages beside them; 1: one at a time.",
)
@generate_prompt_option
@click.option(
    "--shard-size",
    type=int,
    default=32,
    show_default=True,
    help="Passages per output shard (the unit of resumption).",
)
@setting_option(
    DistillConfig,
    "passage_tokens",
    help="Split longer documents into passages of this many tokens.",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Skip unreadable corpus lines (reported) instead of stopping.",
)
@executor_options(ExecutorSettings)
def generate(
    corpus: Path,
    out: Path,
    llm_spec: str | None,
    llm_timeout: float,
    limit: int | None,
    seed: int,
    queries_per_passage: int,
    task_types: str | None,
    max_attempts: int,
    max_word_overlap: float,
    temperature: float,
    parallel: int,
    prompt: str | None,
    shard_size: int,
    passage_tokens: int,
    skip_invalid: bool,
    executor: str,
    ray_address: str | None,
    workers: int,
) -> None:
    """FRet step 1: for each passage the LLM writes a task description and a query.

    Rerun the same command to resume: finished shards are kept, at most the shard in flight
    is redone.
    """
    from rich.console import Console

    from geckokit.corpus import load_corpus
    from geckokit.fret.generate_run import generate_queries
    from geckokit.fret.prompts import load_generate_prompt
    from geckokit.fret.validate import ValidationConfig
    from geckokit.registry import DEFAULT_LLM
    from geckokit.runs.executor import Executor

    loaded = load_corpus(
        corpus, max_tokens=passage_tokens, errors="skip" if skip_invalid else "raise", limit=limit
    )
    config = GenerateConfig(
        queries_per_passage=queries_per_passage,
        max_attempts=max_attempts,
        temperature=temperature,
        parallel=parallel,
        seed=seed,
        task_types=[t.strip() for t in task_types.split(",")] if task_types else None,
        validation=ValidationConfig(max_word_overlap=max_word_overlap),
    )
    manifest = generate_queries(
        loaded,
        out,
        llm=llm_spec or DEFAULT_LLM,  # loaded here, or by each Ray worker
        config=config,
        prompt=load_generate_prompt(prompt),
        shard_size=shard_size,
        executor=ExecutorSettings(
            executor=Executor.parse(executor),
            ray_address=ray_address,
            workers=workers,
            llm_timeout=llm_timeout,
        ),
    )
    print_summary(Console(), manifest, out)


def print_summary(console: Console, manifest: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    s = manifest["summary"]
    table = Table(title="generate: task types", show_header=True)
    table.add_column("task type")
    table.add_column("queries", justify="right")
    for name, count in s["task_types"].items():
        table.add_row(name, str(count))
    console.print(table)
    console.print(
        f"{s['queries']} queries for {s['passages']} passages ({s['passages_without_query']} "
        f"without one, {s.get('slots_without_query', 0)} query slots left empty); "
        f"mean query length {s['mean_query_words']} words; reject rate {s['reject_rate']:.1%} "
        f"({', '.join(f'{k} {v:.1%}' for k, v in s['reject_rate_by_reason'].items()) or 'none'}); "
        f"{s['queries_per_minute']} queries/min"
    )
    if "llm_this_run" in manifest:
        console.print(llm_usage_line(manifest["llm_this_run"]))
    console.print(f"status: {manifest['status']}; output: {out}")
