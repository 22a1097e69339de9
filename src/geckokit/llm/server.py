"""A small OpenAI-compatible LLM server over the in-process llama.cpp backend.

``geckokit llm-serve`` puts one GGUF model behind ``/v1/completions`` and
``/v1/chat/completions`` so that several workers (Ray tasks, other machines) can share it.
Unlike llama-cpp-python's bundled server it reports echoed prompt log-probabilities from
the correct position, so it serves query-likelihood scoring through
:class:`geckokit.llm.openai_http.OpenAICompatibleLLM`. Requests are served one at a time
(llama.cpp holds one KV cache).

A request's answer depends on the request alone, not on what the server served before:
llama.cpp's numbers for a token depend on how the prompt is split into batches, so a prompt
that continued from whatever prefix the cache held would come out differently after another
request (at temperature 0: log-probabilities moved by up to 0.08, and so other text at
times). Every prompt is
therefore evaluated in blocks of ``cache_block`` tokens aligned at its start, and the prefix
cache serves only whole blocks evaluated so (:meth:`LlamaCppLLM.eval_rows` with ``block``):
a few-shot prefix shared by every request is still evaluated once, to the last whole block.
Each answer's ``usage.prompt_tokens_details.cached_tokens`` says how many prompt tokens the
cache served.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from geckokit._deps import require
from geckokit.llm.base import log_softmax
from geckokit.llm.llamacpp import LlamaCppLLM

#: Tokens per block of prompt evaluation (see the module docstring): smaller blocks let the
#: cache serve more of a shared prefix, larger ones evaluate a new prompt faster.
DEFAULT_CACHE_BLOCK = 256


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str
    max_tokens: int = Field(default=16, ge=0, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int = Field(default=256, ge=1, le=4096)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


def _top(dist: np.ndarray, k: int, piece: Any) -> dict[str, float]:
    if k <= 0:
        return {}
    idx = np.argpartition(-dist, k)[:k]
    idx = idx[np.argsort(-dist[idx])]
    out: dict[str, float] = {}
    for i in idx:
        key = piece(int(i))
        out.setdefault(key, float(dist[i]))  # two ids can share a text; keep the likelier
    return out


class _Engine:
    """Token-level decoding with log-probabilities, on top of LlamaCppLLM.eval_rows."""

    def __init__(self, llm: LlamaCppLLM, *, block: int = DEFAULT_CACHE_BLOCK) -> None:
        self.llm = llm
        self.block = block
        self.lock = threading.Lock()
        self.eos = llm._llama.token_eos()

    def is_end(self, tok: int) -> bool:
        is_eog = getattr(self.llm._llama._model, "token_is_eog", None)
        return tok == self.eos or bool(is_eog is not None and is_eog(tok))

    def piece(self, tok: int) -> str:
        return bytes(self.llm._llama.detokenize([tok])).decode("utf-8", errors="replace")

    def run(
        self,
        text: str,
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        stop: list[str],
        echo: bool,
        top_k: int | None,
    ) -> dict[str, Any]:
        llm = self.llm
        ids = llm.tokenize(text, add_bos=True, special=True)
        rng = np.random.default_rng(seed)
        tokens: list[str] = []
        offsets: list[int] = []
        values: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        with self.lock:
            need = range(0, len(ids)) if echo else [len(ids) - 1]
            before = llm.usage.prompt_tokens_cached
            rows = llm.eval_rows(ids, need, block=self.block)
            cached = llm.usage.prompt_tokens_cached - before
            if echo:
                offset = 0
                for i, tok in enumerate(ids):
                    piece = self.piece(tok)
                    if i == 0 and tok == llm._llama.token_bos():
                        continue
                    tokens.append(piece)
                    offsets.append(offset)
                    offset += len(piece)
                    if i == 0:
                        values.append(None)
                        tops.append(None)
                    else:
                        dist = log_softmax(rows[i - 1])
                        values.append(float(dist[tok]))
                        tops.append(_top(dist, top_k or 0, self.piece) if top_k else None)
            generated = ""
            n_generated = 0
            finish = "length"
            dist = log_softmax(rows[len(ids) - 1])
            seq = list(ids)
            for _ in range(max_tokens):
                if temperature <= 0:
                    tok = int(np.argmax(dist))
                else:
                    p = np.exp((dist - dist.max()) / temperature)
                    tok = int(rng.choice(len(p), p=p / p.sum()))
                if self.is_end(tok):
                    finish = "stop"
                    break
                piece = self.piece(tok)
                tokens.append(piece)
                offsets.append(len(text) + len(generated) if echo else len(generated))
                values.append(float(dist[tok]))
                tops.append(_top(dist, top_k or 0, self.piece) if top_k else None)
                generated += piece
                n_generated += 1
                hit = next((s for s in stop if s in generated), None)
                if hit is not None:
                    generated = generated[: generated.index(hit)]
                    finish = "stop"
                    break
                seq.append(tok)
                llm._check_fits(len(seq) + 1)
                # one token after the prompt's state: the same whatever came before
                dist = log_softmax(llm.eval_rows(seq, [len(seq) - 1])[len(seq) - 1])
        return {
            "text": (text if echo else "") + generated,
            "generated": generated,
            "finish_reason": finish,
            "prompt_tokens": len(ids),
            "cached_tokens": cached,
            "completion_tokens": n_generated,
            "logprobs": {
                "tokens": tokens,
                "token_logprobs": values,
                "top_logprobs": tops,
                "text_offset": offsets,
            },
        }


def create_app(
    llm: LlamaCppLLM, *, model_name: str | None = None, cache_block: int = DEFAULT_CACHE_BLOCK
) -> Any:
    """A FastAPI app serving ``llm`` under OpenAI's completions and chat completions API;
    ``cache_block``: tokens per block of prompt evaluation (see the module docstring)."""
    if not 1 <= cache_block <= llm._n_batch:
        raise ValueError(
            f"cache_block must lie in [1, {llm._n_batch}] (the model's batch size), "
            f"got {cache_block}"
        )
    fastapi = require("fastapi", extra="serve", purpose="the LLM server")
    app = fastapi.FastAPI(title="geckokit llm-serve", version="1")
    engine = _Engine(llm, block=cache_block)
    name = model_name or llm.model_id

    def usage(out: dict[str, Any]) -> dict[str, Any]:
        return {
            "prompt_tokens": out["prompt_tokens"],
            "completion_tokens": out["completion_tokens"],
            "total_tokens": out["prompt_tokens"] + out["completion_tokens"],
            "prompt_tokens_details": {"cached_tokens": out["cached_tokens"]},
        }

    def stops(value: str | list[str] | None) -> list[str]:
        return [value] if isinstance(value, str) else list(value or [])

    def fits(fn: Any) -> dict[str, Any]:
        try:
            return dict(fn())
        except ValueError as exc:
            raise fastapi.HTTPException(status_code=400, detail=str(exc)) from exc

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "geckokit"}]}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/completions")
    def completions(req: CompletionRequest) -> dict[str, Any]:
        out = fits(
            lambda: engine.run(
                req.prompt,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                seed=req.seed,
                stop=stops(req.stop),
                echo=req.echo,
                top_k=req.logprobs,
            )
        )
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "text": out["text"],
                    "finish_reason": out["finish_reason"],
                    "logprobs": out["logprobs"] if req.logprobs is not None else None,
                }
            ],
            "usage": usage(out),
        }

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest) -> dict[str, Any]:
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        text = fits(lambda: {"t": llm.render(messages)})["t"]  # type: ignore[arg-type]
        out = fits(
            lambda: engine.run(
                text,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                seed=req.seed,
                stop=stops(req.stop),
                echo=False,
                top_k=req.top_logprobs if req.logprobs else None,
            )
        )
        lp = out["logprobs"]
        content = [
            {
                "token": tok,
                "logprob": value,
                "top_logprobs": [{"token": t, "logprob": v} for t, v in (top or {}).items()],
            }
            for tok, value, top in zip(
                lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True
            )
        ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": out["generated"]},
                    "finish_reason": out["finish_reason"],
                    "logprobs": {"content": content} if req.logprobs else None,
                }
            ],
            "usage": usage(out),
        }

    return app
