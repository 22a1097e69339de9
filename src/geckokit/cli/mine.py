"""``geckokit mine``: FRet step 2, LLM-reranked positives and hard negatives."""

from __future__ import annotations

from pathlib import Path

import click

from geckokit.cli.options import (
    FUSION_DEFAULT,
    encoder_option,
    executor_options,
    index_line,
    llm_option,
    llm_timeout_option,
    llm_usage_line,
    queries_file_option,
    queries_task_option,
    retriever_option,
    solved_hint,
)
from geckokit.cli.settings import setting_option
from geckokit.fret.mine_run import MineConfig
from geckokit.pipeline.config import DistillConfig
from geckokit.runs.executor import ExecutorSettings


@click.command()
@click.option(
    "--queries",
    "queries_dir",
    default=None,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A `geckokit generate` output folder (and/or --queries-file).",
)
@queries_file_option
@queries_task_option
@click.option(
    "--corpus",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="The corpus to mine: the one the generated queries were written for, in which the "
    "positives and negatives of every query are found.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Run folder (candidates/, scores/, fret/, manifest.json).",
)
@encoder_option
@llm_option
@llm_timeout_option(ExecutorSettings)
@setting_option(MineConfig, "top_n", help="Neighbours per query (the paper's N).")
@retriever_option(MineConfig, "retriever")
@setting_option(
    MineConfig, "hybrid_k", help="k of --retriever hybrid's 1/(k + rank) (Cormack et al. 2009)."
)
@setting_option(
    MineConfig,
    "fusion",
    inherit=True,
    default_text=FUSION_DEFAULT,
    help="How QL and RC ranks are combined (rrf: 1/rank_QL + 1/rank_RC, the paper's; "
    "seed: no LLM, the seed passage stays the positive, the paper's baseline).",
)
@setting_option(
    MineConfig,
    "weights",
    type=str,
    help="w_ql,w_rc,w_encoder for --fusion weighted (w_encoder weighs the rank in the "
    "retriever's order).",
)
@setting_option(
    MineConfig,
    "negative",
    help="Hard negative: the rank-N candidate, a random lower-half one, or the k lowest.",
)
@setting_option(MineConfig, "negatives_k", help="How many for --negative lowest-k.")
@setting_option(
    DistillConfig,
    "rerank_prompt",
    "--prompt",
    "prompt_spec",
    help="Rerank prompt: binary, graded, or a TOML file.",
)
@setting_option(
    MineConfig,
    "passage_max_tokens",
    "--passage-tokens",
    help="Passages are cut to this many LLM tokens in the prompt.",
)
@click.option(
    "--shard-size",
    type=int,
    default=64,
    show_default=True,
    help="Candidate passages per scores shard (the unit of resumption).",
)
@setting_option(
    MineConfig,
    "warmup_encoder",
    help="First fine-tune the encoder on the (query, seed passage) pairs (Gecko, footnote 1).",
)
@setting_option(
    MineConfig,
    "drop_solved",
    help="Leave out the queries whose seed passage the encoder already ranks first (they "
    "teach it little; their pairs are not scored). Not in the paper.",
)
@setting_option(
    MineConfig,
    "parallel",
    help="Pairs of a passage the LLM evaluates together, each in its own sequence sharing "
    "the passage's cached state (llama.cpp backend; 1: one at a time).",
)
@setting_option(
    MineConfig,
    "ivf_above",
    help="Above this many passages, search an IVF-SQ8 index (built once in the run folder, "
    "memory-mapped) instead of exact search; its recall against exact search is recorded.",
)
@setting_option(MineConfig, "nprobe", help="Inverted lists the IVF-SQ8 index searches per query.")
@setting_option(MineConfig, "seed", help="Seeds the random negative choice and the IVF sample.")
@executor_options(ExecutorSettings)
def mine(
    queries_dir: Path | None,
    queries_file: Path | None,
    task: str | None,
    corpus: Path,
    out: Path,
    encoder: str | None,
    llm_spec: str | None,
    llm_timeout: float,
    top_n: int,
    retriever: str,
    hybrid_k: int,
    fusion: str | None,
    weights: str,
    negative: str,
    negatives_k: int,
    prompt_spec: str,
    passage_tokens: int,
    shard_size: int,
    warmup_encoder: bool,
    drop_solved: bool,
    parallel: int,
    ivf_above: int,
    nprobe: int,
    seed: int,
    executor: str,
    ray_address: str | None,
    workers: int,
) -> None:
    """FRet step 2: retrieve top-N candidates per query, score each with the LLM (query
    likelihood and relevance label, one pass), fuse the rankings and pick the positive and
    hard negative. The queries come from a generate run (--queries), a file of your own
    (--queries-file; they have no seed passage, so the LLM's top choice among the top N is
    the positive), or both. Rerun the same command to resume; rerun with another --fusion,
    --weights, --negative or --negatives-k to choose again from the stored scores, with no
    LLM work."""
    from rich.console import Console

    from geckokit.encoder import EncoderRef
    from geckokit.fret.fusion import Fusion, NegativeChoice
    from geckokit.fret.mine_run import check_seedless
    from geckokit.fret.mine_run import mine as run_mine
    from geckokit.fret.rerank import load_rerank_prompt
    from geckokit.registry import DEFAULT_LLM, default_fusion
    from geckokit.retrieval.hybrid import Retriever
    from geckokit.runs.executor import Executor
    from geckokit.runs.manifest import MineSummary
    from geckokit.tasks import DEFAULT_QUERY_TASK

    if queries_dir is None and queries_file is None:
        raise click.UsageError("give --queries (a generate run), --queries-file, or both")
    if task is not None and queries_file is None:
        raise click.UsageError("--task is the task of the --queries-file queries; give that file")
    try:
        w = tuple(float(x) for x in weights.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected three numbers like 1,1,0, got {weights!r}", param_hint="--weights"
        ) from None
    if len(w) != 3:
        raise click.BadParameter(
            f"expected three numbers like 1,1,0, got {weights!r}", param_hint="--weights"
        )
    config = MineConfig(
        top_n=top_n,
        retriever=Retriever.parse(retriever),
        hybrid_k=hybrid_k,
        fusion=Fusion.parse(fusion or default_fusion(llm_spec) or MineConfig().fusion),
        weights=w,
        negative=NegativeChoice.parse(negative),
        negatives_k=negatives_k,
        passage_max_tokens=passage_tokens,
        warmup_encoder=warmup_encoder,
        drop_solved=drop_solved,
        parallel=parallel,
        ivf_above=ivf_above,
        nprobe=nprobe,
        seed=seed,
    )
    check_seedless(config, queries_file, generated=queries_dir is not None)  # before loading
    prompt = load_rerank_prompt(prompt_spec)
    manifest = run_mine(
        queries_dir,
        corpus,
        out,
        # loaded here, or by each Ray worker
        llm=None if config.fusion is Fusion.SEED else llm_spec or DEFAULT_LLM,
        encoder=EncoderRef.load(encoder),
        config=config,
        prompt=prompt,
        queries_file=queries_file,
        queries_task=task or DEFAULT_QUERY_TASK,
        shard_size=shard_size,
        executor=ExecutorSettings(
            executor=Executor.parse(executor),
            ray_address=ray_address,
            workers=workers,
            llm_timeout=llm_timeout,
        ),
    )
    console = Console()
    s = manifest.get("summary", {})
    if manifest["status"] == "finished":
        user = s.get("user_queries") or 0
        console.print(
            f"{s['examples']} FRet examples"
            + (f" ({s['generated_queries']} generated queries, {user} of yours)" if user else "")
            + (
                f"; relabelled (positive != seed): {s['relabel_rate']:.1%}; seed ranked first "
                f"{s['seed_at_rank_1']:.1%}, mean seed rank {s['seed_rank_mean']}"
                if s["relabel_rate"] is not None  # None: no generated query, no seed
                else ""
            )
            + (
                f"; positive already first for the encoder {s['positive_first_for_encoder']:.1%}"
                if "positive_first_for_encoder" in s  # not in runs mined before it was kept
                else ""
            )
            + (
                f"; QL range per query {s['ql']['mean_range_per_query']}, "
                f"RC range per query {s['rc']['mean_range_per_query']}"
                if s["ql"]
                else "; no LLM scores (seed fusion)"
            )
        )
        if hint := solved_hint(MineSummary.model_validate(s)):
            console.print(hint)
    dropped = s.get("solved_dropped")
    if dropped is not None:
        console.print(f"{dropped} queries left out: the encoder already ranks their seed first")
    if line := index_line(manifest.get("index")):
        console.print(line)
    if "llm_this_run" in manifest:
        console.print(llm_usage_line(manifest["llm_this_run"]))
    console.print(f"status: {manifest['status']}; output: {out}")
