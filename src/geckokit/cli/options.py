"""Options shared by several commands, so they read the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import BaseModel

from geckokit.cli.settings import setting_default, setting_option
from geckokit.fret.mine_run import MineConfig
from geckokit.pipeline.config import DistillConfig
from geckokit.registry import DEFAULT_ENCODER, DEFAULT_LLM, default_fusion

if TYPE_CHECKING:
    from geckokit.runs.manifest import MineSummary

F = TypeVar("F", bound=Callable[..., Any])

#: What FRet step 2's fusion is when no flag or config file sets it
#: (:func:`geckokit.pipeline.config.resolve_defaults`).
FUSION_DEFAULT = (
    f"the LLM's measured best ({default_fusion(DEFAULT_LLM)} for {DEFAULT_LLM}), else "
    f"{setting_default(MineConfig, 'fusion').value}"
)


llm_option = setting_option(
    DistillConfig,
    "llm",
    "--llm",
    "llm_spec",
    default_text=DEFAULT_LLM,
    help="Registry name, GGUF path or OpenAI-compatible URL such as http://host:8000/v1; "
    "several servers of one model as a comma-separated list of URLs or a file of them, one "
    "per line.",
)


def llm_timeout_option(model: type[BaseModel], *, inherit: bool = False) -> Any:
    """``--llm-timeout``: how long an LLM server has to answer (``llm_timeout`` of ``model``,
    an :class:`~geckokit.runs.executor.ExecutorSettings`)."""
    return setting_option(
        model,
        "llm_timeout",
        inherit=inherit,
        help="Seconds an LLM server (an --llm URL) has to answer one request before it is "
        "tried again, like a 5xx; after the last try the command stops, keeping its finished "
        "shards, and the same command resumes.",
    )


encoder_option = click.option(
    "--encoder",
    default=None,
    help=f"Registry name, sentence-transformers folder or hub id (default: {DEFAULT_ENCODER}).",
)


queries_file_option = setting_option(
    DistillConfig,
    "queries_file",
    "--queries-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your own queries (a query log without labels), mined like generated ones: JSONL "
    "with a `query` or `text` field (`_id`, `id` or `query_id` as the id), CSV/TSV with a "
    "`query` or `text` column, or plain text with one query per line. They have no seed "
    "passage: the LLM's top choice among each one's top N is its positive.",
)


queries_task_option = setting_option(
    DistillConfig,
    "queries_task",
    "--task",
    "task",
    inherit=True,
    help="The task of the --queries-file queries, as in `task: TASK | query: ...`.",
)


def _check_generate_prompt(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """Load the template once at parse time, so a bad one stops the command before any work."""
    if value is not None:
        from geckokit.fret.prompts import load_generate_prompt

        try:
            load_generate_prompt(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


generate_prompt_option = setting_option(
    DistillConfig,
    "prompt",
    callback=_check_generate_prompt,
    help="FRet step 1 prompt template: a TOML file, e.g. written for the corpus's domain "
    "(copy the bundled generate_v1.toml to start), or a bundled one by name: default "
    "(generate_v1.toml), science-claims (claims for scientific abstracts).",
)


def retriever_option(model: type[BaseModel], path: str, *, inherit: bool = False) -> Any:
    """``--retriever``: what proposes FRet step 2's candidates (``mine.retriever``)."""
    return setting_option(
        model,
        path,
        inherit=inherit,
        help="What proposes the N candidates of FRet step 2: the initial encoder (the "
        "paper), bm25 (lexical, as InPars; needs geckokit[bm25]) or hybrid (reciprocal rank "
        "fusion of the two rankings).",
    )


def solved_hint(summary: MineSummary) -> str:
    """A hint when half or more of a mine summary's examples have a positive the encoder
    already ranks first (on SciFact such examples trained MiniLM to no gain:
    docs/scifact.md), unless ``--drop-solved`` already left those out; else ""."""
    first = summary.positive_first_for_encoder
    if first is None or first < 0.5 or summary.solved_dropped is not None:
        return ""
    if summary.generated_queries == 0:  # the user's own queries: neither hint applies
        return ""
    return (
        "Such examples teach the encoder little: --drop-solved (geckokit mine or distill) "
        "keeps only the others, and a prompt written for the corpus's domain (--prompt FILE, "
        "or the bundled science-claims for scientific abstracts) writes harder queries."
    )


def llm_usage_line(spent: dict[str, Any], label: str = "LLM this sitting") -> str:
    """One line for a stage manifest's ``llm_this_run`` (what a sitting cost the LLM)."""
    written = f", {spent['completion_tokens']:,} written" if spent.get("completion_tokens") else ""
    return (
        f"{label}: {spent['prompt_tokens_evaluated']:,} prompt tokens evaluated, "
        f"{spent['prompt_tokens_cached']:,} reused from cache{written}, {spent['seconds']:g} s"
    )


def index_line(index: dict[str, Any] | None) -> str | None:
    """One line for a mine manifest's ``index`` when an IVF-SQ8 index searched the
    candidates (None otherwise: exact search needs no word)."""
    if not index or index.get("kind") != "ivf-sq8":
        return None
    how = "built" if index.get("built") else "reused"
    return (
        f"IVF-SQ8 index of {index['passages']:,} passages ({index['nlist']} lists, nprobe "
        f"{index['nprobe']}, {how}): recall@{index['recall_k']} against exact search "
        f"{index['recall']:.3f} on {index['recall_queries']} queries"
    )


def distillation_options(
    model: type[BaseModel], prefix: str = "", *, inherit: bool = False
) -> Callable[[F], F]:
    """The score-distillation flags (``TrainConfig.objective`` ... ``distill_candidates``,
    with ``text_format``) of
    ``model``, whose training table is at ``prefix`` (``train.`` in a distill config).
    ``geckokit train`` gives them their defaults; ``geckokit distill`` leaves them None
    (``inherit``), so that its config file's value or the setting's default applies."""
    specs: list[tuple[str, str]] = [
        (
            "objective",
            "Training objective: contrastive (eq. 3 alone), kl (eq. 3 + the listwise KL "
            "divergence from the LLM's softmax over each FRet query's candidates to the "
            "encoder's, as in ART) or margin-mse (eq. 3 + the MSE between the encoder's and "
            "the LLM's positive-minus-candidate score margins, as in GPL). Distillation "
            "reuses the scores the mine stored: no LLM work.",
        ),
        (
            "distill_weight",
            "Weight of the kl / margin-mse term added to eq. 3.",
        ),
        (
            "teacher",
            "Which stored LLM score the encoder learns: ql (query likelihood, ART's teacher), "
            "rc (relevance classification) or fused (the fusion that chose the positive).",
        ),
        (
            "teacher_temperature",
            "The teacher's scores are divided by this (kl: before its softmax; margin-mse: "
            "its margins). The encoder's scores are cosine / the temperature of eq. 3.",
        ),
        (
            "text_format",
            "unified: train in Gecko's format (task and title prefixes) and save its prompts "
            "with the model; plain: strip the prefixes and save no prompts, so the model "
            "reads queries and passages as the base did.",
        ),
        (
            "distill_candidates",
            "Candidates per query in the distillation term: the positive, the hard negative "
            "and the rest drawn spread over the teacher's ranking. Each is one more passage "
            "embedded per FRet example and step.",
        ),
    ]

    def decorate(f: F) -> F:
        for name, text in reversed(specs):
            f = setting_option(model, prefix + name, inherit=inherit, help=text)(f)
        return f

    return decorate


def executor_options(model: type[BaseModel], *, inherit: bool = False) -> Callable[[F], F]:
    """``--executor``, ``--ray-address`` and ``--workers``: where the sharded LLM stages run,
    the :class:`~geckokit.runs.executor.ExecutorSettings` fields of ``model`` (that model
    itself for ``geckokit generate`` and ``mine``, which give them their defaults; a
    :class:`~geckokit.pipeline.config.DistillConfig` for ``geckokit distill``, which leaves
    them None with ``inherit``, so that its config file's value or the default applies)."""
    specs: list[tuple[str, str]] = [
        (
            "executor",
            "Where the LLM work runs: local (one loop in this process) or ray (a pool of Ray "
            "workers, each loading the LLM once and taking whole shards; needs "
            "geckokit[ray]). A run folder resumes with either.",
        ),
        (
            "ray_address",
            "The Ray cluster to join (HOST:PORT); unset: RAY_ADDRESS, else a local cluster "
            "started for the run.",
        ),
        ("workers", "Ray workers, with --executor ray."),
    ]

    def decorate(f: F) -> F:
        for name, text in reversed(specs):
            f = setting_option(model, name, inherit=inherit, help=text)(f)
        return f

    return decorate
