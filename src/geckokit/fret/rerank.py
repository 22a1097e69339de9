"""FRet step 2b: the LLM scores (query, candidate passage) pairs two ways in one pass.

One sequence per pair, ``instruction | passage | query lead | query | question``, gives
both scores (Gecko, Appendix A):

- QL, query likelihood: mean log P(query token | everything before it);
- RC, relevance classification: from the label distribution after the question, either
  log P(relevant) normalised over the labels (binary) or the expected grade (graded).

With a backend that returns logits rows (:class:`~geckokit.llm.base.LogitRowsLLM`: the
in-process llama.cpp one), pairs are scored passage by passage: the instruction is evaluated
once per run, each passage once, and every query that retrieved the passage continues from
its cached state, so a pair costs about (lead + query + question) tokens. A backend that
decodes several continuations at once (:class:`~geckokit.llm.base.BranchingLLM`) runs a
passage's pairs together, ``parallel`` at a time, each in its own sequence sharing the
passage's state: the same tokens, in a few large decodes instead of one short decode per
pair. Other backends get two requests per pair (``score`` and ``label_logprobs``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from geckokit.llm.base import (
    LLM,
    BranchingLLM,
    LogitRowsLLM,
    TokenizingLLM,
    log_softmax,
    logsumexp,
)

log = logging.getLogger(__name__)

BUNDLED_PROMPTS = {"binary": "rerank_v1.toml", "graded": "rerank_graded_v1.toml"}


@dataclass(frozen=True)
class RerankPrompt:
    version: str
    mode: str  # "binary" | "graded"
    instruction: str
    passage: str
    query: str
    question: str
    labels: dict[str, list[str]]
    grades: dict[str, float]
    sha256: str
    source: str

    def rc_score(self, label_logprobs: dict[str, float]) -> float:
        """The RC score from label log-probabilities (renormalised over the labels)."""
        names = list(self.labels)
        total = logsumexp([label_logprobs[n] for n in names])
        if self.mode == "binary":
            best = max(names, key=lambda n: self.grades[n])
            return label_logprobs[best] - total
        return float(sum(math.exp(label_logprobs[n] - total) * self.grades[n] for n in names))


def load_rerank_prompt(path: str | Path | None = None) -> RerankPrompt:
    """A step-2 template: a path, ``"binary"``/``"graded"`` (bundled), or None (binary)."""
    name = str(path) if path is not None else "binary"
    if name in BUNDLED_PROMPTS:
        data = resources.files("geckokit.prompts").joinpath(BUNDLED_PROMPTS[name]).read_bytes()
        source = f"geckokit:prompts/{BUNDLED_PROMPTS[name]}"
    else:
        data = Path(name).read_bytes()
        source = name
    try:
        raw = tomllib.loads(data.decode("utf-8"))
        prompt = RerankPrompt(
            version=str(raw["version"]),
            mode=str(raw.get("mode", "binary")),
            instruction=str(raw["instruction"]),
            passage=str(raw["passage"]),
            query=str(raw["query"]),
            question=str(raw["question"]),
            labels={str(k): [str(s) for s in v] for k, v in raw["labels"].items()},
            grades={str(k): float(v) for k, v in raw["grades"].items()},
            sha256=hashlib.sha256(data).hexdigest(),
            source=source,
        )
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(
            f"{source}: not a valid rerank prompt template ({exc!r}); see the bundled rerank_v1.toml"
        ) from exc
    if prompt.mode not in ("binary", "graded"):
        raise ValueError(f"{source}: mode must be 'binary' or 'graded', got {prompt.mode!r}")
    if set(prompt.labels) != set(prompt.grades) or len(prompt.labels) < 2:
        raise ValueError(f"{source}: [labels] and [grades] must name the same two or more labels")
    return prompt


@dataclass(frozen=True)
class PairScore:
    ql: float
    rc: float
    label_logprobs: dict[str, float]


#: Pairs of one passage decoded together by default (FRet step 2): a pair's continuation is
#: about 35 tokens, and the backend packs them into decodes of its batch size (llama.cpp:
#: 512 tokens), so this bounds the sequences rather than the tokens of a decode.
DEFAULT_PAIR_PARALLEL = 32


class PairScorer:
    """Scores all queries that retrieved one passage, spending the LLM once per prefix.

    ``parallel``: how many of a passage's pairs a backend that decodes several
    continuations at once (:class:`~geckokit.llm.base.BranchingLLM`) runs together; 1
    scores them one at a time (the same scores: the llama.cpp backend places each pair in its
    batch so that it is computed as it is alone).
    """

    def __init__(
        self,
        llm: LLM,
        prompt: RerankPrompt,
        *,
        passage_max_tokens: int = 384,
        parallel: int = DEFAULT_PAIR_PARALLEL,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1 (one pair at a time), got {parallel}")
        self.llm = llm
        self.prompt = prompt
        self.passage_max_tokens = passage_max_tokens
        self.parallel = parallel
        #: the backend's tokenizer, when it has one (None: passages are cut by characters)
        self.tokenizer = llm if isinstance(llm, TokenizingLLM) else None
        #: the backend's logits rows, when it has them (None: two requests per pair)
        self.rows = llm if isinstance(llm, LogitRowsLLM) else None
        #: the backend's batched continuations, when it has them and ``parallel`` > 1
        self.branches = llm if isinstance(llm, BranchingLLM) and parallel > 1 else None
        if self.rows is not None:
            tok = self.rows.tokenize
            self._instruction = tok(prompt.instruction, add_bos=True, special=True)
            self._question = tok(prompt.question)
            self._label_ids: dict[str, list[int]] = {}
            for label, spellings in prompt.labels.items():
                ids = [t[0] for t in (tok(s) for s in spellings) if len(t) == 1]
                if not ids:
                    raise ValueError(
                        f"label {label!r}: no spelling is a single token for {llm.model_id}: {spellings}"
                    )
                self._label_ids[label] = sorted(set(ids))
            self.rows.set_shared_tokens(self._instruction)

    def passage_text(self, title: str, text: str) -> str:
        """The passage segment, cut to the token budget (approximated by characters when the
        backend cannot tokenize)."""
        if self.tokenizer is not None:
            ids = self.tokenizer.tokenize(text)[: self.passage_max_tokens]
            text = self.tokenizer.detokenize(ids)
        else:
            text = text[: 4 * self.passage_max_tokens]
        return self.prompt.passage.format(title=title or "none", text=text.strip())

    def score(self, title: str, text: str, queries: Sequence[tuple[str, str]]) -> list[PairScore]:
        """Scores of ``queries`` (task, query) against one passage."""
        segment = self.passage_text(title, text)
        if self.rows is not None:
            return self._score_fast(self.rows, segment, queries)
        return self._score_generic(segment, queries)

    def _score_generic(self, segment: str, queries: Sequence[tuple[str, str]]) -> list[PairScore]:
        prefixes = [
            self.prompt.instruction + segment + self.prompt.query.format(task=task)
            for task, _ in queries
        ]
        qls = self.llm.score(prefixes, [" " + q for _, q in queries])
        full = [
            p + " " + q + self.prompt.question for p, (_, q) in zip(prefixes, queries, strict=True)
        ]
        labels = self.llm.label_logprobs(full, self.prompt.labels)
        return [
            PairScore(ql.mean, self.prompt.rc_score(lab), lab)
            for ql, lab in zip(qls, labels, strict=True)
        ]

    def _score_fast(
        self, llm: LogitRowsLLM, segment: str, queries: Sequence[tuple[str, str]]
    ) -> list[PairScore]:
        head = self._instruction + llm.tokenize(segment)
        llm.eval_rows(head, [])  # the passage, evaluated alone right after the instruction
        n = len(head)
        label_ids = sorted({i for ids in self._label_ids.values() for i in ids})
        branches: list[list[int]] = []
        wanted: list[dict[int, list[int]]] = []
        for task, query in queries:
            lead = llm.tokenize(self.prompt.query.format(task=task))
            q_ids = llm.tokenize(" " + query)
            branch = lead + q_ids + self._question
            start = n + len(lead)  # the first query token's position
            # the row before each query token predicts it; the last row, the label
            want = {start - 1 + k: [t] for k, t in enumerate(q_ids)}
            want[n + len(branch) - 1] = label_ids
            branches.append(branch)
            wanted.append(want)
        if self.branches is not None:
            picked: list[dict[int, np.ndarray]] = []
            for at in range(0, len(branches), self.parallel):
                picked += self.branches.branch_logprobs(
                    head, branches[at : at + self.parallel], wanted[at : at + self.parallel]
                )
        else:  # one pair at a time
            picked = []
            for branch, want in zip(branches, wanted, strict=True):
                rows = llm.eval_rows(head + branch, list(want), reuse_limit=n)
                picked.append({p: log_softmax(rows[p])[ids] for p, ids in want.items()})
        out = []
        for branch, want, got in zip(branches, wanted, picked, strict=True):
            last = n + len(branch) - 1
            query_rows = [p for p in want if p != last]
            ql = float(np.mean([float(got[p][0]) for p in query_rows])) if query_rows else math.nan
            by_id = dict(zip(label_ids, (float(v) for v in got[last]), strict=True))
            labels = {
                name: logsumexp([by_id[i] for i in ids_]) for name, ids_ in self._label_ids.items()
            }
            out.append(PairScore(ql, self.prompt.rc_score(labels), labels))
            llm.usage.requests += 1
        return out
