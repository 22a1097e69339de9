"""In-process llama.cpp backend (llama-cpp-python), the default.

Scoring does not use llama-cpp-python's ``echo``/``logprobs`` path: that path reports each
prompt token's log-probability from the logits computed *after* the token (its issue #1983)
and sorts the whole vocabulary per token. Instead this backend decodes with its own batch,
asks llama.cpp for logits only at the positions that predict the scored tokens, and reads
exactly those rows. Every call reuses the longest prefix already in the KV cache, so a
shared few-shot prefix, or a passage scored against many queries, is evaluated once.

Several sequences decode together (``n_seq_max`` > 1, :mod:`geckokit.llm.llamacpp_batch`):
:meth:`LlamaCppLLM.branch_logprobs` runs the continuations of one cached prefix (FRet step
2's pairs of a passage) in one batch, and :meth:`LlamaCppLLM.generate` given several prompts
writes their answers together, one token of each per decode, each prompt continuing from
the shared few-shot prefix's cached state. Sequence 0 always holds the prefix that
one-at-a-time calls continue from; the others live only inside a batched call. The weights
stay in the file's layout (llama.cpp's ``--no-repack``), so that a row's values do not depend
on the other rows of its decode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from geckokit._deps import require
from geckokit.llm.base import (
    BranchingLLM,
    ContinuationScore,
    Generation,
    Labels,
    LocalFileLLM,
    Prompt,
    Seeds,
    UsageStats,
    check_labels,
    check_pairs,
    log_softmax,
    logsumexp,
    prompt_seeds,
)
from geckokit.llm.llamacpp_batch import (
    PADDING_TOKENS,
    Completion,
    SequenceBatch,
    Token,
    aligned,
    pack,
)
from geckokit.registry import DEFAULT_LLM

log = logging.getLogger(__name__)


#: Sequences one context decodes together at most: FRet step 2 packs a passage's pairs
#: into decodes of ``n_batch`` tokens (about 35 tokens a pair: 15 pairs), so 64 rarely binds.
DEFAULT_SEQUENCES = 64


class LlamaCppLLM(BranchingLLM, LocalFileLLM):
    """An LLM in this process through llama-cpp-python.

    ``model`` is a registry name, a local GGUF path or ``org/repo:file.gguf`` (online).
    ``n_threads`` defaults to the number of CPU cores; ``n_ctx`` bounds prompt + output, and
    all sequences of a batched call together (their shared prefix counts once).
    ``n_seq_max`` is how many sequences decode together at most (the shared prefix's
    included); 1 runs every prompt and pair one at a time. ``repack=True`` lets llama.cpp
    repack the weights for its CPU kernels (its default, and geckokit's before batched
    decoding): a row's values then depend on the other rows of its decode, so batched pair
    scores no longer equal one-at-a-time ones exactly. Besides
    :class:`~geckokit.llm.base.LLM` it can tokenize, cache a shared prefix, return logits
    rows and decode several continuations of a prefix in one batch
    (:class:`~geckokit.llm.base.BranchingLLM`).
    """

    def __init__(
        self,
        model: str = DEFAULT_LLM,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        seed: int = 0,
        n_seq_max: int = DEFAULT_SEQUENCES,
        repack: bool = False,
    ) -> None:
        from geckokit.registry import ModelKind, resolve

        if not 1 <= n_seq_max <= min(256, n_batch):
            raise ValueError(
                f"n_seq_max must lie in [1, {min(256, n_batch)}] (llama.cpp's limit and "
                f"n_batch), got {n_seq_max}; 1 runs one sequence at a time"
            )
        llama_cpp = require("llama_cpp", extra="llama", purpose="the llama.cpp LLM backend")
        path = resolve(model, kind=ModelKind.LLM)
        usage = UsageStats()
        eval_calls: list[int] = []  # sizes of llama-cpp-python's own eval calls

        class _CountingLlama(llama_cpp.Llama):  # type: ignore[misc, name-defined]
            def eval(self, tokens: Sequence[int]) -> None:
                eval_calls.append(len(tokens))
                super().eval(tokens)

        layout = contextlib.nullcontext() if repack else _file_layout(llama_cpp)
        with _quiet_stderr(), layout:
            self._llama = _CountingLlama(
                model_path=path,
                n_ctx=n_ctx,
                n_threads=n_threads or os.cpu_count() or 1,
                n_batch=n_batch,
                n_ubatch=n_batch,
                n_gpu_layers=n_gpu_layers,
                logits_all=False,
                seed=seed,
                verbose=False,
            )
            if n_seq_max > 1:
                _share_context(self._llama, n_seq_max)
        self._llama_cpp = llama_cpp
        self.usage = usage
        self._eval_calls = eval_calls
        self.model_path = path
        self.model_id = os.path.basename(path)
        self.n_ctx = n_ctx
        self._n_vocab = self._llama.n_vocab()
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._n_batch = n_batch
        self.n_seq_max = n_seq_max
        self._seqs = SequenceBatch(
            llama_cpp, self._llama._ctx.ctx, self._batch, n_batch, self._n_vocab
        )
        self._formatter = self._chat_formatter()
        self._anchor: np.ndarray | None = None
        self._last_prompt: list[int] | None = None  # the last generate call's prompt
        # (block size, how many tokens from the start the KV cache holds as evaluated in
        # whole blocks of that size aligned at 0): what eval_rows(..., block=) may reuse
        self._blocks: tuple[int, int] = (0, 0)

    # ------------------------------------------------------------------ tokens
    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(self._llama.detokenize(list(tokens))).decode("utf-8", errors="replace")

    def render(self, prompt: Prompt) -> str:
        """The text the model sees: raw prompts as they are, chats through the chat template
        with the assistant turn opened."""
        if isinstance(prompt, str):
            return prompt
        if self._formatter is None:
            raise ValueError(
                f"{self.model_id} has no chat template; pass raw-text prompts to this model"
            )
        return str(self._formatter(messages=list(prompt)).prompt)

    def _prompt_tokens(self, prompt: Prompt) -> list[int]:
        return self.tokenize(self.render(prompt), add_bos=True, special=True)

    def _chat_formatter(self) -> Any:
        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        from llama_cpp import llama_chat_format

        model = self._llama._model
        eos_id, bos_id = self._llama.token_eos(), self._llama.token_bos()
        eos = model.token_get_text(eos_id) if eos_id >= 0 else ""
        bos = model.token_get_text(bos_id) if bos_id >= 0 else ""
        return llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id]
        )

    # -------------------------------------------------------------- generation
    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: Seeds = None,
        stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        """Write a completion for each prompt (see :meth:`LLM.generate
        <geckokit.llm.base.LLM.generate>`). Several prompts are written together, up to
        ``n_seq_max - 1`` at a time and as many as the context holds, each continuing from
        the declared shared prefix, one token of each per decode, with the sampler chain
        and seed llama-cpp-python's completion would use. One prompt, or ``n_seq_max=1``,
        goes through that completion itself. A prompt's tokens are decoded beside other
        sequences and round differently (:mod:`geckokit.llm.llamacpp_batch`), so a greedy
        answer can differ where two tokens are nearly tied."""
        seeds = prompt_seeds(seed, len(prompts))
        if len(prompts) > 1 and self.n_seq_max > 1:
            return self._generate_together(
                prompts, max_tokens=max_tokens, temperature=temperature, seeds=seeds, stop=stop
            )
        return [
            self._generate_one(
                prompt, max_tokens=max_tokens, temperature=temperature, seed=s, stop=stop
            )
            for prompt, s in zip(prompts, seeds, strict=True)
        ]

    def _generate_one(
        self,
        prompt: Prompt,
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        stop: Sequence[str] | None,
    ) -> Generation:
        text = self.render(prompt)
        ids = self.tokenize(text, add_bos=True, special=True)
        n_prompt = len(ids)
        self._check_fits(n_prompt + max_tokens)
        keep, fresh = self._reuse_point(ids)
        if self._anchor is not None and keep >= len(self._anchor) and ids != self._last_prompt:
            # continue from the shared prefix, never from older text; the same prompt
            # again (another query slot or a retry) reuses itself, which only ever
            # follows its own first evaluation, so results stay order-independent
            keep = len(self._anchor)
        keep = min(keep, n_prompt - 1)  # the last prompt token is replayed for fresh logits
        self._truncate(keep)
        self._llama._requires_eval = True
        self._eval_calls.clear()
        self._last_prompt = ids
        result = self._llama.create_completion(
            prompt=text,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            stop=list(stop) if stop else None,
        )
        choice = result["choices"][0]
        usage = result["usage"]
        # The first eval call is the prompt's uncached suffix; later ones are sampled tokens.
        prompt_evaluated = self._eval_calls[0] if self._eval_calls else 0
        self.usage.prompt_tokens_evaluated += prompt_evaluated
        self.usage.prompt_tokens_cached += max(0, n_prompt - prompt_evaluated - fresh)
        self.usage.completion_tokens += int(usage["completion_tokens"])
        self.usage.requests += 1
        return Generation(
            text=choice["text"],
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            finish_reason=choice.get("finish_reason") or "stop",
        )

    def _generate_together(
        self,
        prompts: Sequence[Prompt],
        *,
        max_tokens: int,
        temperature: float,
        seeds: list[int | None],
        stop: Sequence[str] | None,
    ) -> list[Generation]:
        """Several prompts' answers in parallel sequences: each prompt's own part is decoded
        alone after the shared prefix (in its sequence, as the one-at-a-time path decodes
        it), then every decode runs one token of each unfinished sequence, sampled by the
        sequence's own sampler."""
        id_lists = [self._prompt_tokens(p) for p in prompts]
        for ids in id_lists:
            self._check_fits(len(ids) + max_tokens)
        anchor = [] if self._anchor is None else [int(t) for t in self._anchor]
        shared = len(anchor)
        if not all(len(ids) > shared and ids[:shared] == anchor for ids in id_lists):
            shared = 0  # no declared prefix that all share: every prompt is evaluated whole
        # a completion may run 3 tokens past max_tokens to finish a multi-byte character
        sizes = [len(ids) - shared + max_tokens + 3 for ids in id_lists]
        out: list[Generation | None] = [None] * len(prompts)
        for group in pack(sizes, budget=self.n_ctx - shared, most=self.n_seq_max - 1):
            self._hold(anchor[:shared])
            texts = self._write_group(
                [id_lists[i] for i in group],
                [seeds[i] for i in group],
                shared=shared,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=stop,
            )
            for i, gen in zip(group, texts, strict=True):
                out[i] = gen
        return [g for g in out if g is not None]

    def _write_group(
        self,
        id_lists: list[list[int]],
        seeds: list[int | None],
        *,
        shared: int,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None,
    ) -> list[Generation]:
        llama, lib = self._llama, self._llama_cpp
        mem = llama._ctx.memory
        stops = [s.encode("utf-8") for s in stop or ()]
        vocab = llama._model.vocab

        def detokenize(tokens: list[int], prompt: list[int]) -> bytes:
            return bytes(llama.detokenize(tokens, prev_tokens=prompt))

        def is_end(token: int) -> bool:
            return bool(lib.llama_vocab_is_eog(vocab, token))

        states = [Completion(ids, max_tokens, stops, detokenize, is_end) for ids in id_lists]
        samplers = []
        try:
            for s, (ids, state, seed) in enumerate(zip(id_lists, states, seeds, strict=True), 1):
                if shared:
                    lib.llama_memory_seq_cp(mem, 0, s, 0, shared)
                suffix = ids[shared:]
                for start in range(0, len(suffix), self._n_batch):
                    chunk = suffix[start : start + self._n_batch]
                    last = start + len(chunk) == len(suffix)
                    self._seqs.decode(
                        [
                            Token(t, shared + start + k, s, last and k == len(chunk) - 1)
                            for k, t in enumerate(chunk)
                        ]
                    )
                self.usage.prompt_tokens_evaluated += len(suffix)
                self.usage.prompt_tokens_cached += shared
                # the sampler chain and seed of llama-cpp-python's completion
                llama.set_seed(
                    seed if seed is not None else random.Random(llama._seed).randint(0, 2**32)
                )
                samplers.append(llama._init_sampler(temp=temperature))
                state.add(samplers[-1].sample(llama._ctx, len(chunk) - 1))
            while True:
                live = [s for s, state in enumerate(states) if not state.done]
                if not live:
                    break
                self._seqs.decode(
                    [
                        Token(
                            states[s].tokens[-1],
                            len(id_lists[s]) + len(states[s].tokens) - 1,
                            s + 1,
                            True,
                        )
                        for s in live
                    ]
                )
                for i, s in enumerate(live):
                    states[s].add(samplers[s].sample(llama._ctx, i))
        finally:
            for sampler in samplers:
                sampler.close()
            for s in range(1, len(id_lists) + 1):
                lib.llama_memory_seq_rm(mem, s, -1, -1)
        out = []
        for ids, state in zip(id_lists, states, strict=True):
            self.usage.completion_tokens += len(state.tokens)
            self.usage.requests += 1
            out.append(
                Generation(
                    text=state.text.decode("utf-8", errors="ignore"),
                    prompt_tokens=len(ids),
                    completion_tokens=len(state.tokens),
                    finish_reason=state.finish_reason or "stop",
                )
            )
        return out

    # ----------------------------------------------------------------- scoring
    def score(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        check_pairs(prompts, continuations, "continuations")
        out = []
        for prompt, continuation in zip(prompts, continuations, strict=True):
            prompt_ids = self._prompt_tokens(prompt)
            cont_ids = self.tokenize(continuation)
            if not cont_ids:
                raise ValueError("cannot score an empty continuation")
            ids = prompt_ids + cont_ids
            start = len(prompt_ids)
            rows = self.eval_rows(ids, range(start - 1, len(ids) - 1))
            logprobs = tuple(
                float(log_softmax(rows[start - 1 + k])[tok]) for k, tok in enumerate(cont_ids)
            )
            pieces = tuple(self.detokenize([t]) for t in cont_ids)
            out.append(ContinuationScore(tokens=pieces, token_logprobs=logprobs))
            self.usage.requests += 1
        return out

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Labels) -> list[dict[str, float]]:
        check_labels(labels)
        spellings = {label: [self.tokenize(s) for s in spell] for label, spell in labels.items()}
        out = []
        for prompt in prompts:
            prompt_ids = self._prompt_tokens(prompt)
            last = len(prompt_ids) - 1
            dist = log_softmax(self.eval_rows(prompt_ids, [last])[last])
            result = {}
            for label, token_lists in spellings.items():
                values = []
                for toks in token_lists:
                    if len(toks) == 1:
                        values.append(float(dist[toks[0]]))
                    else:  # a multi-token spelling: score it as a continuation
                        values.append(self._continuation_logprob(prompt_ids, toks, dist))
                result[label] = logsumexp(values)
            out.append(result)
            self.usage.requests += 1
        return out

    def _continuation_logprob(
        self, prompt_ids: list[int], toks: list[int], first: np.ndarray
    ) -> float:
        ids = prompt_ids + toks
        start = len(prompt_ids)
        rows = self.eval_rows(ids, range(start, len(ids) - 1))
        total = float(first[toks[0]])
        for k in range(1, len(toks)):
            total += float(log_softmax(rows[start - 1 + k])[toks[k]])
        return total

    # ------------------------------------------------------------- the engine
    def eval_rows(
        self,
        ids: Sequence[int],
        positions: Sequence[int] | range,
        *,
        reuse_limit: int | None = None,
        block: int | None = None,
    ) -> dict[int, np.ndarray]:
        """Run ``ids`` through the model, reusing the cached prefix, and return the logits
        rows at ``positions`` (each row predicts the token after that position).

        Only the tokens after the longest prefix shared with the KV cache are decoded; if a
        requested row lies inside that prefix, decoding restarts just before it.
        ``reuse_limit`` caps the reused prefix (e.g. at a passage's end), so that what follows
        is always evaluated the same way, whatever was evaluated before.

        ``block``: evaluate ``ids`` in blocks of this many tokens aligned at position 0 (at
        most ``n_batch``), and reuse only whole blocks that were evaluated so. llama.cpp's
        numbers for a token can depend on how the tokens are split into batches; this split
        depends on ``ids`` alone, so the rows are the same whatever was evaluated before
        (``geckokit llm-serve``: a request's answer does not depend on the server's history).
        """
        self._check_fits(len(ids))
        self._last_prompt = None
        wanted = sorted(set(positions))
        if wanted and (wanted[0] < 0 or wanted[-1] >= len(ids)):
            raise ValueError(
                f"positions must lie in [0, {len(ids)}), got {wanted[0]}..{wanted[-1]}"
            )
        if block is not None:
            return self._eval_blocks(ids, wanted, block, reuse_limit)
        reuse, fresh = self._reuse_point(ids)
        # with rows wanted, at least the last token is decoded; with none, nothing is replayed
        keep = min(reuse, wanted[0], len(ids) - 1) if wanted else min(reuse, len(ids))
        if reuse_limit is not None:
            keep = min(keep, reuse_limit)
        self._truncate(keep)
        self.usage.prompt_tokens_cached += max(0, keep - fresh)
        rows = self._decode(ids[keep:], keep, set(wanted))
        self._llama._requires_eval = True  # generation must refresh its logits before sampling
        return rows

    def _eval_blocks(
        self, ids: Sequence[int], wanted: list[int], block: int, reuse_limit: int | None
    ) -> dict[int, np.ndarray]:
        """:meth:`eval_rows` with ``block`` (see there)."""
        if not 1 <= block <= self._n_batch:
            raise ValueError(f"block must lie in [1, n_batch={self._n_batch}], got {block}")
        size, whole = self._blocks
        keep = min(
            self._common_prefix(ids),
            whole if size == block else 0,
            wanted[0] if wanted else len(ids),
            len(ids) - 1,
            len(ids) if reuse_limit is None else reuse_limit,
        )
        keep -= keep % block
        self._truncate(keep)
        self.usage.prompt_tokens_cached += keep
        rows: dict[int, np.ndarray] = {}
        for start in range(keep, len(ids), block):
            rows.update(self._decode(ids[start : start + block], start, set(wanted)))
        self._blocks = (block, len(ids) - len(ids) % block)
        self._llama._requires_eval = True
        return rows

    def branch_logprobs(
        self,
        prefix: Sequence[int],
        branches: Sequence[Sequence[int]],
        wanted: Sequence[Mapping[int, Sequence[int]]],
    ) -> list[dict[int, np.ndarray]]:
        """Run ``prefix`` and then every branch after it, each in its own sequence that
        shares the prefix's cached state, packed into decodes of up to ``n_batch`` tokens;
        return for branch i, at each position p of ``wanted[i]``, the log-probabilities of
        the token ids ``wanted[i][p]`` as the token after p (positions in ``prefix +
        branches[i]``, none before ``len(prefix)``).

        The prefix reuses the cache as :meth:`eval_rows` does and is never evaluated
        together with a branch, and each branch but a decode's last is padded to whole cell
        blocks (counted in ``usage.extra["padding_tokens"]``), so a branch gets the values
        it gets alone, whichever branches share its batch
        (:mod:`geckokit.llm.llamacpp_batch`). Each logits row is
        reduced as soon as it is decoded, so memory does not grow with the number of
        branches. ``n_seq_max=1`` runs the branches one at a time, each through
        :meth:`eval_rows`.
        """
        if len(branches) != len(wanted):
            raise ValueError(
                f"got {len(branches)} branches but {len(wanted)} wanted maps; "
                "pass one {position: token ids} map per branch"
            )
        n = len(prefix)
        for branch, want in zip(branches, wanted, strict=True):
            if not branch:
                raise ValueError("cannot evaluate an empty branch; drop it or give it tokens")
            bad = [p for p in want if not n <= p < n + len(branch)]
            if bad:
                raise ValueError(
                    f"positions must lie in [{n}, {n + len(branch)}) (the branch), got {bad}; "
                    "for a row of the prefix itself, end the prefix a token earlier"
                )
            self._check_fits(n + len(branch))
        out: list[dict[int, np.ndarray]] = [{} for _ in branches]
        if self.n_seq_max == 1:
            for i, (branch, want) in enumerate(zip(branches, wanted, strict=True)):
                rows = self.eval_rows([*prefix, *branch], list(want), reuse_limit=n)
                out[i] = {p: _pick(rows[p], ids) for p, ids in want.items()}
            return out
        self._hold(prefix)
        mem = self._llama._ctx.memory
        budget = max(1, min(self._n_batch, self.n_ctx - n))
        # every branch but a decode's last is padded to whole cell blocks, so that each
        # starts in the KV cache where it would alone, up to whole blocks (CELL_BLOCK)
        sizes = [aligned(len(b)) for b in branches]
        padding = 0
        for group in pack(sizes, budget=budget, most=self.n_seq_max - 1):
            tokens: list[Token] = []
            owner: list[tuple[int, int]] = []  # (branch, position) of each token; -1: padding
            for s, i in enumerate(group, 1):
                if n:
                    self._llama_cpp.llama_memory_seq_cp(mem, 0, s, 0, n)
                branch = branches[i]
                for k, tok in enumerate(branch):
                    tokens.append(Token(tok, n + k, s, n + k in wanted[i]))
                    owner.append((i, n + k))
                if s < len(group):  # padding: the branch's own later positions, never read
                    for k in range(len(branch), sizes[i]):
                        tokens.append(Token(branch[-1], n + k, s))
                        owner.append((i, -1))
                        padding += 1

            def take(index: int, row: np.ndarray, owner: list[tuple[int, int]] = owner) -> None:
                i, pos = owner[index]
                if pos >= 0:
                    out[i][pos] = _pick(row, wanted[i][pos])

            try:
                self._seqs.run(tokens, take)
            finally:
                for s in range(1, len(group) + 1):
                    self._llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
            self.usage.prompt_tokens_evaluated += sum(len(branches[i]) for i in group)
            self.usage.prompt_tokens_cached += n * len(group)
        if padding:  # decoded too, but not prompt tokens: counted apart
            extra = self.usage.extra
            extra[PADDING_TOKENS] = extra.get(PADDING_TOKENS, 0) + padding
        return out

    def _hold(self, prefix: Sequence[int]) -> None:
        """Make sequence 0 hold exactly ``prefix``: reuse what the cache has of it (the
        declared shared prefix evaluated alone first, as for any prompt starting with it),
        evaluate the rest; nothing is replayed."""
        llama = self._llama
        n = len(prefix)
        keep = min(self._reuse_point(prefix, whole_anchor=True)[0], n)
        self._truncate(keep, seq=0)
        if keep < n:
            self._decode(prefix[keep:], keep, set())
        llama._requires_eval = True
        self._last_prompt = None

    def set_shared_prefix(self, prompts: Sequence[Prompt]) -> int:
        """Declare the prefix that the coming prompts share: the longest common token prefix
        of ``prompts`` (e.g. the same few-shot chat with two different last turns).

        Every later prompt that starts with it continues from its cached state, evaluated
        once and always alone, so a prompt's result does not depend on which prompt came
        before it (llama.cpp's numerics depend on how tokens are batched). Returns its length
        in tokens; ``set_shared_prefix([])`` forgets it.
        """
        self._last_prompt = None
        if not prompts:
            self._anchor = None
            return 0
        token_lists = [self._prompt_tokens(p) for p in prompts]
        n = min(len(t) for t in token_lists)
        for toks in token_lists[1:]:
            diff = np.nonzero(np.asarray(toks[:n]) != np.asarray(token_lists[0][:n]))[0]
            n = int(diff[0]) if diff.size else n
        self._anchor = (
            np.asarray(token_lists[0][:n], dtype=self._llama.input_ids.dtype) if n else None
        )
        return n

    def set_shared_tokens(self, ids: Sequence[int]) -> None:
        """Like :meth:`set_shared_prefix`, for a caller that tokenizes its own segments."""
        self._last_prompt = None
        self._anchor = (
            np.asarray(list(ids), dtype=self._llama.input_ids.dtype) if len(ids) else None
        )

    def _reuse_point(self, ids: Sequence[int], *, whole_anchor: bool = False) -> tuple[int, int]:
        """How many leading tokens of ``ids`` the KV cache can serve (evaluating the declared
        shared prefix first when ``ids`` start with it and it is not cached; ``whole_anchor``:
        also when ``ids`` are the shared prefix itself), and how many of those were
        evaluated just now."""
        common = self._common_prefix(ids)
        anchor = self._anchor
        n = 0 if anchor is None else len(anchor)
        if (
            anchor is None
            or len(ids) < n + (0 if whole_anchor else 1)
            or not np.array_equal(np.asarray(ids[:n], dtype=anchor.dtype), anchor)
        ):
            return common, 0
        if common >= n:
            return common, 0
        self._truncate(0)
        self._decode(list(anchor), 0, set())
        return n, n

    def _common_prefix(self, ids: Sequence[int]) -> int:
        """How many leading tokens of ``ids`` the KV cache holds."""
        llama = self._llama
        limit = min(llama.n_tokens, len(ids))
        existing = llama.input_ids[:limit]
        mismatch = np.nonzero(existing != np.asarray(ids[:limit], dtype=existing.dtype))[0]
        return int(mismatch[0]) if mismatch.size else limit

    def _truncate(self, keep: int, *, seq: int = -1) -> None:
        """Drop the KV cache after its first ``keep`` tokens (of sequence ``seq``; -1:
        of every sequence)."""
        self._llama.n_tokens = keep
        self._llama._ctx.kv_cache_seq_rm(seq, keep, -1)
        size, whole = self._blocks
        self._blocks = (size, min(whole, keep))

    def _decode(
        self, tokens: Sequence[int], n_past: int, wanted: set[int]
    ) -> dict[int, np.ndarray]:
        """Decode ``tokens`` at positions ``n_past``.. in sequence 0, in chunks of
        ``n_batch``, and return the logits rows at the ``wanted`` positions."""
        llama = self._llama
        rows: dict[int, np.ndarray] = {}
        for start in range(0, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            base = n_past + start
            self._seqs.decode(
                [Token(t, base + i, 0, base + i in wanted) for i, t in enumerate(chunk)]
            )
            llama.input_ids[base : base + len(chunk)] = chunk
            llama.n_tokens = base + len(chunk)
            self.usage.prompt_tokens_evaluated += len(chunk)
            for i in range(len(chunk)):
                if base + i in wanted:
                    rows[base + i] = self._seqs.row(i).copy()
        return rows

    def _check_fits(self, n_tokens: int) -> None:
        if n_tokens > self.n_ctx:
            raise ValueError(
                f"{n_tokens} tokens do not fit the context of {self.n_ctx}; "
                "shorten the passage (passage token budget) or raise n_ctx"
            )

    def reset_cache(self) -> None:
        """Forget the KV cache, so the next call evaluates its whole prompt."""
        self._last_prompt = None
        self._llama.reset()
        self._llama._ctx.kv_cache_clear()  # every sequence
        self._blocks = (0, 0)

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            self._llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self._llama.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _pick(row: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """Log-probabilities of ``ids`` under one logits row (float64, as :func:`log_softmax`)."""
    return np.asarray(log_softmax(row)[list(ids)], dtype=np.float64)


_LOADING = threading.Lock()


@contextlib.contextmanager
def _file_layout(llama_cpp: Any) -> Iterator[None]:
    """Load a model with its weights in the file's layout (llama.cpp's ``--no-repack``,
    ``use_extra_bufts=False``). Repacked weights go to CPU kernels that take activation rows
    in groups, and the leftover rows apart, each rounding a little differently, so a row's
    values would depend on where it falls in its decode: a pair scored in a batch would not
    get the scores it gets alone. llama-cpp-python's constructor does not offer the
    setting, so the default parameters it starts from are adjusted while it loads."""
    lib = llama_cpp.llama_cpp
    default = lib.llama_model_default_params

    def params() -> Any:
        p = default()
        p.use_extra_bufts = False
        return p

    with _LOADING:
        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = default


def _share_context(llama: Any, n_seq_max: int) -> None:
    """Give ``llama`` a context of ``n_seq_max`` sequences over one KV cache of ``n_ctx``
    cells (``kv_unified``: a prefix copied to other sequences shares its cells).
    llama-cpp-python's constructor offers neither setting, so the context it made (one
    sequence) is replaced by one made from the same parameters."""
    from llama_cpp import _internals

    llama._ctx.close()
    params = llama.context_params
    params.n_seq_max = n_seq_max
    params.kv_unified = True
    llama._ctx = llama._stack.enter_context(
        contextlib.closing(
            _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        )
    )


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """llama.cpp prints model-loading chatter on the C stderr; hide it unless debugging."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)
