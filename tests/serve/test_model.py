"""The model side of the server: unified or plain text, Matryoshka projection, allowed dimensions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geckokit.format import document_text, query_text
from geckokit.serve.model import (
    ServedModel,
    format_input,
    length_groups,
    project,
    read_matryoshka_dims,
    read_text_format,
)
from geckokit.serve.protocol import InputType
from geckokit.tasks import DEFAULT_QUERY_TASK, DOCUMENT_PROMPT, QUERY_PROMPT


def test_format_input_applies_the_unified_format() -> None:
    assert format_input("What is DNA?", task=None, input_type=None) == "What is DNA?"
    assert (
        format_input("What is DNA?", task="fact checking", input_type=None)
        == "task: fact checking | query: What is DNA?"
    )
    assert format_input("x", task="fact checking", input_type=InputType.QUERY) == query_text(
        "fact checking", "x"
    )
    assert format_input("x", task=None, input_type=InputType.DOCUMENT) == document_text(None, "x")
    with pytest.raises(ValueError, match="task applies to queries"):
        format_input("x", task="fact checking", input_type=InputType.DOCUMENT)


def test_default_query_and_document_forms_equal_the_trained_models_prompts() -> None:
    # a trained model encodes with prompt_name="query"/"document"; the server must agree
    text = "how do bees communicate"
    assert DEFAULT_QUERY_TASK == "search result"
    assert format_input(text, task=None, input_type=InputType.QUERY) == QUERY_PROMPT + text
    assert format_input(text, task=None, input_type=InputType.DOCUMENT) == DOCUMENT_PROMPT + text


def test_a_plain_text_model_reads_texts_as_sent(tmp_path: Path) -> None:
    for input_type in (None, InputType.QUERY, InputType.DOCUMENT):
        assert format_input("x", task=None, input_type=input_type, plain=True) == "x"
    assert format_input("x", task="fact checking", input_type=None, plain=True) == "x"
    with pytest.raises(ValueError, match="task applies to queries"):  # refused all the same
        format_input("x", task="fact checking", input_type=InputType.DOCUMENT, plain=True)
    # which models are plain: geckokit.json's text_format, or (older) its empty prompts
    assert read_text_format(None) == read_text_format(tmp_path) == "unified"  # a base model
    info = tmp_path / "geckokit.json"
    for content, expected in [
        ({"text_format": "plain", "prompts": {}}, "plain"),
        ({"prompts": {}}, "plain"),
        ({"text_format": "unified", "prompts": {"query": QUERY_PROMPT}}, "unified"),
        ({"prompts": {"query": QUERY_PROMPT, "document": DOCUMENT_PROMPT}}, "unified"),
    ]:
        info.write_text(json.dumps(content))
        assert read_text_format(tmp_path) == expected, content
    info.write_text("{not json")
    with pytest.raises(ValueError, match=r"not a readable geckokit\.json"):
        read_text_format(tmp_path)


def test_project_truncates_and_renormalises() -> None:
    rows = np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    out = project(rows, 2)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)  # zero row stays 0
    assert out.dtype == np.float32
    np.testing.assert_allclose(project(rows, 3)[0], np.array([3, 4, 12]) / 13, rtol=1e-6)
    with pytest.raises(ValueError, match=r"dim must lie in \[1, 3\], got 4"):
        project(rows, 4)


def test_length_groups_split_where_padding_costs_more_than_a_pass() -> None:
    # one pass: 48 + 3 x 100 = 348 token-equivalents; {10, 10} + {100}: 68 + 148 = 216
    assert length_groups([100, 10, 10], overhead=48) == [[1, 2], [0]]
    # similar lengths stay together: 48 + 3 x 24 = 120 beats any split
    assert length_groups([24, 20, 22], overhead=48) == [[1, 2, 0]]
    assert length_groups([5, 50, 5, 50], overhead=0) == [[0, 2], [1, 3]]
    assert length_groups([], overhead=48) == []
    lengths = [int(x) for x in np.random.default_rng(0).integers(5, 80, size=64)]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(64))
    padded = sum(max(lengths[i] for i in g) * len(g) for g in groups)
    assert padded < 1.25 * sum(lengths) < max(lengths) * 64


def test_read_matryoshka_dims(tmp_path: Path) -> None:
    assert read_matryoshka_dims(None, 384) is None
    assert read_matryoshka_dims(tmp_path, 384) is None  # no geckokit.json
    info = tmp_path / "geckokit.json"
    info.write_text(json.dumps({"matryoshka_dims": [128, 384, 64, 256]}))
    assert read_matryoshka_dims(tmp_path, 384) == [384, 256, 128, 64]
    info.write_text(json.dumps({"base": "x"}))
    assert read_matryoshka_dims(tmp_path, 384) is None
    info.write_text(json.dumps({"matryoshka_dims": [512]}))
    with pytest.raises(ValueError, match=r"integers in \[1, 384\], got \[512\]"):
        read_matryoshka_dims(tmp_path, 384)
    info.write_text("{not json")
    with pytest.raises(ValueError, match=r"not a readable geckokit\.json"):
        read_matryoshka_dims(tmp_path, 384)


class _FakeEncoder:
    max_seq_length = 8
    tokenizer = None

    def get_embedding_dimension(self) -> int:
        return 384


def test_allowed_dimensions_and_their_error() -> None:
    plain = ServedModel(_FakeEncoder(), model_id="plain")
    assert plain.dims == [384] and plain.check_dimensions(None) == 384
    with pytest.raises(ValueError, match=r"full width only.*geckokit.json.*: 384$"):
        plain.check_dimensions(128)
    trained = ServedModel(_FakeEncoder(), model_id="trained", dims=[64, 384, 128])
    assert trained.dims == [384, 128, 64] and trained.check_dimensions(128) == 128
    with pytest.raises(ValueError, match=r"dimensions=100 .* trained for: 384, 128, 64"):
        trained.check_dimensions(100)
    with pytest.raises(ValueError, match=r"dims must lie in \[1, 384\]"):
        ServedModel(_FakeEncoder(), model_id="bad", dims=[1024])


@pytest.mark.slow
def test_encode_matches_sentence_transformers_and_counts_tokens() -> None:
    """The direct forward passes (one tokenization, length groups) give what
    ``SentenceTransformer.encode`` gives, with each text's tokens and the cut ones flagged."""
    served = ServedModel.load("all-minilm-l6-v2")
    limit = served.max_seq_length
    texts = [
        "a",
        "Vitamin D deficiency raises the risk of fractures in older adults.",
        "word " * (limit + 40),  # past the window: cut
        "word " * (limit - 2),  # exactly the window with [CLS] and [SEP]: not cut
        "Two short words",
        "A somewhat longer sentence about protein folding and the chaperones that assist it.",
    ]
    got = served.encode(texts)
    want = served.encoder.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(np.stack([e.embedding for e in got]), want, atol=1e-5)
    counts = served.count_tokens(texts)
    assert [e.tokens for e in got] == [min(n, limit) for n in counts]
    assert [e.truncated for e in got] == [False, False, True, False, False, False]
    assert counts[3] == limit
