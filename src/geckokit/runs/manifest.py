"""The stages of a run and the manifests they write, as typed models.

:class:`Stage` names the stages of ``geckokit distill`` once, in pipeline order, with the
folder each writes in a run folder; the CLI's ``--until``, the report and the docs take
them from here.

Two kinds of manifest:

- the run's own ``manifest.json`` (:class:`RunManifest`): its status and, per stage, one
  entry (:class:`StageEntry` and its subclasses) with the stage's time over every sitting and
  what it produced;
- each stage folder's ``manifest.json`` (:class:`GenerateManifest`, :class:`MineManifest`,
  :class:`MixManifest`, :class:`TrainManifest`, :class:`EvalManifest`): written by the stage
  itself, read here as far as the run and the report use them (other keys are kept).

Models round-trip: :meth:`RunManifest.dump` writes back the keys that were read or set, so
a manifest read and written again is unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from geckokit.io import MANIFEST, DamagedFileError, read_json
from geckokit.types import ClosedSet

log = logging.getLogger(__name__)


class Stage(ClosedSet):
    """The stages of a distill run, in pipeline order."""

    GENERATE = "generate"
    MINE = "mine"
    MIX = "mix"
    TRAIN = "train"
    EVAL = "eval"
    REPORT = "report"

    @property
    def folder(self) -> str:
        """Where the stage writes in a run folder (the report is a file)."""
        return _FOLDERS[self]


_FOLDERS = {
    Stage.GENERATE: "queries",
    Stage.MINE: "mine",
    Stage.MIX: "mix",
    Stage.TRAIN: "train",
    Stage.EVAL: "eval",
    Stage.REPORT: "report.html",
}


class _Record(BaseModel):
    """A manifest part we read and write: unknown keys are kept, and dumping writes back
    the keys that were read or set (no defaults added)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


class LLMUsage(_Record):
    """What one sitting of a stage cost the LLM (a stage manifest's ``llm_this_run``)."""

    prompt_tokens_evaluated: int = 0
    prompt_tokens_cached: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


class Spread(_Record):
    """One score's spread over the mined candidates."""

    mean: float | None = None
    stdev: float | None = None
    mean_range_per_query: float | None = None


class GenerateSummary(_Record):
    """FRet step 1's summary (:func:`geckokit.fret.generate_run.summarize`)."""

    passages: int | None = None
    queries: int | None = None
    task_types: dict[str, int] = Field(default_factory=dict)
    mean_query_words: float | None = None
    reject_rate: float | None = None
    reject_rate_by_reason: dict[str, float] = Field(default_factory=dict)
    llm_seconds: float | None = None


class MineSummary(_Record):
    """FRet step 2's summary (:func:`geckokit.fret.mine_run.summarize`). ``relabel_rate``
    and the seed's rank are None without generated queries; ``solved_dropped`` is set only
    with ``drop_solved``; ``llm_seconds`` is None for shards written before it was timed."""

    examples: int | None = None
    generated_queries: int | None = None
    user_queries: int | None = None
    relabel_rate: float | None = None
    seed_rank_mean: float | None = None
    seed_at_rank_1: float | None = None
    positive_first_for_encoder: float | None = None
    solved_dropped: int | None = None
    ql: Spread | None = None
    rc: Spread | None = None
    encoder: Spread | None = None
    llm_seconds: float | None = None


class SearchIndex(_Record):
    """The index that searched mine's candidates (:class:`geckokit.retrieval.ivf.IndexRecord`):
    ``kind`` flat, hnsw or ivf-sq8; for ivf-sq8 its lists, ``nprobe``, file, whether that
    sitting built it, and ``recall`` of its top ``recall_k`` against exact search on
    ``recall_queries`` sampled queries. None elsewhere."""

    kind: str | None = None
    passages: int | None = None
    nlist: int | None = None
    nprobe: int | None = None
    path: str | None = None
    built: bool | None = None
    build_seconds: float | None = None
    recall: float | None = None
    recall_k: int | None = None
    recall_queries: int | None = None


class BeforeAfter(_Record):
    """One full-width retrieval row of distill's evaluation: base or distilled model."""

    benchmark: str
    model: str
    ndcg_at_10: float = Field(alias="ndcg@10")
    recall_at_10: float = Field(alias="recall@10")


class StageEntry(_Record):
    """A stage's entry in the run manifest: its time over every sitting. ``status`` is
    ``running`` while it runs (or when its process was killed), ``stopped`` after an error
    or Ctrl-C, and absent once it finished."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = 0.0
    sittings: int = 1
    status: Literal["running", "stopped"] | None = None
    #: rebuilt from the stage's folder after the run manifest was lost: what the stage
    #: produced is known, its time and sittings before then are not (``seconds`` counts
    #: only the sittings since)
    recovered: bool | None = None


class GenerateEntry(StageEntry):
    summary: GenerateSummary | None = None
    llm_this_run: LLMUsage | None = None


class MineEntry(StageEntry):
    summary: MineSummary | None = None
    llm_this_run: LLMUsage | None = None


class MixEntry(StageEntry):
    rows: int | None = None
    sources: dict[str, int] | None = None


class TrainEntry(StageEntry):
    steps: int | None = None
    loss: list[float] | None = Field(None, description="first and last logged loss")


class EvalEntry(StageEntry):
    results: list[BeforeAfter] | None = None


class ReportEntry(StageEntry):
    pass


#: The entry type of each stage.
ENTRY_TYPES: dict[Stage, type[StageEntry]] = {
    Stage.GENERATE: GenerateEntry,
    Stage.MINE: MineEntry,
    Stage.MIX: MixEntry,
    Stage.TRAIN: TrainEntry,
    Stage.EVAL: EvalEntry,
    Stage.REPORT: ReportEntry,
}


class StageEntries(_Record):
    """The run manifest's ``stages``: one entry per stage that has run, in pipeline order."""

    model_config = ConfigDict(extra="forbid")

    generate: GenerateEntry | None = None
    mine: MineEntry | None = None
    mix: MixEntry | None = None
    train: TrainEntry | None = None
    eval: EvalEntry | None = None
    report: ReportEntry | None = None

    def get(self, stage: Stage) -> StageEntry | None:
        entry: StageEntry | None = getattr(self, stage.value)
        return entry

    def put(self, stage: Stage, entry: StageEntry) -> None:
        setattr(self, stage.value, entry)

    def items(self) -> list[tuple[Stage, StageEntry]]:
        """The entries there are, in pipeline order."""
        return [(s, e) for s in Stage if (e := self.get(s)) is not None]


class RunManifest(_Record):
    """A distill run's ``manifest.json``. ``status``: ``running``, ``finished``, ``stopped
    after STAGE`` (``--until``) or ``stopped during STAGE`` (an error or Ctrl-C)."""

    model_config = ConfigDict(extra="forbid")

    stage: Literal["distill"] = "distill"
    status: str = "running"
    out: str | None = None
    stages: StageEntries = Field(default_factory=StageEntries)
    estimate: dict[str, Any] | None = Field(
        None, description="the LLM cost estimate of the last sitting with LLM work left"
    )
    model: str | None = None
    report: str | None = None
    environment: dict[str, Any] | None = None

    #: what went wrong with the record when it was read (lost, damaged, restored from its
    #: copy): shown at the end of the run, never written
    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[str]:
        return self._notes

    def model_post_init(self, context: Any) -> None:
        # always written, defaults included
        self.__pydantic_fields_set__.update({"stage", "status", "stages"})

    @classmethod
    def read(cls, out: Path) -> RunManifest | None:
        """The manifest of the run in ``out`` (None: none yet, or lost: see
        :meth:`read_noting`); one this version cannot read raises
        :class:`~geckokit.runs.folder.RunMismatchError`."""
        return cls.read_noting(out)[0]

    @classmethod
    def read_noting(cls, out: Path) -> tuple[RunManifest | None, str | None]:
        """:meth:`read`, and what went wrong reading it: ``manifest.json`` missing or damaged
        (set aside as ``manifest.json.damaged``) is read from its copy
        (``.manifest.json.bak``: :func:`~geckokit.runs.folder.read_record`), and the note says
        so; with neither, the manifest is None and the note says the history is lost."""
        from geckokit.runs.folder import RunMismatchError, read_record

        data, note = read_record(out / MANIFEST)
        if data is None:
            return None, note
        try:
            manifest = cls.model_validate(data)
        except ValidationError as exc:
            raise RunMismatchError(
                f"{out / MANIFEST} is not a distill run manifest this geckokit reads "
                f"({exc.errors()[0]['msg']} at {'.'.join(map(str, exc.errors()[0]['loc']))}); "
                "it was written by another version or another command: use another --out "
                "folder, or delete this one to start afresh"
            ) from None
        if note is not None:
            manifest.notes.append(note)
        return manifest, note

    def write(self, path: Path) -> None:
        """Write to ``path``, and its copy beside it (:func:`~geckokit.runs.folder.write_record`)."""
        from geckokit.runs.folder import write_record

        write_record(self.dump(), path)


# -- the stage folders' own manifests, as far as the run and the report read them


class StageManifest(_Record):
    """A stage folder's ``manifest.json``. ``status`` is ``finished`` unless the stage says
    otherwise (``partial``, ``running``): mix, train and eval write theirs once done."""

    stage: str | None = None
    status: str = "finished"
    seconds: float | None = None
    environment: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status == "finished"


class GenerateManifest(StageManifest):
    counts: dict[str, int] = Field(default_factory=dict)
    summary: GenerateSummary = Field(default_factory=GenerateSummary)
    shard_size: int | None = None
    llm_this_run: LLMUsage | None = None


class MineManifest(StageManifest):
    counts: dict[str, int] = Field(default_factory=dict)
    summary: MineSummary = Field(default_factory=MineSummary)
    #: the settings that chose positive and negatives from the scores (None: written
    #: before they were recorded apart)
    selection: dict[str, Any] | None = None
    shard_size: int | None = None
    llm_this_run: LLMUsage | None = None
    #: the index that searched the candidates (None: recorded only since it was kept)
    index: SearchIndex | None = None


class MixManifest(StageManifest):
    rows: int | None = None
    sources: dict[str, int] = Field(default_factory=dict)
    weights: dict[str, float] | None = None


class LossPoint(_Record):
    step: float
    loss: float


class TrainManifest(StageManifest):
    config: dict[str, Any] = Field(default_factory=dict)
    steps: int | None = None
    matryoshka_dims: list[int] = Field(default_factory=list)
    loss_curve: list[LossPoint] = Field(default_factory=list)


class EvalTask(_Record):
    name: str | None = None
    kind: str | None = None
    split: str | None = None
    task_string: str | None = None
    source: str | None = None


class EvalModel(_Record):
    name: str | None = None
    revision: str | None = None
    width: int | None = None
    dims: list[int] = Field(default_factory=list)
    formats: list[str] = Field(default_factory=list)


class EvalScore(_Record):
    """One result row of ``geckokit eval``: a model in a format at a dim on a task."""

    model: str
    format: str
    dim: int
    task: str
    kind: str | None = None
    metric: str | None = None
    score: float
    recall_at_10: float | None = None


class EvalManifest(StageManifest):
    models: list[EvalModel] = Field(default_factory=list)
    tasks: list[EvalTask] = Field(default_factory=list)
    results: list[EvalScore] = Field(default_factory=list)


#: The folder manifest type of each stage that writes one.
MANIFEST_TYPES: dict[Stage, type[StageManifest]] = {
    Stage.GENERATE: GenerateManifest,
    Stage.MINE: MineManifest,
    Stage.MIX: MixManifest,
    Stage.TRAIN: TrainManifest,
    Stage.EVAL: EvalManifest,
}


def _validate(kind: type[StageManifest], data: dict[str, Any], where: Path | str) -> StageManifest:
    from geckokit.runs.folder import RunMismatchError

    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise RunMismatchError(
            f"{where}: not a {kind.__name__} this geckokit reads ({error['msg']} at "
            f"{'.'.join(map(str, error['loc']))}); it was written by another version: "
            "delete its folder to run the stage again"
        ) from None


def parse_stage_manifest(data: dict[str, Any], where: Path | str = "") -> StageManifest | None:
    """``data`` (a stage folder's manifest, read from ``where``) as its stage's model; None
    when its ``stage`` is none of :data:`MANIFEST_TYPES` (``prefinetune``, a checkpoint's)."""
    try:
        stage = Stage(data.get("stage"))
    except ValueError:
        return None
    kind = MANIFEST_TYPES.get(stage)
    return None if kind is None else _validate(kind, data, where)


def read_stage_manifest(folder: Path, stage: Stage) -> StageManifest | None:
    """The manifest in ``folder``, read as ``stage``'s (None: none, or a damaged one: the
    stage runs again, and its shards are checked by their own records)."""
    try:
        data = read_json(folder / MANIFEST)
    except DamagedFileError as exc:
        log.warning("%s; %s is taken as not finished", exc, folder)
        return None
    kind = MANIFEST_TYPES.get(stage, StageManifest)
    return _validate(kind, data, folder / MANIFEST) if data else None


def finished(folder: Path, stage: Stage) -> bool:
    """Whether ``folder``'s manifest says ``stage`` finished there and every Parquet file
    of its output reads back whole (:func:`damaged_tables`): a stage whose files were cut
    short or garbled since is not finished, and runs again to make them."""
    manifest = read_stage_manifest(folder, stage)
    if manifest is None or not manifest.finished:
        return False
    damaged = damaged_tables(folder)
    for path in damaged:
        log.warning("%s is damaged: %s runs again to make it", path, stage.value)
    return not damaged


def damaged_tables(folder: Path) -> list[Path]:
    """The Parquet files under ``folder`` that do not read back whole (page checksums
    verified, and a shard's rows and stamp against the stamp's seals)."""
    from geckokit.runs.stamps import read_stamped

    damaged = []
    for path in sorted(folder.rglob("*.parquet")):
        try:
            read_stamped(path)
        except DamagedFileError:
            damaged.append(path)
    return damaged
