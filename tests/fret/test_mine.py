"""FRet step 2 end to end with the real 0.5B LLM and MiniLM on a few SciFact passages."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from geckokit.corpus import load_corpus
from geckokit.encoder import EncoderRef
from geckokit.fret.mine_run import MineConfig, mine, scoring_left
from geckokit.fret.rerank import PairScorer, load_rerank_prompt
from geckokit.io import read_shards, write_table
from geckokit.runs.folder import RunMismatchError

pytestmark = pytest.mark.slow

# Hand-written (task, query) pairs for three SciFact passages; the models are real.
QUERIES = [
    (
        "4983",
        "Given a question, retrieve passages that answer it.",
        "how does white matter diffusion change in premature newborns",
    ),
    (
        "5836",
        "Given a claim, retrieve documents that support or refute the claim.",
        "S100A9 drives the expansion of myeloid-derived suppressor cells in myelodysplastic syndrome",
    ),
    (
        "7912",
        "Given a question, retrieve passages that answer it.",
        "can BC1 RNA prime its own reverse transcription",
    ),
]


@pytest.fixture(scope="module")
def encoder():  # type: ignore[no-untyped-def]
    from geckokit.encoder import load_encoder

    return load_encoder("all-minilm-l6-v2")


@pytest.fixture
def setup(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    corpus = tmp_path / "corpus.jsonl"
    lines = (shared_data / "beir" / "scifact" / "corpus.jsonl").read_text().splitlines()[:12]
    corpus.write_text("\n".join(lines) + "\n")
    queries = tmp_path / "gen"
    write_table(
        pa.table(
            {
                "query_id": [f"{p}:q0" for p, _, _ in QUERIES],
                "passage_id": [p for p, _, _ in QUERIES],
                "task_type": ["question answering", "fact checking", "question answering"],
                "task": [t for _, t, _ in QUERIES],
                "query": [q for _, _, q in QUERIES],
            }
        ),
        queries / "queries" / "part-00000.parquet",
    )
    return corpus, queries


def test_mine_selects_distinct_positive_and_negative(llm, encoder, setup, tmp_path: Path) -> None:
    corpus, queries = setup
    config = MineConfig(top_n=4)

    def run(config: MineConfig, **kwargs: int) -> dict[str, Any]:
        return mine(
            queries,
            corpus,
            tmp_path / "m",
            llm=llm,
            encoder=EncoderRef.named(encoder, "all-minilm-l6-v2"),
            config=config,
            show_progress=False,
            **kwargs,
        )

    llm.usage.reset()
    llm.reset_cache()
    partial = run(config, shard_size=3, max_shards=1)
    assert partial["status"] == "partial"
    manifest = run(config, shard_size=3)
    assert manifest["status"] == "finished" and manifest["counts"]["examples"] == 3
    fret = read_shards(tmp_path / "m" / "fret")
    assert fret is not None
    for row in fret.to_pylist():
        assert row["seed_id"] in row["candidate_ids"] and len(row["candidate_ids"]) == 4
        assert all(
            math.isfinite(v)
            for key in ("ql_scores", "rc_scores", "encoder_scores", "fused_scores")
            for v in row[key]
        )
        assert row["positive_id"] not in row["negative_ids"] and len(row["negative_ids"]) == 1
        assert row["relabelled"] == (row["positive_id"] != row["seed_id"])
        assert row["positive_text"] and row["negative_texts"][0]
        assert all(v <= 0 for v in row["ql_scores"]) and all(v <= 0 for v in row["rc_scores"])
    summary = manifest["summary"]
    assert 0.0 <= summary["relabel_rate"] <= 1.0 and summary["examples"] == 3
    first = [r["positive_id"] == r["candidate_ids"][0] for r in fret.to_pylist()]
    assert summary["positive_first_for_encoder"] == round(sum(first) / 3, 4)
    assert (
        json.loads((tmp_path / "m" / "manifest.json").read_text())["prompt"]["version"]
        == "rerank-v1"
    )

    # every passage was evaluated once; each pair cost only its lead + query + question
    scores = read_shards(tmp_path / "m" / "scores")
    assert scores is not None and scores.num_rows == 12
    # the LLM time counts both sittings: the first shard's pairs were timed by the first
    assert all(t > 0 for t in scores["seconds"].to_pylist())
    assert summary["llm_seconds"] == round(sum(scores["seconds"].to_pylist()), 1)
    assert summary["passages_scored"] == len(set(scores["passage_id"].to_pylist()))
    scorer = PairScorer(llm, load_rerank_prompt(), passage_max_tokens=config.passage_max_tokens)
    rows = {r["passage_id"]: r for r in load_corpus(corpus).passages.to_pylist()}
    passage_tokens = sum(
        len(llm.tokenize(scorer.passage_text(rows[p]["title"], rows[p]["text"])))
        for p in set(scores["passage_id"].to_pylist())
    )
    by_q = {q[0] + ":q0": q for q in QUERIES}
    pair_tokens = sum(
        len(llm.tokenize(scorer.prompt.query.format(task=by_q[q][1])))
        + len(llm.tokenize(" " + by_q[q][2]))
        + len(llm.tokenize(scorer.prompt.question))
        for q in scores["query_id"].to_pylist()
    )
    instruction = len(llm.tokenize(scorer.prompt.instruction, add_bos=True, special=True))
    assert llm.usage.prompt_tokens_evaluated <= instruction * 2 + passage_tokens + pair_tokens
    # each sitting records its own tokens; together they are all the LLM evaluated
    sittings = [partial["llm_this_run"], manifest["llm_this_run"]]
    assert all(s["prompt_tokens_evaluated"] > 0 for s in sittings)
    assert sum(s["prompt_tokens_evaluated"] for s in sittings) == llm.usage.prompt_tokens_evaluated

    # another fusion and negative choice: re-selected from the stored scores, no LLM work
    from geckokit.fret.fusion import Fusion, NegativeChoice, fuse

    spent = llm.usage.prompt_tokens_evaluated
    rc = MineConfig(top_n=4, fusion=Fusion.RC, negative=NegativeChoice.RANDOM)
    again = run(rc, shard_size=3)
    assert llm.usage.prompt_tokens_evaluated == spent
    assert again["selection"]["fusion"] == "rc" and again["selection"]["negative"] == "random"
    refused = read_shards(tmp_path / "m" / "fret")
    assert refused is not None and refused.num_rows == 3
    for row in refused.to_pylist():
        assert row["fused_scores"] == pytest.approx(
            fuse(row["ql_scores"], row["rc_scores"], method=Fusion.RC)
        )
        best = max(range(4), key=lambda i: (row["rc_scores"][i], -i))
        assert row["positive_id"] == row["candidate_ids"][best]

    # a run folder from before selection left the identity (fusion etc. in its config) is
    # refused with a clear message rather than migrated
    path = tmp_path / "m" / "manifest.json"
    current = path.read_text()
    old = json.loads(current)
    old["config"].update(old.pop("selection"))
    path.write_text(json.dumps(old))
    with pytest.raises(RunMismatchError, match="written by an earlier geckokit"):
        run(rc, shard_size=3)
    path.write_text(current)
    assert llm.usage.prompt_tokens_evaluated == spent

    with pytest.raises(RunMismatchError, match="different config"):
        run(MineConfig(top_n=3))


def _add_a_miss(queries: Path) -> pa.Table:
    """Add a query seeded on 7912 that asks about 4983's content; return the queries before."""
    table = read_shards(queries / "queries")
    assert table is not None
    missed = {
        "query_id": ["7912:q1"],
        "passage_id": ["7912"],
        "task_type": ["question answering"],
        "task": [QUERIES[0][1]],
        "query": [QUERIES[0][2]],  # the white-matter question: 4983's content
    }
    write_table(
        pa.concat_tables([table, pa.table(missed)]), queries / "queries" / "part-00000.parquet"
    )
    return table


def test_drop_solved_scores_only_the_queries_the_encoder_misses(
    llm, encoder, setup, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The three hand-written queries find their own passage first; a fourth, written for
    another passage's content but seeded on 7912, does not: only its pairs are scored."""
    corpus, queries = setup
    table = _add_a_miss(queries)
    config = MineConfig(top_n=4, drop_solved=True)

    def run(out: str, config: MineConfig) -> dict[str, Any]:
        return mine(
            queries,
            corpus,
            tmp_path / out,
            llm=llm,
            encoder=EncoderRef.named(encoder, "all-minilm-l6-v2"),
            config=config,
            show_progress=False,
        )

    manifest = run("m", config)
    candidates = read_shards(tmp_path / "m" / "candidates")
    assert candidates is not None and candidates.num_rows == 4  # all retrieved, kept whole
    misses = [
        r["query_id"] for r in candidates.to_pylist() if r["candidate_ids"][0] != r["seed_id"]
    ]
    assert misses == ["7912:q1"]
    assert manifest["status"] == "finished" and manifest["summary"]["solved_dropped"] == 3
    fret = read_shards(tmp_path / "m" / "fret")
    scores = read_shards(tmp_path / "m" / "scores")
    assert fret is not None and fret["query_id"].to_pylist() == misses
    assert scores is not None and set(scores["query_id"].to_pylist()) == set(misses)
    assert scores.num_rows == 4  # its four candidates, nobody else's
    assert scoring_left(tmp_path / "m") == (0, 0)
    assert manifest["config"]["drop_solved"] is True
    # the LLM read 4983's passage for the question written about it: it is the positive
    assert fret["positive_id"].to_pylist() == ["4983"]
    assert fret["relabelled"].to_pylist() == [True]
    # the same folder without it would mine other queries: refused, nothing lost
    with pytest.raises(RunMismatchError, match="different config"):
        run("m", MineConfig(top_n=4))
    # queries the encoder solves every one of leave nothing to mine: a clear error
    write_table(table, queries / "queries" / "part-00000.parquet")
    with pytest.raises(ValueError, match="leaves nothing to mine"):
        run("solved", config)


def test_seed_fusion_needs_no_llm(encoder, setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from geckokit.fret.fusion import Fusion, NegativeChoice

    corpus, queries = setup
    config = MineConfig(top_n=4, fusion=Fusion.SEED, negative=NegativeChoice.RANDOM)

    def run() -> dict[str, Any]:
        return mine(
            queries,
            corpus,
            tmp_path / "m",
            llm=None,
            encoder=EncoderRef.named(encoder, "all-minilm-l6-v2"),
            config=config,
            show_progress=False,
        )

    manifest = run()
    assert manifest["status"] == "finished" and manifest["counts"]["pairs"] == 0
    # a folder written before mine.drop_solved existed resumes: it ran with the default (off)
    path = tmp_path / "m" / "manifest.json"
    written = json.loads(path.read_text())
    del written["config"]["drop_solved"]
    path.write_text(json.dumps(written))
    again = run()
    assert again["status"] == "finished" and again["config"]["drop_solved"] is False
    assert manifest["summary"]["relabel_rate"] == 0.0 and manifest["summary"]["ql"] is None
    fret = read_shards(tmp_path / "m" / "fret")
    assert fret is not None
    for row in fret.to_pylist():
        assert row["positive_id"] == row["seed_id"] and row["negative_ids"][0] != row["seed_id"]
        assert all(math.isnan(v) for v in row["ql_scores"])
    # candidates come in the encoder's order: its first is the best-scored one
    rows = fret.to_pylist()
    assert all(r["encoder_scores"][0] == max(r["encoder_scores"]) for r in rows)
    assert all(r["retriever_scores"] == r["encoder_scores"] for r in rows)
    assert all(r["encoder_first_id"] == r["candidate_ids"][0] for r in rows)
    assert all(r["bm25_scores"] is None for r in rows) and manifest["config"]["retriever"] == (
        "encoder"
    )
    seed_first = sum(r["seed_id"] == r["candidate_ids"][0] for r in rows) / len(rows)
    assert manifest["summary"]["positive_first_for_encoder"] == round(seed_first, 4)
    # no pair scored: an LLM fusion later has every (query, candidate) pair left to score
    candidates = read_shards(tmp_path / "m" / "candidates")
    assert candidates is not None
    ids = candidates["candidate_ids"].to_pylist()
    assert scoring_left(tmp_path / "m") == (len({p for c in ids for p in c}), 4 * fret.num_rows)
    assert scoring_left(tmp_path / "other") is None  # no candidates retrieved yet
    with pytest.raises(ValueError, match="needs an LLM"):
        mine(
            queries,
            corpus,
            tmp_path / "other",
            llm=None,
            encoder=EncoderRef.named(encoder, "all-minilm-l6-v2"),
            config=MineConfig(top_n=4),
            show_progress=False,
        )


def test_rerank_prompts_load_and_validate(tmp_path: Path) -> None:
    graded = load_rerank_prompt("graded")
    assert graded.mode == "graded" and graded.rc_score(
        {"0": math.log(0.5), "1": -50, "2": -50, "3": math.log(0.5)}
    ) == pytest.approx(1.5)
    binary = load_rerank_prompt()
    assert binary.rc_score(
        {"relevant": math.log(0.2), "irrelevant": math.log(0.6)}
    ) == pytest.approx(math.log(0.25))
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\n')
    with pytest.raises(ValueError, match="not a valid rerank prompt"):
        load_rerank_prompt(bad)


def test_the_mine_command_reports_how_many_positives_the_encoder_ranks_first(
    setup, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from geckokit.cli.main import cli

    corpus, queries = setup
    args = [
        "mine",
        "--queries",
        str(queries),
        "--corpus",
        str(corpus),
        "--out",
        str(tmp_path / "m"),
    ]
    result = CliRunner().invoke(cli, [*args, "--top-n", "4", "--fusion", "seed"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "m" / "manifest.json").read_text())["summary"]
    share = f"positive already first for the encoder {summary['positive_first_for_encoder']:.1%}"
    printed = " ".join(result.output.split())  # rich wraps long lines
    assert share in printed and "no LLM scores (seed fusion)" in printed, printed
    assert "left out" not in printed
    assert summary["positive_first_for_encoder"] == 1.0  # every seed first: the hint follows
    assert "Such examples teach the encoder little: --drop-solved" in printed
    result = CliRunner().invoke(
        cli, [*args[:-1], str(tmp_path / "d"), "--top-n", "4", "--fusion", "seed", "--drop-solved"]
    )
    # all three queries find their seed first: one clear line, not a traceback
    assert result.exit_code != 0 and "leaves nothing to mine" in result.output, result.output
    _add_a_miss(queries)
    result = CliRunner().invoke(
        cli, [*args[:-1], str(tmp_path / "e"), "--top-n", "4", "--fusion", "seed", "--drop-solved"]
    )
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert "1 FRet examples" in printed and "3 queries left out" in printed, printed
    assert "teach the encoder little" not in printed  # --drop-solved already acted on it


def test_a_registry_encoders_passage_embeddings_serve_every_run(
    encoder, setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Two mine runs over the same passages with the registry MiniLM embed them once (under
    $GECKOKIT_HOME/embeddings); a local model folder keeps its embeddings in the run."""
    import numpy as np

    from geckokit.fret.fusion import Fusion

    monkeypatch.setenv("GECKOKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GECKOKIT_EMBEDDINGS", raising=False)  # the home's own folder
    corpus, queries = setup
    encoded: list[int] = []
    original = encoder.encode

    def counting(texts, **kw):  # type: ignore[no-untyped-def]
        encoded.append(len(texts))
        return original(texts, **kw)

    monkeypatch.setattr(encoder, "encode", counting)

    def run(out: str, name: str = "all-minilm-l6-v2") -> list[Any]:
        mine(
            queries, corpus, tmp_path / out, llm=None, encoder=EncoderRef.named(encoder, name),
            config=MineConfig(top_n=4, fusion=Fusion.SEED), show_progress=False,
        )  # fmt: skip
        fret = read_shards(tmp_path / out / "fret")
        assert fret is not None
        return fret.to_pylist()

    first = run("a")
    passages = len(load_corpus(corpus).passages)
    assert passages in encoded  # the passages were embedded once
    [cached] = (tmp_path / "home" / "embeddings").glob("all-minilm-l6-v2-passages-*.npy")
    assert np.load(cached).shape == (passages, 384)
    assert not (tmp_path / "a" / "corpus_embeddings.npy").exists()
    encoded.clear()
    second = run("b")
    assert passages not in encoded and encoded, encoded  # only the queries were embedded
    assert [r["candidate_ids"] for r in second] == [r["candidate_ids"] for r in first]
    encoded.clear()
    run("b2", name="minilm")  # an alias of the same registry entry: the same file
    assert passages not in encoded and encoded, encoded
    # a model folder's weights may change under its path: its embeddings stay in the run
    folder = tmp_path / "minilm-copy"
    folder.mkdir()
    encoded.clear()
    third = run("c", name=str(folder))
    assert passages in encoded and (tmp_path / "c" / "corpus_embeddings.npy").exists()
    assert [r["candidate_ids"] for r in third] == [r["candidate_ids"] for r in first]
    assert len(list((tmp_path / "home" / "embeddings").glob("*.npy"))) == 1


@pytest.mark.parametrize("retriever", ["bm25", "hybrid"])
def test_bm25_and_hybrid_candidates_keep_the_seed_and_the_encoders_scores(
    retriever: str, encoder, setup, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """BM25 (InPars) or its fusion with MiniLM proposes the candidates; the encoder's
    cosine of each is kept, and "first for the encoder" stays the encoder's own first."""
    import numpy as np
    import pyarrow.compute as pc

    from geckokit.format import document_text, query_text
    from geckokit.fret.fusion import Fusion
    from geckokit.retrieval.bm25 import BM25Index, passage_text

    corpus, queries = setup
    _add_a_miss(queries)  # 7912:q1 asks 4983's white-matter question

    def run(out: str, config: MineConfig) -> dict[str, Any]:
        return mine(
            queries, corpus, tmp_path / out, llm=None,
            encoder=EncoderRef.named(encoder, "all-minilm-l6-v2"), config=config,
            show_progress=False,
        )  # fmt: skip

    config = MineConfig(top_n=4, fusion=Fusion.SEED, retriever=retriever)
    manifest = run("m", config)
    assert manifest["status"] == "finished" and manifest["config"]["retriever"] == retriever
    fret = read_shards(tmp_path / "m" / "fret")
    candidates = read_shards(tmp_path / "m" / "candidates")
    assert fret is not None and candidates is not None and fret.num_rows == 4
    # the fourth query asks about 4983: neither retriever finds its seed 7912 in the top 4
    assert candidates.filter(pc.invert(candidates["seed_retrieved"]))["query_id"].to_pylist() == [
        "7912:q1"
    ]
    passages = {r["passage_id"]: r for r in load_corpus(corpus).passages.to_pylist()}
    ids = list(passages)
    bm25 = BM25Index([passage_text(p["title"], p["text"]) for p in passages.values()])
    for row, cand in zip(fret.to_pylist(), candidates.to_pylist(), strict=True):
        for key in ("candidate_ids", "encoder_scores", "bm25_scores", "retriever_scores"):
            assert row[key] == cand[key], key  # carried into fret/
        assert row["seed_id"] in row["candidate_ids"] and len(row["candidate_ids"]) == 4
        if not cand["seed_retrieved"]:
            assert row["candidate_ids"][-1] == row["seed_id"]  # put in at rank N
        scores = row["retriever_scores"]
        assert scores == sorted(scores, reverse=True)  # the retriever's order, best first
        # the encoder's cosine of every candidate, BM25's score from the raw query
        q = encoder.encode([query_text(row["task"], row["query"])], normalize_embeddings=True)
        docs = [
            document_text(passages[p]["title"], passages[p]["text"]) for p in row["candidate_ids"]
        ]
        d = encoder.encode(docs, normalize_embeddings=True)  # (4, 384)
        assert row["encoder_scores"] == pytest.approx((d @ q[0]).tolist(), abs=1e-4)
        full = next(bm25.scores([row["query"]]))  # (passages,)
        rows = [ids.index(p) for p in row["candidate_ids"]]
        assert row["bm25_scores"] == pytest.approx(full[rows].tolist(), rel=1e-5)
        if retriever == "bm25":
            assert row["retriever_scores"] == row["bm25_scores"]
            top = [ids[int(r)] for r in np.argsort(-full, kind="stable")[:4]]
            if cand["seed_retrieved"]:
                assert row["candidate_ids"] == top
    # MiniLM ranks the three hand-written queries' seeds first, not the fourth's, whichever
    # retriever proposed the candidates
    assert manifest["summary"]["positive_first_for_encoder"] == 0.75
    missed = next(r for r in fret.to_pylist() if r["query_id"] == "7912:q1")
    assert missed["encoder_first_id"] == "4983"  # its question is 4983's
    dropped = run("d", config.model_copy(update={"drop_solved": True}))
    assert dropped["summary"]["solved_dropped"] == 3
    # the retriever is part of what was mined: another is refused, the same resumes
    assert run("m", config)["status"] == "finished"
    with pytest.raises(RunMismatchError, match="different config"):
        run("m", MineConfig(top_n=4, fusion=Fusion.SEED))


def test_user_queries_are_mined_without_a_seed(
    llm, encoder, setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Two queries of the user's own, no seed passage: the candidates are MiniLM's top 3 as
    retrieved and the LLM's top choice among them is the positive."""
    from geckokit.fret.fusion import Fusion

    corpus, _ = setup
    log = tmp_path / "log.txt"
    log.write_text(f"{QUERIES[0][2]}\n\n{QUERIES[2][2]}\n{QUERIES[0][2]}\n")
    config = MineConfig(top_n=3, fusion=Fusion.QL)

    def run(config: MineConfig = config, task: str = "search result") -> dict[str, Any]:
        return mine(
            None, corpus, tmp_path / "m", llm=llm,
            encoder=EncoderRef.named(encoder, "all-minilm-l6-v2"), config=config, queries_file=log,
            queries_task=task, show_progress=False,
        )  # fmt: skip

    manifest = run()
    assert manifest["status"] == "finished" and manifest["counts"] == {"examples": 2, "pairs": 6}
    assert manifest["queries"] is None
    record = manifest["queries_file"]
    assert record["source"] == str(log) and record["task"] == "search result"
    assert (record["read"], record["empty"], record["duplicates"], record["queries"]) == (
        4,
        1,
        1,
        2,
    )
    summary = manifest["summary"]
    assert (summary["user_queries"], summary["generated_queries"]) == (2, 0)
    assert summary["relabel_rate"] is None and summary["seed_rank_mean"] is None
    candidates = read_shards(tmp_path / "m" / "candidates")
    fret = read_shards(tmp_path / "m" / "fret")
    assert candidates is not None and fret is not None
    for cand, row in zip(candidates.to_pylist(), fret.to_pylist(), strict=True):
        assert cand["seed_id"] is None and cand["seed_retrieved"] is None
        # nothing forced in: the encoder's own top 3, best first
        assert cand["encoder_scores"] == sorted(cand["encoder_scores"], reverse=True)
        assert row["source"] == "user" and row["seed_rank"] is None and row["relabelled"] is None
        assert row["query"].startswith(("how does", "can BC1")) and row["task"] == "search result"
        best = max(range(3), key=lambda i: (row["ql_scores"][i], -i))
        assert row["positive_id"] == row["candidate_ids"][best]  # the LLM's top choice (QL)
        assert row["negative_ids"] == [
            row["candidate_ids"][row["fused_scores"].index(min(row["fused_scores"]))]
        ]
    # the question about 4983's content finds 4983, as the LLM reads it
    assert fret["positive_id"].to_pylist()[0] == "4983"

    spent = llm.usage.prompt_tokens_evaluated
    assert run()["status"] == "finished"  # resumed: nothing left to score
    assert llm.usage.prompt_tokens_evaluated == spent
    # the command on the same folder: resumed too, and its summary has no seed to speak of
    from click.testing import CliRunner

    import geckokit.llm
    from geckokit.cli.main import cli

    monkeypatch.setattr(geckokit.llm, "load_llm", lambda spec, **options: llm)
    args = ["mine", "--queries-file", str(log), "--corpus", str(corpus), "--top-n", "3"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert "2 FRet examples (0 generated queries, 2 of yours); positive already" in printed
    assert "relabelled" not in printed and "teach the encoder little" not in printed
    assert llm.usage.prompt_tokens_evaluated == spent
    with pytest.raises(RunMismatchError, match="different queries_file"):
        run(task="Given a question, retrieve passages that answer it.")
    log.write_text(f"{QUERIES[0][2]}\n")  # other content under the same path
    with pytest.raises(RunMismatchError, match="different queries_file"):
        run()
    with pytest.raises(ValueError, match=r"seed fusion .* have none"):
        run(MineConfig(top_n=3, fusion=Fusion.SEED))
