"""``geckokit mine``: FRet step 2, LLM-reranked positives and hard negatives."""

from __future__ import annotations

from pathlib import Path

import click

from geckokit.cli.options import (
    encoder_option,
    executor_options,
    llm_option,
    llm_usage_line,
    queries_file_option,
    queries_task_option,
    retriever_option,
    solved_hint,
)
from geckokit.retrieval.hybrid import RRF_K


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
@click.option(
    "--top-n", type=int, default=20, show_default=True, help="Neighbours per query (the paper's N)."
)
@retriever_option(default="encoder")
@click.option(
    "--hybrid-k",
    type=int,
    default=RRF_K,
    show_default=True,
    help="k of --retriever hybrid's 1/(k + rank) (Cormack et al. 2009).",
)
@click.option(
    "--fusion",
    type=click.Choice(["rrf", "ql", "rc", "weighted", "seed"]),
    default=None,
    help="How QL and RC ranks are combined (rrf: 1/rank_QL + 1/rank_RC, the paper's; "
    "seed: no LLM, the seed passage stays the positive, the paper's baseline). "
    "Default: what rerank-eval measured best for the LLM (ql for qwen2.5-coder-0.5b-instruct), else rrf.",
)
@click.option(
    "--weights",
    default="1,1,0",
    show_default=True,
    help="w_ql,w_rc,w_encoder for --fusion weighted (w_encoder weighs the rank in the "
    "retriever's order).",
)
@click.option(
    "--negative",
    type=click.Choice(["rank-n", "random", "lowest-k"]),
    default="rank-n",
    show_default=True,
    help="Hard negative: the rank-N candidate, a random lower-half one, or the k lowest.",
)
@click.option("--negatives-k", type=int, default=1, show_default=True)
@click.option(
    "--prompt",
    "prompt_spec",
    default="binary",
    show_default=True,
    help="Rerank prompt: binary, graded, or a TOML file.",
)
@click.option(
    "--passage-tokens",
    type=int,
    default=384,
    show_default=True,
    help="Passages are cut to this many LLM tokens in the prompt.",
)
@click.option(
    "--shard-size",
    type=int,
    default=64,
    show_default=True,
    help="Candidate passages per scores shard (the unit of resumption).",
)
@click.option(
    "--warmup-encoder",
    is_flag=True,
    help="First fine-tune the encoder on the (query, seed passage) pairs (Gecko, footnote 1).",
)
@click.option(
    "--drop-solved",
    is_flag=True,
    help="Leave out the queries whose seed passage the encoder already ranks first (they "
    "teach it little; their pairs are not scored). Not in the paper.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@executor_options(show_defaults=True)
def mine(
    queries_dir: Path | None,
    queries_file: Path | None,
    task: str | None,
    corpus: Path,
    out: Path,
    encoder: str | None,
    llm_spec: str | None,
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

    from geckokit.encoder import load_encoder
    from geckokit.fret.fusion import Fusion, NegativeChoice
    from geckokit.fret.mine_run import MineConfig, check_seedless
    from geckokit.fret.mine_run import mine as run_mine
    from geckokit.fret.rerank import load_rerank_prompt
    from geckokit.registry import DEFAULT_ENCODER, DEFAULT_LLM, default_fusion
    from geckokit.retrieval.hybrid import Retriever
    from geckokit.runs.executor import Executor, ExecutorSettings
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
        fusion=Fusion.parse(fusion or default_fusion(llm_spec)),
        weights=w,
        negative=NegativeChoice.parse(negative),
        negatives_k=negatives_k,
        passage_max_tokens=passage_tokens,
        warmup_encoder=warmup_encoder,
        drop_solved=drop_solved,
        seed=seed,
    )
    check_seedless(config, queries_file, generated=queries_dir is not None)  # before loading
    prompt = load_rerank_prompt(prompt_spec)
    encoder_name = encoder or DEFAULT_ENCODER
    manifest = run_mine(
        queries_dir,
        corpus,
        out,
        # loaded here, or by each Ray worker
        llm=None if config.fusion is Fusion.SEED else llm_spec or DEFAULT_LLM,
        encoder=load_encoder(encoder_name),
        encoder_name=encoder_name,
        config=config,
        prompt=prompt,
        queries_file=queries_file,
        queries_task=task or DEFAULT_QUERY_TASK,
        shard_size=shard_size,
        executor=ExecutorSettings(
            executor=Executor.parse(executor), ray_address=ray_address, workers=workers
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
    if "llm_this_run" in manifest:
        console.print(llm_usage_line(manifest["llm_this_run"]))
    console.print(f"status: {manifest['status']}; output: {out}")
