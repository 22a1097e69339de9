"""The LLM cost of FRet steps 1 and 2 before they run: tokens from the prompt template, the
passages and the mining settings, time from a short probe of the LLM's speed.

``geckokit distill`` prints it before any LLM work (its wording is the CLI's); the figures
are the ones :func:`estimate_cost` returns.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any, Protocol

from geckokit.fret.generate import GenerateConfig, task_type_pool
from geckokit.fret.mine_run import MineConfig
from geckokit.fret.prompts import load_generate_prompt
from geckokit.llm.base import LLM, TokenizingLLM


class CostSettings(Protocol):
    """The settings an estimate reads (a distill config has them)."""

    @property
    def generate(self) -> GenerateConfig: ...

    @property
    def mine(self) -> MineConfig: ...

    @property
    def prompt(self) -> str | None: ...


_CHAT_MARKUP = 5  # tokens a chat template adds around one message (role tags, ends)
_RETRIES = 1.15  # written tokens per query slot over one answer's: rejected attempts retried


def estimate_cost(
    passages: Any,
    config: CostSettings,
    llm: LLM | None,
    *,
    corpus: Any = None,
    stages: Collection[str] = ("generate", "mine"),
    queries: int | None = None,
    user_queries: int = 0,
    unwritten: list[int] | None = None,
    unscored: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Rough LLM cost of the FRet ``stages`` still to run for ``passages`` (the passages
    queries are written for, a table) whose neighbours come from ``corpus`` (default:
    ``passages``); ``queries``, when the queries are already written, is their number
    (default: passages x ``generate.queries_per_passage``; 0: none are written, as with a
    queries file alone), and ``user_queries`` the number of the user's own queries mined
    beside them (``top_n`` pairs each, their candidates counted apart). A stage stopped part way:
    ``unwritten`` are the rows of ``passages`` with no finished query shard (default: all), and
    ``unscored`` the candidate passages and pairs ``mine`` has still to score, once its
    candidates are retrieved.

    Prompt tokens: the few-shot prefix once (every time without ``generate.reuse_prefix``),
    then per generated query the passage, its title and the template's last turn (the part
    not shared between passages, counted with the LLM's tokenizer, plus a few tokens of chat
    markup), and as many written tokens as the prompt's few-shot answers have on average (60
    without examples), plus 15% for retries of rejected answers (measured: 12% on the demo,
    19% on SciFact with a science prompt), or with a ``max_word_overlap`` limit every one of
    ``max_attempts`` (``written_at_most``); a query slot whose task type repeats the previous
    slot's sends the same prompt again, which a backend that reuses its cached state
    (``generate.reuse_prefix``) does not evaluate twice when it writes one passage at a time
    (``generate.parallel`` 1), so with one task type a passage's prompt then counts once;
    passages written together each continue from the shared prefix, so every slot counts.
    For mining, each distinct candidate passage once
    (scored once, then reused by every query that retrieved it; the slots of one passage
    mostly retrieve the same neighbours, so at most passages x ``top_n`` of them, at most the
    whole corpus) plus ``top_n`` x about 45 tokens per query (lead-in, query, relevance
    question); with ``mine.drop_solved`` that is an upper bound until the candidates are
    retrieved (``pairs_at_most``). Time: at the rates of a short probe of the LLM (prompt and
    writing speed, the latter with ``generate.parallel`` answers written together as FRet
    step 1 writes them), so the figure holds for this machine, model and setting."""
    tokenizer = llm if isinstance(llm, TokenizingLLM) else None

    def count(text: str) -> int:
        return len(tokenizer.tokenize(text)) if tokenizer is not None else max(1, len(text) // 4)

    def lengths_of(table: Any, most: int | None = None) -> list[int]:
        return [count(t) for t in table.column("text").to_pylist()[:most]]

    unknown = set(stages) - {"generate", "mine"}
    if unknown:
        raise ValueError(f"stages: unknown {sorted(unknown)}; the LLM stages are generate, mine")
    lengths = lengths_of(passages)
    qpp = config.generate.queries_per_passage
    queries = len(lengths) * qpp if queries is None else queries
    rows = range(len(lengths)) if unwritten is None else unwritten
    todo = [lengths[i] for i in rows]
    prompt = load_generate_prompt(config.prompt)
    pool = task_type_pool(prompt, config.generate.task_types)
    # expected prompts evaluated per passage: the first slot, then each slot whose task type
    # (drawn uniformly) differs from the one before it; every slot when passages are written
    # together (each continues from the shared prefix, not from its own last prompt)
    own_state = config.generate.reuse_prefix and config.generate.parallel == 1
    prompts = qpp if not own_state else 1 + (qpp - 1) * (1 - 1 / len(pool))
    chats = [prompt.messages(t, "", "") for t in pool]
    turn = sum(count(c[-1]["content"]) for c in chats) / len(pool) + _CHAT_MARKUP
    prefix = sum(count(m["content"]) + _CHAT_MARKUP for m in chats[0][:-1])
    titles = passages.column("title").to_pylist() if "title" in passages.column_names else None
    title_tokens = sum(count(titles[i]) for i in rows if titles[i]) if titles else 0
    per_passage = sum(todo) + len(todo) * (turn + (0 if config.generate.reuse_prefix else prefix))
    gen_prompt = round(prompts * (per_passage + title_tokens))
    if config.generate.reuse_prefix and todo:
        gen_prompt += prefix  # evaluated once, then reused
    answers = [m["content"] for m in chats[0] if m["role"] == "assistant"]  # few-shot answers
    answer = sum(count(a) + 1 for a in answers) / len(answers) if answers else 60  # +1: the end
    # a word-overlap limit rejects most answers (95% at 0.6 on SciFact with the 0.5B model):
    # count every attempt, an upper bound
    echo_limit = config.generate.validation.max_word_overlap < 1
    retries = config.generate.max_attempts if echo_limit else _RETRIES
    gen_written = round(len(todo) * qpp * answer * retries)
    cut = config.mine.passage_max_tokens
    sample = lengths if corpus is None else lengths_of(corpus, 2000)  # the first 2,000: the mean
    corpus_size = len(lengths) if corpus is None else corpus.num_rows
    seeded = len(lengths) if queries else 0  # the passages with queries written for them
    distinct = min(corpus_size, (seeded + user_queries) * config.mine.top_n)
    mean_cut = sum(min(n, cut) for n in sample) / max(1, len(sample))
    pairs = (queries + user_queries) * config.mine.top_n
    if unscored is not None:
        distinct, pairs = unscored
    mine_prompt = round(distinct * mean_cut) + pairs * 45
    generate, mine = "generate" in stages, "mine" in stages
    if not generate:
        gen_prompt = gen_written = 0
    if not mine:
        mine_prompt = 0
    together = config.generate.parallel if generate and todo else 1
    rates = probe_rates(llm, parallel=together)
    seconds = by_stage = None
    if rates is not None:
        prompt_rate, written_rate = rates["prompt_tokens_per_s"], rates["written_tokens_per_s"]
        spent = {
            "generate": gen_prompt / prompt_rate + gen_written / written_rate,
            "mine": mine_prompt / prompt_rate,
        }
        seconds = round(sum(spent.values()))
        by_stage = {k: round(v) for k, v in spent.items() if k in stages}
    return {
        "passages": len(lengths),
        "user_queries": user_queries,
        "llm_calls": {
            "generate": len(todo) * qpp if generate else 0,
            "score_pairs": pairs if mine else 0,
        },
        # drop_solved leaves out queries once their candidates are retrieved
        "pairs_at_most": mine and config.mine.drop_solved and unscored is None,
        # with a word-overlap limit every slot may use all its attempts
        "written_at_most": generate and echo_limit,
        # the generate template's share: its few-shot prefix, and its per-passage turn
        "template_tokens": {
            "prefix": prefix,
            "per_prompt": round(turn, 1),
            "per_answer": round(answer, 1),
        },
        "tokens": {
            "generate_prompt": gen_prompt,
            "generate_written": gen_written,
            "mine_prompt": mine_prompt,
        },
        "rates": rates,
        # how many answers the writing rate was probed with at once (generate.parallel)
        "written_together": together,
        "seconds": seconds,
        # the same time per LLM stage (writing queries, scoring pairs)
        "seconds_by_stage": by_stage,
    }


def probe_rates(llm: LLM | None, *, parallel: int = 1) -> dict[str, float] | None:
    """Prompt and writing speed of ``llm`` from one short call of each (None without an
    LLM, or when the backend does not count the tokens it evaluates).

    The timed prompt is passage-sized (about 300 tokens), as the prompts of both stages are:
    llama.cpp evaluates a short one at fewer tokens per second, which made the estimate
    pessimistic. An untimed call first keeps one-off start-up costs out of the timing.
    Writing is timed with ``parallel`` answers in one call (each prompt the same passage
    with its own last line), as FRet step 1 hands them to the LLM: a backend that decodes
    them together writes more tokens per second in all than one answer at a time."""
    if llm is None:
        return None
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    usage = llm.usage
    llm.score(["Warm-up: a short text the timed calls do not start with."], [" Ready."])
    text = (
        "Gecko distils a compact text embedding model from a large language model. "
        "It writes queries for passages and relabels positives and hard negatives. "
    ) * 10
    before = usage.prompt_tokens_evaluated
    t0 = time.perf_counter()
    llm.score([text], [" The probe measures speed."])
    prompt_s = time.perf_counter() - t0
    prompt_tokens = usage.prompt_tokens_evaluated - before
    before_written = usage.completion_tokens
    asks = [f"\nSummarise in one line (answer {i + 1}):" for i in range(parallel)]
    before = usage.prompt_tokens_evaluated
    t0 = time.perf_counter()
    llm.generate([text + ask for ask in asks], max_tokens=16, temperature=0.0)
    written_s = time.perf_counter() - t0
    written = max(1, usage.completion_tokens - before_written)
    if prompt_tokens <= 0 or prompt_s <= 0:
        return None
    prompt_rate = prompt_tokens / prompt_s
    # the prompt tokens the call evaluated (the passage again for each answer, where the
    # backend did not reuse it) are counted at the prompt rate, as the estimate counts them
    asked_s = (usage.prompt_tokens_evaluated - before) / prompt_rate
    decode_s = max(written_s - asked_s, 0.2 * written_s)
    return {
        "prompt_tokens_per_s": round(prompt_rate, 1),
        "written_tokens_per_s": round(written / decode_s, 1),
    }
