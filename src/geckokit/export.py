"""``geckokit export``: an ONNX copy of an encoder, written inside its model folder.

:func:`export` (by name) sits on :func:`export_onnx` (a loaded model and a folder). The
transformer is traced with ``torch.onnx.export`` into ``onnx/model.onnx`` with optimum's
input and output names and dynamic batch and sequence axes, the layout sentence-transformers'
``backend="onnx"`` reads; ``quantize`` int8 adds a copy quantised dynamically by ONNX
Runtime (int8 weights, activations quantised per call: no calibration data), made with the
settings of sentence-transformers' ``export_dynamic_quantized_onnx_model`` for this CPU and
named as it names them (``onnx/model_qint8_avx512_vnni.onnx`` on a CPU with AVX512-VNNI).
Tokenizer, pooling and normalisation stay in the folder as they are.

Both files are checked against torch on a small batch before they are moved into place, so a
failed or wrong export never passes for a model.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from geckokit._deps import require
from geckokit.onnx_backend import FP32_FILE, INPUT_NAMES, ONNX_DIR, OUTPUT_NAME
from geckokit.types import ClosedSet

log = logging.getLogger(__name__)

#: The opset of the exported graph (optimum's default for BERT-like encoders).
OPSET = 14
#: The largest difference between the float32 graph's token embeddings and torch's that
#: passes the check (the two differ by float rounding, about 1e-5 for MiniLM).
FP32_TOLERANCE = 1e-3
#: The smallest cosine similarity between int8 and torch sentence embeddings that passes.
INT8_MIN_COSINE = 0.95

_CHECK_TEXTS = [
    "How do honey bees tell each other where the flowers are?",
    "Honey bees communicate the direction and distance of food through the waggle dance.",
]


class ExportFormat(ClosedSet):
    """What ``geckokit export`` writes."""

    ONNX = "onnx"


class Quantization(ClosedSet):
    """How an export is quantised (none: float32 only)."""

    INT8 = "int8"


def quantization_target() -> str:
    """The CPU that an int8 copy is made for, by sentence-transformers' names: ``arm64``,
    ``avx512_vnni``, ``avx512`` or ``avx2``; each has its own settings and file name."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def int8_file(target: str) -> str:
    """The int8 file's name for ``target`` (:func:`quantization_target`), as
    sentence-transformers names it: signed int8 weights where the CPU multiplies them
    without overflow (ARM, AVX512-VNNI), unsigned where it does not (AVX2, AVX-512)."""
    weights = "qint8" if target in ("arm64", "avx512_vnni") else "quint8"
    return f"model_{weights}_{target}.onnx"


def check_model_folder(folder: str | os.PathLike[str], *, name: str | None = None) -> Path:
    """``folder`` as a sentence-transformers model folder (``modules.json`` and a
    transformer config), or ValueError saying what it is instead."""
    path = Path(folder)
    given = name or str(folder)
    if not path.is_dir():
        raise ValueError(f"{given} is not a folder; export takes a model folder or registry name")
    if not (path / "modules.json").is_file() or not (path / "config.json").is_file():
        raise ValueError(
            f"{given} is not a sentence-transformers model folder (no modules.json and "
            "config.json); give the folder `geckokit train` wrote (OUT/model) or a registry name"
        )
    return path


def export(
    name: str,
    *,
    format: ExportFormat = ExportFormat.ONNX,
    quantize: Quantization | None = None,
) -> list[Path]:
    """Write the ONNX copy of the encoder ``name`` (a model folder or a registry name) into
    its folder; see :func:`export_onnx`. Returns the files written."""
    from geckokit.encoder import load_encoder
    from geckokit.registry import ModelKind, resolve

    if format is not ExportFormat.ONNX:
        raise ValueError(f"unknown format {format!r}; valid: onnx")
    require("onnxruntime", extra="onnx", purpose="ONNX export")
    require("onnx", extra="onnx", purpose="ONNX export")
    folder = check_model_folder(resolve(name, kind=ModelKind.ENCODER), name=name)
    if not os.access(folder, os.W_OK):
        raise ValueError(
            f"{folder} is not writable; copy the model folder somewhere writable and export that"
        )
    model = load_encoder(str(folder), device="cpu")
    return export_onnx(model, folder, quantize=quantize)


def export_onnx(model: Any, folder: Path, *, quantize: Quantization | None = None) -> list[Path]:
    """Export ``model`` (a ``SentenceTransformer`` whose first module is a transformer,
    loaded from ``folder``) to ``folder/onnx/model.onnx``, and with ``quantize`` int8 also
    to ``folder/onnx/model_<q>_<cpu>.onnx`` (:func:`int8_file`). Files of an earlier export
    are replaced. Returns the files written."""
    torch = require("torch", extra="onnx", purpose="ONNX export")
    from sentence_transformers.base.modules.transformer import Transformer

    first = model[0]
    if not isinstance(first, Transformer):
        raise ValueError(f"only a transformer can be exported; {folder} starts with {first}")
    target = folder / ONNX_DIR
    target.mkdir(exist_ok=True)
    names = [n for n in INPUT_NAMES if n in model.tokenizer.model_input_names]
    features = model.tokenizer(_CHECK_TEXTS, padding=True, return_tensors="pt")
    inputs = {n: features[n] for n in names}
    with torch.inference_mode():
        reference = first.model(**inputs).last_hidden_state.numpy()  # (2, tokens, width)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(dir=target, prefix=".export-") as tmp:
        fp32 = Path(tmp) / FP32_FILE
        _trace(first.model, names, inputs, fp32)
        diff = float(np.abs(_run(fp32, inputs) - reference).max())
        if diff > FP32_TOLERANCE:
            raise RuntimeError(f"the ONNX export differs from torch by {diff:.1e}; not saved")
        log.info("exported %s: largest difference from torch %.1e", fp32.name, diff)
        files = [fp32]
        if quantize is Quantization.INT8:
            cpu = quantization_target()
            int8 = Path(tmp) / int8_file(cpu)
            _quantize(fp32, int8, cpu)
            cosine = _min_cosine(_run(int8, inputs), reference, inputs["attention_mask"].numpy())
            if cosine < INT8_MIN_COSINE:
                raise RuntimeError(f"the int8 copy's cosine to torch is {cosine:.3f}; not saved")
            log.info("quantised %s for %s: cosine to torch >= %.4f", int8.name, cpu, cosine)
            files.append(int8)
        for file in files:
            os.replace(file, target / file.name)
            written.append(target / file.name)
    return written


def _trace(transformer: Any, names: list[str], inputs: dict[str, Any], out: Path) -> None:
    """``torch.onnx.export`` of the transformer's token embeddings for ``names`` inputs."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *args: Any) -> Any:
            return self.transformer(**dict(zip(names, args, strict=True))).last_hidden_state

    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in [*names, OUTPUT_NAME]}
    with _quiet():
        torch.onnx.export(
            Graph().eval(),
            tuple(inputs[n] for n in names),
            str(out),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: needs no onnxscript
        )


def _quantize(source: Path, out: Path, cpu: str) -> None:
    """ONNX Runtime's dynamic quantisation with the settings of optimum's
    ``AutoQuantizationConfig.<cpu>(is_static=False)``: weights per channel and symmetric,
    activations unsigned and asymmetric, full range."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    signed = cpu in ("arm64", "avx512_vnni")
    with _quiet():
        quantize_dynamic(
            str(source),
            str(out),
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8 if signed else QuantType.QUInt8,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )


def _run(path: Path, inputs: dict[str, Any]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {n: t.numpy() for n, t in inputs.items()}
    out: np.ndarray = session.run([OUTPUT_NAME], feed)[0]  # (batch, tokens, width)
    return out


def _min_cosine(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """The smallest cosine between the mean-pooled rows of ``a`` and ``b`` (batch, tokens,
    width), over the tokens ``mask`` (batch, tokens) keeps."""
    weights = mask[..., None].astype(np.float32)  # (batch, tokens, 1)
    pa = (a * weights).sum(1) / weights.sum(1)  # (batch, width)
    pb = (b * weights).sum(1) / weights.sum(1)  # (batch, width)
    cos = (pa * pb).sum(1) / (np.linalg.norm(pa, axis=1) * np.linalg.norm(pb, axis=1))
    return float(cos.min())


@contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' advice (TracerWarnings; ONNX Runtime's root-logger line suggesting
    pre-processing) goes to debug logging rather than to the console."""
    import warnings

    root = logging.getLogger()
    level = root.level
    if not log.isEnabledFor(logging.DEBUG):
        root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            if not log.isEnabledFor(logging.DEBUG):
                warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
