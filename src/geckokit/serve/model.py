"""The served encoder: unified-format inputs, Matryoshka dimensions, token counts.

Kept apart from HTTP so it can be driven directly: :func:`format_input` applies the unified
format (Gecko section 3.1) to a model trained in it, :func:`project` truncates and re-normalises (Matryoshka
representation learning, Gecko section 3.3), and :meth:`ServedModel.encode` embeds a batch
and counts the tokens the model read.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geckokit.encoder import Backend
from geckokit.format import document_text, query_text
from geckokit.io import DamagedFileError, read_json
from geckokit.serve.protocol import InputType
from geckokit.tasks import DEFAULT_QUERY_TASK

log = logging.getLogger(__name__)


def format_input(
    text: str, *, task: str | None, input_type: InputType | None, plain: bool = False
) -> str:
    """The text the model reads.

    - ``task`` given (``input_type`` None or query): ``task: {task} | query: {text}``;
    - ``input_type`` query without task: the same with task ``search result``
      (:data:`~geckokit.tasks.DEFAULT_QUERY_TASK`, the trained model's query prompt);
    - ``input_type`` document: ``title: none | text: {text}`` (a task is refused here);
    - neither: ``text`` unchanged, as ``SentenceTransformer.encode`` would read it.

    ``plain`` (a model trained in plain text, :func:`read_text_format`): ``text`` unchanged
    whatever the fields say, as the model was trained; a task on a document is still refused.
    """
    if input_type is InputType.DOCUMENT:
        if task is not None:
            raise ValueError(
                "task applies to queries; documents take the form 'title: none | text: ...'. "
                "Drop task, or send input_type 'query' (symmetric tasks such as STS put the "
                "task form on both sides)"
            )
        return text if plain else document_text(None, text)
    if plain:
        return text
    if task is not None or input_type is InputType.QUERY:
        return query_text(task or DEFAULT_QUERY_TASK, text)
    return text


def project(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """First ``dim`` columns of ``embeddings`` (n, width), each row scaled to unit length."""
    if not 1 <= dim <= embeddings.shape[-1]:
        raise ValueError(f"dim must lie in [1, {embeddings.shape[-1]}], got {dim}")
    head = np.asarray(embeddings[..., :dim], dtype=np.float32)  # (n, dim)
    norms = np.linalg.norm(head, axis=-1, keepdims=True)  # (n, 1)
    unit: np.ndarray = head / np.maximum(norms, 1e-12)  # (n, dim)
    return unit


def length_groups(lengths: Sequence[int], *, overhead: int = 48) -> list[list[int]]:
    """Split a batch into groups of similar length, to pad less: indices grouped in order of
    length so that the tokens computed (each group padded to its longest text) plus
    ``overhead`` token-equivalents per extra forward pass are fewest (dynamic programming
    over the sorted lengths, O(n^2) for a batch of n).

    A random micro-batch of short queries pads to about 1.6x its real tokens in one forward
    pass; sorted groups bring that near 1.1x, as ``SentenceTransformer.encode`` does for a
    large input by sorting it.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    ranked = [lengths[i] for i in order]
    n = len(ranked)
    best = [0] + [0] * n  # best[j]: cost of the first j sorted texts
    cut = [0] * (n + 1)  # cut[j]: where the last group of the first j texts starts
    for j in range(1, n + 1):
        longest = ranked[j - 1]
        best[j], cut[j] = min((best[i] + overhead + longest * (j - i), i) for i in range(j))
    groups: list[list[int]] = []
    j = n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def read_text_format(folder: str | os.PathLike[str] | None) -> str:
    """``plain`` for a model ``geckokit train`` trained in plain text (``text_format`` in
    ``folder/geckokit.json``, or, from older versions, an empty ``prompts`` there), else
    ``unified``: a model without the file (a base model) takes the unified format when a
    request asks for it."""
    path = Path(folder) / "geckokit.json" if folder is not None else None
    if path is None or not path.is_file():
        return "unified"
    try:
        info = read_json(path) or {}
    except DamagedFileError as exc:
        raise ValueError(f"not a readable geckokit.json: {exc}") from exc
    if info.get("text_format") == "plain" or info.get("prompts") == {}:
        return "plain"
    return "unified"


def read_matryoshka_dims(folder: str | os.PathLike[str] | None, width: int) -> list[int] | None:
    """``matryoshka_dims`` from ``folder/geckokit.json`` (written by ``geckokit train``), largest
    first, or None when the folder has no such file or the file lists none."""
    if folder is None:
        return None
    path = Path(folder) / "geckokit.json"
    if not path.is_file():
        return None
    try:
        dims = json.loads(path.read_text()).get("matryoshka_dims")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a readable geckokit.json ({exc})") from exc
    if not dims:
        return None
    if not all(isinstance(d, int) and 1 <= d <= width for d in dims):
        raise ValueError(f"{path}: matryoshka_dims must be integers in [1, {width}], got {dims}")
    return sorted(set(dims), reverse=True)


def _width(encoder: Any) -> int:
    # recent sentence-transformers renamed get_sentence_embedding_dimension (the old name warns)
    get = getattr(encoder, "get_embedding_dimension", None)
    return int(get() if get is not None else encoder.get_sentence_embedding_dimension())


@dataclass(frozen=True)
class Encoded:
    """One text's result: its full-width embedding, tokens read and whether it was cut."""

    embedding: np.ndarray  # (width,) float32
    tokens: int
    truncated: bool


class ServedModel:
    """A sentence-transformers encoder with the facts the server needs.

    ``dims`` are the accepted ``dimensions``: the Matryoshka dims it was trained for, or
    just its full width when none are recorded (None).
    """

    def __init__(
        self,
        encoder: Any,
        *,
        model_id: str,
        dims: list[int] | None = None,
        text_format: str = "unified",
    ) -> None:
        if hasattr(encoder, "eval"):
            encoder.eval()  # encode() calls its modules directly: no dropout
        self.encoder = encoder
        self.model_id = model_id
        self.width = _width(encoder)
        self.trained_dims = dims is not None
        self.plain = text_format == "plain"  # texts reach the model as sent
        self.dims = sorted(set(dims), reverse=True) if dims else [self.width]
        if any(not 1 <= d <= self.width for d in self.dims):
            raise ValueError(f"dims must lie in [1, {self.width}], got {self.dims}")
        self.max_seq_length = int(encoder.max_seq_length)
        # a copy of its own: counting sets truncation on a fast tokenizer, which must not
        # change under an encode running on another thread
        self.tokenizer = copy.deepcopy(encoder.tokenizer)
        self._counting = threading.Lock()

    @classmethod
    def load(
        cls,
        name: str | None = None,
        *,
        model_id: str | None = None,
        device: str | None = None,
        backend: Backend = Backend.TORCH,
        onnx_file: str | None = None,
        threads: int | None = None,
    ) -> ServedModel:
        """Load ``name`` (registry name, folder or hub id; default all-minilm-l6-v2). The id
        clients send as ``model`` is ``model_id``, else ``name`` as given. ``backend``,
        ``onnx_file`` and ``threads``: see :func:`geckokit.encoder.load_encoder`."""
        from geckokit.encoder import load_encoder
        from geckokit.registry import DEFAULT_ENCODER, ModelKind, resolve

        name = name or DEFAULT_ENCODER
        source = resolve(name, kind=ModelKind.ENCODER)
        encoder = load_encoder(
            name, device=device, backend=backend, onnx_file=onnx_file, threads=threads
        )
        if backend is Backend.ONNX:
            log.info("%s runs on ONNX Runtime: %s", name, onnx_file or "onnx/model.onnx")
        width = _width(encoder)
        folder = source if Path(source).is_dir() else None
        dims = read_matryoshka_dims(folder, width)
        if dims is None:
            log.info("%s records no Matryoshka dims; serving only its full width %d", name, width)
        text_format = read_text_format(folder)
        if text_format == "plain":
            log.info("%s was trained in plain text: task and input_type add no prefix", name)
        return cls(encoder, model_id=model_id or name, dims=dims, text_format=text_format)

    def check_dimensions(self, dimensions: int | None) -> int:
        """The output width for a request's ``dimensions`` (None: full width)."""
        if dimensions is None:
            return self.width
        if dimensions not in self.dims:
            why = (
                "the Matryoshka dimensions it was trained for"
                if self.trained_dims
                else "its full width only: it records no Matryoshka dimensions (geckokit.json)"
            )
            allowed = ", ".join(map(str, self.dims))
            raise ValueError(
                f"dimensions={dimensions} is not supported by {self.model_id}; it serves {why}: "
                f"{allowed}"
            )
        return dimensions

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text has with special tokens, counted up to ``max_seq_length + 1``."""
        with self._counting:
            ids = self.tokenizer(
                texts,
                add_special_tokens=True,
                truncation=True,
                max_length=self.max_seq_length + 1,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
        return [len(row) for row in ids]

    def encode(self, texts: list[str]) -> list[Encoded]:
        """Embed ``texts`` (already formatted); blocking (runs on a batcher thread).

        The batch is tokenized once (cut at ``max_seq_length`` tokens, as
        ``SentenceTransformer.encode`` cuts; such texts are flagged ``truncated``), then the
        model runs one forward pass per group of similar length (:func:`length_groups`), each
        group padded only to its own longest text. This calls the model's modules directly:
        ``SentenceTransformer.encode`` costs several milliseconds per call beyond the forward
        pass, more than the padding a group saves.
        """
        import torch

        limit = self.max_seq_length
        features = self._tokenize(texts)
        lengths = [int(n) for n in features["attention_mask"].sum(dim=1).tolist()]
        at_limit = [i for i, n in enumerate(lengths) if n >= limit]
        cut = set()
        if at_limit:  # only texts that reach the window can have been cut
            counts = self.count_tokens([texts[i] for i in at_limit])
            cut = {i for i, n in zip(at_limit, counts, strict=True) if n > limit}
        vectors = np.empty((len(texts), self.width), dtype=np.float32)  # (n, width)
        device = self.encoder.device
        with torch.inference_mode():
            for group in length_groups(lengths):
                longest = max(lengths[i] for i in group)
                rows = torch.tensor(group)
                part = {
                    key: value[rows, :longest].to(device)
                    if isinstance(value, torch.Tensor) and value.ndim == 2
                    else value
                    for key, value in features.items()
                }  # each (len(group), longest)
                out = self.encoder(part)["sentence_embedding"]  # (len(group), width)
                vectors[group] = out.float().cpu().numpy()
        return [
            Encoded(embedding=vec, tokens=n, truncated=i in cut)
            for i, (vec, n) in enumerate(zip(vectors, lengths, strict=True))
        ]

    def _tokenize(self, texts: list[str]) -> dict[str, Any]:
        """The model's own input features for ``texts``, padded to the longest."""
        preprocess = getattr(self.encoder, "preprocess", None)  # sentence-transformers >= 5
        return dict(preprocess(texts) if preprocess is not None else self.encoder.tokenize(texts))
