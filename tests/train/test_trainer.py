"""A real short training run of MiniLM on a small mixture; the distillation objectives'
settings and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


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


@pytest.mark.slow
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
        text_format="unified",  # the paper's format: its prompts are saved with the model
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
    assert info["matryoshka_dims"] == [384, 128, 32] and info["text_format"] == "unified"
    assert "Trained with geckokit" in (tmp_path / "model" / "README.md").read_text()
    after = model.encode(["task: search result | query: a dog runs"])
    assert not np.allclose(before, after, atol=1e-4)  # the weights changed
    small = SentenceTransformer(str(tmp_path / "model"), truncate_dim=128)
    emb = small.encode(
        ["a dog runs", "a puppy is running", "stock prices fell"], normalize_embeddings=True
    )
    assert emb.shape == (3, 128)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2])


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["contrastive", "kl", "margin-mse"])
def test_gradient_caching_matches_the_uncached_gradients(objective: str) -> None:
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
    columns = [queries, positives, negatives]
    labels = None
    if objective != "contrastive":  # two more candidates and the teacher's scores
        columns += [[f"title: none | text: other passage {i}" for i in range(6)]] * 2
        nan = float("nan")
        labels = torch.tensor(
            [[1.0, -1.0, 0.5, 0.0], [2.0, 0.0, nan, 1.0], [nan] * 4]
            + [[0.3, -0.2, 0.1, 0.0]] * 2
            + [[1.0, nan, 0.2, -0.5]]
        )  # (6, 4): one row without a teacher, NaNs masked
    features = [model.tokenize(t) for t in columns]

    def grads(mini_batch_size: int) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        fresh = [
            {k: v.clone() if hasattr(v, "clone") else v for k, v in f.items()} for f in features
        ]
        loss = build_loss(model, [384, 64], mini_batch_size=mini_batch_size, objective=objective)(
            fresh, labels
        )
        loss.backward()
        return float(loss), [
            p.grad.detach().clone() for p in model.parameters() if p.grad is not None
        ]

    plain_loss, plain = grads(0)
    cached_loss, cached = grads(2)
    assert np.isfinite(plain_loss)
    assert cached_loss == pytest.approx(plain_loss, rel=1e-5)
    assert len(plain) == len(cached) > 0
    # float noise grows with the gradients (Margin-MSE's are in squared logits: up to about 6
    # here), and parameters whose gradient is zero in exact arithmetic carry only noise
    atol = 1e-6 * max(1.0, max(float(g.abs().max()) for g in plain))
    for a, b in zip(plain, cached, strict=True):
        assert torch.allclose(a, b, atol=atol, rtol=1e-4)
    if objective != "contrastive":  # the distillation term is there
        contrastive = build_loss(model, [384, 64])([dict(f) for f in features[:3]])
        assert abs(plain_loss - float(contrastive)) > 1e-4


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_too_few_rows_for_a_batch_is_a_clear_error(small_mixture: Path, tmp_path: Path) -> None:
    from geckokit.train.trainer import TrainConfig, train

    with pytest.raises(ValueError, match="no full batch of 4096 rows"):
        train(small_mixture, tmp_path, config=TrainConfig(batch_size=4096))


# --- score distillation ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fret_mixture(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight FRet rows over real SciFact passages (six candidates each, made-up LLM scores)
    and four from a seed-fusion mine (no LLM scores): a mixture with and without teachers."""
    from geckokit.io import write_table
    from geckokit.mixture.build import build_mixture
    from tests.conftest import fret_table

    lines = (shared_data / "beir/scifact/corpus.jsonl").read_text().splitlines()[:72]
    docs = [json.loads(line) for line in lines]
    passages = {d["_id"]: {"title": d["title"], "text": d["text"][:300]} for d in docs}
    claims = (shared_data / "beir/scifact/queries.jsonl").read_text().splitlines()[:12]
    task = "Given a claim, retrieve documents that support or refute the claim"
    queries = [(task, json.loads(line)["text"]) for line in claims]
    root = tmp_path_factory.mktemp("fret")
    ids = list(passages)
    scored = {k: passages[k] for k in ids[:48]}
    seed = {k: passages[k] for k in ids[48:]}
    write_table(
        fret_table(scored, queries[:8], per_query=6), root / "llm" / "fret" / "part-00000.parquet"
    )
    write_table(
        fret_table(seed, queries[8:], per_query=6, scored=False),
        root / "seed" / "fret" / "part-00000.parquet",
    )
    out = root / "mix"
    build_mixture(out, fret=[root / "llm", root / "seed"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["kl", "margin-mse"])
def test_each_distillation_objective_trains_and_is_recorded(
    objective: str,
    fret_mixture: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import geckokit.train.losses as losses
    from geckokit.train.trainer import TrainConfig, train

    terms: list[tuple[tuple[int, ...], int]] = []  # (candidates' shape, scored teacher entries)

    def spy(q, candidates, teacher, **kwargs):  # type: ignore[no-untyped-def]
        terms.append((tuple(candidates.shape), int(teacher.isfinite().sum())))
        return distill_loss(q, candidates, teacher, **kwargs)

    distill_loss = losses.distill_loss
    monkeypatch.setattr(losses, "distill_loss", spy)

    config = TrainConfig(
        objective=objective,
        distill_weight=0.5,
        teacher="rc",
        teacher_temperature=0.5,
        distill_candidates=4,
        max_steps=3,  # the two batches with a teacher and the one without
        batch_size=4,
        max_seq_length=64,
        logging_steps=1,
        save_steps=1000,
    )
    with caplog.at_level("WARNING"):
        manifest = train(fret_mixture, tmp_path, config=config)
    assert "4 of 12 FRet rows have no usable rc scores" in caplog.text
    curve = [e["loss"] for e in manifest["loss_curve"]]
    assert len(curve) == 3 and all(np.isfinite(curve))
    # the scored mine's two batches got the term (four rows; positive, negative and two
    # others of 384 dims; all their RC scores present), the seed mine's batch did not
    assert [shape for shape, _ in terms] == [(4, 4, 384)] * 2
    assert all(scored == 16 for _, scored in terms)
    assert manifest["config"]["objective"] == objective
    d = manifest["distillation"]
    assert d["objective"] == objective and d["teacher"] == "rc" and d["candidates"] == 4
    assert d["rows_with_teacher"] == 8 and d["fret_rows"] == 12
    info = json.loads((tmp_path / "model" / "geckokit.json").read_text())
    assert info["objective"] == objective
    assert (
        info["distillation"]["weight"] == 0.5 and info["distillation"]["teacher_temperature"] == 0.5
    )
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"Score distillation (`{objective}`)" in card and "`rc` scores" in card


def test_distillation_needs_a_mixture_that_carries_candidates(tmp_path: Path) -> None:
    import pyarrow as pa

    from geckokit.io import write_table
    from geckokit.train.trainer import TrainConfig, train

    old = pa.table(  # a mixture written before the ranking columns existed
        {c: ["x", "y"] for c in ("task", "query", "positive", "negative")} | {"source": ["s"] * 2}
    )
    write_table(old, tmp_path / "mix" / "mixture" / "part-00000.parquet")
    with pytest.raises(ValueError, match="rebuild it with `geckokit mix`"):
        train(tmp_path / "mix", tmp_path / "out", config=TrainConfig(objective="kl"))


def test_a_mixture_where_no_row_can_teach_is_refused(tmp_path: Path) -> None:
    from geckokit.io import write_table
    from geckokit.mixture.build import build_mixture
    from geckokit.train.trainer import TrainConfig, train
    from tests.conftest import fret_table

    passages = {f"p{i}": {"title": f"T{i}", "text": f"body {i}"} for i in range(8)}
    fret = fret_table(passages, [("t", "a"), ("t", "b")], per_query=4, scored=False)
    write_table(fret, tmp_path / "seed" / "fret" / "part-00000.parquet")
    build_mixture(tmp_path / "mix", fret=[tmp_path / "seed"])
    for teacher in ("ql", "rc", "fused"):
        config = TrainConfig(objective="margin-mse", teacher=teacher)
        with pytest.raises(ValueError, match=r"none of the mixture's 2 rows \(2 from FRet\)"):
            train(tmp_path / "mix", tmp_path / "out", config=config)


def test_distillation_settings_are_validated() -> None:
    from pydantic import ValidationError

    from geckokit.train.trainer import TrainConfig

    config = TrainConfig(objective="margin-mse", teacher="fused")
    assert config.objective.value == "margin-mse" and config.teacher.value == "fused"
    assert TrainConfig().objective.value == "contrastive"  # today's loss stays the default
    with pytest.raises(ValidationError, match="'contrastive', 'kl' or 'margin-mse'"):
        TrainConfig(objective="kld")
    with pytest.raises(ValidationError, match="distill_candidates"):
        TrainConfig(distill_candidates=1)
    with pytest.raises(ValidationError, match="teacher_temperature"):
        TrainConfig(teacher_temperature=0)


def test_gradient_caching_turns_itself_on_when_a_step_embeds_many_texts() -> None:
    from geckokit.train.trainer import TrainConfig, mini_batch_size

    assert mini_batch_size(TrainConfig()) == 0  # contrastive, batch 32: 96 texts a step
    assert mini_batch_size(TrainConfig(batch_size=64)) == 32  # 192 texts
    assert mini_batch_size(TrainConfig(objective="kl")) == 32  # 32 x (3 + 6 candidates)
    assert mini_batch_size(TrainConfig(objective="kl", batch_size=8)) == 0  # 72 texts
    assert mini_batch_size(TrainConfig(objective="kl", gradcache_mini_batch=0)) == 0
    assert mini_batch_size(TrainConfig(gradcache_mini_batch=8)) == 8


def test_plain_text_strips_the_unified_prefixes_and_nothing_else() -> None:
    import pyarrow as pa

    from geckokit.format import document_text, plain_document, plain_query, query_text
    from geckokit.train.trainer import as_plain_text

    assert plain_query(query_text("fact checking", "Aspirin | thins blood")) == (
        "Aspirin | thins blood"
    )
    assert plain_query("no prefix here") == "no prefix here"
    assert plain_document(document_text("Aspirin", "It thins blood.")) == "Aspirin It thins blood."
    assert plain_document(document_text(None, "It thins blood.")) == "It thins blood."
    assert plain_document(query_text("sts", "a dog runs")) == "a dog runs"  # symmetric side
    table = pa.table(
        {
            "query": [query_text("search result", "q one"), query_text("sts", "q two")],
            "positive": [document_text("T", "p"), query_text("sts", "a twin")],
            "negative": [document_text(None, "n"), None],
            "source": ["fret", "sts"],
            "candidate_texts": [[document_text("T", "p"), document_text("U", "c")], None],
        }
    )
    plain = as_plain_text(table).to_pydict()
    assert plain["query"] == ["q one", "q two"]
    assert plain["positive"] == ["T p", "a twin"] and plain["negative"] == ["n", None]
    assert plain["candidate_texts"] == [["T p", "U c"], None] and plain["source"] == ["fret", "sts"]


@pytest.mark.slow
def test_a_plain_text_model_saves_no_prompts_and_is_scored_in_plain_text(
    fret_mixture: Path, tmp_path: Path
) -> None:
    """Plain text is the default."""
    from sentence_transformers import SentenceTransformer

    from geckokit.evaluate.models import PromptFormat, describe_model
    from geckokit.serve.model import read_text_format
    from geckokit.train.trainer import TrainConfig, train

    config = TrainConfig(
        objective="kl",
        distill_candidates=4,
        max_steps=2,
        batch_size=4,
        max_seq_length=64,
        save_steps=1000,
    )
    pre = train(fret_mixture, tmp_path / "pre", config=config, prefinetune=fret_mixture)
    assert pre["prefinetune"]["settings"]["text_format"] == "plain"  # its pairs are plain too
    manifest = train(fret_mixture, tmp_path, config=config)
    assert manifest["config"]["text_format"] == "plain"
    assert not any(SentenceTransformer(str(tmp_path / "model")).prompts.values())
    info = json.loads((tmp_path / "model" / "geckokit.json").read_text())
    assert info["prompts"] == {} and info["text_format"] == "plain"
    assert read_text_format(tmp_path / "model") == "plain"  # served as it was trained
    formats = describe_model(str(tmp_path / "model")).formats([PromptFormat.AUTO])
    assert formats == [PromptFormat.PLAIN]


def test_a_checkpoint_cut_short_is_deleted_and_the_newest_whole_one_resumed(
    tmp_path: Path,
) -> None:
    """A run killed while writing a checkpoint leaves it without its weights (found by
    ``bench/reliability.py --area kill``): resuming must not start from it."""
    from geckokit.train.trainer import _whole_checkpoints

    folder = tmp_path / "checkpoints"
    for step, files in ((1, ("trainer_state.json", "model.safetensors")), (2, ("optimizer.pt",))):
        path = folder / f"checkpoint-{step}"
        path.mkdir(parents=True)
        for name in files:
            (path / name).write_text("x")
    assert _whole_checkpoints(folder) == [folder / "checkpoint-1"]
    assert not (folder / "checkpoint-2").exists()
