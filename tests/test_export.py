"""`geckokit export --format onnx`: the files, their layout, their errors, and embeddings
from the exported files (float32 and int8) against torch's, with the real encoder."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from geckokit._deps import MissingDependencyError
from geckokit.cli.main import cli
from geckokit.encoder import Backend, load_encoder
from geckokit.export import (
    ExportFormat,
    check_model_folder,
    export,
    int8_file,
    quantization_target,
)
from geckokit.onnx_backend import onnx_files, onnx_path

TEXTS = [
    "How do honey bees tell each other where the flowers are?",
    "Honey bees communicate the direction and distance of food sources through the waggle dance.",
    "Paris is the capital of France.",
    "The mitochondrion is the powerhouse of the cell, producing most of its ATP through "
    "oxidative phosphorylation along the inner membrane.",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))  # type: ignore[no-any-return]


def test_int8_files_are_named_as_sentence_transformers_names_them() -> None:
    assert int8_file("avx512_vnni") == "model_qint8_avx512_vnni.onnx"
    assert int8_file("arm64") == "model_qint8_arm64.onnx"
    assert int8_file("avx2") == "model_quint8_avx2.onnx"
    assert int8_file("avx512") == "model_quint8_avx512.onnx"
    assert quantization_target() in ("arm64", "avx512_vnni", "avx512", "avx2")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown export format 'tflite'; valid: onnx"):
        ExportFormat.parse("tflite")
    result = CliRunner().invoke(cli.commands["export"], ["--format", "tflite"])
    assert result.exit_code == 2 and "'onnx'" in result.output


def test_a_folder_that_is_no_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match="is not a sentence-transformers model folder"):
        export(str(tmp_path))
    with pytest.raises(ValueError, match="is not a folder"):
        check_model_folder(tmp_path / "notes.txt")


def test_a_missing_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'geckokit\[onnx\]'"):
        export(str(tmp_path))
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"")
    with pytest.raises(MissingDependencyError, match=r"geckokit\[onnx\]"):
        load_encoder(str(tmp_path), backend=Backend.ONNX)


def test_a_folder_without_its_onnx_copy_names_the_export_command(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"it has none\). Make one with: geckokit export --model"):
        onnx_path(tmp_path)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"")
    assert onnx_path(tmp_path) == tmp_path / "onnx" / "model.onnx"
    assert onnx_path(tmp_path, "onnx/model.onnx") == onnx_path(tmp_path, "model.onnx")
    with pytest.raises(
        ValueError, match=r"it has onnx/model.onnx; .* --format onnx --quantize int8"
    ):
        onnx_path(tmp_path, "onnx/model_qint8_avx512_vnni.onnx", model="runs/model")
    assert onnx_files(tmp_path) == ["onnx/model.onnx"]


def test_backend_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="onnx_file applies to the onnx backend"):
        load_encoder(str(tmp_path), onnx_file="onnx/model.onnx")
    with pytest.raises(ValueError, match="runs on the CPU"):
        load_encoder(str(tmp_path), backend=Backend.ONNX, device="cuda")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; valid: torch, onnx"):
        Backend.parse("tensorrt")


@pytest.fixture(scope="module")
def torch_model(distilled_onnx: Path) -> Any:
    return load_encoder(str(distilled_onnx))


@pytest.mark.slow
def test_export_lays_out_the_files_as_sentence_transformers_reads_them(
    distilled_onnx: Path,
) -> None:
    import onnxruntime as ort

    int8 = f"onnx/{int8_file(quantization_target())}"
    assert onnx_files(distilled_onnx) == sorted(["onnx/model.onnx", int8])
    session = ort.InferenceSession(str(distilled_onnx / "onnx" / "model.onnx"))
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs == {
        name: ["batch_size", "sequence_length"]
        for name in ("input_ids", "attention_mask", "token_type_ids")
    }
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
    assert not list((distilled_onnx / "onnx").glob(".export-*"))  # no leftovers


@pytest.mark.slow
@pytest.mark.parametrize("prompt", [None, "query", "document"])
def test_float32_export_gives_torch_embeddings(
    distilled_onnx: Path, torch_model: Any, prompt: str | None
) -> None:
    model = load_encoder(str(distilled_onnx), backend=Backend.ONNX)
    expected = torch_model.encode(TEXTS, prompt_name=prompt)
    got = model.encode(TEXTS, prompt_name=prompt)
    assert got.shape == expected.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_int8_export_stays_close_to_torch(distilled_onnx: Path, torch_model: Any) -> None:
    model = load_encoder(
        str(distilled_onnx),
        backend=Backend.ONNX,
        onnx_file=f"onnx/{int8_file(quantization_target())}",
        threads=1,
    )
    for prompt in (None, "query"):
        expected = torch_model.encode(TEXTS, prompt_name=prompt)
        got = model.encode(TEXTS, prompt_name=prompt)
        assert cosines(got, expected).min() > 0.98
        # a 128-dim Matryoshka prefix keeps the ranking of the full vectors' neighbours
        small = got[:, :128] / np.linalg.norm(got[:, :128], axis=1, keepdims=True)
        assert (small[0] @ small[1]) > (small[0] @ small[2])


@pytest.mark.slow
def test_the_registry_encoder_exports_into_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default encoder by its registry name: the files go into the folder the name
    resolves to (here a copy, so that the installed package stays as it is)."""
    import geckokit.registry
    from geckokit.registry import DEFAULT_ENCODER, ModelKind, resolve

    source = Path(resolve(DEFAULT_ENCODER, kind=ModelKind.ENCODER))
    copy = tmp_path / "all-minilm-l6-v2"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("model.safetensors", "onnx"))
    (copy / "model.safetensors").symlink_to(source / "model.safetensors")
    real = geckokit.registry.resolve
    monkeypatch.setattr(
        geckokit.registry,
        "resolve",
        lambda name, **kw: str(copy) if name == DEFAULT_ENCODER else real(name, **kw),
    )
    result = CliRunner().invoke(cli.commands["export"], [])  # --model defaults to it
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "serve it with: geckokit serve --model all-minilm-l6-v2 --backend onnx" in result.output
    assert onnx_files(copy) == ["onnx/model.onnx"]
    expected = load_encoder(DEFAULT_ENCODER).encode(TEXTS)
    got = load_encoder(DEFAULT_ENCODER, backend=Backend.ONNX).encode(TEXTS)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_sentence_transformers_onnx_backend_reads_the_export(
    distilled_onnx: Path, torch_model: Any
) -> None:
    """sentence-transformers' own backend="onnx" (through optimum-onnx) on the same files,
    where an optimum-onnx that works with the installed transformers is present."""
    try:
        import optimum.onnxruntime  # noqa: F401
    except Exception as exc:  # absent, or built for another transformers
        pytest.skip(f"sentence-transformers' ONNX backend needs optimum-onnx: {exc!r}")
    from sentence_transformers import SentenceTransformer

    expected = torch_model.encode(TEXTS)
    for name, check in (("onnx/model.onnx", 1e-5), (f"onnx/{int8_file(quantization_target())}", 0)):
        model = SentenceTransformer(
            str(distilled_onnx), backend="onnx", model_kwargs={"file_name": name}
        )
        got = model.encode(TEXTS)
        if check:
            np.testing.assert_allclose(got, expected, atol=check)
        else:
            assert cosines(got, expected).min() > 0.98
