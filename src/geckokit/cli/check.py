"""``geckokit check``: pull the models and run every LLM operation once on a sample passage."""

from __future__ import annotations

import time

import click

from geckokit.cli.options import encoder_option, llm_option
from geckokit.format import document_text, query_text
from geckokit.tasks import DEFAULT_QUERY_TASK

SAMPLE_TITLE = "Honey bees"
SAMPLE_PASSAGE = (
    "Honey bees communicate the location of food sources through the waggle dance. A forager "
    "returning to the hive runs a figure-eight pattern whose angle to the vertical encodes the "
    "direction of the food relative to the sun, and whose duration encodes the distance."
)


@click.command()
@llm_option
@encoder_option
def check(llm_spec: str | None, encoder: str | None) -> None:
    """Check the installation end to end on a sample passage.

    Pulls the models if needed, asks the LLM for a task and a query (FRet step 1), scores the
    query's likelihood and a yes/no relevance label (FRet step 2), and embeds both texts.
    """
    from rich.console import Console

    from geckokit.encoder import load_encoder
    from geckokit.fret.generate import GenerateConfig, QueryGenerator
    from geckokit.fret.prompts import load_generate_prompt
    from geckokit.llm import load_llm, yes_no_labels

    console = Console()
    t0 = time.perf_counter()
    llm = load_llm(llm_spec)
    console.print(f"LLM [bold]{llm.model_id}[/] loaded in {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    generator = QueryGenerator(llm, load_generate_prompt(), GenerateConfig(temperature=0.0))
    rows = generator.generate_one("sample", SAMPLE_TITLE, SAMPLE_PASSAGE)
    accepted = [r for r in rows if r["reject_reason"] is None]
    if accepted:
        task, query, task_type = accepted[0]["task"], accepted[0]["query"], accepted[0]["task_type"]
    else:
        task, query, task_type = "", "how do honey bees tell others where food is", "none"
        console.print(f"[yellow]no valid query ({rows[-1]['reject_reason']}), using a fixed one[/]")
    console.print(
        f"generate ({time.perf_counter() - t0:.1f}s, {task_type}): task={task!r} query={query!r}"
    )

    t0 = time.perf_counter()
    prefix = f"Passage: {SAMPLE_PASSAGE}\nA query this passage answers:"
    ql = llm.score([prefix], [" " + query])[0]
    console.print(
        f"query likelihood ({time.perf_counter() - t0:.1f}s): mean {ql.mean:.3f} nats over {len(ql.tokens)} tokens"
    )
    t0 = time.perf_counter()
    question = f"{prefix} {query}\nDoes the passage answer the query? Answer Yes or No.\nAnswer:"
    rc = llm.label_logprobs([question], yes_no_labels())[0]
    console.print(
        f"relevance labels ({time.perf_counter() - t0:.1f}s): "
        + ", ".join(f"{k}={v:.3f}" for k, v in rc.items())
    )

    t0 = time.perf_counter()
    model = load_encoder(encoder)
    q, p = model.encode(
        [
            query_text(task or DEFAULT_QUERY_TASK, query),
            document_text(SAMPLE_TITLE, SAMPLE_PASSAGE),
        ],
        normalize_embeddings=True,
    )
    console.print(
        f"encoder ({time.perf_counter() - t0:.1f}s): cosine(query, passage) = {float(q @ p):.3f}"
    )
    u = llm.usage
    console.print(
        f"LLM tokens: {u.prompt_tokens_evaluated} prompt evaluated, {u.prompt_tokens_cached} reused from cache, {u.completion_tokens} generated"
    )
    console.print("[green]ok[/]")
