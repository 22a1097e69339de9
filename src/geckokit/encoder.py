"""Loading sentence-transformers encoders by registry name, path or hub id, and
:class:`EncoderRef`: a loaded encoder together with the name it was loaded by."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geckokit._deps import require
from geckokit.types import ClosedSet


class Backend(ClosedSet):
    """What runs an encoder's transformer: torch, or ONNX Runtime on the ONNX copy that
    ``geckokit export --format onnx`` writes into the model folder (CPU only)."""

    TORCH = "torch"
    ONNX = "onnx"


def load_encoder(
    name: str | None = None,
    *,
    device: str | None = None,
    backend: Backend = Backend.TORCH,
    onnx_file: str | None = None,
    threads: int | None = None,
) -> Any:
    """A ``SentenceTransformer`` for ``name`` (default: all-MiniLM-L6-v2 from its PyPI package).

    ``backend`` onnx runs its transformer from the ONNX file ``onnx_file`` of its folder
    (None: ``onnx/model.onnx``; e.g. ``onnx/model_qint8_avx512_vnni.onnx`` for int8) with
    ``threads`` ONNX Runtime threads (None: one per core); ``name`` must then be a model
    folder or a registry name, and ``device`` None or cpu.
    """
    from geckokit.registry import DEFAULT_ENCODER, ModelKind, resolve

    given = name or DEFAULT_ENCODER
    source = resolve(given, kind=ModelKind.ENCODER)
    if backend is Backend.TORCH:
        if onnx_file is not None:
            raise ValueError("onnx_file applies to the onnx backend; add backend onnx")
        st = require("sentence_transformers", extra="train", purpose="encoders")
        return st.SentenceTransformer(source, device=device)
    from geckokit.onnx_backend import attach, onnx_path

    if device not in (None, "cpu"):
        raise ValueError(
            f"the onnx backend runs on the CPU (ONNX Runtime), not on {device!r}; "
            "leave the device out, or use the torch backend"
        )
    if not Path(source).is_dir():
        raise ValueError(
            f"the onnx backend needs a model folder or a registry name, not {given!r}: "
            "save the model to a folder and export it there"
        )
    path = onnx_path(source, onnx_file, model=given)  # before loading, to fail fast
    require("onnxruntime", extra="onnx", purpose="the ONNX backend")
    st = require("sentence_transformers", extra="onnx", purpose="the ONNX backend")
    model = st.SentenceTransformer(source, device="cpu")
    attach(model, path, threads=threads)
    return model


@dataclass(frozen=True)
class EncoderRef:
    """An encoder as mining, evaluation and rerank-eval take it: the loaded ``model`` (a
    ``SentenceTransformer``, or anything with its ``encode(texts, batch_size=...,
    normalize_embeddings=..., convert_to_numpy=..., show_progress_bar=...)``), the ``name``
    it was loaded by (a registry name, a path or a hub id, as the user gave it; a run's
    manifest records it; "" for none) and whether that name fixes its weights (``pinned``: a
    registry encoder, whose sha256 the registry pins). Only a pinned encoder's embeddings are
    kept on disk under its name (``$GECKOKIT_HOME/embeddings``) for any later run to reuse: a
    path's or a hub id's weights may change under the same name."""

    model: Any
    name: str = ""
    pinned: bool = False

    @classmethod
    def named(cls, model: Any, name: str) -> EncoderRef:
        """``model`` loaded by ``name``, pinned when the name is a registry encoder's
        (:func:`geckokit.registry.pinned_encoder`)."""
        from geckokit.registry import pinned_encoder

        return cls(model, name, pinned=pinned_encoder(name) is not None)

    @classmethod
    def load(cls, name: str | None = None, *, device: str | None = None) -> EncoderRef:
        """Load the encoder called ``name`` (None: the registry's default encoder)."""
        from geckokit.registry import DEFAULT_ENCODER

        name = name or DEFAULT_ENCODER
        return cls.named(load_encoder(name, device=device), name)

    @property
    def cache_name(self) -> str:
        """The name its embeddings are kept under: for a pinned encoder the registry's own
        name, which all of its aliases share; else its name."""
        if self.pinned:
            from geckokit.registry import pinned_encoder

            return pinned_encoder(self.name) or self.name
        return self.name


def embedding_width(model: Any) -> int:
    """The full embedding dimension of a ``SentenceTransformer`` (named
    ``get_embedding_dimension`` since sentence-transformers 6, before that
    ``get_sentence_embedding_dimension``)."""
    getter = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    return int(getter())
