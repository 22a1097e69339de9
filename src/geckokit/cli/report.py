"""``geckokit report``: one self-contained HTML page for an eval folder or a whole run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML file to write (default: RUN_DIR/report.html).",
)
def report(run_dir: Path, out: Path | None) -> None:
    """Write an HTML report (inline SVG plots, opens offline) of RUN_DIR: a `geckokit eval`
    folder, or a run folder whose stage subfolders (queries/, mine/, mix/, train/, eval/) hold
    manifest.json files. Shows scores per task and model, score against Matryoshka dimension,
    FRet statistics and the training loss curve, where the run has them."""
    from geckokit.evaluate.report import write_report

    path = write_report(run_dir, out=out)
    click.echo(f"report: {path}")
