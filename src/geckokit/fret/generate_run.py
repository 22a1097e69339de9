"""``geckokit generate``: FRet step 1 over a whole corpus, sharded, resumable, with a manifest.

Output folder::

    queries/part-NNNNN.parquet   accepted (task, query) rows
    rejects/part-NNNNN.parquet   every failed attempt, with its reason
    manifest.json                config, prompt hash, model id and hash, counts, summary
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from geckokit.corpus import Corpus, load_corpus
from geckokit.fret.generate import DRIVING, GenerateConfig, QueryGenerator
from geckokit.fret.prompts import GeneratePrompt, load_generate_prompt
from geckokit.fret.validate import words
from geckokit.fret.workers import llm_executor
from geckokit.io import MANIFEST, environment, read_shards, write_json
from geckokit.llm.base import LLM
from geckokit.runs.executor import ExecutorSettings, ShardExecutor
from geckokit.runs.folder import check_run, holds_run_lock, record_run
from geckokit.runs.shards import resumable_shards
from geckokit.runs.stamps import ShardKey

log = logging.getLogger(__name__)

QUERY_COLUMNS = [
    "query_id",
    "passage_id",
    "task_type",
    "task",
    "query",
    "raw",
    "attempt",
    "seed",
    "seconds",
    "prompt_tokens",
    "completion_tokens",
]
REJECT_COLUMNS = [
    "query_id",
    "passage_id",
    "task_type",
    "raw",
    "attempt",
    "seed",
    "reject_reason",
    "final",
    "seconds",
]


#: the sharded outputs, the primary (whose file marks a shard finished) first
OUTPUTS = ("queries", "rejects")


def _split(table: pa.Table) -> dict[str, pa.Table]:
    ok = pc.is_null(table["reject_reason"])
    return {
        "queries": table.filter(ok).select(QUERY_COLUMNS),
        "rejects": table.filter(pc.invert(ok)).select(REJECT_COLUMNS),
    }


def summarize(queries: pa.Table | None, rejects: pa.Table | None, passages: int) -> dict[str, Any]:
    """Task-type distribution, query length, reject rates by reason, throughput."""
    q_rows = queries.to_pylist() if queries is not None else []
    r_rows = rejects.to_pylist() if rejects is not None else []
    attempts = len(q_rows) + len(r_rows)
    reasons = Counter(r["reject_reason"] for r in r_rows)
    seconds = sum(r["seconds"] for r in q_rows) + sum(r["seconds"] for r in r_rows)
    lengths = [len(words(r["query"])) for r in q_rows]
    return {
        "passages": passages,
        "queries": len(q_rows),
        # a passage with several query slots may fill some of them
        "passages_without_query": passages - len({r["passage_id"] for r in q_rows}),
        "slots_without_query": sum(1 for r in r_rows if r["final"]),
        "attempts": attempts,
        "task_types": dict(sorted(Counter(r["task_type"] for r in q_rows).items())),
        "mean_query_words": round(sum(lengths) / len(lengths), 2) if lengths else None,
        "reject_rate": round(len(r_rows) / attempts, 4) if attempts else 0.0,
        "reject_rate_by_reason": {k: round(v / attempts, 4) for k, v in reasons.most_common()},
        "llm_seconds": round(seconds, 1),
        "queries_per_minute": round(60 * len(q_rows) / seconds, 2) if seconds else None,
    }


def _identity_config(config: GenerateConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude=set(DRIVING))


def shard_key(config: GenerateConfig, prompt: GeneratePrompt, model_id: str | None) -> ShardKey:
    """What each query shard records it was made with besides its passages (ids, titles,
    texts): the settings, the prompt template's hash and the LLM's id."""
    return ShardKey(
        settings={"config": _identity_config(config), "prompt": prompt.sha256, "model": model_id},
        defaults={"config": _identity_config(GenerateConfig())},
    )


def _generator(llm: LLM, prompt: GeneratePrompt, config: GenerateConfig) -> QueryGenerator:
    return QueryGenerator(llm, prompt, config)


@holds_run_lock
def generate_queries(
    corpus: Corpus | str | Path,
    out: str | Path,
    *,
    llm: LLM | str,
    config: GenerateConfig | None = None,
    prompt: GeneratePrompt | None = None,
    shard_size: int = 32,
    limit: int | None = None,
    max_shards: int | None = None,
    show_progress: bool = True,
    executor: ExecutorSettings | None = None,
) -> dict[str, Any]:
    """Run FRet step 1 on ``corpus`` into ``out`` and return the manifest.

    ``llm`` is a loaded LLM or its spec (:func:`~geckokit.llm.load_llm`); ``executor``
    (default: local) says where the shards run: executor ``ray`` needs the spec, which each
    of its workers loads (:mod:`geckokit.runs.ray_executor`). Rerunning with the same
    settings skips finished shards, whichever executor wrote them; different settings on
    the same folder raise :class:`RunMismatchError` rather than mixing two runs.
    """
    with llm_executor(llm, executor) as work:
        return _generate(
            corpus,
            Path(out),
            work=work,
            config=config,
            prompt=prompt,
            shard_size=shard_size,
            limit=limit,
            max_shards=max_shards,
            show_progress=show_progress,
        )


def _generate(
    corpus: Corpus | str | Path,
    out: Path,
    *,
    work: ShardExecutor,
    config: GenerateConfig | None,
    prompt: GeneratePrompt | None,
    shard_size: int,
    limit: int | None,
    max_shards: int | None,
    show_progress: bool,
) -> dict[str, Any]:
    config = config or GenerateConfig()
    prompt = prompt or load_generate_prompt()
    if not isinstance(corpus, Corpus):
        corpus = load_corpus(corpus, limit=limit)
    passages = corpus.passages if limit is None else corpus.passages.slice(0, limit)
    identity = {
        "stage": "generate",
        "config": _identity_config(config),
        "prompt": {"version": prompt.version, "sha256": prompt.sha256, "source": prompt.source},
        "model": work.info["model"],
        "corpus": {
            "source": corpus.source,
            "format": corpus.format.value,
            "passages": passages.num_rows,
            "max_tokens": corpus.max_tokens,
            "overlap": corpus.overlap,
        },
        "shard_size": shard_size,
    }
    # a folder from before a setting existed resumes: it ran with that setting's default
    defaults = {"config": _identity_config(GenerateConfig())}
    # the manifest's settings, then the shards' own records (they also catch what a lost
    # manifest hides); a run refused leaves the folder's manifest as it was
    identity = check_run(out, identity, defaults=defaults)
    key = shard_key(config, prompt, work.info["model"].get("id"))
    checked = resumable_shards(
        passages, out=out, outputs=OUTPUTS, shard_size=shard_size, key=key, description="generate"
    )
    record_run(out, identity)
    run = work.run(
        passages,
        out=out,
        outputs=OUTPUTS,
        shard_size=shard_size,
        make_stage=functools.partial(_generator, prompt=prompt, config=config),
        split=_split,
        description="generate",
        max_shards=max_shards,
        show_progress=show_progress,
        key=key,
        checked=checked,
    )
    queries, rejects = read_shards(out / "queries"), read_shards(out / "rejects")
    finished = run.shards_skipped + run.shards_written == run.shards_total
    done_passages = min(passages.num_rows, (run.shards_skipped + run.shards_written) * shard_size)
    manifest = {
        **identity,
        "status": "finished" if finished else "partial",
        "shards": {"total": run.shards_total, "finished": run.shards_skipped + run.shards_written},
        "counts": {
            "queries": 0 if queries is None else queries.num_rows,
            "rejects": 0 if rejects is None else rejects.num_rows,
        },
        "corpus_stats": corpus.stats.as_dict(),
        "summary": summarize(queries, rejects, done_passages),
        "environment": environment(),
    }
    if run.llm:  # this sitting's tokens only (a resumed run skips finished shards)
        manifest["llm_this_run"] = run.llm
    if run.shards_repaired:
        manifest["shards"]["repaired"] = run.shards_repaired
    write_json(manifest, out / MANIFEST)
    return manifest
