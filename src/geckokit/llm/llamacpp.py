"""In-process llama.cpp backend (llama-cpp-python), the default.

Scoring does not use llama-cpp-python's ``echo``/``logprobs`` path: that path reports each
prompt token's log-probability from the logits computed *after* the token (its issue #1983)
and sorts the whole vocabulary per token. Instead this backend decodes with its own batch,
asks llama.cpp for logits only at the positions that predict the scored tokens, and reads
exactly those rows. Every call reuses the longest prefix already in the KV cache, so a
shared few-shot prefix, or a passage scored against many queries, is evaluated once.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from geckokit._deps import require
from geckokit.llm.base import (
    ContinuationScore,
    Generation,
    Labels,
    LocalFileLLM,
    LogitRowsLLM,
    Prompt,
    UsageStats,
    check_labels,
    check_pairs,
    log_softmax,
    logsumexp,
)
from geckokit.registry import DEFAULT_LLM

log = logging.getLogger(__name__)


class LlamaCppLLM(LogitRowsLLM, LocalFileLLM):
    """An LLM in this process through llama-cpp-python.

    ``model`` is a registry name, a local GGUF path or ``org/repo:file.gguf`` (online).
    ``n_threads`` defaults to the number of CPU cores; ``n_ctx`` bounds prompt + output.
    Besides :class:`~geckokit.llm.base.LLM` it can tokenize, cache a shared prefix and
    return logits rows (:class:`~geckokit.llm.base.LogitRowsLLM`).
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
    ) -> None:
        from geckokit.registry import ModelKind, resolve

        llama_cpp = require("llama_cpp", extra="llama", purpose="the llama.cpp LLM backend")
        path = resolve(model, kind=ModelKind.LLM)
        usage = UsageStats()
        eval_calls: list[int] = []  # sizes of llama-cpp-python's own eval calls

        class _CountingLlama(llama_cpp.Llama):  # type: ignore[misc, name-defined]
            def eval(self, tokens: Sequence[int]) -> None:
                eval_calls.append(len(tokens))
                super().eval(tokens)

        with _quiet_stderr():
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
        self._llama_cpp = llama_cpp
        self.usage = usage
        self._eval_calls = eval_calls
        self.model_path = path
        self.model_id = os.path.basename(path)
        self.n_ctx = n_ctx
        self._n_vocab = self._llama.n_vocab()
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._n_batch = n_batch
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
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        out = []
        for i, prompt in enumerate(prompts):
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
                seed=None if seed is None else seed + i,
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
            out.append(
                Generation(
                    text=choice["text"],
                    prompt_tokens=int(usage["prompt_tokens"]),
                    completion_tokens=int(usage["completion_tokens"]),
                    finish_reason=choice.get("finish_reason") or "stop",
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
        numbers for a token depend on how the tokens are split into batches; this split
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
        keep = min(reuse, wanted[0] if wanted else reuse, len(ids) - 1)
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

    def _common_prefix(self, ids: Sequence[int]) -> int:
        """How many leading tokens of ``ids`` the KV cache holds."""
        llama = self._llama
        limit = min(llama.n_tokens, len(ids))
        existing = llama.input_ids[:limit]
        mismatch = np.nonzero(existing != np.asarray(ids[:limit], dtype=existing.dtype))[0]
        return int(mismatch[0]) if mismatch.size else limit

    def _truncate(self, keep: int) -> None:
        """Drop the KV cache after its first ``keep`` tokens."""
        self._llama.n_tokens = keep
        self._llama._ctx.kv_cache_seq_rm(-1, keep, -1)
        size, whole = self._blocks
        self._blocks = (size, min(whole, keep))

    def _reuse_point(self, ids: Sequence[int]) -> tuple[int, int]:
        """How many leading tokens of ``ids`` the KV cache can serve (evaluating the declared
        shared prefix first when ``ids`` start with it and it is not cached), and how many of
        those were evaluated just now."""
        common = self._common_prefix(ids)
        anchor = self._anchor
        n = 0 if anchor is None else len(anchor)
        if (
            anchor is None
            or len(ids) <= n
            or not np.array_equal(np.asarray(ids[:n], dtype=anchor.dtype), anchor)
        ):
            return common, 0
        if common >= n:
            return common, 0
        self._truncate(0)
        self._decode(list(anchor), 0, set())
        return n, n

    def _decode(
        self, tokens: Sequence[int], n_past: int, wanted: set[int]
    ) -> dict[int, np.ndarray]:
        llama, lib, batch = self._llama, self._llama_cpp, self._batch
        rows: dict[int, np.ndarray] = {}
        for start in range(0, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            batch.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                pos = n_past + start + i
                batch.token[i] = tok
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = pos in wanted
            rc = lib.llama_decode(llama._ctx.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            base = n_past + start
            llama.input_ids[base : base + len(chunk)] = chunk
            llama.n_tokens = base + len(chunk)
            self.usage.prompt_tokens_evaluated += len(chunk)
            for i in range(len(chunk)):
                if base + i in wanted:
                    ptr = lib.llama_get_logits_ith(llama._ctx.ctx, i)
                    rows[base + i] = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()
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
        self._truncate(0)

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            self._llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self._llama.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


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
