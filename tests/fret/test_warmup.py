"""Warm-up of the initial retriever: the loss by hand, and a real MiniLM fine-tune."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from geckokit.fret.warmup import warmup_encoder  # noqa: E402


@pytest.mark.slow
def test_warmup_lowers_the_loss_and_changes_weights() -> None:
    from geckokit.encoder import load_encoder

    encoder = load_encoder("all-minilm-l6-v2")
    pairs = [
        (
            "task: question answering | query: why is the sky blue",
            "title: Rayleigh scattering | text: Short wavelengths scatter more in air.",
        ),
        (
            "task: question answering | query: how do bees find flowers",
            "title: Bees | text: Bees dance to tell the hive where flowers are.",
        ),
        (
            "task: fact checking | query: coffee dehydrates you",
            "title: Caffeine | text: Moderate coffee intake does not cause dehydration.",
        ),
        (
            "task: search result | query: sourdough starter not rising",
            "title: Starters | text: A weak starter needs warmer water and regular feeding.",
        ),
    ]
    before = next(encoder.parameters()).detach().clone()
    losses = warmup_encoder(
        encoder, pairs * 4, epochs=3, batch_size=4, lr=5e-5, show_progress=False
    )
    assert len(losses) == 12
    assert sum(losses[-4:]) < sum(losses[:4])
    assert not torch.equal(before, next(encoder.parameters()).detach())
    with pytest.raises(ValueError, match="at least 2"):
        warmup_encoder(encoder, pairs[:1])


@pytest.mark.slow
def test_mine_keeps_the_warmed_up_encoder_with_the_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa

    from geckokit.encoder import EncoderRef, load_encoder
    from geckokit.fret.mine_run import MineConfig, _warmed_up

    queries = pa.table(
        {
            "task": ["question answering"] * 3,
            "query": ["why is the sky blue", "how do bees find flowers", "is coffee dehydrating"],
            "passage_id": ["a", "b", "c"],
        }
    )
    passages = {
        "a": {"title": "Sky", "text": "Short wavelengths scatter more in air."},
        "b": {"title": "Bees", "text": "Bees dance to tell the hive where flowers are."},
        "c": {"title": "Coffee", "text": "Moderate coffee intake does not cause dehydration."},
    }
    config = MineConfig(warmup_encoder=True)
    base = EncoderRef.named(load_encoder(), "all-minilm-l6-v2")
    warmed = _warmed_up(base, queries, passages, tmp_path, config, False)
    assert (
        warmed.name == "all-minilm-l6-v2+warmup1"
        and not warmed.pinned
        and (tmp_path / "warmup_encoder" / "modules.json").exists()
    )
    again = _warmed_up(
        EncoderRef.named(load_encoder(), "all-minilm-l6-v2"),
        queries,
        passages,
        tmp_path,
        config,
        False,
    )
    a = warmed.model.encode(["why is the sky blue"])
    b = again.model.encode(["why is the sky blue"])
    assert float(abs(a - b).max()) < 1e-5  # the saved model is reused, not trained again
