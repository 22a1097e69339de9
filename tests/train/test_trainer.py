"""A real short training run of MiniLM on a small mixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_mixture(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from geckokit.mixture.build import build_mixture

    src = tmp_path_factory.mktemp("src")
    nli = src / "snli" / "test.jsonl"
    nli.parent.mkdir()
    nli.write_text(
        "".join(
            (shared_data / "training_pairs/snli_esnli/test.jsonl")
            .read_text()
            .splitlines(keepends=True)[:120]
        )
    )
    sts = src / "sts" / "train.jsonl"
    sts.parent.mkdir()
    sts.write_text(
        "".join(
            (shared_data / "sts/stsbenchmark/train.jsonl")
            .read_text()
            .splitlines(keepends=True)[:80]
        )
    )
    out = tmp_path_factory.mktemp("mix")
    build_mixture(out, nli=[nli], sts=[sts])
    return out


def test_training_lowers_the_loss_and_saves_a_loadable_model(
    small_mixture: Path, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    from geckokit.encoder import load_encoder
    from geckokit.train.trainer import TrainConfig, train

    base = load_encoder("all-minilm-l6-v2")
    before = base.encode(["task: search result | query: a dog runs"])
    config = TrainConfig(
        epochs=3,
        batch_size=8,
        learning_rate=5e-5,
        logging_steps=1,
        save_steps=1000,
        matryoshka_dims=[384, 128, 32],
    )
    manifest = train(small_mixture, tmp_path, config=config)
    curve = [e["loss"] for e in manifest["loss_curve"]]
    n = len(curve) // 3
    assert n >= 3
    assert np.mean(curve[-n:]) < np.mean(curve[:n])  # the last epoch's loss is below the first's

    model = SentenceTransformer(str(tmp_path / "model"))
    assert model.prompts["query"].startswith("task: ") and model.prompts["document"].startswith(
        "title: "
    )
    info = json.loads((tmp_path / "model" / "geckokit.json").read_text())
    assert info["matryoshka_dims"] == [384, 128, 32]
    assert "Trained with geckokit" in (tmp_path / "model" / "README.md").read_text()
    after = model.encode(["task: search result | query: a dog runs"])
    assert not np.allclose(before, after, atol=1e-4)  # the weights changed
    small = SentenceTransformer(str(tmp_path / "model"), truncate_dim=128)
    emb = small.encode(
        ["a dog runs", "a puppy is running", "stock prices fell"], normalize_embeddings=True
    )
    assert emb.shape == (3, 128)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2])


def test_gradient_caching_matches_the_uncached_gradients() -> None:
    import torch

    from geckokit.encoder import load_encoder
    from geckokit.train.trainer import build_loss

    model = load_encoder("all-minilm-l6-v2")
    model.eval()  # no dropout: both passes see the same network
    queries = [
        f"task: search result | query: question number {i} about topic {i % 3}" for i in range(6)
    ]
    positives = [f"title: none | text: passage {i} answers question {i}" for i in range(6)]
    negatives = [f"title: none | text: unrelated text {i}" for i in range(5)] + [
        ""
    ]  # last row has none
    features = [model.tokenize(t) for t in (queries, positives, negatives)]

    def grads(mini_batch_size: int) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        fresh = [
            {k: v.clone() if hasattr(v, "clone") else v for k, v in f.items()} for f in features
        ]
        loss = build_loss(model, [384, 64], mini_batch_size=mini_batch_size)(fresh)
        loss.backward()
        return float(loss), [
            p.grad.detach().clone() for p in model.parameters() if p.grad is not None
        ]

    plain_loss, plain = grads(0)
    cached_loss, cached = grads(2)
    assert cached_loss == pytest.approx(plain_loss, rel=1e-5)
    assert len(plain) == len(cached) > 0
    for a, b in zip(plain, cached, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_rerun_resumes_from_the_newest_checkpoint(small_mixture: Path, tmp_path: Path) -> None:
    from geckokit.train.trainer import TrainConfig, train

    first = train(
        small_mixture,
        tmp_path,
        config=TrainConfig(max_steps=2, batch_size=8, save_steps=2, logging_steps=1),
    )
    assert first["steps"] == 2 and (tmp_path / "checkpoints" / "checkpoint-2").exists()
    second = train(
        small_mixture,
        tmp_path,
        config=TrainConfig(max_steps=3, batch_size=8, save_steps=2, logging_steps=1),
    )
    assert second["steps"] == 3
    assert second["resumed_from"] == str(tmp_path / "checkpoints" / "checkpoint-2")
    assert [e["step"] for e in second["loss_curve"]] == [1, 2, 3]  # history restored, one new step


def test_prefinetuning_runs_first_and_is_not_repeated(
    small_mixture: Path, shared_data: Path, tmp_path: Path
) -> None:
    from geckokit.train.trainer import TrainConfig, train

    corpus = tmp_path / "corpus.jsonl"
    lines = (shared_data / "beir/scifact/corpus.jsonl").read_text().splitlines(keepends=True)
    corpus.write_text("".join(lines[:40]))  # 40 titled abstracts: title-body pairs
    config = TrainConfig(
        max_steps=2, batch_size=8, logging_steps=1, prefinetune_steps=3, save_steps=1000
    )
    manifest = train(small_mixture, tmp_path / "run", config=config, prefinetune=corpus)
    pre = manifest["prefinetune"]
    assert pre["stage"] == "prefinetune" and pre["steps"] == 3 and pre["pairs"] == 40
    assert pre["sources"] == {"pairs:title-text": 40}
    assert len(pre["loss_curve"]) == 3 and all(np.isfinite(e["loss"]) for e in pre["loss_curve"])
    assert manifest["steps"] == 2
    info = json.loads((tmp_path / "run" / "model" / "geckokit.json").read_text())
    assert info["prefinetune"]["rows"] == 40
    assert (
        "Pre-finetuned first on 40 text pairs"
        in (tmp_path / "run" / "model" / "README.md").read_text()
    )

    # the fine-tuning stage started from the pre-finetuned weights, not from the base
    from geckokit.encoder import load_encoder

    base = load_encoder("all-minilm-l6-v2")
    pre_model = load_encoder(pre["model"])
    text = ["title: none | text: a study of protein folding"]
    assert not np.allclose(base.encode(text), pre_model.encode(text), atol=1e-4)

    again = train(small_mixture, tmp_path / "run", config=config, prefinetune=corpus)
    assert again["prefinetune"]["seconds"] == pre["seconds"]  # the finished stage was reused


def test_too_few_rows_for_a_batch_is_a_clear_error(small_mixture: Path, tmp_path: Path) -> None:
    from geckokit.train.trainer import TrainConfig, train

    with pytest.raises(ValueError, match="no full batch of 4096 rows"):
        train(small_mixture, tmp_path, config=TrainConfig(batch_size=4096))
