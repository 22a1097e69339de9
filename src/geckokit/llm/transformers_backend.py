"""Hugging Face transformers backend, for users with a GPU.

Takes a hub id or a local model folder; a registry GGUF name or path is also accepted
(transformers de-quantises it to full precision, which is slow on a CPU but lets the same
model be checked against the llama.cpp backend). Prompts are batched with left padding.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from geckokit._deps import require
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
    logsumexp,
    prompt_seeds,
)


class TransformersLLM(LLM):
    """An LLM run through ``transformers.AutoModelForCausalLM``.

    ``device`` is ``"cuda"``, ``"cpu"`` or ``None`` (CUDA when available); ``batch_size``
    bounds the prompts per forward pass.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
    ) -> None:
        torch = require("torch", extra="hf", purpose="the transformers LLM backend")
        transformers = require("transformers", extra="hf", purpose="the transformers LLM backend")
        from geckokit.registry import ModelKind, UnknownModelError, get_entry, resolve

        kwargs: dict[str, Any] = {}
        source = model
        try:
            get_entry(model)
            source = resolve(model, kind=ModelKind.LLM)
        except UnknownModelError:
            pass
        if source.endswith(".gguf") and os.path.isfile(source):
            kwargs["gguf_file"] = os.path.basename(source)
            source = os.path.dirname(os.path.abspath(source))
        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = (
            getattr(torch, dtype)
            if dtype != "auto"
            else ("auto" if self.device != "cpu" else torch.float32)
        )
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            source, torch_dtype=torch_dtype, **kwargs
        )
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.model_id = model
        self.usage = UsageStats()

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        return str(
            self.tokenizer.apply_chat_template(
                list(prompt), tokenize=False, add_generation_prompt=True
            )
        )

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _forward(self, batch: list[list[int]]) -> Any:
        """Log-softmax over the vocabulary for right-aligned (left-padded) sequences."""
        torch = self._torch
        width = max(len(x) for x in batch)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
            ).logits
        self.usage.prompt_tokens_evaluated += int(mask.sum())
        return torch.log_softmax(logits.float(), dim=-1)  # (batch, width, vocab)

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: Seeds = None,
        stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        torch = self._torch
        seeds = prompt_seeds(seed, len(prompts))
        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [self.render(p) for p in prompts[start : start + self.batch_size]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True).to(self.device)
            if seeds[start] is not None:  # one generator per batch: its first prompt's seed
                torch.manual_seed(seeds[start])
            with torch.inference_mode():
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=max_tokens,
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            width = enc["input_ids"].shape[1]
            for row in range(len(texts)):
                new = gen[row, width:]
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                finish = (
                    "length"
                    if len(new) >= max_tokens and new[-1] != self.tokenizer.eos_token_id
                    else "stop"
                )
                for s in stop or ():
                    if s in text:
                        text, finish = text[: text.index(s)], "stop"
                n_prompt = int(enc["attention_mask"][row].sum())
                n_new = int((new != self.tokenizer.pad_token_id).sum())
                self.usage.prompt_tokens_evaluated += n_prompt
                self.usage.completion_tokens += n_new
                self.usage.requests += 1
                out.append(
                    Generation(
                        text=text,
                        prompt_tokens=n_prompt,
                        completion_tokens=n_new,
                        finish_reason=finish,
                    )
                )
        return out

    def score(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        check_pairs(prompts, continuations, "continuations")
        out: list[ContinuationScore] = []
        for start in range(0, len(prompts), self.batch_size):
            pairs = []
            for prompt, cont in zip(
                prompts[start : start + self.batch_size],
                continuations[start : start + self.batch_size],
                strict=True,
            ):
                if not cont:
                    raise ValueError("cannot score an empty continuation")
                p_ids = self._ids(self.render(prompt))
                c_ids = list(self.tokenizer(cont, add_special_tokens=False)["input_ids"])
                pairs.append((p_ids, c_ids))
            logp = self._forward([p + c for p, c in pairs])
            width = logp.shape[1]
            for row, (_, c) in enumerate(pairs):
                first = width - len(c)  # position of the first continuation token
                values = tuple(float(logp[row, first - 1 + k, tok]) for k, tok in enumerate(c))
                pieces = tuple(self.tokenizer.decode([t]) for t in c)
                out.append(ContinuationScore(tokens=pieces, token_logprobs=values))
                self.usage.requests += 1
        return out

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Labels) -> list[dict[str, float]]:
        check_labels(labels)
        first_ids = {
            label: [self.tokenizer(s, add_special_tokens=False)["input_ids"] for s in spellings]
            for label, spellings in labels.items()
        }
        out: list[dict[str, float]] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = [self._ids(self.render(p)) for p in prompts[start : start + self.batch_size]]
            logp = self._forward(chunk)[:, -1, :]  # (batch, vocab)
            for row, prompt in enumerate(prompts[start : start + self.batch_size]):
                result = {}
                for label, id_lists in first_ids.items():
                    values = []
                    for ids in id_lists:
                        if len(ids) == 1:
                            values.append(float(logp[row, ids[0]]))
                        else:
                            spelled = self.tokenizer.decode(ids)
                            values.append(self.score([prompt], [spelled])[0].total)
                    result[label] = logsumexp(values)
                out.append(result)
                self.usage.requests += 1
        return out
