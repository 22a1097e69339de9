"""Metrics on hand-computed cases: our pure functions, Matryoshka truncation, and mteb's scores
through the local-task bridge with a deterministic fake model (a test tool)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from geckokit.evaluate.models import ModelInfo, PromptFormat, truncate
from geckokit.retrieval.metrics import ndcg_at_k, recall_at_k


def test_ndcg_hand_computed() -> None:
    # ranks 2 and 3 hold grades 1 and 2: DCG = 1/log2(3) + 2/log2(4); ideal = 2/1 + 1/log2(3)
    got = ndcg_at_k(["d1", "d2", "d3", "d4"], {"d2": 1, "d3": 2}, k=10)
    assert got == pytest.approx((1 / math.log2(3) + 1.0) / (2 + 1 / math.log2(3)))
    assert got == pytest.approx(0.6199062, abs=1e-6)
    assert ndcg_at_k(["a", "b"], {"a": 1}, k=1) == 1.0
    assert ndcg_at_k(["b", "a"], {"a": 1}, k=1) == 0.0
    assert ndcg_at_k(["a"], {}, k=10) == 0.0
    with pytest.raises(ValueError, match="k must be at least 1"):
        ndcg_at_k(["a"], {"a": 1}, k=0)


def test_recall_hand_computed() -> None:
    assert recall_at_k(["a", "b", "c"], {"a": 1, "c": 1, "z": 1}, k=2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "b", "c"], {"a": 1, "c": 1, "z": 0}, k=3) == 1.0
    assert recall_at_k(["a"], {"z": 0}, k=3) == 0.0


def test_truncate_renormalises() -> None:
    x = np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 1.0]])
    out = truncate(x, 2)
    assert out.shape == (2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(out[1], [0.0, 0.0])  # a zero row stays zero
    np.testing.assert_allclose(np.linalg.norm(truncate(x, 3), axis=1), [1.0, 1.0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"dim must lie in \[1, 3\]"):
        truncate(x, 4)


class FakeModel:
    """Deterministic stand-in for a SentenceTransformer: a fixed vector per known text, a
    hash-seeded one otherwise; records what it was asked to embed."""

    max_seq_length = 128

    def __init__(self, vectors: dict[str, list[float]], width: int = 4) -> None:
        self.vectors, self.width, self.seen = vectors, width, []  # type: ignore[var-annotated]

    def get_embedding_dimension(self) -> int:
        return self.width

    def encode(self, texts: list[str], **kwargs: object) -> np.ndarray:
        self.seen.extend(texts)
        out = []
        for t in texts:
            if t in self.vectors:
                out.append(self.vectors[t])
            else:
                rng = np.random.default_rng(abs(hash(t)) % 2**32)
                out.append(rng.normal(size=self.width).tolist())
        return np.asarray(out, dtype=np.float32)


def _jsonl(path: Path, rows: list[dict]) -> None:  # type: ignore[type-arg]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _evaluate(task_spec: str, model: FakeModel, fmt: str = "plain", dim: int | None = None) -> dict:  # type: ignore[type-arg]
    import mteb

    from geckokit.evaluate.mteb_model import EmbeddingCache, EvalEncoder
    from geckokit.evaluate.mteb_tasks import build_task

    task, info = build_task(task_spec)
    encoder = EvalEncoder(
        model,
        info=ModelInfo("fake", "fake", "fake", "r0"),
        dim=dim or model.width,
        fmt=PromptFormat(fmt),
        cache=EmbeddingCache(),
    )
    result = mteb.evaluate(encoder, task, cache=None, show_progress_bar=False).task_results[0]
    return {"main": result.get_score(), "scores": result.scores[info.split][0], "info": info}


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    _jsonl(
        root / "corpus.jsonl",
        [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(1, 5)],
    )
    _jsonl(
        root / "queries.jsonl",
        [{"_id": "q1", "text": "query one"}, {"_id": "q2", "text": "query two"}],
    )
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td2\t1\nq1\td3\t2\nq2\td4\t1\n"
    )
    return root


def test_mteb_ndcg_matches_hand_computed(tiny_beir: Path) -> None:
    vectors = {f"doc {i}": np.eye(4)[i - 1].tolist() for i in range(1, 5)}
    vectors["query one"] = [4.0, 3.0, 2.0, 1.0]  # ranks d1 d2 d3 d4
    vectors["query two"] = [1.0, 2.0, 3.0, 4.0]  # ranks d4 d3 d2 d1
    out = _evaluate(str(tiny_beir), FakeModel(vectors))
    expected = (ndcg_at_k(["d1", "d2", "d3", "d4"], {"d2": 1, "d3": 2}) + 1.0) / 2
    assert expected == pytest.approx(0.8099531, abs=1e-6)
    assert out["info"].main_score == "ndcg_at_10"
    assert out["main"] == pytest.approx(expected, abs=1e-5)  # mteb rounds to 5 places
    assert out["scores"]["recall_at_1"] == pytest.approx(0.5)  # q2 finds its only one first


def test_mteb_sts_pair_classification_classification_clustering(tmp_path: Path) -> None:
    vectors: dict[str, list[float]] = {}
    sts_rows = []
    for i in range(6):  # similarity falls as the gold score falls: Spearman 1
        theta = 0.25 * i
        vectors[f"a{i}"], vectors[f"b{i}"] = (
            [1.0, 0.0, 0, 0],
            [math.cos(theta), math.sin(theta), 0, 0],
        )
        sts_rows.append({"sentence1": f"a{i}", "sentence2": f"b{i}", "score": 5.0 - 0.8 * i})
    _jsonl(tmp_path / "sts" / "test.jsonl", sts_rows)
    pair_rows = []
    for i in range(6):  # matching pairs are identical, others orthogonal: AP 1
        vectors[f"p{i}"], vectors[f"r{i}"] = (
            [0, 0, 1.0, 0],
            [0, 0, 1.0, 0] if i < 3 else [0, 0, 0, 1.0],
        )
        pair_rows.append({"sentence1": f"p{i}", "sentence2": f"r{i}", "label": int(i < 3)})
    _jsonl(tmp_path / "pairs" / "test.jsonl", pair_rows)
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 6)):
        rows = []
        for label in (0, 1, 2):
            for j in range(n):
                text = f"{split} {label} {j}"
                vectors[text] = (np.eye(4)[label] * 5 + rng.normal(scale=0.1, size=4)).tolist()
                rows.append({"text": text, "label": label})
        _jsonl(tmp_path / "cls" / f"{split}.jsonl", rows)

    model = FakeModel(vectors)
    sts = _evaluate(str(tmp_path / "sts"), model)
    assert sts["info"].kind == "sts" and sts["info"].main_score == "cosine_spearman"
    assert sts["main"] == pytest.approx(1.0)
    pairs = _evaluate(str(tmp_path / "pairs"), model)
    assert pairs["info"].kind == "pair_classification" and pairs["main"] == pytest.approx(1.0)
    cls = _evaluate(str(tmp_path / "cls"), model)
    assert cls["info"].kind == "classification" and cls["main"] == pytest.approx(1.0)
    clusters = _evaluate(f"clustering:{tmp_path / 'cls'}", model)
    assert clusters["info"].name == "cls-clustering" and clusters["main"] == pytest.approx(1.0)


def test_gecko_format_reaches_the_model(tiny_beir: Path, tmp_path: Path) -> None:
    scifact = tiny_beir.rename(tmp_path / "scifact")  # the name picks Table 9's task string
    model = FakeModel({})
    _evaluate(str(scifact), model, fmt="gecko", dim=2)
    assert "task: fact checking | query: query one" in model.seen
    assert "title: none | text: doc 1" in model.seen
    _jsonl(
        tmp_path / "sick" / "test.jsonl",
        [
            {"sentence1": "x y", "sentence2": "y z", "score": 1.0},
            {"sentence1": "a", "sentence2": "b", "score": 2.0},
        ],
    )
    _evaluate(str(tmp_path / "sick"), model, fmt="gecko")
    assert "task: sentence similarity | query: x y" in model.seen
    assert "task: sentence similarity | query: y z" in model.seen  # both sides: symmetric
    plain = FakeModel({})
    _evaluate(str(scifact), plain)
    assert "query one" in plain.seen and "doc 1" in plain.seen


def test_mteb_task_names() -> None:
    from geckokit.evaluate.mteb_tasks import build_task

    task, info = build_task("SciFact")  # metadata only: the data would come from the hub
    assert (info.kind, info.source, info.main_score) == ("retrieval", "mteb", "ndcg_at_10")
    assert info.task_string == "fact checking" and task.metadata.name == "SciFact"
    with pytest.raises(ValueError, match="neither an existing path nor an MTEB task name"):
        build_task("NoSuchBenchmark")


def test_paired_randomisation_p_matches_the_exact_test() -> None:
    """Against the exact test, which enumerates every sign pattern of a few differences."""
    import itertools

    from geckokit.retrieval.metrics import paired_randomisation_p

    a, b = [0.9, 0.7, 0.8, 0.6, 0.75, 0.5], [0.5, 0.6, 0.4, 0.65, 0.3, 0.55]
    d = [x - y for x, y in zip(a, b, strict=True)]
    observed = abs(sum(d))
    patterns = list(itertools.product([-1, 1], repeat=len(d)))
    exact = sum(
        abs(sum(s * x for s, x in zip(p, d, strict=True))) >= observed - 1e-12 for p in patterns
    ) / len(patterns)
    assert paired_randomisation_p(a, b, rounds=20_000) == pytest.approx(exact, abs=0.01)
    assert paired_randomisation_p(a, a) == 1.0  # no difference: every draw is as large
    clear = paired_randomisation_p([1.0] * 40, [0.0] * 40, rounds=999)
    assert clear == 1 / 1000  # only the observed difference reaches it
    with pytest.raises(ValueError, match="equally long"):
        paired_randomisation_p([0.5], [0.5, 0.6])
