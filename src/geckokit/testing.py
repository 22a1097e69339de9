"""Test tools: a scripted LLM and a tiny encoder, deterministic and fast, so that the
pipeline's plumbing (parsing, resuming after a stop, choosing again from stored scores,
refusing changed settings) is tested in seconds without the real models.

A fake is a test tool, never a feature: nothing in geckokit imports this module (the
import-linter layers keep it on top, beside the CLI), and every feature is also shown
working with the real backends in the slow tests.

- :class:`ScriptedLLM` answers :class:`~geckokit.llm.base.LLM`'s three calls from a script
  (three functions of the prompt's text, with defaults that suit FRet) and counts its usage;
  ``stop_after`` raises :class:`KeyboardInterrupt` at a given request, as a Ctrl-C would.
- :class:`TinyEncoder` embeds a text as its hashed bag of words behind the
  ``SentenceTransformer.encode`` signature; :func:`tiny_encoder` wraps one in an
  :class:`~geckokit.encoder.EncoderRef` (not pinned: its embeddings stay in the run).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from geckokit.encoder import EncoderRef
from geckokit.llm.base import (
    LLM,
    ContinuationScore,
    Generation,
    Labels,
    Prompt,
    Seeds,
    UsageStats,
    check_labels,
    check_pairs,
)

__all__ = [
    "TINY_ENCODER",
    "ScriptedLLM",
    "TinyEncoder",
    "fret_answer",
    "hashed_relevance",
    "prompt_text",
    "tiny_encoder",
    "word_likelihood",
]

_WORD = re.compile(r"\w+", re.UNICODE)


def prompt_text(prompt: Prompt) -> str:
    """A prompt as plain text: raw text as it is, a chat's message contents one per line."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m["content"] for m in prompt)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _unit(text: str) -> float:
    """A number in [0, 1) fixed by ``text`` (sha256), the same on every machine and run."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def fret_answer(prompt: str) -> str:
    """A FRet step-1 answer (JSON with a task and a query) about the passage in ``prompt``
    (the text after its last ``Passage:``, else the whole prompt): the query names the
    passage's two longest words, in a sentence of its own, so that it passes the checks on
    generated queries and retrieves its passage first with :class:`TinyEncoder`."""
    passage = prompt.rsplit("Passage:", 1)[-1]
    found = sorted(set(_words(passage)), key=lambda w: (-len(w), w))[:2] or ["nothing"]
    return json.dumps(
        {
            "task": "Given a question, retrieve passages that answer it",
            "query": "which passage talks about " + " and ".join(found),
        }
    )


def word_likelihood(prompt: str, word: str) -> float:
    """Log-probability of ``word`` continuing ``prompt``: likely (log 0.5) when the prompt
    holds it, unlikely (log 0.05) otherwise. Query likelihood then favours the passages that
    share the query's words."""
    return math.log(0.5) if word.lower() in set(_words(prompt)) else math.log(0.05)


def hashed_relevance(prompt: str) -> float:
    """Probability of the first label after ``prompt``, in [0.05, 0.95) and fixed by the
    prompt's text: arbitrary but repeatable, so relevance classification disagrees with
    query likelihood on some pairs and the fusions choose differently."""
    return 0.05 + 0.9 * _unit(prompt)


class ScriptedLLM(LLM):
    """An LLM whose answers follow a script: deterministic, instant, no model.

    ``answer(prompt) -> text`` writes (default :func:`fret_answer`); ``likelihood(prompt,
    word) -> log-probability`` scores each whitespace-separated word of a continuation
    (default :func:`word_likelihood`); ``relevance(prompt) -> probability`` is the first
    label's probability, the rest shared evenly by the other labels (default
    :func:`hashed_relevance`). Each function gets the prompt as text (:func:`prompt_text`).

    ``usage`` counts one request per prompt, the prompt's words as evaluated tokens and
    the written words as completion tokens. ``stop_after``: a request made once
    ``usage.requests`` has reached it raises :class:`KeyboardInterrupt` (set it to stop a
    stage part way; None, the default, never stops).
    """

    def __init__(
        self,
        *,
        answer: Callable[[str], str] = fret_answer,
        likelihood: Callable[[str, str], float] = word_likelihood,
        relevance: Callable[[str], float] = hashed_relevance,
        model_id: str = "scripted",
        stop_after: int | None = None,
    ) -> None:
        self.answer = answer
        self.likelihood = likelihood
        self.relevance = relevance
        self.model_id = model_id
        self.stop_after = stop_after
        self.usage = UsageStats()

    def _request(self, text: str) -> None:
        if self.stop_after is not None and self.usage.requests >= self.stop_after:
            raise KeyboardInterrupt(f"scripted stop after {self.stop_after} requests")
        self.usage.requests += 1
        self.usage.prompt_tokens_evaluated += len(text.split())

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: Seeds = None,
        stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        """The script's answer to each prompt, cut at ``stop`` and at ``max_tokens`` words
        (``finish_reason`` "length" then); the same whatever the seed and temperature."""
        out = []
        for prompt in prompts:
            text = prompt_text(prompt)
            self._request(text)
            written = self.answer(text)
            for end in stop or ():
                written = written.split(end, 1)[0]
            tokens = written.split()
            finish = "stop"
            if len(tokens) > max_tokens:
                written, finish = " ".join(tokens[:max_tokens]), "length"
                tokens = tokens[:max_tokens]
            self.usage.completion_tokens += len(tokens)
            out.append(
                Generation(
                    text=written,
                    prompt_tokens=len(text.split()),
                    completion_tokens=len(tokens),
                    finish_reason=finish,
                )
            )
        return out

    def score(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        """Each continuation's words, each scored by the script's ``likelihood``."""
        check_pairs(prompts, continuations, "continuations")
        out = []
        for prompt, continuation in zip(prompts, continuations, strict=True):
            text = prompt_text(prompt)
            self._request(text + continuation)
            tokens = tuple(continuation.split())
            if not tokens:
                raise ValueError("cannot score an empty continuation")
            logprobs = tuple(self.likelihood(text, t) for t in tokens)
            out.append(ContinuationScore(tokens=tokens, token_logprobs=logprobs))
        return out

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Labels) -> list[dict[str, float]]:
        """The first label at the script's ``relevance``, the others sharing the rest."""
        check_labels(labels)
        names = list(labels)
        out = []
        for prompt in prompts:
            text = prompt_text(prompt)
            self._request(text)
            first = min(max(self.relevance(text), 1e-6), 1 - 1e-6)
            rest = math.log((1 - first) / max(1, len(names) - 1))
            out.append({n: math.log(first) if i == 0 else rest for i, n in enumerate(names)})
        return out


#: The name :func:`tiny_encoder` gives its encoder (as a run's settings name it).
TINY_ENCODER = "tiny-hashed-words"


class TinyEncoder:
    """A stand-in for a ``SentenceTransformer``: a text's vector is its bag of words, each
    word hashed (sha256) to one of ``dim`` buckets with a sign, so texts that share words
    are near. Deterministic on every machine, no weights, no training; ``encode`` takes
    sentence-transformers' arguments (those it has no use for are accepted and ignored)."""

    def __init__(self, dim: int = 64) -> None:
        if dim < 2:
            raise ValueError(f"dim must be at least 2, got {dim}")
        self.dim = dim
        self.calls: list[int] = []  # the number of texts of each encode call

    def encode(
        self,
        sentences: str | Sequence[str],
        *,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = False,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embeddings of ``sentences``, shape (n, dim) float32; one text gives shape (dim,)."""
        single = isinstance(sentences, str)
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        self.calls.append(len(texts))
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)  # (n, dim)
        for row, text in enumerate(texts):
            for word in _words(text):
                bucket, sign = _bucket(word, self.dim)
                vectors[row, bucket] += sign
        if normalize_embeddings:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (n, 1)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors[0] if single else vectors

    def get_embedding_dimension(self) -> int:
        return self.dim


@lru_cache(maxsize=65536)
def _bucket(word: str, dim: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
    return h % dim, 1.0 if (h >> 32) & 1 else -1.0


def tiny_encoder(name: str = TINY_ENCODER, *, dim: int = 64) -> EncoderRef:
    """A :class:`TinyEncoder` as the initial encoder of a run, called ``name`` (not pinned:
    its embeddings are kept in the run, not shared by name)."""
    return EncoderRef(TinyEncoder(dim), name)
