"""Loading sentence-transformers encoders by registry name, path or hub id."""

from __future__ import annotations

from typing import Any

from geckokit._deps import require


def load_encoder(name: str | None = None, *, device: str | None = None) -> Any:
    """A ``SentenceTransformer`` for ``name`` (default: all-MiniLM-L6-v2 from its PyPI package)."""
    from geckokit.registry import DEFAULT_ENCODER, ModelKind, resolve

    st = require("sentence_transformers", extra="train", purpose="encoders")
    return st.SentenceTransformer(
        resolve(name or DEFAULT_ENCODER, kind=ModelKind.ENCODER), device=device
    )


def embedding_width(model: Any) -> int:
    """The output width of a ``SentenceTransformer`` (sentence-transformers 6 renamed the
    method to ``get_embedding_dimension``)."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())
