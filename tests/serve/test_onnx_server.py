"""`geckokit serve --backend onnx`: a real server on localhost serving a distilled model's
int8 ONNX copy (same API, Matryoshka dims and prompts), and its errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from click.testing import CliRunner

from geckokit.cli.main import cli
from geckokit.encoder import Backend, load_encoder
from geckokit.export import int8_file, quantization_target
from tests.conftest import free_port, stop_process, wait_http

NAME = "gecko-onnx"
DIMS = [384, 256, 128, 64]
TEXTS = [
    "How do honey bees tell each other where the flowers are?",
    "Honey bees communicate the direction and distance of food sources through the waggle dance.",
    "Paris is the capital of France.",
]


def test_a_folder_without_an_onnx_copy_names_the_export_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.commands["serve"], ["--model", str(tmp_path), "--backend", "onnx"]
    )
    assert isinstance(result.exception, ValueError)
    assert f"Make one with: geckokit export --model {tmp_path} --format onnx" in str(
        result.exception
    )


def test_onnx_file_needs_the_onnx_backend(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.commands["serve"], ["--model", str(tmp_path), "--onnx-file", "onnx/model.onnx"]
    )
    assert result.exit_code == 2 and "--onnx-file applies to --backend onnx" in result.output


@pytest.fixture(scope="module")
def int8_name() -> str:
    return f"onnx/{int8_file(quantization_target())}"


@pytest.fixture(scope="module")
def base_url(distilled_onnx: Path, int8_name: str) -> Iterator[str]:
    port = free_port()
    log = distilled_onnx.parent / "onnx-server.log"
    command = [sys.executable, "-m", "geckokit.cli.main", "serve", "--model", str(distilled_onnx)]
    command += ["--model-name", NAME, "--backend", "onnx", "--onnx-file", int8_name]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        # a busy 2-core machine can take minutes to import and load; an idle one seconds
        wait_http(f"http://127.0.0.1:{port}/health", proc, log, timeout=600)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key="none", max_retries=0) as c:
        yield c


def embed(client: openai.OpenAI, text: str, **kwargs: Any) -> np.ndarray:
    out = client.embeddings.create(input=text, model=NAME, encoding_format="float", **kwargs)
    return np.array(out.data[0].embedding, dtype=np.float32)


@pytest.mark.slow
def test_onnx_server_answers_with_the_int8_models_embeddings(
    client: openai.OpenAI, distilled_onnx: Path, int8_name: str
) -> None:
    assert client.models.list().data[0].model_extra["dimensions"] == DIMS
    model = load_encoder(str(distilled_onnx), backend=Backend.ONNX, onnx_file=int8_name)
    torch_model = load_encoder(str(distilled_onnx))
    for text in TEXTS:
        # one text a request: int8 activations are scaled per batch, so compare like with like
        for dim in DIMS:
            got = embed(client, text, dimensions=dim, extra_body={"input_type": "query"})
            assert got.shape == (dim,)
            assert abs(float(np.linalg.norm(got)) - 1) < 1e-5
            want = model.encode([text], prompt_name="query", truncate_dim=dim)[0]
            np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-5)
        full = embed(client, text, extra_body={"input_type": "document"})
        reference = torch_model.encode([text], prompt_name="document")[0]
        assert float(full @ reference) > 0.98  # both unit length
    with pytest.raises(openai.BadRequestError, match="384, 256, 128, 64"):
        embed(client, TEXTS[0], dimensions=100)
