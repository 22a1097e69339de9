"""An encoder's transformer run by ONNX Runtime, inside its sentence-transformers model.

The ONNX copy of a model folder lies where sentence-transformers' ``backend="onnx"`` looks
for it: ``DIR/onnx/model.onnx`` (float32) and ``DIR/onnx/model_qint8_avx512_vnni.onnx``
and the like (dynamically quantised to int8), with optimum's input and output names
(``input_ids``, ``attention_mask``, ``token_type_ids`` -> ``last_hidden_state``). Written
by :mod:`geckokit.export`.

sentence-transformers runs such files through optimum-onnx, whose releases so far require
transformers < 4.58 while sentence-transformers 6 requires transformers 5; so geckokit runs
them itself: :func:`attach` puts an ONNX Runtime session in place of the transformers model
inside the model's ``Transformer`` module, which calls it the same way and reads the same
output. Tokenizing, pooling, normalising, prompts and truncation stay sentence-transformers'
own, so ``model.encode`` and the server's encode path run unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from geckokit._deps import require

#: The subfolder of a model folder that holds its ONNX files (sentence-transformers' layout).
ONNX_DIR = "onnx"
#: The float32 export's file name.
FP32_FILE = "model.onnx"
#: The transformer's inputs, in the order of the exported graph (those the tokenizer makes).
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
#: The exported graph's output: the last layer's token embeddings.
OUTPUT_NAME = "last_hidden_state"


def onnx_files(folder: str | os.PathLike[str]) -> list[str]:
    """The ONNX files of a model folder, as ``onnx/NAME.onnx`` paths, sorted."""
    root = Path(folder) / ONNX_DIR
    return sorted(f"{ONNX_DIR}/{p.name}" for p in root.glob("*.onnx")) if root.is_dir() else []


def onnx_path(
    folder: str | os.PathLike[str], file_name: str | None = None, *, model: str | None = None
) -> Path:
    """The ONNX file ``file_name`` of a model folder (None: ``model.onnx``), given as
    sentence-transformers' ``model_kwargs={"file_name": ...}`` takes it: ``onnx/NAME.onnx``
    or just ``NAME.onnx``. ``model`` is the name the folder was given by, for the error.

    Raises ValueError, naming the export command, when the folder has no such file."""
    name = file_name or FP32_FILE
    base = Path(folder)
    for candidate in (base / name, base / ONNX_DIR / name):
        if candidate.suffix == ".onnx" and candidate.is_file():
            return candidate
    given = model or str(folder)
    present = onnx_files(folder)
    has = f"it has {', '.join(present)}; pick one with --onnx-file" if present else "it has none"
    quantize = " --quantize int8" if "int8" in name else ""
    raise ValueError(
        f"{given} has no ONNX copy {name!r} ({has}). Make one with: "
        f"geckokit export --model {given} --format onnx{quantize}"
    )


def session_options(threads: int | None = None) -> Any:
    """ONNX Runtime session options: ``threads`` intra-op threads (None: one per core), and
    idle threads that sleep rather than spin when ``OMP_WAIT_POLICY`` is ``PASSIVE`` (as
    ``geckokit serve`` sets it for torch, so that the event loop keeps its core)."""
    ort = require("onnxruntime", extra="onnx", purpose="the ONNX backend")
    options = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def attach(model: Any, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
    """Run ``model``'s transformer (a ``SentenceTransformer`` whose first module is a
    ``Transformer``, on CPU) from the ONNX file ``path`` from now on; its torch weights are
    released. ``threads``: see :func:`session_options`."""
    ort = require("onnxruntime", extra="onnx", purpose="the ONNX backend")
    from sentence_transformers.base.modules.transformer import Transformer

    first = model[0]
    if not isinstance(first, Transformer):
        raise ValueError(
            f"the ONNX backend runs models whose first module is a sentence-transformers "
            f"Transformer; this one starts with {type(first).__name__}"
        )
    session = ort.InferenceSession(
        str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )
    config = first.model.config
    # `model` held a torch module; it now holds a plain object, as it does when
    # sentence-transformers loads optimum's ONNX model there itself.
    del first.model
    first.model = OnnxTransformerModel(session, config)


class OnnxTransformerModel:
    """What a ``Transformer`` module calls in place of its transformers model: the same
    keyword call (``input_ids``, ``attention_mask``, ``token_type_ids``; anything else is
    ignored), the same output (``last_hidden_state``, a float32 CPU tensor of shape
    (batch, tokens, width)), computed by the ONNX Runtime ``session``. ``config`` is the
    transformers config, which sentence-transformers reads (the embedding width)."""

    def __init__(self, session: Any, config: Any) -> None:
        self.session = session
        self.config = config
        self.input_names = [i.name for i in session.get_inputs()]
        self._torch = require("torch", extra="onnx", purpose="the ONNX backend")
        self.device = self._torch.device("cpu")

    def forward(
        self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None, **_: Any
    ) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        given = {"input_ids": input_ids, "attention_mask": attention_mask}
        given["token_type_ids"] = token_type_ids
        if token_type_ids is None:
            given["token_type_ids"] = self._torch.zeros_like(input_ids)
        if attention_mask is None:
            given["attention_mask"] = self._torch.ones_like(input_ids)
        feed = {name: given[name].detach().cpu().numpy() for name in self.input_names}
        (hidden,) = self.session.run([OUTPUT_NAME], feed)  # (batch, tokens, width)
        return BaseModelOutput(last_hidden_state=self._torch.from_numpy(hidden))

    __call__ = forward
