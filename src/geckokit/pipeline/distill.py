"""``geckokit distill``: corpus + LLM -> a better embedding model, as one resumable run.

The stages of the Gecko recipe (:class:`~geckokit.runs.manifest.Stage`) run in order, each
into its own folder of ``out``::

    queries/   generate: FRet step 1 (LLM: task + query per passage)  sharded, resumable
               (none with ``queries_file`` alone: the user's queries take its place)
    mine/      mine: FRet step 2 (neighbours, LLM QL + RC, fusion)    sharded, resumable
    mix/       mix: FRet + the human-labelled sets, unified format
    train/     train: optional pre-finetuning, then contrastive + Matryoshka fine-tuning
    eval/      eval: base and distilled model on the held-out benchmarks
    report.html

The stages themselves are in :mod:`geckokit.pipeline.stages`; :mod:`geckokit.pipeline.runner`
runs them and decides what a rerun does: a finished stage is not run again, the sharded
stages skip their finished shards, so rerunning the same command after a stop continues
where it stopped. The effective configuration is saved as ``config.json``; a rerun with
other settings is refused once a stage they affect has started, rather than mixing two runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geckokit.pipeline.config import (
    QUERIES_SHA256,
    DistillConfig,
    MixSources,
    load_config,
    resolve_defaults,
)
from geckokit.pipeline.runner import CONFIG_FILE, Action, Step
from geckokit.runs.manifest import RunManifest, Stage

if TYPE_CHECKING:
    from geckokit.encoder import EncoderRef
    from geckokit.llm.base import LLM

__all__ = [
    "CONFIG_FILE",
    "LOG_FILE",
    "QUERIES_SHA256",
    "DistillConfig",
    "MixSources",
    "Stage",
    "distill",
    "load_config",
    "resolve_defaults",
    "run_distill",
]

#: The run folder's log: what the stages and the libraries under them said (the CLI
#: writes it; the terminal shows one line per stage unless asked for more).
LOG_FILE = "distill.log"


def run_distill(
    config: DistillConfig,
    out: str | Path,
    *,
    until: Stage | str = Stage.REPORT,
    llm: LLM | None = None,
    encoder: EncoderRef | None = None,
    on_estimate: Callable[[dict[str, Any]], None] | None = None,
    on_stage: Callable[[Step, Action], None] | None = None,
    show_progress: bool = True,
) -> RunManifest:
    """Run (or resume) the whole pipeline into ``out`` up to and including ``until`` and
    return the run manifest. ``llm`` overrides loading ``config.llm``, ``encoder`` loading
    the initial encoder ``config.encoder`` (it must carry that name); tests pass loaded
    models. ``on_estimate`` receives the cost estimate before any LLM work, ``on_stage``
    each stage as it starts or is skipped. While it runs, another process that opens
    ``out`` fails with :class:`~geckokit.runs.folder.RunLockedError`; settings that differ
    from the run's in a way that would mix two runs raise
    :class:`~geckokit.runs.folder.RunMismatchError` before any work."""
    from geckokit.fret.prompts import load_generate_prompt
    from geckokit.fret.user_queries import read_user_queries
    from geckokit.pipeline.config import saved_settings, setting_defaults
    from geckokit.pipeline.runner import run_stages
    from geckokit.pipeline.stages import STEPS, DistillRun, llm_preparation

    config = resolve_defaults(config)
    if encoder is not None and encoder.name != config.encoder:
        raise ValueError(
            f"the encoder passed is named {encoder.name!r} but the settings' initial encoder "
            f"is {config.encoder!r}; set encoder = {encoder.name!r} in the settings, or pass "
            "the encoder they name"
        )
    prompt = load_generate_prompt(config.prompt)  # a bad template fails before any work
    until = Stage.parse(until)
    user = None  # a bad queries file fails before any work too
    if config.queries_file is not None:
        user = read_user_queries(config.queries_file, task=config.queries_task)
    out = Path(out)
    run = DistillRun(
        config, out, prompt, user, llm=llm, show_progress=show_progress, encoder=encoder
    )
    return run_stages(
        [step(run) for step in STEPS],
        out,
        until=until,
        settings=saved_settings(config, queries_sha256=None if user is None else user.sha256),
        defaults=setting_defaults(),
        prepare=llm_preparation(run, until, on_estimate),
        on_stage=on_stage,
    )


def distill(
    config: DistillConfig,
    out: str | Path,
    *,
    until: Stage | str = Stage.REPORT,
    llm: LLM | None = None,
    encoder: EncoderRef | None = None,
    on_estimate: Callable[[dict[str, Any]], None] | None = None,
    show_progress: bool = True,
    on_stage: Callable[[Step, Action], None] | None = None,
) -> dict[str, Any]:
    """:func:`run_distill`, returning the run manifest as ``manifest.json`` holds it."""
    return run_distill(
        config,
        out,
        until=until,
        llm=llm,
        encoder=encoder,
        on_estimate=on_estimate,
        on_stage=on_stage,
        show_progress=show_progress,
    ).dump()
