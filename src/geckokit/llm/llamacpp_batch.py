"""Several sequences in one llama.cpp batch: what the in-process backend's batched calls
share (:mod:`geckokit.llm.llamacpp`).

llama.cpp keeps one KV cache for all sequences (``kv_unified``): a prefix decoded once in
sequence 0 is shared by sequences 1..K through ``llama_memory_seq_cp``, which tags the same
cells with more sequence ids (no copy), and one ``llama_decode`` then runs tokens of every
sequence, each with its own position and sequence id. A decode of many tokens reads the
weights once for all of them, which is where the speed comes from: FRet step 2's short pair
continuations and FRet step 1's one-token-at-a-time writing both decode too few tokens per
call when run one sequence at a time.

A token's values can depend on what else its decode holds, in two ways, and the backend
removes both where it can. llama.cpp's CPU backend repacks quantized weights for kernels
that take activation rows in groups, and the leftover rows apart, so a row rounds
differently by where it falls in its decode; the backend keeps the weights in the file's
layout, where each row is computed alone. The attention sums over the cache's cells in SIMD
lanes chosen by cell index; FRet step 2's branches are padded to whole blocks of cells
(:data:`CELL_BLOCK`), so each is summed as it is alone. A pair's scores are then the same
batched or alone. Writing cannot be placed that way (a decode puts one token of each
sequence in neighbouring cells), so a batched answer agrees with the one-at-a-time answer
up to rounding, which the 8-bit quantization of activations inside the next matrix product
can turn into a visible difference, and a greedy answer can change where two tokens are
nearly tied (measured by tests/llm/test_llamacpp_parallel.py).

Here: :func:`pack` (which items share a decode), :func:`aligned`, :class:`SequenceBatch` (fill and run one
``llama_batch`` of tokens from several sequences) and :class:`Completion` (the text rules of
llama-cpp-python's ``create_completion``, so that batched writing ends and cuts its text as
the one-at-a-time path does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def pack(sizes: Sequence[int], *, budget: int, most: int) -> list[list[int]]:
    """Group the indices of ``sizes`` in order: each group's sizes sum to at most ``budget``
    and it has at most ``most`` items; an item larger than ``budget`` is a group alone."""
    if budget < 1 or most < 1:
        raise ValueError(f"budget and most must be at least 1, got {budget} and {most}")
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, size in enumerate(sizes):
        if current and (used + size > budget or len(current) == most):
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += size
    if current:
        groups.append(current)
    return groups


#: KV cache cells per block: the attention sums over the cache in SIMD lanes chosen by cell
#: index, so a branch that starts a whole number of blocks after where it would start alone
#: is summed in the same lanes and gets the same values. 16 (the float lanes of AVX-512; AVX2
#: has 8) was enough on an AVX-512 build (tests/llm/test_llamacpp_parallel.py).
CELL_BLOCK = 16
#: The key of :attr:`UsageStats.extra <geckokit.llm.base.UsageStats.extra>` that counts the
#: padding decoded to keep branches on whole blocks (not prompt tokens: no row is read).
PADDING_TOKENS = "padding_tokens"


def aligned(size: int, block: int = CELL_BLOCK) -> int:
    """``size`` rounded up to a whole number of ``block`` cells."""
    if block < 1:
        raise ValueError(f"block must be at least 1 cell, got {block}")
    return -(-size // block) * block


@dataclass(frozen=True)
class Token:
    """One token of a batch: its id, its position in its sequence, the sequence, and
    whether its logits row is wanted."""

    id: int
    pos: int
    seq: int
    logits: bool = False


class SequenceBatch:
    """Runs tokens of several sequences through ``llama_decode``, ``capacity`` at a time.

    ``lib`` is the ``llama_cpp`` module, ``ctx`` the ``llama_context`` pointer and
    ``batch`` a ``llama_batch`` of ``capacity`` tokens with one sequence id each.
    """

    def __init__(self, lib: Any, ctx: Any, batch: Any, capacity: int, n_vocab: int) -> None:
        self.lib, self.ctx, self.batch = lib, ctx, batch
        self.capacity, self.n_vocab = capacity, n_vocab

    def decode(self, tokens: Sequence[Token]) -> int:
        """One ``llama_decode`` of at most ``capacity`` tokens; returns how many. The logits
        of the wanted tokens stay readable (:meth:`row`, or a sampler at the same index)
        until the next decode."""
        if not tokens or len(tokens) > self.capacity:
            raise ValueError(f"a decode takes 1 to {self.capacity} tokens, got {len(tokens)}")
        batch = self.batch
        batch.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            batch.token[i] = t.id
            batch.pos[i] = t.pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = t.seq
            batch.logits[i] = t.logits
        rc = self.lib.llama_decode(self.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return len(tokens)

    def row(self, index: int) -> np.ndarray:
        """The logits row of the last decode's token ``index`` (float32, n_vocab): a view of
        llama.cpp's buffer, valid until the next decode."""
        ptr = self.lib.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def run(self, tokens: Sequence[Token], on_row: Callable[[int, np.ndarray], None]) -> None:
        """Decode ``tokens`` in chunks of ``capacity``, calling ``on_row(i, row)`` for each
        wanted token (``i`` its index in ``tokens``) while its row is valid. A sequence may
        span chunks: its earlier tokens are in the KV cache when the later ones run."""
        for start in range(0, len(tokens), self.capacity):
            chunk = tokens[start : start + self.capacity]
            self.decode(chunk)
            for i, t in enumerate(chunk):
                if t.logits:
                    on_row(start + i, self.row(i))


@dataclass
class Completion:
    """The text of one sequence being written, token by token, by the rules of
    llama-cpp-python's ``create_completion`` (0.3.x): an end-of-generation token ends it
    ("stop", not part of the text); the first of ``stop`` (in the order given) found in the
    text cuts it there ("stop"); ``max_tokens`` tokens end it ("length"); a token that
    leaves a multi-byte character unfinished postpones both checks.

    ``detokenize(tokens, prompt) -> bytes`` and ``is_end(token) -> bool`` come from the
    model."""

    prompt: list[int]
    max_tokens: int
    stop: list[bytes]
    detokenize: Any
    is_end: Any
    tokens: list[int] = field(default_factory=list)
    text: bytes = b""
    finish_reason: str | None = None
    _multibyte: int = 0

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def add(self, token: int) -> bool:
        """Take the next sampled token; returns whether the completion has ended."""
        if self.is_end(token):
            self.text = self.detokenize(self.tokens, self.prompt)
            self.finish_reason = "stop"
            return True
        self.tokens.append(token)
        text = self.detokenize(self.tokens, self.prompt)
        for k, byte in enumerate(text[-3:]):
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & byte == pattern:
                    self._multibyte = num - k
        if self._multibyte > 0 and len(self.tokens) < self.max_tokens + 3:
            self._multibyte -= 1
            return False
        found = [s for s in self.stop if s in text]
        if found:
            self.text = text[: text.index(found[0])]
            self.finish_reason = "stop"
        elif len(self.tokens) >= self.max_tokens:
            self.text = text
            self.finish_reason = "length"
        return self.done
