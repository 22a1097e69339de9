"""The SciFact studies' helpers (experiments/scifact/) that the figures of docs/scifact.md
come from: the split of the test claims by train siblings, the real claims' word overlap
with their abstracts, the rank of a claim's abstract under the base encoder, weight
averaging, the unified format's cost on STS-Benchmark and the plain-text mixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def scifact(shared_data: Path) -> Path:
    return shared_data / "beir" / "scifact"


def test_test_claims_split_by_the_abstracts_train_claims_cite(scifact: Path) -> None:
    """196 of the 300 test claims have a relevant abstract that a train claim also cites,
    and the nearest such train claim shares about two thirds of its content words."""
    from experiments.scifact.scifact_siblings import split_by_train_documents

    relevant, covered, stats = split_by_train_documents(scifact)
    assert len(relevant) == len(covered) == stats["test_claims"] == 300
    assert stats["covered"] == int(covered.sum()) == 196
    assert stats["train_claims"] == 809
    assert stats["nearest_sibling_overlap_mean"] == pytest.approx(0.67, abs=0.005)
    assert stats["nearest_sibling_overlap_at_least_0.8"] == pytest.approx(0.49, abs=0.005)
    # a covered claim's abstracts meet the train claims' abstracts, an uncovered one's do not
    from experiments.scifact.claim_difficulty import real_claims

    cited = set().union(*real_claims(scifact, "train")[2])
    assert all(bool(r & cited) == c for r, c in zip(relevant, covered, strict=True))


def test_real_claims_share_about_half_their_content_words(scifact: Path) -> None:
    from experiments.scifact.claim_difficulty import overlaps, real_claims, scifact_split

    corpus = scifact_split(scifact, "test").corpus
    shares = {}
    for split in ("train", "test"):
        _, claims, relevant = real_claims(scifact, split)
        shares[split] = overlaps(corpus, claims, relevant).mean()
    assert shares == pytest.approx({"train": 0.518, "test": 0.512}, abs=0.0005)


@pytest.mark.slow
def test_a_claims_rank_is_that_of_its_best_relevant_abstract(scifact: Path) -> None:
    """With the real encoder on 100 abstracts: an abstract's own text finds it first, and
    with two relevant abstracts the better ranked one counts."""
    from experiments.scifact.claim_difficulty import ranks, scifact_split
    from geckokit.encoder import load_encoder
    from geckokit.format import document_text

    corpus = scifact_split(scifact, "test").corpus
    doc_ids = sorted(corpus)[:100]
    encoder = load_encoder("all-minilm-l6-v2")
    docs = encoder.encode(
        [document_text(corpus[d]["title"], corpus[d]["text"]) for d in doc_ids],
        normalize_embeddings=True,
    )
    claims = [corpus[d]["title"] for d in doc_ids[:10]]
    own = ranks(encoder, docs, doc_ids, claims, [{d} for d in doc_ids[:10]])
    assert own.tolist() == [1] * 10
    other = ranks(encoder, docs, doc_ids, claims, [{d} for d in doc_ids[10:20]])
    assert (other > 1).all()
    both = ranks(
        encoder,
        docs,
        doc_ids,
        claims,
        [{a, b} for a, b in zip(doc_ids[10:20], doc_ids[:10], strict=True)],
    )
    assert both.tolist() == [1] * 10
    assert np.issubdtype(own.dtype, np.integer)


@pytest.mark.slow
def test_weight_averaging_lies_between_base_and_fine_tuned(scifact: Path) -> None:
    """``interpolate_base.py`` with the real encoder: alpha 0 encodes as the base, alpha 1
    as the fine-tuned model, 0.5 holds the mean of each weight; integer buffers stay."""
    import copy

    import torch

    from experiments.scifact.interpolate_base import interpolate
    from geckokit.encoder import load_encoder

    base = load_encoder()
    tuned = copy.deepcopy(base)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.05 * torch.randn_like(p))
    texts = ["Aspirin lowers the risk of colorectal cancer.", "The suture is a growth site."]
    before = {k: v.clone() for k, v in base.state_dict().items()}
    at = {a: interpolate(base, tuned, a) for a in (0.0, 0.5, 1.0)}
    np.testing.assert_allclose(at[0.0].encode(texts), base.encode(texts), atol=1e-5)
    np.testing.assert_allclose(at[1.0].encode(texts), tuned.encode(texts), atol=1e-5)
    assert not np.allclose(at[0.5].encode(texts), base.encode(texts), atol=1e-3)
    b, t, m = (x.state_dict() for x in (base, tuned, at[0.5]))
    for key, value in m.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (b[key] + t[key]) / 2)
        else:
            assert torch.equal(value, b[key])
    # the base is left as it was
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())


@pytest.mark.slow
def test_the_unified_format_alone_costs_the_base_sts_benchmark(scifact: Path) -> None:
    """The README reads the claims-only models' STS-Benchmark (72 to 76 in the unified
    format) against the base in the same format: with the real encoder and no training, the
    format alone takes the base from 82.03 to 74.51 on STS-Benchmark test."""
    from experiments.scifact.distill_scifact import sts_spearman
    from geckokit.encoder import load_encoder

    model = load_encoder()
    path = scifact.parents[1] / "sts" / "stsbenchmark" / "test.jsonl"
    plain = sts_spearman(model, path, gecko_format=False)
    unified = sts_spearman(model, path, gecko_format=True)
    assert (plain, unified) == pytest.approx((82.03, 74.51), abs=0.02)


def test_a_mixture_rewritten_to_plain_text_reads_as_the_base_sees_text(
    scifact: Path, tmp_path: Path
) -> None:
    """``hard_fret.py --plain``: queries lose their task prefix, documents become title and
    text joined, as the plain-text evaluation embeds them; empty negatives stay empty."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from experiments.scifact.hard_fret import to_plain
    from geckokit.format import document_text, query_text
    from geckokit.io import write_table

    task = "Given a scientific claim, retrieve documents that support or refute the claim."
    rows = {
        "task": [task, task, "Retrieve semantically similar text."],
        "query": [
            query_text(task, "Aspirin lowers stroke risk."),
            query_text(task, "A claim | with a bar."),
            query_text("Retrieve semantically similar text.", "A man plays."),
        ],
        "positive": [
            document_text("Aspirin trial", "We randomised 100 patients."),
            document_text(None, "No title here."),
            query_text("Retrieve semantically similar text.", "Someone plays."),
        ],
        "negative": [document_text("Other", "Unrelated."), "", ""],
        "source": ["fret:mine", "fret:mine", "sts"],
        "candidate_texts": [
            [
                document_text("Aspirin trial", "We randomised 100 patients."),
                document_text(None, "x"),
            ],
            [document_text(None, "No title here.")],
            None,
        ],
    }
    write_table(pa.table(rows), tmp_path / "mixture" / "part-00000.parquet")
    to_plain(tmp_path / "mixture")
    got = pq.read_table(tmp_path / "mixture" / "part-00000.parquet").to_pydict()
    assert got["query"] == ["Aspirin lowers stroke risk.", "A claim | with a bar.", "A man plays."]
    assert got["positive"] == [
        "Aspirin trial We randomised 100 patients.",
        "No title here.",
        "Someone plays.",
    ]
    assert got["negative"] == ["Other Unrelated.", "", ""]
    assert got["candidate_texts"] == [
        ["Aspirin trial We randomised 100 patients.", "x"],
        ["No title here."],
        None,
    ]
    assert got["task"] == rows["task"] and got["source"] == rows["source"]
