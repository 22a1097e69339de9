"""The LLM seam: the three operations the Gecko recipe asks of a language model.

FRet step 1 (paper section 3.2) needs *generation*; step 2 scores candidates by *query
likelihood* (log-probability of a continuation) and by *relevance classification*
(log-probability of a closed set of label words). Every backend implements :class:`LLM`.

What only some backends can do is declared as a narrower protocol that the backend's class
names as a base, and that callers check once with ``isinstance``: :class:`TokenizingLLM`
(exact token counts and cuts), :class:`PrefixCachingLLM` (a shared prompt prefix evaluated
once), :class:`LogitRowsLLM` (logits rows of token ids, for FRet step 2's passage-ordered
scoring), :class:`BranchingLLM` (several continuations of one cached prefix decoded in one
batch), and, for the manifest, :class:`LocalFileLLM` and :class:`ServedLLM` (where the
model's weights are).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

if TYPE_CHECKING:
    import numpy as np


class Message(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


#: A prompt is raw text (sent as is) or a chat, which the backend renders with the model's
#: chat template, ending with the assistant's turn opened.
Prompt = str | Sequence[Message]

#: Sampling seeds of a generate call: one int (prompt i gets ``seed + i``), one per prompt
#: (a passage's own seed, whichever prompts share its call), or None (the backend's own).
Seeds = int | Sequence[int] | None

#: Label words for relevance classification: label -> its spellings, whose probabilities
#: are summed (e.g. {"yes": ["Yes", " Yes", "yes"], "no": ["No", " No", "no"]}).
Labels = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Generation:
    """The text an LLM wrote for one prompt."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


@dataclass(frozen=True)
class ContinuationScore:
    """Log-probabilities of a continuation's tokens given a prompt.

    ``token_logprobs[i]`` is log P(token_i | prompt, tokens before i), natural log.
    """

    tokens: tuple[str, ...]
    token_logprobs: tuple[float, ...]

    @property
    def total(self) -> float:
        """Summed log-probability of the whole continuation."""
        return float(math.fsum(self.token_logprobs))

    @property
    def mean(self) -> float:
        """Mean per-token log-probability (query likelihood in Gecko's sense)."""
        return self.total / len(self.token_logprobs) if self.token_logprobs else float("nan")


@dataclass
class UsageStats:
    """Token counts a backend has spent, for benchmarks and cost estimates."""

    prompt_tokens_evaluated: int = 0  # tokens run through the model (cache hits excluded)
    prompt_tokens_cached: int = 0  # tokens served from a reused prefix
    completion_tokens: int = 0
    requests: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.prompt_tokens_evaluated = self.prompt_tokens_cached = 0
        self.completion_tokens = self.requests = 0
        self.extra.clear()

    def copy(self) -> UsageStats:
        return dataclasses.replace(self, extra=dict(self.extra))

    def since(self, before: UsageStats) -> dict[str, int]:
        """The tokens spent after ``before`` (a :meth:`copy` taken earlier): what one stage
        cost when the same backend served others before it."""
        return {
            "prompt_tokens_evaluated": self.prompt_tokens_evaluated
            - before.prompt_tokens_evaluated,
            "prompt_tokens_cached": self.prompt_tokens_cached - before.prompt_tokens_cached,
            "completion_tokens": self.completion_tokens - before.completion_tokens,
        }


@runtime_checkable
class LLM(Protocol):
    """What geckokit needs from a language model.

    Implementations: :class:`geckokit.llm.llamacpp.LlamaCppLLM` (in-process, default),
    :class:`geckokit.llm.openai_http.OpenAICompatibleLLM` (vLLM, llama.cpp server, Ollama,
    hosted APIs) and :class:`geckokit.llm.transformers_backend.TransformersLLM` (GPU).
    """

    model_id: str
    usage: UsageStats

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: Seeds = None,
        stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        """Write a completion for each prompt. ``temperature=0`` is greedy decoding;
        ``seed`` makes sampling reproducible (an int: ``seed + i`` for prompt i; a sequence:
        one seed per prompt; see :func:`prompt_seeds`); generation ends at any string in
        ``stop`` (not included in the text). A backend may decode the prompts together."""
        ...

    def score(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        """Log-probabilities of ``continuations[i]`` following ``prompts[i]``, per token.

        Used for query likelihood (Gecko, Appendix A). A chat prompt is rendered with the
        assistant turn opened, so the continuation is scored as the assistant's answer.
        """
        ...

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Labels) -> list[dict[str, float]]:
        """For each prompt, log P(label) of the next output for every label, summing the
        probabilities of the label's spellings (natural log; not renormalised over labels)."""
        ...


@runtime_checkable
class TokenizingLLM(LLM, Protocol):
    """An LLM that exposes its tokenizer: cost estimates count exact tokens, and FRet step 2
    cuts passages to a token budget (others approximate tokens by characters)."""

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        """The token ids of ``text``; ``add_bos`` prepends the start token, ``special``
        parses special-token markup (a rendered chat template)."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``."""
        ...


@runtime_checkable
class PrefixCachingLLM(LLM, Protocol):
    """An LLM that keeps the state of evaluated prompts and continues from it, so a prefix
    that many prompts share (FRet step 1's system and few-shot turns) is evaluated once."""

    def set_shared_prefix(self, prompts: Sequence[Prompt]) -> int:
        """Declare the prefix the coming prompts share: the longest common token prefix of
        ``prompts``, evaluated once and always alone, so that a prompt's result does not
        depend on the prompt before it. Returns its length in tokens; ``[]`` forgets it."""
        ...

    def reset_cache(self) -> None:
        """Forget the cached state, so the next call evaluates its whole prompt."""
        ...


@runtime_checkable
class LogitRowsLLM(TokenizingLLM, PrefixCachingLLM, Protocol):
    """An LLM that runs token ids and returns the logits rows asked for, continuing from its
    cached state: FRet step 2 then evaluates the instruction once per run and each passage
    once, and every query that retrieved the passage costs only its own tokens (Gecko,
    Appendix A's QL and RC in one pass)."""

    def eval_rows(
        self,
        ids: Sequence[int],
        positions: Sequence[int],
        *,
        reuse_limit: int | None = None,
    ) -> dict[int, np.ndarray]:
        """Run ``ids``, reusing the cached prefix (at most ``reuse_limit`` tokens of it), and
        return the logits row at each of ``positions`` (the row predicts the next token)."""
        ...

    def set_shared_tokens(self, ids: Sequence[int]) -> None:
        """:meth:`set_shared_prefix` for a caller that tokenizes its own segments."""
        ...


@runtime_checkable
class BranchingLLM(LogitRowsLLM, Protocol):
    """An LLM that decodes several continuations of one prefix in one batch, each in its
    own sequence that shares the prefix's cached state: FRet step 2 then runs the pairs of a
    passage as a few large decodes instead of one short decode per pair (the weights are
    read once for many tokens)."""

    def branch_logprobs(
        self,
        prefix: Sequence[int],
        branches: Sequence[Sequence[int]],
        wanted: Sequence[Mapping[int, Sequence[int]]],
    ) -> list[dict[int, np.ndarray]]:
        """Run ``prefix`` (reusing the cache, as :meth:`eval_rows` does), then every branch
        after it, and return for branch i, at each position p of ``wanted[i]``, the
        log-probabilities (natural log, float64) of the token ids ``wanted[i][p]`` as the
        token after p. Positions count in ``prefix + branches[i]`` and lie in the branch (a
        row of the prefix itself: end the prefix a token earlier). A branch's values do not
        depend on the other branches beyond the rounding of a different batch."""
        ...


@runtime_checkable
class LocalFileLLM(LLM, Protocol):
    """An LLM whose weights are one local file: its path (and, for a registry model, its
    pinned sha256) identifies the model in a run's manifest."""

    model_path: str


@runtime_checkable
class ServedLLM(LLM, Protocol):
    """An LLM behind an HTTP API: the API root identifies it in a run's manifest, and
    ``max_concurrency`` is how many requests it sends at once (each prompt of a call is one
    request, so a call's answers do not depend on which prompts share it)."""

    base_url: str

    @property
    def max_concurrency(self) -> int: ...


def yes_no_labels() -> dict[str, list[str]]:
    """The spellings of a yes/no answer whose probabilities are summed."""
    return {
        "yes": ["Yes", " Yes", "yes", " yes", "YES"],
        "no": ["No", " No", "no", " no", "NO"],
    }


def logsumexp(values: Sequence[float]) -> float:
    """log(sum(exp(v))) computed stably; -inf for an empty sequence."""
    finite = [v for v in values if v != float("-inf")]
    if not finite:
        return float("-inf")
    top = max(finite)
    return top + math.log(math.fsum(math.exp(v - top) for v in finite))


def log_softmax(row: Any) -> Any:
    """Natural-log softmax of a 1-d array of logits, in float64 (numpy)."""
    import numpy as np

    row = np.asarray(row, dtype=np.float64)
    top = row.max()
    return row - (top + math.log(np.exp(row - top).sum()))


def prompt_seeds(seed: Seeds, n: int) -> list[int | None]:
    """The seed of each of ``n`` prompts: ``seed + i`` for an int, the sequence itself (one
    per prompt), or None for each."""
    if seed is None:
        return [None] * n
    if isinstance(seed, int):
        return [seed + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} prompts; pass one seed per prompt")
    return [int(s) for s in seeds]


def check_pairs(prompts: Sequence[object], others: Sequence[object], what: str) -> None:
    """Validate that two batch arguments line up."""
    if len(prompts) != len(others):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(others)} {what}; pass one {what[:-1]} per prompt"
        )


def check_labels(labels: Labels) -> None:
    if not labels:
        raise ValueError("labels is empty; pass e.g. {'yes': ['Yes', ' Yes'], 'no': ['No', ' No']}")
    for label, spellings in labels.items():
        if isinstance(spellings, str) or not spellings:
            raise ValueError(
                f"label {label!r} needs a list of spellings, got {spellings!r}; e.g. ['Yes', ' Yes']"
            )
