"""Task-homogeneous batching with no repeated text and per-source weights."""

from __future__ import annotations

from collections import Counter

import pytest

from geckokit.train.batching import plan_batches


def mixture(n_a: int, n_b: int) -> tuple[list[str], list[list[str]]]:
    sources = ["a"] * n_a + ["b"] * n_b
    texts = [[f"q{i}", f"p{i}", ""] for i in range(n_a + n_b)]
    return sources, texts


def test_batches_are_single_source_and_full() -> None:
    sources, texts = mixture(10, 7)
    batches = plan_batches(sources, texts, batch_size=3, seed=1)
    assert all(len(b) == 3 for b in batches)
    assert all(len({sources[i] for i in b}) == 1 for b in batches)
    assert Counter(sources[b[0]] for b in batches) == {"a": 3, "b": 2}  # remainders dropped
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))


def test_no_text_repeats_inside_a_batch() -> None:
    sources = ["a"] * 6
    texts = [
        ["same query", "p0"],
        ["same query", "p1"],
        ["q2", "p2"],
        ["q3", "p3"],
        ["q4", "shared"],
        ["q5", "shared"],
    ]
    for seed in range(10):
        for batch in plan_batches(sources, texts, batch_size=2, seed=seed):
            all_texts = [t for i in batch for t in texts[i]]
            assert len(all_texts) == len(set(all_texts))


def test_weights_steer_the_order_and_zero_drops_a_source() -> None:
    sources, texts = mixture(40, 40)
    only_a = plan_batches(sources, texts, batch_size=4, weights={"b": 0.0})
    assert {sources[b[0]] for b in only_a} == {"a"}
    skewed = plan_batches(sources, texts, batch_size=4, weights={"a": 9.0, "b": 1.0}, seed=3)
    first_half = Counter(sources[b[0]] for b in skewed[:10])
    assert first_half["a"] > first_half["b"]
    with pytest.raises(ValueError, match="not in the mixture"):
        plan_batches(sources, texts, batch_size=4, weights={"c": 1.0})
    with pytest.raises(ValueError, match="at least 2"):
        plan_batches(sources, texts, batch_size=1)


def test_a_row_that_clashes_with_all_others_is_set_aside_not_fatal() -> None:
    # rows 0-3 share the hard negative "n"; row 4's positive is "n"; only rows 0-3 and 5
    # can pair, so every seed must still find one batch of 2 (row 4 never fits)
    sources = ["a"] * 6
    texts = [
        ["q0", "p0", "n"],
        ["q1", "p1", "n"],
        ["q2", "p2", "n"],
        ["q3", "p3", "n"],
        ["q4", "n", "m"],
        ["q5", "p5", "m"],
    ]
    for seed in range(10):
        batches = plan_batches(sources, texts, batch_size=2, seed=seed)
        assert len(batches) >= 1 and all(4 not in b for b in batches)
