"""``geckokit mine``: FRet step 2 over a generate run, resumable, with a manifest.

The queries come from a generate run (each with its seed passage), from a file of the
user's own (:mod:`geckokit.fret.user_queries`; no seed passage), or from both together.

Output folder::

    corpus_embeddings.npy/.json   the initial encoder's passage embeddings (cached; for a
                                  registry encoder under $GECKOKIT_HOME/embeddings instead,
                                  shared by every run over the same passages)
    index/ivf-sq8.faiss/.json     above ``ivf_above`` passages: the IVF-SQ8 index the
                                  candidates are searched in, memory-mapped, with its stamp
                                  (passages digest, encoder, settings); reused when it matches
    candidates/part-00000.parquet top-N neighbours per query, seed guaranteed (if it has one)
    scores/part-NNNNN.parquet     QL and RC per (query, candidate) pair, sharded by passage
    fret/part-00000.parquet       positive, negatives, every candidate's title, text and
                                  scores (self-contained for score distillation), relabelled
                                  flag, source (generated or user)
    manifest.json                 config, selection, prompt hash, model ids, counts, summary

A rerun with other selection settings (fusion among the LLM ones, weights, negative choice)
rebuilds fret/ from the stored scores with no LLM work; other changed settings are refused.

``retriever`` chooses what proposes the candidates: the initial encoder (the paper), BM25
(InPars) or their reciprocal rank fusion (:mod:`geckokit.fret.retrieve`).

``drop_solved`` (off by default; not in the paper) leaves out the queries whose seed passage
the initial encoder already ranks first, before any of their pairs are scored: on SciFact such
queries trained the encoder to no gain (README, "Distil end to end"). "First" is the encoder's
own first in the whole corpus whichever retriever proposed the candidates: it is what the
encoder being trained already knows. A user query has no seed passage, so it always stays.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from geckokit.corpus import Corpus, load_corpus
from geckokit.encoder import EncoderRef
from geckokit.fret.fusion import Fusion, NegativeChoice, fuse, select
from geckokit.fret.rerank import (
    DEFAULT_PAIR_PARALLEL,
    PairScore,
    PairScorer,
    RerankPrompt,
    load_rerank_prompt,
)
from geckokit.fret.retrieve import (
    embed_passages,
    embed_queries,
    retrieve_candidates,
    search_index,
    with_candidate_columns,
)
from geckokit.fret.user_queries import QuerySource, generated_queries, read_user_queries
from geckokit.fret.workers import llm_executor
from geckokit.io import (
    MANIFEST,
    DamagedFileError,
    environment,
    read_json,
    read_shards,
    write_json,
    write_table,
)
from geckokit.llm.base import LLM, ServedLLM
from geckokit.retrieval.hybrid import RRF_K, Retriever
from geckokit.runs.executor import Executor, ExecutorSettings, ShardExecutor
from geckokit.runs.folder import (
    RunMismatchError,
    check_run,
    holds_run_lock,
    record_run,
    with_defaults,
)
from geckokit.runs.shards import ShardCheck, ShardRun, resumable_shards, unfinished_rows
from geckokit.runs.stamps import ShardKey, json_sha256, read_stamped, rows_sha256, stamped
from geckokit.tasks import DEFAULT_QUERY_TASK

log = logging.getLogger(__name__)

#: above this many passages the candidates are searched in an IVF-SQ8 index
IVF_ABOVE = 200_000
#: inverted lists an IVF-SQ8 search visits per query
NPROBE = 64
#: queries sampled to measure the IVF-SQ8 index's recall against exact search
RECALL_QUERIES = 200

SCORE_SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("passage_id", pa.string()),
        ("ql", pa.float64()),
        ("rc", pa.float64()),
        ("label_logprobs", pa.list_(pa.float64())),
        # the passage's scoring time, split evenly over its pairs: summed over the shards it
        # gives the stage's LLM time across every sitting of a resumed run
        ("seconds", pa.float64()),
    ]
)


#: MineConfig fields that choose the positive and negatives from the scores (not the scores)
SELECTION = ("fusion", "weights", "negative", "negatives_k")
#: MineConfig fields that say how the LLM is driven, not what it is asked: outside the
#: run's identity, so a run resumes with other values
DRIVING = ("parallel",)

_IDS = pa.list_(pa.string())
_SCORES = pa.list_(pa.float64())
#: The fret/ table: one row per query. ``seed_id``, ``seed_rank`` and ``relabelled`` are
#: null for a user query (it has no seed passage).
FRET_SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("task_type", pa.string()),
        ("task", pa.string()),
        ("query", pa.string()),
        ("seed_id", pa.string()),
        ("positive_id", pa.string()),
        ("positive_title", pa.string()),
        ("positive_text", pa.string()),
        ("negative_ids", _IDS),
        ("negative_titles", _IDS),
        ("negative_texts", _IDS),
        ("candidate_ids", _IDS),
        ("candidate_titles", _IDS),
        ("candidate_texts", _IDS),
        ("encoder_scores", _SCORES),
        ("bm25_scores", _SCORES),  # null for the encoder alone
        ("retriever_scores", _SCORES),  # the scores that ordered the candidates
        ("encoder_first_id", pa.string()),  # the encoder's first in the whole corpus
        ("ql_scores", _SCORES),
        ("rc_scores", _SCORES),
        ("fused_scores", _SCORES),
        ("seed_rank", pa.int64()),  # the seed's place in the fused ranking, 1-based
        ("relabelled", pa.bool_()),  # the positive is not the seed
        ("source", pa.string()),  # generated or user (QuerySource)
    ]
)


class MineConfig(BaseModel):
    """Settings of FRet step 2."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error

    top_n: int = Field(20, ge=2, le=200, description="neighbours per query (the paper's N)")
    retriever: Retriever = Field(
        Retriever.ENCODER,
        description="what proposes the N candidates: the initial encoder (the paper), bm25 "
        "(InPars) or hybrid (reciprocal rank fusion of the two)",
    )
    hybrid_k: int = Field(
        RRF_K, ge=1, description="k of the hybrid's 1/(k + rank) (Cormack et al. 2009: 60)"
    )
    fusion: Fusion = Fusion.RRF
    weights: tuple[float, float, float] = Field(
        (1.0, 1.0, 0.0), description="w_ql, w_rc, w_encoder for weighted fusion"
    )
    negative: NegativeChoice = NegativeChoice.RANK_N
    negatives_k: int = Field(1, ge=1, description="how many for negative=lowest-k")
    passage_max_tokens: int = Field(
        384, ge=16, description="passages are cut to this many LLM tokens"
    )
    exact_max: int = Field(
        200_000,
        ge=1,
        description="exact search up to this many passages, HNSW above (up to ivf_above)",
    )
    ivf_above: int = Field(
        IVF_ABOVE,
        ge=1,
        description="above this many passages, search an IVF index with 8-bit scalar "
        "quantisation (IVF-SQ8), built once in mine/index/ and memory-mapped",
    )
    nprobe: int = Field(
        NPROBE, ge=1, description="inverted lists the IVF-SQ8 index searches per query"
    )
    warmup_encoder: bool = Field(
        False, description="fine-tune the retriever on (query, seed) pairs first"
    )
    warmup_epochs: int = Field(1, ge=1, le=10)
    drop_solved: bool = Field(
        False,
        description="leave out the queries whose seed passage the initial encoder already "
        "ranks first (they teach it little); their pairs are not scored",
    )
    parallel: int = Field(
        DEFAULT_PAIR_PARALLEL,
        ge=1,
        le=255,
        description="pairs of a passage the LLM evaluates together (1: one at a time)",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _warn_unused_hybrid_k(self) -> MineConfig:
        if self.hybrid_k != RRF_K and self.retriever is not Retriever.HYBRID:
            log.warning(
                "mine.hybrid_k = %d has no effect with retriever %r (only with 'hybrid')",
                self.hybrid_k,
                self.retriever.value,
            )
        return self


def _identity_config(config: MineConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude={*SELECTION, *DRIVING})


#: MineConfig fields that shape the candidates (with the initial encoder's name)
RETRIEVAL = (
    "top_n",
    "retriever",
    "hybrid_k",
    "exact_max",
    "ivf_above",
    "nprobe",
    "warmup_encoder",
    "warmup_epochs",
    "seed",
)


def _retrieval_settings(config: MineConfig, encoder: str) -> dict[str, Any]:
    return {"encoder": encoder, **config.model_dump(mode="json", include=set(RETRIEVAL))}


def _candidates_stamp(
    queries: pa.Table, passages: pa.Table, config: MineConfig, encoder: str
) -> dict[str, Any]:
    """What the candidates file records it was made from: the queries and passages (a
    digest of their ids and texts) and the retrieval settings."""
    digest = rows_sha256(queries.select(["query_id", "passage_id", "task", "query"]))
    digest += _passages_sha256(passages)
    return {
        "format": 1,
        "input_sha256": hashlib.sha256(digest.encode()).hexdigest(),
        "settings": _retrieval_settings(config, encoder),
    }


def _passages_sha256(passages: pa.Table) -> str:
    return rows_sha256(passages.select(["passage_id", "title", "text"]))


def _stored_candidates(
    path: Path, expected: dict[str, Any]
) -> tuple[pa.Table | None, dict[str, Any] | None]:
    """The candidates retrieved before (None: none, or a damaged file, deleted to be
    retrieved again) and the record of the index that searched them (None: not recorded);
    refuses, with :class:`RunMismatchError`, candidates retrieved for other queries,
    passages or settings. A file written before candidates were stamped is trusted."""
    if not path.exists():
        return None, None
    try:
        table, stamp = read_stamped(path)
    except DamagedFileError as exc:
        log.warning("%s; it is deleted and the candidates retrieved again", exc)
        path.unlink()
        return None, None
    if stamp is None:
        return table, None
    was = with_defaults(_retrieval_settings(MineConfig(), ""), stamp.get("settings") or {})
    why = None
    if stamp.get("input_sha256") != expected["input_sha256"]:
        why = "for other queries or passages (another corpus, or queries of another run)"
    elif was != expected["settings"]:
        changed = [
            f"{k}: {was.get(k)!r} there, {v!r} now"
            for k, v in expected["settings"].items()
            if was.get(k) != v
        ]
        why = f"with other settings ({', '.join(changed)})"
    if why is not None:
        raise RunMismatchError(
            f"{path} was retrieved {why}; rerun with the inputs and settings that made it to "
            f"resume, or delete {path.parent.parent} to mine again (or use another --out folder)"
        )
    return table, stamp.get("index")


def unsolved(candidates: pa.Table) -> pa.Table:
    """The rows of a candidates table whose seed passage the initial encoder does not rank
    first in the whole corpus (whichever retriever proposed the candidates), and those of the
    queries without a seed."""
    if candidates.num_rows == 0:
        return candidates
    first = with_candidate_columns(candidates)["encoder_first_id"]
    seed = candidates["seed_id"]
    return candidates.filter(pc.or_kleene(pc.is_null(seed), pc.not_equal(first, seed)))


def _kept(candidates: pa.Table, drop_solved: bool) -> pa.Table:
    return unsolved(candidates) if drop_solved else candidates


def _pairs_by_passage(candidates: pa.Table) -> pa.Table:
    """One row per distinct candidate passage with the queries that retrieved it, sorted by id."""
    groups: dict[str, list[str]] = defaultdict(list)
    for qid, cands in zip(
        candidates["query_id"].to_pylist(), candidates["candidate_ids"].to_pylist(), strict=True
    ):
        for pid in cands:
            groups[pid].append(qid)
    pids = sorted(groups)
    return pa.table({"passage_id": pids, "query_ids": [groups[p] for p in pids]})


class PassageScoringStage:
    """Stage: rows of (passage_id, query_ids) -> score rows, one per (query, passage) pair.

    An LLM behind servers (:class:`~geckokit.llm.base.ServedLLM`) answers each pair's
    requests on their own, so up to its ``max_concurrency`` passages are scored at once
    (``rows_per_call``, handed over by the shard's writer); an in-process model scores one
    passage after the other."""

    def __init__(
        self,
        scorer: PairScorer,
        passages: dict[str, dict[str, str]],
        queries: dict[str, tuple[str, str]],
        labels: list[str],
    ) -> None:
        self.scorer, self.passages, self.queries, self.labels = scorer, passages, queries, labels
        llm = scorer.llm
        self.rows_per_call = llm.max_concurrency if isinstance(llm, ServedLLM) else 1

    def _one(self, pid: str, qids: list[str]) -> tuple[list[PairScore], float]:
        p = self.passages[pid]
        t0 = time.perf_counter()
        scores = self.scorer.score(p["title"], p["text"], [self.queries[q] for q in qids])
        return scores, (time.perf_counter() - t0) / max(1, len(qids))

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows: dict[str, list[Any]] = {n: [] for n in SCORE_SCHEMA.names}
        pids, qid_lists = batch["passage_id"].to_pylist(), batch["query_ids"].to_pylist()
        if self.rows_per_call > 1 and len(pids) > 1:
            with ThreadPoolExecutor(max_workers=min(self.rows_per_call, len(pids))) as pool:
                done = list(pool.map(self._one, pids, qid_lists))
        else:
            done = [self._one(pid, qids) for pid, qids in zip(pids, qid_lists, strict=True)]
        for pid, qids, (scores, share) in zip(pids, qid_lists, done, strict=True):
            for qid, s in zip(qids, scores, strict=True):
                rows["seconds"].append(share)
                rows["query_id"].append(qid)
                rows["passage_id"].append(pid)
                rows["ql"].append(s.ql)
                rows["rc"].append(s.rc)
                rows["label_logprobs"].append([s.label_logprobs[n] for n in self.labels])
        return pa.table(rows, schema=SCORE_SCHEMA)


def build_fret(
    candidates: pa.Table,
    scores: pa.Table | None,
    passages: dict[str, dict[str, str]],
    config: MineConfig,
) -> pa.Table:
    """Fuse each query's candidate scores, select positive and negatives: the fret/ table
    (:data:`FRET_SCHEMA`). ``scores`` is None for the ``seed`` fusion, which uses no LLM
    scores (QL and RC NaN) and needs every query to have a seed passage. A query without one
    (``seed_id`` null) takes the top of the fused ranking as its positive, like any other.
    Besides the positive's and negatives' titles and texts, every candidate's are stored
    (``candidate_titles``, ``candidate_texts``, in ``candidate_ids`` order) so that a
    mixture can carry the LLM's whole ranking without the corpus."""
    by_pair: dict[tuple[str, str], tuple[float, float]] = defaultdict(
        lambda: (float("nan"), float("nan"))
    )
    if scores is not None:
        by_pair.update(
            {
                (q, p): (ql, rc)
                for q, p, ql, rc in zip(
                    *(scores[c].to_pylist() for c in ("query_id", "passage_id", "ql", "rc")),
                    strict=True,
                )
            }
        )
    rng = random.Random(config.seed)
    out: dict[str, list[Any]] = defaultdict(list)
    for row in candidates.to_pylist():
        cands = row["candidate_ids"]
        seed = None if row["seed_id"] is None else cands.index(row["seed_id"])
        ql = [by_pair[(row["query_id"], c)][0] for c in cands]
        rc = [by_pair[(row["query_id"], c)][1] for c in cands]
        fused = fuse(ql, rc, method=config.fusion, weights=config.weights, seed_index=seed)
        sel = select(fused, negative=config.negative, k=config.negatives_k, rng=rng)
        pos = cands[sel.positive]
        negs = [cands[i] for i in sel.negatives]
        for key in ("query_id", "task_type", "task", "query", "seed_id"):
            out[key].append(row[key])
        out["positive_id"].append(pos)
        out["positive_title"].append(passages[pos]["title"])
        out["positive_text"].append(passages[pos]["text"])
        out["negative_ids"].append(negs)
        out["negative_titles"].append([passages[n]["title"] for n in negs])
        out["negative_texts"].append([passages[n]["text"] for n in negs])
        out["candidate_ids"].append(cands)
        out["candidate_titles"].append([passages[c]["title"] for c in cands])
        out["candidate_texts"].append([passages[c]["text"] for c in cands])
        out["encoder_scores"].append(row["encoder_scores"])
        out["bm25_scores"].append(row["bm25_scores"])
        out["retriever_scores"].append(row["retriever_scores"])
        out["encoder_first_id"].append(row["encoder_first_id"])
        out["ql_scores"].append(ql)
        out["rc_scores"].append(rc)
        out["fused_scores"].append(fused)
        out["seed_rank"].append(None if seed is None else sel.order.index(seed) + 1)
        out["relabelled"].append(None if seed is None else pos != row["seed_id"])
        out["source"].append((QuerySource.USER if seed is None else QuerySource.GENERATED).value)
    return pa.table({n: out[n] for n in FRET_SCHEMA.names}, schema=FRET_SCHEMA)


def summarize(fret: pa.Table) -> dict[str, Any]:
    """Relabel rate (paper: about 15%), where the seed ends up, and score spreads.

    The examples of generated and of user queries are counted apart; the relabel rate and
    the seed's rank are over the generated ones (a user query has no seed), None when
    there are none.

    ``positive_first_for_encoder``: the share of examples whose positive the initial encoder
    already ranks first in the corpus (its own first, also when BM25 or the hybrid proposed
    the candidates). Such an example teaches that encoder little: on SciFact, real train
    claims of that kind trained MiniLM to no gain and the others to +4 nDCG@10 (README,
    "Distil end to end")."""
    rows = fret.to_pylist()
    if not rows:
        return {"examples": 0}

    def spread(key: str) -> dict[str, float] | None:
        if all(v != v for r in rows for v in r[key]):
            return None  # not scored (the seed fusion uses no LLM)
        per_query = [max(r[key]) - min(r[key]) for r in rows]
        flat = [v for r in rows for v in r[key]]
        return {
            "mean": round(statistics.fmean(flat), 4),
            "stdev": round(statistics.pstdev(flat), 4),
            "mean_range_per_query": round(statistics.fmean(per_query), 4),
        }

    seeded = [r for r in rows if r["seed_id"] is not None]
    seed_ranks = [r["seed_rank"] for r in seeded]

    def share(n: int) -> float | None:
        return round(n / len(seeded), 4) if seeded else None

    return {
        "examples": len(rows),
        "generated_queries": len(seeded),
        "user_queries": len(rows) - len(seeded),
        "relabel_rate": share(sum(r["relabelled"] for r in seeded)),
        "seed_rank_mean": round(statistics.fmean(seed_ranks), 2) if seeded else None,
        "seed_at_rank_1": share(sum(1 for s in seed_ranks if s == 1)),
        "positive_first_for_encoder": round(
            sum(r["positive_id"] == r["encoder_first_id"] for r in rows) / len(rows), 4
        ),
        "ql": spread("ql_scores"),
        "rc": spread("rc_scores"),
        "encoder": spread("encoder_scores"),
    }


def _llm_time(scores: pa.Table) -> dict[str, Any]:
    """LLM time of the scoring over all shards, whichever sitting wrote them (shards written
    before the ``seconds`` column existed count as missing)."""
    if "seconds" not in scores.column_names:
        return {"llm_seconds": None}
    seconds = scores["seconds"].to_pylist()
    passages = len(set(scores["passage_id"].to_pylist()))
    if not passages or any(s is None for s in seconds):
        return {"llm_seconds": None, "passages_scored": passages}
    return {
        "llm_seconds": round(sum(seconds), 1),
        "passages_scored": passages,
        "seconds_per_passage": round(sum(seconds) / passages, 2),
    }


def _warmed_up(
    encoder: EncoderRef,
    queries: pa.Table,
    passages: dict[str, dict[str, str]],
    out: Path,
    config: MineConfig,
    show_progress: bool,
) -> EncoderRef:
    """The encoder fine-tuned on (query, seed passage) pairs, saved in the run (and reused);
    the queries without a seed passage (the user's) take no part. Its weights are the
    run's own: not pinned."""
    import shutil

    from geckokit.encoder import load_encoder
    from geckokit.format import document_text, query_text
    from geckokit.fret.warmup import warmup_encoder

    folder = out / "warmup_encoder"
    name = f"{encoder.name}+warmup{config.warmup_epochs}"
    if (folder / "modules.json").exists():
        return EncoderRef(load_encoder(str(folder)), name)
    queries = queries.filter(pc.is_valid(queries["passage_id"]))
    pairs = [
        (query_text(t, q), document_text(passages[p]["title"], passages[p]["text"]))
        for t, q, p in zip(
            queries["task"].to_pylist(),
            queries["query"].to_pylist(),
            queries["passage_id"].to_pylist(),
            strict=True,
        )
    ]
    model = encoder.model
    losses = warmup_encoder(
        model, pairs, epochs=config.warmup_epochs, seed=config.seed, show_progress=show_progress
    )
    log.info("warm-up: %d steps, loss %.3f -> %.3f", len(losses), losses[0], losses[-1])
    tmp = out / ".warmup_encoder.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    tmp.rename(folder)
    return EncoderRef(model, name)


def check_seedless(config: MineConfig, queries_file: str | Path | None, *, generated: bool) -> None:
    """Refuse the settings that need every query's seed passage when the user's queries
    (``queries_file``, which have none) are mined: the ``seed`` fusion, which keeps the seed
    as the positive, and a warm-up with no generated queries to warm up on."""
    if queries_file is None:
        return
    if config.fusion is Fusion.SEED:
        raise ValueError(
            f"the seed fusion keeps each query's seed passage as its positive, but the "
            f"queries of {queries_file} have none; choose an LLM fusion (rrf, ql, rc or "
            "weighted) to mine them"
        )
    if config.warmup_encoder and not generated:
        raise ValueError(
            "warmup_encoder fine-tunes on (query, seed passage) pairs, and the queries of "
            f"{queries_file} have no seed passage; turn it off, or mine generated queries too"
        )


def _read_queries(
    queries_dir: Path | None, queries_file: str | Path | None, task: str
) -> tuple[pa.Table, dict[str, Any], dict[str, Any]]:
    """The queries to mine in :data:`~geckokit.fret.user_queries.QUERY_SCHEMA` (the generate
    run's, then the file's), what the run's identity records of each source, and the
    corpus split the generate run used ({} without one)."""
    if queries_dir is None and queries_file is None:
        raise ValueError(
            "no queries to mine: give a generate run folder (--queries), a file of your own "
            "queries (--queries-file), or both"
        )
    parts: list[pa.Table] = []
    sources: dict[str, Any] = {"queries": None, "queries_file": None}
    split: dict[str, Any] = {}
    if queries_dir is not None:
        generated = read_shards(queries_dir / "queries")
        if generated is None or generated.num_rows == 0:
            raise ValueError(
                f"{queries_dir}: no queries found under queries/; run `geckokit generate` first"
            )
        parts.append(generated_queries(generated))
        sources["queries"] = {"source": str(queries_dir), "count": generated.num_rows}
        split = (read_json(queries_dir / MANIFEST) or {}).get("corpus", {})
    if queries_file is not None:
        user = read_user_queries(queries_file, task=task)
        parts.append(user.queries)
        sources["queries_file"] = user.record()
    queries = pa.concat_tables(parts)
    if len(parts) == 2:
        generated_ids = set(parts[0]["query_id"].to_pylist())
        clash = next((q for q in parts[1]["query_id"].to_pylist() if q in generated_ids), None)
        if clash is not None:
            raise ValueError(
                f"{queries_file}: query id {clash!r} is also a generated query's; give the "
                "file's queries other ids (or none: one is derived from each query's text)"
            )
    return queries, sources, split


@holds_run_lock
def mine(
    queries_dir: str | Path | None,
    corpus: Corpus | str | Path,
    out: str | Path,
    *,
    llm: LLM | str | None,
    encoder: EncoderRef,
    config: MineConfig | None = None,
    prompt: RerankPrompt | None = None,
    queries_file: str | Path | None = None,
    queries_task: str = DEFAULT_QUERY_TASK,
    shard_size: int = 64,
    max_shards: int | None = None,
    show_progress: bool = True,
    executor: ExecutorSettings | None = None,
) -> dict[str, Any]:
    """Run FRet step 2 for the queries of a generate run (``queries_dir``), of a file of
    the user's own (``queries_file``, whose queries all get ``queries_task`` as their task;
    see :func:`~geckokit.fret.user_queries.read_user_queries`), or both, and return the
    manifest. ``encoder`` is the initial encoder, which retrieves the candidates (its name is
    part of the run's identity). ``llm`` is a loaded LLM or its spec
    (:func:`~geckokit.llm.load_llm`), or None for the ``seed`` fusion (no relabelling, the
    paper's baseline), which the user's queries cannot take: they have no seed passage to
    keep. ``executor`` (default: local) says where the pairs are scored: executor ``ray``
    needs the spec, which each of its workers loads (:mod:`geckokit.runs.ray_executor`).
    Above ``config.ivf_above`` passages executor ``ray`` also embeds the corpus on its
    workers (:mod:`geckokit.fret.embed_workers`, with ``llm`` None too); the neighbour
    search runs here either way."""
    config = config or MineConfig()
    if llm is None and config.fusion is not Fusion.SEED:
        raise ValueError(f"fusion {config.fusion.value!r} needs an LLM (only 'seed' does not)")
    settings: dict[str, Any] = dict(
        encoder=encoder,
        config=config,
        prompt=prompt,
        queries_file=queries_file,
        queries_task=queries_task,
        shard_size=shard_size,
        max_shards=max_shards,
        show_progress=show_progress,
        executor=executor,
    )
    if llm is None:
        return _mine(queries_dir, corpus, Path(out), work=None, **settings)
    with llm_executor(llm, executor) as work:
        return _mine(queries_dir, corpus, Path(out), work=work, **settings)


def _mine(
    queries_dir: str | Path | None,
    corpus: Corpus | str | Path,
    out: Path,
    *,
    work: ShardExecutor | None,
    encoder: EncoderRef,
    config: MineConfig,
    prompt: RerankPrompt | None,
    queries_file: str | Path | None,
    queries_task: str,
    shard_size: int,
    max_shards: int | None,
    show_progress: bool,
    executor: ExecutorSettings | None,
) -> dict[str, Any]:
    prompt = prompt or load_rerank_prompt()
    queries_dir = None if queries_dir is None else Path(queries_dir)
    check_seedless(config, queries_file, generated=queries_dir is not None)
    queries, sources, split = _read_queries(queries_dir, queries_file, queries_task)
    if not isinstance(corpus, Corpus):
        corpus = load_corpus(
            corpus, max_tokens=split.get("max_tokens", 512), overlap=split.get("overlap", 64)
        )
    identity = {
        "stage": "mine",
        # the selection settings only shape fret/ from the stored scores: a rerun with other
        # ones re-selects without LLM work instead of being refused
        "config": _identity_config(config),
        "prompt": {"version": prompt.version, "sha256": prompt.sha256, "source": prompt.source},
        "model": work.info["model"] if work is not None else {"id": None},
        "encoder": encoder.name,
        "queries": sources["queries"],  # the generate run's (None: none)
        # the user's file: path, sha256, task and counts (None: none); its content is compared
        "queries_file": sources["queries_file"],
        "corpus": {"source": corpus.source, "passages": len(corpus)},
        "shard_size": shard_size,
    }
    _refuse_old_selection(out)
    passages = {r["passage_id"]: r for r in corpus.passages.to_pylist()}
    scoring = work is not None and config.fusion is not Fusion.SEED  # the LLM scores pairs
    # a folder from before a setting existed resumes: it ran with that setting's default
    defaults = {"config": _identity_config(MineConfig())}
    # the manifest's settings, then the files' own records (they also catch what a lost
    # manifest hides); a run refused leaves the folder's manifest as it was
    identity = check_run(out, identity, defaults=defaults)
    cand_path = out / "candidates" / "part-00000.parquet"
    cand_stamp = _candidates_stamp(queries, corpus.passages, config, encoder.name)
    candidates, index = _stored_candidates(cand_path, cand_stamp)
    checked = None
    if candidates is not None:
        candidates = with_candidate_columns(candidates)  # written before the retriever choice
        if work is not None and scoring:
            plan = _scoring(_kept(candidates, config.drop_solved), passages, work, prompt, config)
            checked = resumable_shards(
                plan.grouped,
                out=out,
                outputs=("scores",),
                shard_size=shard_size,
                key=plan.key,
                description=SCORING,
            )
    record_run(out, identity)

    if candidates is None:
        if config.retriever is not Retriever.ENCODER:
            from geckokit.retrieval.bm25 import require_bm25

            require_bm25()  # before the corpus is embedded, not after
        if config.warmup_encoder:
            encoder = _warmed_up(encoder, queries, passages, out, config, show_progress)
        # a registry encoder's passage embeddings serve every run over the same passages
        # (the distilled run's and its ablation's, a second run with another prompt)
        emb = embed_passages(
            encoder,
            corpus.passages,
            cache=out / "corpus_embeddings.npy",
            show_progress=show_progress,
            compute=_embedding_workers(
                len(corpus),
                out,
                encoder=str(out / "warmup_encoder") if config.warmup_encoder else encoder.name,
                config=config,
                executor=executor,
                show_progress=show_progress,
            ),
        )
        candidates, index = _retrieve(
            queries, corpus.passages, encoder, emb, out, cand_stamp, config, show_progress
        )
        write_table(stamped(candidates, {**cand_stamp, "index": index}), cand_path)
    retrieved = candidates.num_rows
    candidates = _kept(candidates, config.drop_solved)
    if candidates.num_rows == 0:
        raise ValueError(
            f"the initial encoder already ranks the seed passage first for all {retrieved} "
            "queries: drop_solved leaves nothing to mine (turn it off, or write more queries)"
        )

    selection = config.model_dump(mode="json", include=set(SELECTION))
    manifest: dict[str, Any] = {**identity, "selection": selection, "status": "partial"}
    if index is not None:
        manifest["index"] = index
    scores = None
    if work is not None and scoring:  # None only for the seed fusion
        run = _score_pairs(
            _scoring(candidates, passages, work, prompt, config),
            out,
            work=work,
            shard_size=shard_size,
            max_shards=max_shards,
            show_progress=show_progress,
            checked=checked,
        )
        done = run.shards_skipped + run.shards_written
        manifest["shards"] = {"total": run.shards_total, "finished": done}
        if run.shards_repaired:
            manifest["shards"]["repaired"] = run.shards_repaired
        if run.llm:  # this sitting's own tokens, not the backend's running total
            manifest["llm_this_run"] = run.llm
        if done < run.shards_total:
            manifest["environment"] = environment()
            write_json(manifest, out / MANIFEST)
            return manifest
        scores = read_shards(out / "scores")
        assert scores is not None
    fret = build_fret(candidates, scores, passages, config)
    write_table(fret, out / "fret" / "part-00000.parquet")
    manifest.update(
        status="finished",
        counts={"examples": fret.num_rows, "pairs": 0 if scores is None else scores.num_rows},
        labels=list(prompt.labels),
        summary=summarize(fret),
    )
    if config.drop_solved:
        manifest["summary"]["solved_dropped"] = retrieved - fret.num_rows
    if scores is not None:
        manifest["summary"].update(_llm_time(scores))
    manifest["environment"] = environment()
    write_json(manifest, out / MANIFEST)
    return manifest


def _embedding_workers(
    passages: int,
    out: Path,
    *,
    encoder: str,
    config: MineConfig,
    executor: ExecutorSettings | None,
    show_progress: bool,
) -> Callable[[list[str]], Any] | None:
    """How the corpus is embedded: above ``config.ivf_above`` passages with executor ``ray``,
    in shards on Ray workers that each load the encoder (``encoder``: its name or folder)
    once (:func:`~geckokit.fret.embed_workers.embed_on_workers`); otherwise None: here."""
    if executor is None or executor.executor is not Executor.RAY or passages <= config.ivf_above:
        return None
    from geckokit.fret.embed_workers import embed_on_workers

    return functools.partial(
        embed_on_workers,
        encoder=encoder,
        folder=out,
        settings=executor,
        show_progress=show_progress,
    )


def _retrieve(
    queries: pa.Table,
    passages: pa.Table,
    encoder: EncoderRef,
    emb: Any,
    out: Path,
    stamp: dict[str, Any],
    config: MineConfig,
    show_progress: bool,
) -> tuple[pa.Table, dict[str, Any]]:
    """The candidates of ``queries`` among ``passages`` (embedded as ``emb``, (n, dim)) and
    the record of the index that searched them: above ``config.ivf_above`` passages an
    IVF-SQ8 index in ``out/index`` (stamped with a digest of the passages and the encoder's
    name; reused by a resumed run) with its recall against exact search."""
    q_emb = embed_queries(encoder.model, queries, show_progress=show_progress)  # (q, dim)
    index, record = search_index(
        emb,
        q_emb,
        folder=out / "index",
        stamp={"corpus_sha256": _passages_sha256(passages), "encoder": encoder.name},
        top_n=config.top_n,
        ivf_above=config.ivf_above,
        nprobe=config.nprobe,
        exact_max=config.exact_max,
        recall_sample=RECALL_QUERIES,
        seed=config.seed,
    )
    candidates = retrieve_candidates(
        queries,
        passages,
        encoder=encoder.model,
        passage_embeddings=emb,
        top_n=config.top_n,
        retriever=config.retriever,
        hybrid_k=config.hybrid_k,
        index=index,
        query_embeddings=q_emb,
        show_progress=show_progress,
    )
    return candidates, record.dump()


def _refuse_old_selection(out: Path) -> None:
    """A folder written before the selection settings left the run's identity keeps them
    in its config: refuse it with a clear message rather than guess how it chose."""
    try:
        previous = read_json(out / MANIFEST)
    except DamagedFileError:
        return  # check_run sets it aside; the stamps of the files check what it recorded
    config = (previous or {}).get("config") or {}
    if any(k in config for k in SELECTION):
        raise RunMismatchError(
            f"{out} was written by an earlier geckokit (its config holds the selection "
            f"settings {', '.join(k for k in SELECTION if k in config)}); delete it to mine "
            "again, or use another --out folder"
        )


def scoring_left(out: str | Path) -> tuple[int, int] | None:
    """Candidate passages and (query, passage) pairs that mine/ in ``out`` has still to
    score, from its retrieved candidates and finished score shards; None before the
    candidates are retrieved, or when they or the manifest are damaged or lost (the run
    sets such files aside or makes them again)."""
    out = Path(out)
    try:
        candidates = read_shards(out / "candidates")
        manifest = read_json(out / MANIFEST)
    except DamagedFileError:
        return None
    if candidates is None or manifest is None:
        return None
    drop = with_defaults(_identity_config(MineConfig()), manifest["config"])["drop_solved"]
    grouped = _pairs_by_passage(_kept(candidates, drop))
    rows = unfinished_rows(out, "scores", grouped.num_rows, manifest["shard_size"])
    queries = grouped["query_ids"].to_pylist()
    return len(rows), sum(len(queries[i]) for i in rows)


#: the scoring's name in messages and on its progress bar
SCORING = "mine: score passages"


@dataclass
class _Scoring:
    """The sharded scoring of a run's pairs: one row per candidate passage with the queries
    it is scored for, the stage that scores a shard of them, and what stamps the shards."""

    grouped: pa.Table
    make_stage: Any
    key: ShardKey


def _scoring(
    candidates: pa.Table,
    passages: dict[str, dict[str, str]],
    work: ShardExecutor,
    prompt: RerankPrompt,
    config: MineConfig,
) -> _Scoring:
    """The scoring of ``candidates``' (query, candidate) pairs, grouped by passage; each
    shard records the prompt's hash, the LLM's id, the passage length and a digest of its
    passages' and queries' texts."""
    query_text = {
        r["query_id"]: (r["task"], r["query"])
        for r in candidates.select(["query_id", "task", "query"]).to_pylist()
    }
    make_stage = functools.partial(
        _scoring_stage,
        prompt=prompt,
        passage_max_tokens=config.passage_max_tokens,
        parallel=config.parallel,
        passages=passages,
        queries=query_text,
    )
    key = ShardKey(
        settings={
            "prompt": prompt.sha256,
            "model": work.info["model"].get("id"),
            "passage_max_tokens": config.passage_max_tokens,
        },
        fingerprint=functools.partial(_pairs_sha256, passages=passages, queries=query_text),
    )
    return _Scoring(_pairs_by_passage(candidates), make_stage, key)


def _score_pairs(
    scoring: _Scoring,
    out: Path,
    *,
    work: ShardExecutor,
    shard_size: int,
    max_shards: int | None,
    show_progress: bool,
    checked: ShardCheck | None = None,
) -> ShardRun:
    """Score every (query, candidate) pair with the LLM, grouped by passage, into
    ``out/scores`` shards (resumable), on ``work``'s workers; ``checked``: the finished
    shards' check, made already."""
    return work.run(
        scoring.grouped,
        out=out,
        outputs=("scores",),
        shard_size=shard_size,
        make_stage=scoring.make_stage,
        split=_scores_only,
        description=SCORING,
        max_shards=max_shards,
        show_progress=show_progress,
        key=scoring.key,
        checked=checked,
    )


def _pairs_sha256(
    shard: pa.Table,
    *,
    passages: dict[str, dict[str, str]],
    queries: dict[str, tuple[str, str]],
) -> str:
    """A digest of what a scores shard is made from: each passage's id, title and text
    with the ids, tasks and texts of the queries it is scored for."""
    return json_sha256(
        [pid, passages[pid]["title"], passages[pid]["text"], [[q, *queries[q]] for q in qids]]
        for pid, qids in zip(
            shard["passage_id"].to_pylist(), shard["query_ids"].to_pylist(), strict=True
        )
    )


def _scoring_stage(
    llm: LLM,
    *,
    prompt: RerankPrompt,
    passage_max_tokens: int,
    parallel: int,
    passages: dict[str, dict[str, str]],
    queries: dict[str, tuple[str, str]],
) -> PassageScoringStage:
    scorer = PairScorer(llm, prompt, passage_max_tokens=passage_max_tokens, parallel=parallel)
    return PassageScoringStage(scorer, passages, queries, list(prompt.labels))


def _scores_only(table: pa.Table) -> dict[str, pa.Table]:
    return {"scores": table}
