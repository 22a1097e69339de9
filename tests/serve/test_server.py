"""`geckokit serve` as a real uvicorn server on localhost, called with the official `openai`
client, against the real all-MiniLM-L6-v2 saved as a trained model (prompts, Matryoshka dims)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from geckokit.format import query_text
from geckokit.tasks import DOCUMENT_PROMPT, QUERY_PROMPT
from tests.conftest import free_port, stop_process, wait_http

KEY = "test-key"
NAME = "gecko-test"
DIMS = [384, 256, 128, 64]
TEXTS = [
    "How do honey bees tell each other where the flowers are?",
    "Honey bees communicate the direction and distance of food sources through the waggle dance.",
    "Paris",
    "The mitochondrion is the powerhouse of the cell, producing most of its ATP through "
    "oxidative phosphorylation along the inner membrane.",
]
ATOL = 1e-5  # batches of other sizes pad differently; the floats agree to ~1e-7

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 laid out as `geckokit train` saves a model: the unified-format
    prompts in its sentence-transformers config and Matryoshka dims in geckokit.json."""
    from geckokit.registry import ModelKind, resolve

    source = Path(resolve("all-minilm-l6-v2", kind=ModelKind.ENCODER))
    folder = tmp_path_factory.mktemp("served") / "model"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    (folder / "model.safetensors").symlink_to(source / "model.safetensors")
    config = folder / "config_sentence_transformers.json"
    settings = json.loads(config.read_text())
    settings["prompts"] = {"query": QUERY_PROMPT, "document": DOCUMENT_PROMPT}
    settings["default_prompt_name"] = None
    config.write_text(json.dumps(settings))
    (folder / "geckokit.json").write_text(json.dumps({"matryoshka_dims": DIMS}))
    return folder


@pytest.fixture(scope="module")
def server(trained_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`geckokit serve` starting up (base_url waits for it, so the reference model loads
    meanwhile)."""
    port = free_port()
    log = trained_dir.parent / "server.log"
    command = [sys.executable, "-m", "geckokit.cli.main", "serve", "--model", str(trained_dir)]
    command += ["--model-name", NAME, "--api-key", KEY, "--max-inputs", "8"]
    command += ["--max-chars", "2500", "--max-body-bytes", "100000", "--port", str(port)]
    command += ["--workers", "2"]  # two batches in flight: the model is shared by two threads
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield proc, port, log
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def encoder(server: Any, trained_dir: Path) -> Any:
    """The served model loaded in this process: the reference output."""
    from geckokit.encoder import load_encoder

    return load_encoder(str(trained_dir))


@pytest.fixture(scope="module")
def base_url(server: tuple[subprocess.Popen[bytes], int, Path], encoder: Any) -> str:
    proc, port, log = server
    wait_http(f"http://127.0.0.1:{port}/health", proc, log)
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0) as c:
        yield c


def vectors(response: Any) -> np.ndarray:
    assert [d.index for d in response.data] == list(range(len(response.data)))
    return np.array([d.embedding for d in response.data], dtype=np.float32)


def tokens(encoder: Any, texts: list[str]) -> int:
    ids = encoder.tokenizer(texts)["input_ids"]
    return sum(min(len(row), encoder.max_seq_length) for row in ids)


def test_embeddings_equal_the_models_own_encode(client: openai.OpenAI, encoder: Any) -> None:
    expected = encoder.encode(TEXTS, normalize_embeddings=True)
    # the client asks for base64 unless told otherwise; float is the JSON form
    default = client.embeddings.create(input=TEXTS, model=NAME)
    floats = client.embeddings.create(input=TEXTS, model=NAME, encoding_format="float")
    np.testing.assert_allclose(vectors(default), expected, atol=ATOL)
    np.testing.assert_allclose(vectors(floats), expected, atol=ATOL)
    assert floats.model == NAME and floats.object == "list"
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == tokens(encoder, TEXTS)
    assert floats.model_extra == {"truncated": []}
    one = client.embeddings.create(input=TEXTS[0], model=NAME, encoding_format="float")
    np.testing.assert_allclose(vectors(one)[0], expected[0], atol=ATOL)


def test_matryoshka_dimensions(client: openai.OpenAI, encoder: Any) -> None:
    for dim in (128, 64):
        got = vectors(client.embeddings.create(input=TEXTS, model=NAME, dimensions=dim))
        want = encoder.encode(TEXTS, truncate_dim=dim, normalize_embeddings=True)
        assert got.shape == (len(TEXTS), dim)
        np.testing.assert_allclose(got, want, atol=ATOL)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(input=TEXTS, model=NAME, dimensions=100)
    assert err.value.status_code == 400 and err.value.param == "dimensions"
    assert "dimensions=100" in err.value.message and "384, 256, 128, 64" in err.value.message


def test_task_and_input_type_apply_the_unified_format(client: openai.OpenAI, encoder: Any) -> None:
    def embed(**extra: Any) -> np.ndarray:
        return vectors(client.embeddings.create(input=TEXTS, model=NAME, extra_body=extra))

    task = "Given a claim, find documents that refute it"
    want = encoder.encode([query_text(task, t) for t in TEXTS], normalize_embeddings=True)
    np.testing.assert_allclose(embed(task=task), want, atol=ATOL)
    np.testing.assert_allclose(embed(task=task, input_type="query"), want, atol=ATOL)
    # the defaults equal the trained model's own prompts
    for side in ("query", "document"):
        want = encoder.encode(TEXTS, prompt_name=side, normalize_embeddings=True)
        np.testing.assert_allclose(embed(input_type=side), want, atol=ATOL)
    with pytest.raises(openai.BadRequestError, match="task applies to queries"):
        embed(task=task, input_type="document")
    with pytest.raises(openai.BadRequestError, match="Extra inputs are not permitted"):
        embed(taks=task)  # a misspelt field is refused, not ignored


def test_models_and_unknown_model(client: openai.OpenAI) -> None:
    listed = client.models.list().data
    assert [m.id for m in listed] == [NAME]
    assert listed[0].model_extra["dimensions"] == DIMS
    assert client.models.retrieve(NAME).id == NAME
    with pytest.raises(openai.NotFoundError) as err:
        client.embeddings.create(input="x", model="text-embedding-3-small")
    assert err.value.code == "model_not_found" and f"serves `{NAME}`" in err.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("text-embedding-3-small")


def test_the_api_key_is_required(base_url: str) -> None:
    with (
        openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError) as err,
    ):
        c.embeddings.create(input="x", model=NAME)
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    bare = httpx.post(f"{base_url}/embeddings", json={"input": "x"})
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "missing_api_key"
    root = base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/health").json()["model"] == NAME  # probes need no key


def test_limits_give_clear_4xx(client: openai.OpenAI, base_url: str) -> None:
    def refused(match: str, **kwargs: Any) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError, match=match) as err:
            client.embeddings.create(model=NAME, **kwargs)
        return err.value

    assert refused(r"9 texts; .* at most 8", input=["a"] * 9).code == "too_many_inputs"
    assert refused(r"input\[1\] has 2501 characters", input=["a", "b" * 2501]).param == "input"
    refused("empty list", input=[])
    refused(r"input\[1\] is an empty string", input=["a", ""])
    refused("token arrays are not supported", input=[[1, 2, 3]])

    headers = {"Authorization": f"Bearer {KEY}"}
    big = {"input": "x", "user": "u" * 150_000}
    for body in (json.dumps(big).encode(), iter([json.dumps(big).encode()])):
        # announced by Content-Length, then streamed in chunks without it
        answer = httpx.post(f"{base_url}/embeddings", content=body, headers=headers)
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "request_too_large"
    answer = httpx.post(
        f"{base_url}/embeddings", content=b'{"input": ', headers=headers | {"Content-Type": "application/json"}
    )  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("The body is not valid JSON")
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_long_inputs_are_truncated_and_reported(client: openai.OpenAI, encoder: Any) -> None:
    long = " ".join(["bees dance to show where flowers grow"] * 60)  # ~ 420 tokens
    assert len(long) <= 2500 and len(encoder.tokenizer(long)["input_ids"]) > 256
    texts = [TEXTS[0], long]
    response = client.embeddings.create(input=texts, model=NAME)
    assert response.model_extra == {"truncated": [1]}
    assert response.usage.prompt_tokens == tokens(encoder, [TEXTS[0]]) + 256
    want = encoder.encode(texts, normalize_embeddings=True)  # cut the same way
    np.testing.assert_allclose(vectors(response), want, atol=ATOL)


def test_concurrent_single_text_requests_are_batched(
    client: openai.OpenAI, base_url: str, encoder: Any
) -> None:
    health = f"{base_url.removesuffix('/v1')}/health"
    before = httpx.get(health).json()
    texts = [f"{t} ({i})" for i in range(8) for t in TEXTS]  # 32 requests
    start = threading.Barrier(16)

    def one(text: str) -> np.ndarray:
        if not start.broken:
            try:
                start.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass
        out = client.embeddings.create(input=text, model=NAME, encoding_format="float")
        return vectors(out)[0]

    with ThreadPoolExecutor(16) as pool:
        got = np.stack(list(pool.map(one, texts)))
    after = httpx.get(health).json()
    np.testing.assert_allclose(got, encoder.encode(texts, normalize_embeddings=True), atol=ATOL)
    assert after["inputs"] - before["inputs"] == len(texts)
    assert after["batches"] - before["batches"] < len(texts) / 2, (before, after)


def test_the_schema_states_the_models_limits(base_url: str) -> None:
    """The OpenAPI document states the served dimensions and limits (schemathesis fuzzes it
    in tests/reliability/test_serve.py)."""
    root = base_url.removesuffix("/v1")
    schema = httpx.get(f"{root}/openapi.json").json()
    request = schema["components"]["schemas"]["EmbeddingRequest"]["properties"]
    assert request["dimensions"]["anyOf"][0]["enum"] == DIMS
    assert request["model"]["anyOf"][0]["enum"] == [NAME]
    assert request["input"]["anyOf"][1]["maxItems"] == 8
    assert request["input"]["anyOf"][0]["maxLength"] == 2500


def test_a_model_trained_in_plain_text_reads_the_texts_as_sent(
    trained_dir: Path, encoder: Any, tmp_path: Path
) -> None:
    """`geckokit train`'s default (text_format plain) saves no prompts; served, its task and
    input_type add no prefix, so a client written for a unified model gets what the model
    was trained on."""
    folder = tmp_path / "plain"
    shutil.copytree(trained_dir, folder, symlinks=True)
    config = folder / "config_sentence_transformers.json"
    settings = json.loads(config.read_text())
    settings["prompts"] = {}
    config.write_text(json.dumps(settings))
    (folder / "geckokit.json").write_text(json.dumps({"text_format": "plain", "prompts": {}}))
    port = free_port()
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "geckokit.cli.main", "serve", "--model", str(folder)]
    with log.open("wb") as sink:
        proc = subprocess.Popen([*command, "--port", str(port)], stdout=sink, stderr=sink)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log)
        want = encoder.encode(TEXTS, normalize_embeddings=True)  # no prompt
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x") as plain:
            for extra in (
                {},
                {"input_type": "query", "task": "search result"},
                {"input_type": "document"},
            ):
                got = plain.embeddings.create(input=TEXTS, model=str(folder), extra_body=extra)
                np.testing.assert_allclose(vectors(got), want, atol=ATOL, err_msg=str(extra))
    finally:
        stop_process(proc)
    assert "trained in plain text" in log.read_text()
