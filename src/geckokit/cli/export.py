"""``geckokit export``: an ONNX copy of an encoder inside its model folder."""

from __future__ import annotations

import click

from geckokit.export import ExportFormat, Quantization
from geckokit.registry import DEFAULT_ENCODER


@click.command()
@click.option(
    "--model",
    default=DEFAULT_ENCODER,
    show_default=True,
    help="A sentence-transformers model folder (e.g. a `geckokit train` OUT/model) or a "
    "registry encoder; the ONNX files are written into its onnx/ subfolder.",
)
@click.option(
    "--format",
    "format_",
    type=click.Choice([f.value for f in ExportFormat]),
    default=ExportFormat.ONNX.value,
    show_default=True,
    help="What to write.",
)
@click.option(
    "--quantize",
    type=click.Choice([q.value for q in Quantization]),
    default=None,
    help="Also write a copy quantised dynamically to int8 for this CPU "
    "(onnx/model_qint8_avx512_vnni.onnx on AVX512-VNNI; default: float32 only).",
)
def export(model: str, format_: str, quantize: str | None) -> None:
    """Write an ONNX copy of an encoder into its model folder, where `geckokit serve
    --backend onnx` (and sentence-transformers' backend="onnx") reads it: onnx/model.onnx,
    and with --quantize int8 an int8 copy beside it. Each file is checked against torch on a
    small batch before it is moved into place.
    """
    from geckokit.export import export as run_export

    quant = Quantization.parse(quantize) if quantize else None
    files = run_export(model, format=ExportFormat.parse(format_), quantize=quant)
    for file in files:
        click.echo(f"wrote {file} ({file.stat().st_size / 1e6:.1f} MB)")
    last = files[-1]
    pick = f" --onnx-file {last.parent.name}/{last.name}" if len(files) > 1 else ""
    click.echo(f"serve it with: geckokit serve --model {model} --backend onnx{pick}")
