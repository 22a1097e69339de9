"""The pieces of llama.cpp's batched calls that need no model: packing sequences into
decodes, cell blocks, and the completion text rules."""

from __future__ import annotations

import pytest

from geckokit.llm.llamacpp_batch import CELL_BLOCK, Completion, aligned, pack


def test_pack_keeps_order_and_fills_each_decode_up_to_the_budget() -> None:
    assert pack([3, 3, 3, 3], budget=7, most=10) == [[0, 1], [2, 3]]
    assert pack([5, 1, 1, 6], budget=7, most=10) == [[0, 1, 2], [3]]
    assert pack([2, 2, 2, 2, 2], budget=100, most=2) == [[0, 1], [2, 3], [4]]
    # an item larger than the budget goes alone
    assert pack([2, 9, 2], budget=4, most=10) == [[0], [1], [2]]
    assert pack([], budget=4, most=2) == []
    with pytest.raises(ValueError, match="at least 1"):
        pack([1], budget=0, most=1)


def test_aligned_rounds_up_to_whole_cell_blocks() -> None:
    assert [aligned(n, 16) for n in (1, 16, 17, 35)] == [16, 16, 32, 48]
    assert aligned(CELL_BLOCK + 1) == 2 * CELL_BLOCK and aligned(0) == 0
    with pytest.raises(ValueError, match="at least 1 cell"):
        aligned(5, 0)


def _completion(max_tokens: int = 5, stop: tuple[str, ...] = ()) -> Completion:
    pieces = {1: b"a", 2: b" b", 3: b"\xc3", 4: b"\xa9", 5: b" END", 9: b""}

    def detokenize(tokens: list[int], prompt: list[int]) -> bytes:
        return b"".join(pieces[t] for t in tokens)

    return Completion(
        prompt=[0],
        max_tokens=max_tokens,
        stop=[s.encode() for s in stop],
        detokenize=detokenize,
        is_end=lambda t: t == 9,
    )


def test_completion_ends_at_the_end_token_without_writing_it() -> None:
    c = _completion()
    assert not c.add(1) and not c.add(2)
    assert c.add(9) and c.finish_reason == "stop" and c.text == b"a b" and c.tokens == [1, 2]


def test_completion_cuts_at_a_stop_string_and_stops_at_max_tokens() -> None:
    c = _completion(stop=(" END",))
    for t in (1, 2):
        c.add(t)
    assert c.add(5) and c.finish_reason == "stop" and c.text == b"a b"
    long = _completion(max_tokens=3)
    assert not long.add(1) and not long.add(1)
    assert long.add(2) and long.finish_reason == "length" and long.text == b"aa b"


def test_completion_waits_for_a_multibyte_character_to_finish() -> None:
    c = _completion(max_tokens=3)
    assert not c.add(1) and not c.add(1)
    # "\xc3" opens a two-byte character: the length check waits for its second byte
    assert not c.add(3)
    assert c.add(4) and c.finish_reason == "length" and c.text.decode() == "aaé"
