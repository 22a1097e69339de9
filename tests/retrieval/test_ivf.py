"""The IVF-SQ8 index: its sizing and recall maths by hand, then on a slice of SciFact with
MiniLM: built once, memory-mapped, reused, rebuilt for another corpus, and its recall@10
against exact search, in the mine manifest too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from geckokit.corpus import Corpus, load_corpus
from geckokit.encoder import EncoderRef
from geckokit.fret.retrieve import embed_passages, embed_queries, search_index
from geckokit.retrieval.ivf import IVF_FILE, build_ivf, ivf_nlist, recall_at_k
from geckokit.tasks import DEFAULT_QUERY_TASK

#: passages of the SciFact slice, each cut to this many characters (keeps the test short)
PASSAGES, CHARS, QUERIES = 1000, 300, 250
#: lists searched per query in the tests: 10 of the slice's 25
NPROBE = 10
#: recall@10 measured on this slice (200 of the first SciFact claims): 0.92 at nprobe 8,
#: 0.95 at 10, 0.97 at 12; the floor leaves room for another FAISS build's k-means
RECALL_FLOOR = 0.9


def test_nlist_is_about_four_root_n_with_enough_points_per_list() -> None:
    assert ivf_nlist(1_000_000) == 4000
    assert ivf_nlist(200_000) == 1789  # 4 * 447.2
    assert ivf_nlist(1000) == 25  # 4 * 31.6 = 126 lists would get fewer than 39 points each
    assert ivf_nlist(10) == 1
    with pytest.raises(ValueError, match="at least one vector"):
        ivf_nlist(0)


def test_recall_counts_the_exact_top_k_found() -> None:
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 1, 9], [4, 5, -1]])
    assert recall_at_k(found, exact) == pytest.approx(4 / 6)
    assert recall_at_k(exact, exact) == 1.0
    with pytest.raises(ValueError, match="one shape"):
        recall_at_k(found[:, :2], exact)


def test_nlist_beyond_the_vectors_is_refused() -> None:
    with pytest.raises(ValueError, match="nlist must be between 1 and the 3 vectors"):
        build_ivf(np.eye(3, dtype=np.float32), nlist=4)


@pytest.fixture(scope="module")
def scifact(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A slice of SciFact's corpus (first passages, texts cut short) embedded by MiniLM,
    and the first of SciFact's claims as queries."""
    from geckokit.encoder import load_encoder

    folder = shared_data / "beir" / "scifact"
    lines = (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:PASSAGES]
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row["text"] = row["text"][:CHARS]
    path = tmp_path_factory.mktemp("scifact") / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    corpus = load_corpus(path)
    encoder = EncoderRef.named(load_encoder("all-minilm-l6-v2"), "all-minilm-l6-v2")
    texts = [
        json.loads(line)["text"]
        for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    ][:QUERIES]
    queries = pa.table({"task": [DEFAULT_QUERY_TASK] * len(texts), "query": texts})
    return {
        "path": path,
        "corpus": corpus,
        "encoder": encoder,
        "passages": embed_passages(encoder, corpus.passages, show_progress=False),
        "queries": embed_queries(encoder.model, queries, show_progress=False),
    }


def _search(scifact: dict[str, object], folder: Path, passages: np.ndarray):  # type: ignore[no-untyped-def]
    return search_index(
        passages,
        scifact["queries"],  # type: ignore[arg-type]
        folder=folder,
        stamp={"corpus_sha256": str(len(passages))},
        top_n=10,
        ivf_above=100,
        nprobe=NPROBE,
    )


def test_ivf_sq8_above_the_threshold_is_mmapped_reused_and_rebuilt(
    scifact: dict[str, object], tmp_path: Path
) -> None:
    import faiss

    emb = scifact["passages"]
    assert isinstance(emb, np.ndarray) and len(emb) == PASSAGES  # cut into passages as mined
    index, record = _search(scifact, tmp_path, emb)
    assert record.kind == "ivf-sq8" and record.built and record.nlist == ivf_nlist(len(emb))
    assert record.nprobe == NPROBE and record.recall_k == 10 and record.recall_queries == 200
    assert record.recall is not None and record.recall >= RECALL_FLOOR
    assert isinstance(index, faiss.IndexIVFScalarQuantizer)
    ivf = faiss.extract_index_ivf(index)
    assert index.sq.qtype == faiss.ScalarQuantizer.QT_8bit and ivf.metric_type == 0  # inner product
    # memory-mapped: the lists are read from the file, not copied into memory
    assert isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)
    file = tmp_path / IVF_FILE
    written = file.stat().st_mtime_ns
    _, again = _search(scifact, tmp_path, emb)
    assert not again.built and again.build_seconds is None and again.recall == record.recall
    assert file.stat().st_mtime_ns == written  # reused, not written again
    # another corpus (one passage fewer): built again, over the vectors it now holds
    index, changed = _search(scifact, tmp_path, emb[:-1])
    assert changed.built and index.ntotal == len(emb) - 1
    # at or under the threshold: exact search, nothing stored
    _, exact = search_index(
        emb, emb[:5], folder=tmp_path / "no", stamp={}, top_n=10, ivf_above=len(emb), nprobe=8
    )
    assert exact.kind == "flat" and exact.recall is None and not (tmp_path / "no").exists()


@pytest.mark.slow
def test_mine_records_the_ivf_recall_and_a_resumed_run_reuses_the_index(
    scifact: dict[str, object], tmp_path: Path
) -> None:
    from geckokit.fret.fusion import Fusion
    from geckokit.fret.mine_run import MineConfig, mine
    from geckokit.io import write_table
    from geckokit.runs.manifest import MineManifest

    corpus = scifact["corpus"]
    assert isinstance(corpus, Corpus)
    seeds = corpus.passages["passage_id"].to_pylist()[:30]
    titles = corpus.passages["title"].to_pylist()[:30]
    write_table(
        pa.table(
            {
                "query_id": [f"{p}:q0" for p in seeds],
                "passage_id": seeds,
                "task_type": ["question answering"] * len(seeds),
                "task": [DEFAULT_QUERY_TASK] * len(seeds),
                "query": titles,  # each passage's title stands in for a generated query
            }
        ),
        tmp_path / "gen" / "queries" / "part-00000.parquet",
    )
    config = MineConfig(top_n=10, fusion=Fusion.SEED, ivf_above=100, nprobe=NPROBE)

    def run() -> MineManifest:
        return MineManifest.model_validate(
            mine(
                tmp_path / "gen",
                scifact["path"],  # type: ignore[arg-type]
                tmp_path / "m",
                llm=None,
                encoder=scifact["encoder"],  # type: ignore[arg-type]
                config=config,
                show_progress=False,
            )
        )

    first = run()
    assert first.index is not None and first.index.kind == "ivf-sq8" and first.index.built
    assert first.index.recall_k == 10 and first.index.recall_queries == 30
    assert first.index.recall is not None and first.index.recall >= RECALL_FLOOR
    assert (tmp_path / "m" / "index" / IVF_FILE).exists()
    # a run whose candidates were lost searches the index it built, not a new one
    written = (tmp_path / "m" / "index" / IVF_FILE).stat().st_mtime_ns
    (tmp_path / "m" / "candidates" / "part-00000.parquet").unlink()
    again = run()
    assert again.index is not None and again.index.built is False
    assert again.index.recall == first.index.recall
    assert (tmp_path / "m" / "index" / IVF_FILE).stat().st_mtime_ns == written
