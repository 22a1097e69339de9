"""The settings of ``geckokit distill``: :class:`DistillConfig` (the flags and the config
file's keys), how a config file and flags combine, and what the run folder keeps of them
(``config.json``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from geckokit.fret.generate import GenerateConfig
from geckokit.fret.mine_run import MineConfig, check_seedless
from geckokit.registry import DEFAULT_ENCODER
from geckokit.runs.executor import EXECUTION_SETTINGS, ExecutorSettings
from geckokit.tasks import DEFAULT_QUERY_TASK
from geckokit.train.trainer import TrainConfig

log = logging.getLogger(__name__)

#: The run folder's record of its settings.
CONFIG_FILE = "config.json"
#: Beside the settings, config.json keeps the queries file's hash: its content changed under
#: the same path is a change like a setting's.
QUERIES_SHA256 = "queries_file_sha256"


class MixSources(BaseModel):
    """Human-labelled sets mixed with FRet (paths as ``geckokit mix`` takes them)."""

    model_config = ConfigDict(extra="forbid")

    nli: list[str] = Field(default_factory=list)
    classification: list[str] = Field(
        default_factory=list, description="PATH or PATH:TASK per classification set"
    )
    sts: list[str] = Field(default_factory=list)
    qa: list[str] = Field(default_factory=list)
    pairs: list[str] = Field(default_factory=list, description="BEIR folders with train qrels")
    claims: list[str] = Field(
        default_factory=list, description="fact-checking JSONL (Climate-FEVER layout)"
    )
    weights: dict[str, float] | None = None
    sts_min_score: float = 4.0


class DistillConfig(ExecutorSettings):
    """Everything ``geckokit distill`` needs; a TOML/YAML config file holds the same keys
    (nested tables ``generate``, ``mine``, ``mix``, ``train``). The executor's settings
    (``executor``, ``ray_address``, ``workers``, ...) are top-level keys too; they say where
    the LLM stages run, not what they compute, so a run folder does not record them."""

    model_config = ConfigDict(extra="forbid")

    corpus: str
    llm: str | None = Field(None, description="LLM (default: the registry's default)")
    base: str = Field(DEFAULT_ENCODER, description="encoder to distil into")
    encoder: str | None = Field(
        None, description="initial encoder that retrieves neighbours (default: base)"
    )
    limit: int | None = Field(None, ge=1, description="use the first N passages")
    sample: int | None = Field(
        None,
        ge=1,
        description="write queries for N passages drawn at random (seeded); neighbours are "
        "still retrieved from the whole corpus",
    )
    passage_tokens: int = Field(512, ge=32, description="split longer documents")
    prompt: str | None = Field(
        None,
        description="FRet step 1 prompt template, a TOML file like the bundled generate_v1.toml, "
        "or a bundled one by name: default (that one), science-claims",
    )
    queries_file: str | None = Field(
        None,
        description="your own queries (a query log without labels: JSONL, CSV/TSV or one "
        "per line), mined in place of generated ones; no queries/ is written unless "
        "also_generate",
    )
    queries_task: str = Field(
        DEFAULT_QUERY_TASK, min_length=1, description="the task of the queries_file queries"
    )
    also_generate: bool = Field(
        False,
        description="with queries_file: also write queries for the corpus (FRet step 1) and "
        "mine both together",
    )
    rerank_prompt: str = "binary"
    prefinetune: str | None = Field(None, description="text pairs for pre-finetuning")
    eval: list[str] = Field(default_factory=list, description="BEIR folders to evaluate on")
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    mine: MineConfig = Field(default_factory=MineConfig)
    mix: MixSources = Field(default_factory=MixSources)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @property
    def execution(self) -> ExecutorSettings:
        """Where the sharded LLM stages run (the executor's settings alone)."""
        return ExecutorSettings.model_construct(**{k: getattr(self, k) for k in EXECUTION_SETTINGS})

    @property
    def generates(self) -> bool:
        """Whether FRet step 1 writes queries: always without a queries file, and beside
        one with ``also_generate``."""
        return self.queries_file is None or self.also_generate

    @model_validator(mode="after")
    def _seedless(self) -> DistillConfig:
        check_seedless(self.mine, self.queries_file, generated=self.generates)
        if self.queries_file is None and {"also_generate", "queries_task"} & self.model_fields_set:
            log.warning("also_generate and queries_task apply to a queries_file; there is none")
        return self


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> DistillConfig:
    """The config in ``path`` (TOML or YAML; None: none) with ``overrides`` (flags; dotted
    keys such as ``mine.top_n`` reach into the nested tables) applied on top."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text())
        elif path.suffix in {".yaml", ".yml"}:
            from geckokit._deps import require

            yaml = require("yaml", extra="all", purpose="YAML config files")
            data = yaml.safe_load(path.read_text()) or {}
        else:
            raise ValueError(f"{path}: a config file must be .toml, .yaml or .yml")
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    if "base" in data and "base" not in data.get("train", {}):
        data.setdefault("train", {})["base"] = data["base"]
    return DistillConfig.model_validate(data)


def resolve_defaults(config: DistillConfig) -> DistillConfig:
    """Fill what depends on other settings: the fusion of the chosen LLM (registry) when
    not set, the initial encoder (the base) and the training base."""
    from geckokit.fret.fusion import Fusion
    from geckokit.registry import DEFAULT_LLM, default_fusion

    config = config.model_copy(deep=True)
    config.llm = config.llm or DEFAULT_LLM
    measured = default_fusion(config.llm)
    if "fusion" not in config.mine.model_fields_set and measured is not None:
        config.mine.fusion = Fusion.parse(measured)
    config.encoder = config.encoder or config.base
    config.train.base = config.base
    return config


def saved_settings(config: DistillConfig, *, queries_sha256: str | None) -> dict[str, Any]:
    """What ``config.json`` holds: every setting but the executor's (where the stages run
    does not change what they compute), and the queries file's hash."""
    settings = config.model_dump(mode="json", exclude=set(EXECUTION_SETTINGS))
    return {**settings, QUERIES_SHA256: queries_sha256}


def setting_defaults() -> dict[str, Any]:
    """Each top-level setting's default as it is saved (None where there is none: the
    corpus, the queries file's hash), for a config.json written before a setting existed."""
    defaults: dict[str, Any] = {QUERIES_SHA256: None}
    for key, field in DistillConfig.model_fields.items():
        if key in EXECUTION_SETTINGS:
            continue
        value = None if field.is_required() else field.get_default(call_default_factory=True)
        defaults[key] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return defaults
