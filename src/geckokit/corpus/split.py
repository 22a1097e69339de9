"""Splitting long documents into passages by a token budget, with overlap.

Tokens are counted with a fixed, model-free rule (a word or a punctuation mark is one token),
which tracks WordPiece/BPE counts for English prose closely enough to size passages for a
256- or 512-token encoder window, and keeps the split independent of the model chosen.
Splits prefer sentence ends inside the last quarter of the window.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_SENTENCE_END = frozenset({".", "!", "?"})


def count_tokens(text: str) -> int:
    """Approximate token count: words and punctuation marks."""
    return sum(1 for _ in _TOKEN.finditer(text))


def split_passage(text: str, *, max_tokens: int = 512, overlap: int = 64) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_tokens`` tokens; consecutive pieces share
    about ``overlap`` tokens. Text within the budget comes back unchanged as one piece."""
    if max_tokens < 8:
        raise ValueError(f"max_tokens must be at least 8, got {max_tokens}")
    if not 0 <= overlap < max_tokens // 2:
        raise ValueError(
            f"overlap must be in [0, max_tokens/2), got {overlap} for max_tokens={max_tokens}"
        )
    spans = [m.span() for m in _TOKEN.finditer(text)]
    if len(spans) <= max_tokens:
        return [text]
    pieces: list[str] = []
    start = 0
    while start < len(spans):
        end = min(start + max_tokens, len(spans))
        if end < len(spans):
            # prefer to end after a sentence mark in the last quarter of the window
            for cut in range(end, start + (3 * max_tokens) // 4, -1):
                if text[spans[cut - 1][0] : spans[cut - 1][1]] in _SENTENCE_END:
                    end = cut
                    break
        pieces.append(text[spans[start][0] : spans[end - 1][1]])
        if end >= len(spans):
            break
        start = max(end - overlap, start + 1)
    return pieces
