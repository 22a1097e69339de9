"""``geckokit distill`` and ``geckokit demo``: the whole recipe as one resumable run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geckokit.cli.logs import verbose_option
from geckokit.cli.options import (
    FUSION_DEFAULT,
    distillation_options,
    executor_options,
    generate_prompt_option,
    llm_option,
    llm_timeout_option,
    queries_file_option,
    queries_task_option,
    retriever_option,
)
from geckokit.cli.settings import setting_option, setting_overrides
from geckokit.pipeline.config import DistillConfig
from geckokit.runs.manifest import Stage

if TYPE_CHECKING:
    from rich.console import Console

    from geckokit.pipeline.runner import Action, Step
    from geckokit.runs.manifest import MineSummary, RunManifest


@click.command()
@setting_option(
    DistillConfig,
    "corpus",
    type=click.Path(exists=True, path_type=Path),
    help="Passages: JSONL, Parquet, CSV, a BEIR folder or a folder of .txt/.md files "
    "(or `corpus` in the config file).",
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Run folder (resumable)."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="TOML or YAML file with the same keys as the flags (flags win), and the nested "
    "tables generate, mine, mix and train.",
)
@llm_option
@llm_timeout_option(DistillConfig, inherit=True)
@setting_option(DistillConfig, "base", inherit=True, help="Encoder to distil into.")
@setting_option(
    DistillConfig,
    "eval",
    "--eval",
    "eval_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Benchmark to evaluate base and distilled model on with mteb (repeatable): a BEIR "
    "folder or any task `geckokit eval` takes.",
)
@setting_option(DistillConfig, "limit", help="Use the first N passages only.")
@setting_option(
    DistillConfig,
    "sample",
    help="Write queries for N passages drawn at random; neighbours still come from the "
    "whole corpus.",
)
@generate_prompt_option
@queries_file_option
@queries_task_option
@setting_option(
    DistillConfig,
    "also_generate",
    inherit=True,
    help="With --queries-file: also write queries for the corpus (FRet step 1) and mine both "
    "together. Without it, --queries-file takes FRet step 1's place (no queries/).",
)
@setting_option(DistillConfig, "mine.top_n", inherit=True, help="Neighbours per query.")
@retriever_option(DistillConfig, "mine.retriever", inherit=True)
@setting_option(
    DistillConfig,
    "mine.fusion",
    inherit=True,
    default_text=FUSION_DEFAULT,
    help="FRet step 2: how the LLM's QL and RC rankings choose the positive (seed: no "
    "relabelling). Changed before mix/ has run, it re-selects from the stored scores with "
    "no LLM work.",
)
@setting_option(
    DistillConfig,
    "mine.drop_solved",
    inherit=True,
    help="FRet step 2: leave out the queries whose seed passage the initial encoder already "
    "ranks first (they teach it little; their pairs are not scored). Not in the paper.",
)
@setting_option(
    DistillConfig, "train.max_steps", inherit=True, help="Training steps (-1: run --epochs)."
)
@setting_option(DistillConfig, "train.epochs", inherit=True, help="Training epochs.")
@setting_option(DistillConfig, "train.batch_size", inherit=True, help="Training batch size.")
@distillation_options(DistillConfig, "train.", inherit=True)
@setting_option(
    DistillConfig,
    "prefinetune",
    type=click.Path(exists=True),
    help="Text pairs to pre-finetune on first (see `geckokit train --help`).",
)
@click.option(
    "--until",
    type=click.Choice([s.value for s in Stage]),
    default=Stage.REPORT.value,
    show_default=True,
    help="Stop after this stage (rerun without it to go on).",
)
@executor_options(DistillConfig, inherit=True)
@verbose_option
@click.pass_context
def distill(
    ctx: click.Context,
    out: Path,
    config_path: Path | None,
    until: str,
    verbose: int,
    **settings: Any,  # the DistillConfig flags, read by setting_overrides
) -> None:
    """Distil an embedding model from a corpus and an LLM: generate -> mine -> mix -> train
    -> eval -> report, in one run folder. Rerun the same command to resume after a stop.
    With --queries-file your own queries are mined in place of generated ones (or beside
    them, with --also-generate). The terminal shows one line or bar per stage; the details
    (the libraries' logs, warnings and progress bars) go to OUT/distill.log."""
    from geckokit.pipeline.distill import load_config

    overrides = setting_overrides(ctx, DistillConfig)  # unset (None): the config file's
    if overrides["corpus"] is None and config_path is None:
        raise click.UsageError("give --corpus or a --config file that names the corpus")
    config = load_config(config_path, overrides)
    run_and_print(config, out, until=until)


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("geckokit-demo"),
    show_default=True,
    help="Run folder (rerun to resume).",
)
@llm_option
@verbose_option
def demo(out: Path, llm_spec: str | None, verbose: int) -> None:
    """Run the whole recipe on the embedded defaults (Qwen2.5-Coder-0.5B via llama.cpp,
    all-MiniLM-L6-v2) and a small shipped corpus (the Tor manual's option reference, 350
    passages, 60 held-out test questions): queries for 48 passages, 5 neighbours each.
    The same mixture is trained with three seeds; the end prints base (plain and unified
    format) against the distilled model's mean and spread, which is best and by how much,
    and the report's path. The details go to OUT/distill.log."""
    from rich.console import Console

    from geckokit.cli.logs import run_log, verbosity
    from geckokit.pipeline.demo import run_demo
    from geckokit.pipeline.distill import LOG_FILE
    from geckokit.runs.manifest import RunManifest

    console = Console()
    with run_log(out / LOG_FILE, verbose=verbosity()):
        summary = run_demo(
            out,
            llm=llm_spec,
            on_estimate=lambda e: show_estimate(console, e),
            on_stage=lambda step, action: show_stage(console, step, action),
        )
    print_summary(console, RunManifest.model_validate(summary["run"]), out, results=False)
    print_demo_table(console, summary)
    console.print(f"log:    {out / LOG_FILE}")


def print_demo_table(console: Any, summary: dict[str, Any]) -> None:
    """The demo's end: base (plain, unified) and the distilled model over its training
    seeds on the held-out questions, then one line: which is best and by how much."""
    from rich.table import Table

    table = Table(title="held-out questions (nDCG@10, Recall@10)")
    for col in ("model", "nDCG@10", "Recall@10", "seeds (nDCG@10)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in summary["rows"]:
        seeds = r.get("seeds")
        spread = (
            ", ".join(f"{s['seed']}: {s['ndcg@10']:.2f}" for s in seeds)
            + f" (range {r['ndcg@10_min']:.2f}-{r['ndcg@10_max']:.2f})"
            if seeds
            else ""
        )
        table.add_row(r["model"], f"{r['ndcg@10']:.2f}", f"{r['recall@10']:.2f}", spread)
    console.print(table)
    console.print(
        f"best: {summary['best']}, ahead of the next row by {summary['margin']:.2f} nDCG@10 "
        f"(distilled minus the better base row: {summary['distilled_minus_best_base']:+.2f})"
    )


def run_and_print(config: Any, out: Path, *, until: str) -> None:
    """Run ``geckokit distill`` with one line per stage on the terminal and the details in
    ``out``'s log file, then print the summary."""
    from rich.console import Console

    from geckokit.cli.logs import run_log, verbosity
    from geckokit.pipeline.distill import LOG_FILE, run_distill

    console = Console()
    with run_log(out / LOG_FILE, verbose=verbosity()):
        manifest = run_distill(
            config,
            out,
            until=until,
            on_estimate=lambda e: show_estimate(console, e),
            on_stage=lambda step, action: show_stage(console, step, action),
        )
    print_summary(console, manifest, out)
    console.print(f"log:    {out / LOG_FILE}")


def show_estimate(console: Console, e: dict[str, Any]) -> None:
    console.print(f"[bold]estimate[/]: {describe_estimate(e)}")


def show_stage(console: Console, step: Step, action: Action) -> None:
    """One line as a stage starts (its own progress bar, if it has one, follows) or is
    skipped."""
    from geckokit.pipeline.runner import Action

    if action is Action.SKIP:
        console.print(f"[dim]{step.name:<9} finished before: kept[/]")
    else:
        again = " (again, from its stored output)" if action is Action.AGAIN else ""
        console.print(f"[bold]{step.name:<9}[/] {step.title}{again}")


def describe_estimate(e: dict[str, Any]) -> str:
    """One line for a :func:`~geckokit.fret.cost.estimate_cost` result."""
    t, rate = e["tokens"], e["rates"]
    at_most = "at most " if e.get("pairs_at_most") else ""
    # with drop_solved the mining share is an upper bound, and so are the totals it is in
    eta = f"{at_most}about {e['seconds'] / 60:.0f} min" if e["seconds"] is not None else "unknown"
    split = e.get("seconds_by_stage") or {}
    if len(split) == 2:  # both stages left: say which is which
        eta += (
            f" (writing queries about {split['generate'] / 60:.0f}, "
            f"scoring pairs {at_most}about {split['mine'] / 60:.0f})"
        )
    together = e.get("written_together", 1)
    speed = (
        f" at {_rate(rate['prompt_tokens_per_s'])} / {_rate(rate['written_tokens_per_s'])} "
        f"tokens/s{f' ({together} answers written together)' if together > 1 else ''} "
        "(measured just now)"
        if rate
        else ""
    )
    calls = e["llm_calls"]
    work = [f"{calls['generate']} queries to write"] if calls["generate"] else []
    work += [f"{at_most}{calls['score_pairs']} pairs to score"] if calls["score_pairs"] else []
    written = (
        f" and {'at most ' if e.get('written_at_most') else ''}"
        f"{t['generate_written'] / 1000:.0f}k written tokens"
        if calls["generate"]
        else ""
    )
    user = e.get("user_queries") or 0
    mined = [f"{e['passages']} passages"] if e["passages"] or not user else []
    mined += [f"{user} queries of yours"] if user else []
    return (
        f"{', '.join(mined)} -> {' and '.join(work) or 'no LLM calls'}; {at_most}about "
        f"{(t['generate_prompt'] + t['mine_prompt']) / 1000:.0f}k prompt tokens{written}{speed}; "
        f"LLM time {eta}"
    )


def _rate(tokens_per_s: float) -> str:
    """A probed rate: whole tokens, or one decimal below 10 (a busy machine's writing rate
    would otherwise read 0)."""
    return f"{tokens_per_s:.0f}" if tokens_per_s >= 10 else f"{tokens_per_s:.1f}"


def print_summary(console: Any, manifest: RunManifest, out: Path, *, results: bool = True) -> None:
    """The end of a run: what went wrong with the run's records (lost, damaged, restored
    from their copies), the before/after table (``results=False`` leaves it to the caller),
    the time per stage and in all (with the LLM's share), the LLM's tokens per stage, the
    model's and the report's paths."""
    from rich.markup import escape
    from rich.table import Table

    from geckokit.cli.options import llm_usage_line
    from geckokit.runs.manifest import GenerateEntry, MineEntry

    for note in manifest.notes:
        console.print(f"[yellow]note[/]: {escape(note)}")
    stages = manifest.stages
    rows = stages.eval.results if results and stages.eval is not None else None
    if rows:
        table = Table(title="held-out retrieval")
        for col in ("benchmark", "model", "nDCG@10", "Recall@10"):
            table.add_column(col, justify="left" if col in ("benchmark", "model") else "right")
        for r in rows:
            table.add_row(r.benchmark, r.model, f"{r.ndcg_at_10:.2f}", f"{r.recall_at_10:.2f}")
        console.print(table)
    if stages.mine is not None and stages.mine.summary is not None:
        if line := _fret_line(stages.mine.summary):
            console.print(line)
    entries = stages.items()
    for stage, info in entries:
        more = f" ({info.sittings} sittings)" if info.sittings > 1 else ""
        if info.recovered:
            more += " + its time before the run manifest was lost (unknown)"
        console.print(f"  {stage.value:<9} {info.seconds:>8.1f} s{more}")
    total = sum(info.seconds for _, info in entries)
    llm = [(s, e) for s, e in entries if isinstance(e, GenerateEntry | MineEntry)]
    timed = {s: e.summary.llm_seconds if e.summary is not None else None for s, e in llm}
    llm_s = sum(v or 0 for v in timed.values())
    unknown = [s.value for s, v in timed.items() if v is None]
    share = f", of which the LLM {llm_s:.1f} s" if llm_s else ""
    if share and unknown:  # shards written before their LLM time was recorded
        share += f" (not counting {', '.join(unknown)}: not recorded)"
    console.print(f"  {'total':<9} {total:>8.1f} s{share}")
    for stage, info in llm:  # the LLM's tokens, as the stage's last sitting counted
        if info.llm_this_run is not None:
            n = info.sittings
            label = f"{stage.value} LLM" + (f", the last of {n} sittings" if n > 1 else "")
            console.print(f"  {llm_usage_line(info.llm_this_run.dump(), label)}")
    if manifest.model:
        console.print(f"model:  {manifest.model}  (SentenceTransformer(path))")
    if manifest.report:
        console.print(f"report: {manifest.report}")
    console.print(f"status: {manifest.status}; run folder: {out}")


def _fret_line(summary: MineSummary) -> str:
    """What FRet step 2 kept, with :func:`~geckokit.cli.options.solved_hint`."""
    from geckokit.cli.options import solved_hint

    first = summary.positive_first_for_encoder
    if summary.examples is None or first is None:
        return ""
    user = summary.user_queries or 0
    mined = f" ({summary.generated_queries or 0} generated queries, {user} of yours)"
    relabel = summary.relabel_rate  # None: no generated query, so no seed
    line = (
        f"FRet: {summary.examples} examples{mined if user else ''}"
        + (f", relabel rate {relabel:.1%}" if relabel is not None else "")
        + f", positive already first for the base encoder for {first:.1%}."
    )
    return f"{line} {hint}" if (hint := solved_hint(summary)) else line
