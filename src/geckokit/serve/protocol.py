"""Wire contracts of ``geckokit serve``: OpenAI's ``/v1/embeddings`` shape plus geckokit fields.

Requests and responses follow OpenAI's embeddings API (``input``, ``model``, ``dimensions``,
``encoding_format``, ``user``; ``data``, ``usage``) so the official clients work unchanged.
geckokit adds ``task`` and ``input_type`` to requests (they apply the unified format of
:mod:`geckokit.format`) and ``truncated`` to responses (inputs cut to the model's window).
Errors use OpenAI's ``{"error": {"message", "type", "param", "code"}}`` body.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from geckokit.tasks import DEFAULT_QUERY_TASK

#: Longest accepted ``task`` string, in characters (tasks are one short sentence).
MAX_TASK_CHARS = 512

#: What a text may not hold: NUL, and UTF-16 surrogates, which JSON can spell (``"\ud800"``)
#: but which are no Unicode characters and cannot be encoded as UTF-8 for the tokenizer (a
#: valid ``"\ud83d\ude00"`` pair decodes to one character above U+FFFF, not to surrogates).
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")
#: The JSON-schema pattern of a text in the OpenAPI document: no NUL. Lone surrogates are
#: left to the description: a pattern sees UTF-16 code units in JavaScript, where a valid
#: pair is two surrogates, and schemathesis cannot use such a pattern.
TEXT_PATTERN = r"^[^\u0000]*$"


def text_problem(text: str) -> str | None:
    """What makes ``text`` unfit to embed, as a phrase ("holds ... at character 4"), or None
    when it is fine. A NUL is refused as well as a lone surrogate: tokenizers drop it
    silently, and it mostly means binary data or text decoded with the wrong encoding."""
    found = _NOT_TEXT.search(text)
    if found is None:
        return None
    char, at = found.group(), found.start()
    if char == "\x00":
        return (
            f"holds a NUL character (U+0000) at character {at}; a NUL is not text (it mostly "
            "means binary data, or text decoded with the wrong encoding): remove it"
        )
    return (
        f"holds a lone UTF-16 surrogate (U+{ord(char):04X}) at character {at}, which is no "
        "Unicode character and cannot be encoded as UTF-8: send valid Unicode (an escape "
        "such as \\ud83d must be followed by its low half, as in \\ud83d\\ude00)"
    )


class EncodingFormat(str, Enum):
    """How vectors travel: JSON floats, or base64 of little-endian float32 bytes."""

    FLOAT = "float"
    BASE64 = "base64"


class InputType(str, Enum):
    """Which side of the unified format an input takes (Gecko section 3.1)."""

    QUERY = "query"  # task: {task} | query: {text}
    DOCUMENT = "document"  # title: none | text: {text}


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``. Unknown fields are refused, as OpenAI does, so that a
    misspelt ``task`` or ``input_type`` cannot silently fall back to raw text."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str] = Field(
        description="A text or a list of texts to embed (token arrays are not accepted). "
        "A text may not hold NUL or a lone UTF-16 surrogate (a \\ud800 escape without "
        "its pair), which are not Unicode text."
    )
    model: str | None = Field(
        default=None, description="The served model's id (see /v1/models); null means it."
    )
    dimensions: int | None = Field(
        default=None,
        ge=1,
        strict=True,  # a JSON integer: not "384", 384.0 or true, as the schema says
        description="Matryoshka truncation: keep the first N dimensions and re-normalise. "
        "Must be one the model was trained for (see /v1/models).",
    )
    encoding_format: EncodingFormat = EncodingFormat.FLOAT
    user: str | None = Field(default=None, description="Accepted for compatibility; unused.")
    task: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TASK_CHARS,
        description="geckokit: the task of a query, e.g. 'search result'; implies "
        "input_type 'query'. Inputs become 'task: {task} | query: {text}'.",
    )
    input_type: InputType | None = Field(
        default=None,
        description=f"geckokit: 'query' (task form, default task {DEFAULT_QUERY_TASK!r}) or "
        "'document' ('title: none | text: {text}'). With neither this nor task, the raw "
        "text is embedded.",
    )

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if (
            isinstance(value, list)
            and value
            and all(is_int(v) or (isinstance(v, list) and all(is_int(x) for x in v)) for v in value)
        ):
            raise ValueError("token arrays are not supported; send the text instead")
        return value

    @field_validator("task", mode="before")
    @classmethod
    def _task_is_text(cls, value: Any) -> Any:
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise ValueError(f"task {problem}")
        return value


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of float32 bytes")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="tokens the model read, counted by its tokenizer")
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage
    truncated: list[int] = Field(
        default_factory=list,
        description="geckokit: indices of inputs longer than the model's window, which the "
        "tokenizer cut to its first max_seq_length tokens before embedding.",
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "geckokit"
    dimensions: list[int] = Field(description="geckokit: accepted values of 'dimensions'")
    max_seq_length: int = Field(description="geckokit: tokens per input; longer is truncated")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    batches: int = Field(description="encode calls so far (each one micro-batch)")
    inputs: int = Field(description="texts embedded so far")
    queued: int = Field(description="texts waiting for the next batch")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class APIError(Exception):
    """An error answered with OpenAI's error body and an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(message=message, type=type, param=param, code=code)

    def body(self) -> dict[str, Any]:
        return ErrorResponse(error=self.detail).model_dump()
