"""The six stages of ``geckokit distill`` as :class:`~geckokit.pipeline.runner.Step` objects,
each with its folder, the settings that identify its output and its ``run``; and what the
LLM stages need before any of them runs (the LLM, the cost estimate).

The stages share one :class:`DistillRun`: the settings, the run folder, the corpus (loaded
when a stage first needs it) and the LLM (loaded when a stage has LLM work left).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geckokit.fret.generate import DRIVING as GENERATE_DRIVING
from geckokit.fret.mine_run import DRIVING as MINE_DRIVING
from geckokit.fret.mine_run import SELECTION, MineConfig
from geckokit.pipeline.config import QUERIES_SHA256
from geckokit.pipeline.runner import Action, Step
from geckokit.pipeline.runner import first_stage as _first_stage
from geckokit.registry import DEFAULT_LLM
from geckokit.runs.executor import Executor
from geckokit.runs.folder import RunMismatchError
from geckokit.runs.manifest import (
    EvalManifest,
    GenerateManifest,
    MineManifest,
    MixManifest,
    RunManifest,
    Stage,
    TrainManifest,
    finished,
    read_stage_manifest,
)

if TYPE_CHECKING:
    from geckokit.corpus import Corpus
    from geckokit.encoder import EncoderRef
    from geckokit.fret.prompts import GeneratePrompt
    from geckokit.fret.user_queries import UserQueries
    from geckokit.llm.base import LLM
    from geckokit.pipeline.config import DistillConfig


@dataclasses.dataclass
class DistillRun:
    """What the stages of one distill sitting share. ``llm`` and ``encoder`` (the initial
    encoder) are loaded from the settings when first needed, unless given."""

    config: DistillConfig
    out: Path
    prompt: GeneratePrompt
    user: UserQueries | None = None
    llm: LLM | None = None
    show_progress: bool = True
    encoder: EncoderRef | None = None

    @cached_property
    def corpus(self) -> Corpus:
        from geckokit.corpus import load_corpus

        c = self.config
        return load_corpus(c.corpus, max_tokens=c.passage_tokens, limit=c.limit)

    @cached_property
    def seeds(self) -> Corpus:
        """The passages queries are written for (``sample`` of them, else all)."""
        return sample_passages(self.corpus, self.config.sample, seed=self.config.generate.seed)

    def load_llm(self) -> LLM:
        if self.llm is None:
            from geckokit.llm import load_llm

            self.llm = load_llm(self.config.llm, timeout=self.config.llm_timeout)
        return self.llm

    def load_encoder(self) -> EncoderRef:
        if self.encoder is None:
            from geckokit.encoder import EncoderRef

            self.encoder = EncoderRef.load(self.config.encoder)
        return self.encoder

    def stage_llm(self) -> LLM | str | None:
        """The LLM a stage takes: the loaded one (None: none loaded, no LLM work), or for
        executor ``ray`` its spec, which each Ray worker loads (the one loaded here serves
        the cost estimate)."""
        if self.llm is None or self.config.executor is Executor.LOCAL:
            return self.llm
        return self.config.llm or DEFAULT_LLM  # the spec load_llm took


class DistillStep(Step):
    """A stage of a distill run, with what the run's stages share."""

    def __init__(self, shared: DistillRun) -> None:
        super().__init__(shared.out)
        self.shared = shared


class Generate(DistillStep):
    stage = Stage.GENERATE
    title = "FRet step 1: a task and a query per passage (LLM)"
    driving = tuple(f"generate.{k}" for k in GENERATE_DRIVING)
    settings = (
        "corpus",
        "llm",
        "limit",
        "sample",
        "passage_tokens",
        "prompt",
        "generate",
        "also_generate",
    )

    def wanted(self) -> bool:
        return self.shared.config.generates  # the user's queries alone take its place

    def run(self) -> dict[str, Any]:
        from geckokit.fret.generate_run import generate_queries

        r = self.shared
        r.load_llm()  # generate has LLM work whenever it runs (the preparation loaded it)
        llm = r.stage_llm()
        assert llm is not None  # loaded just above
        gen = generate_queries(
            r.seeds,
            self.folder,
            llm=llm,
            config=r.config.generate,
            prompt=r.prompt,
            show_progress=r.show_progress,
            executor=r.config.execution,
        )
        return {"summary": gen["summary"], "llm_this_run": gen.get("llm_this_run")}

    def history(self) -> dict[str, Any] | None:
        found = read_stage_manifest(self.folder, self.stage)
        if not isinstance(found, GenerateManifest):
            return None
        usage = found.llm_this_run.dump() if found.llm_this_run is not None else None
        return {"summary": found.summary.dump(), "llm_this_run": usage}


class Mine(DistillStep):
    stage = Stage.MINE
    title = "FRet step 2: neighbours, LLM scores, positive and hard negative"
    settings = ("queries_file", "queries_task", QUERIES_SHA256, "encoder", "rerank_prompt", "mine")
    in_place = tuple(f"mine.{k}" for k in SELECTION)
    driving = tuple(f"mine.{k}" for k in MINE_DRIVING)

    def manifest(self) -> MineManifest | None:
        found = read_stage_manifest(self.folder, self.stage)
        return found if isinstance(found, MineManifest) else None

    def current(self) -> bool:
        manifest = self.manifest()
        if manifest is None or manifest.selection is None:
            raise RunMismatchError(
                f"{self.folder} was written by an earlier geckokit (its manifest records no "
                "selection settings); delete it and the folders after it to mine again, or "
                "use another --out folder"
            )
        return manifest.selection == self.shared.config.mine.model_dump(
            mode="json", include=set(SELECTION)
        )

    def run(self) -> dict[str, Any]:
        from geckokit.fret.mine_run import mine
        from geckokit.fret.rerank import load_rerank_prompt

        r, c = self.shared, self.shared.config
        mined = mine(
            r.out / Stage.GENERATE.folder if c.generates else None,
            r.corpus,
            self.folder,
            llm=r.stage_llm(),
            encoder=r.load_encoder(),
            config=c.mine,
            prompt=load_rerank_prompt(c.rerank_prompt),
            queries_file=c.queries_file,
            queries_task=c.queries_task,
            show_progress=r.show_progress,
            executor=c.execution,
        )
        return {"summary": mined.get("summary"), "llm_this_run": mined.get("llm_this_run")}

    def history(self) -> dict[str, Any] | None:
        found = self.manifest()
        if found is None:
            return None
        usage = found.llm_this_run.dump() if found.llm_this_run is not None else None
        return {"summary": found.summary.dump(), "llm_this_run": usage}

    def after(self, manifest: RunManifest) -> None:
        self.shared.llm = None  # the LLM's work is done; let it go before training
        self.shared.encoder = None  # so is the initial encoder's


class Mix(DistillStep):
    stage = Stage.MIX
    title = "training mixture: FRet and any human-labelled sets given, unified format"
    settings = ("mix",)

    def run(self) -> dict[str, Any]:
        from geckokit.mixture.build import build_mixture

        mix = self.shared.config.mix
        mixed = build_mixture(
            self.folder,
            fret=[self.out / Stage.MINE.folder],
            nli=[Path(p) for p in mix.nli],
            classification=[_path_task(c) for c in mix.classification],
            sts=[Path(p) for p in mix.sts],
            qa=[Path(p) for p in mix.qa],
            pairs=[Path(p) for p in mix.pairs],
            claims=[Path(p) for p in mix.claims],
            weights=mix.weights,
            sts_min_score=mix.sts_min_score,
        )
        return {"rows": mixed["rows"], "sources": mixed["sources"]}

    def history(self) -> dict[str, Any] | None:
        found = read_stage_manifest(self.folder, self.stage)
        if not isinstance(found, MixManifest):
            return None
        return {"rows": found.rows, "sources": found.sources}


class Train(DistillStep):
    stage = Stage.TRAIN
    title = "optional pre-finetuning, then contrastive + Matryoshka fine-tuning"
    settings = ("base", "prefinetune", "train")

    def finished(self) -> bool:
        return super().finished() and (self.folder / "model").is_dir()

    def run(self) -> dict[str, Any]:
        from geckokit.train.trainer import train

        c = self.shared.config
        mix = self.out / Stage.MIX.folder
        trained = train(mix, self.folder, config=c.train, prefinetune=c.prefinetune)
        curve = trained["loss_curve"]
        loss = [curve[0]["loss"], curve[-1]["loss"]] if curve else None
        return {"steps": trained["steps"], "loss": loss}

    def history(self) -> dict[str, Any] | None:
        found = read_stage_manifest(self.folder, self.stage)
        if not isinstance(found, TrainManifest):
            return None
        curve = found.loss_curve
        loss = [curve[0].loss, curve[-1].loss] if curve else None
        return {"steps": found.steps, "loss": loss}

    def after(self, manifest: RunManifest) -> None:
        manifest.model = str(self.folder / "model")


class Eval(DistillStep):
    stage = Stage.EVAL
    title = "base and distilled model on the held-out benchmarks (mteb)"
    settings = ("eval",)

    def wanted(self) -> bool:
        return bool(self.shared.config.eval)

    def run(self) -> dict[str, Any]:
        model = self.out / Stage.TRAIN.folder / "model"
        return {"results": evaluate_before_after(self.shared.config, model, self.folder)}

    def history(self) -> dict[str, Any] | None:
        found = read_stage_manifest(self.folder, self.stage)
        if not isinstance(found, EvalManifest) or not found.results:
            return None
        return {"results": before_after([r.model_dump(mode="json") for r in found.results])}


class Report(DistillStep):
    stage = Stage.REPORT
    title = "one offline HTML page of the run"

    def finished(self) -> bool:
        return False  # written anew each time: it shows the run as it now is

    def run(self) -> dict[str, Any]:
        from geckokit.evaluate.report import write_report

        write_report(self.out)
        return {}

    def after(self, manifest: RunManifest) -> None:
        manifest.report = str(self.folder)


#: The stages of a distill run, in order.
STEPS: tuple[type[DistillStep], ...] = (Generate, Mine, Mix, Train, Eval, Report)


def first_stage(setting: str) -> Stage:
    """The first stage of a distill run whose output a change of ``setting`` leaves stale
    (a config key, dotted for one of a nested table: ``mine.top_n`` -> mine; the selection
    settings, ``mine.fusion``, -> mix, as mine chooses again in place)."""
    return _first_stage(setting, STEPS)


def check_config(config: DistillConfig, out: Path, *, queries_sha256: str | None = None) -> None:
    """What a distill sitting does first with ``config`` (and the queries file's hash):
    refuse it when a stage it leaves stale has started in ``out``, else record it there
    (:func:`~geckokit.pipeline.runner.check_settings`)."""
    from geckokit.pipeline.config import saved_settings, setting_defaults
    from geckokit.pipeline.runner import check_settings

    settings = saved_settings(config, queries_sha256=queries_sha256)
    check_settings(STEPS, out, settings, setting_defaults())


def llm_stages_left(
    queries_dir: Path, mine_dir: Path, config: MineConfig, *, generate: bool = True
) -> list[str]:
    """The FRet stages that still have LLM work to do: ``generate`` until its queries are
    finished (never when ``generate`` is False: the user's queries take its place);
    ``mine`` until its pairs are scored, which a finished mine/ that chose with the ``seed``
    fusion never did (switching it to an LLM fusion scores them all)."""
    from geckokit.fret.fusion import Fusion

    left = [] if not generate or finished(queries_dir, Stage.GENERATE) else ["generate"]
    if config.fusion is not Fusion.SEED:
        mined = read_stage_manifest(mine_dir, Stage.MINE)
        if not (isinstance(mined, MineManifest) and mined.finished and mined.counts.get("pairs")):
            left.append("mine")
    return left


def llm_preparation(
    run: DistillRun, until: Stage, on_estimate: Callable[[dict[str, Any]], None] | None
) -> Callable[[dict[Stage, Action], RunManifest], None]:
    """What runs before the stages: BM25 checked before any query is written, the LLM
    loaded when a stage has LLM work (mining with the ``seed`` fusion has none; choosing
    again from stored scores only records which LLM scored them), and the cost of that
    work estimated (``on_estimate`` receives it; the run manifest keeps it)."""

    def prepare(actions: dict[Stage, Action], manifest: RunManifest) -> None:
        from geckokit.retrieval.hybrid import Retriever

        c, out = run.config, run.out
        mine_dir = out / Stage.MINE.folder
        bm25 = c.mine.retriever is not Retriever.ENCODER and until is not Stage.GENERATE
        if bm25 and not (mine_dir / "candidates").is_dir():
            from geckokit.retrieval.bm25 import require_bm25

            require_bm25()  # BM25 is missing: say so before the queries are written, not after
        left = llm_stages_left(out / Stage.GENERATE.folder, mine_dir, c.mine, generate=c.generates)
        if (
            left
            and "generate" in left
            and list(Stage).index(until) >= list(Stage).index(Stage.TRAIN)
        ):
            check_batch_fits(run)  # before the LLM writes a query, not after
        if left or actions[Stage.MINE] is Action.AGAIN:
            run.load_llm()
        if left:
            manifest.estimate = _estimate(run, left)
            if on_estimate is not None:
                on_estimate(manifest.estimate)

    return prepare


def check_batch_fits(run: DistillRun) -> None:
    """Refuse a run whose FRet examples cannot fill one training batch even if every query
    is kept (the passages to write for times ``queries_per_passage``, plus the user's
    queries) and that mixes no human-labelled set: training would refuse it only after all
    the LLM work."""
    c = run.config
    if any(
        getattr(c.mix, name) for name in ("nli", "classification", "sts", "qa", "pairs", "claims")
    ):
        return  # the human-labelled rows count too; the trainer checks the mixture itself
    passages = run.seeds.passages.num_rows if c.generates else 0
    most = passages * c.generate.queries_per_passage
    if run.user is not None:
        most += run.user.counts["queries"]
    if most < c.train.batch_size:
        where = f"{passages} passages x {c.generate.queries_per_passage} queries"
        if run.user is not None:
            where += f" + {run.user.counts['queries']} of your queries"
        raise ValueError(
            f"at most {most} training examples ({where}) cannot fill one training batch of "
            f"{c.train.batch_size}: lower train.batch_size (--batch-size) to {max(2, most // 2)} "
            "or below, or give more passages (sample, limit) or queries_per_passage"
        )


def _estimate(run: DistillRun, left: list[str]) -> dict[str, Any]:
    from geckokit.fret.cost import estimate_cost
    from geckokit.fret.mine_run import scoring_left
    from geckokit.runs.manifest import GenerateManifest
    from geckokit.runs.shards import unfinished_rows

    c, queries_dir = run.config, run.out / Stage.GENERATE.folder
    generated = read_stage_manifest(queries_dir, Stage.GENERATE)
    unwritten = None  # the passages whose query shards are not finished
    if "generate" in left and isinstance(generated, GenerateManifest) and generated.shard_size:
        n = run.seeds.passages.num_rows
        unwritten = unfinished_rows(queries_dir, "queries", n, generated.shard_size)
    written = None
    if isinstance(generated, GenerateManifest):
        written = generated.counts.get("queries")
    return estimate_cost(
        # without FRet step 1 no passage has queries written for it
        run.seeds.passages if c.generates else run.corpus.passages.slice(0, 0),
        c,
        run.llm,
        corpus=run.corpus.passages,
        stages=left,
        queries=None if "generate" in left else (written if c.generates else 0),
        user_queries=0 if run.user is None else run.user.counts["queries"],
        unwritten=unwritten,
        unscored=scoring_left(run.out / Stage.MINE.folder) if "mine" in left else None,
    )


def sample_passages(corpus: Corpus, n: int | None, *, seed: int = 0) -> Corpus:
    """The corpus with ``n`` passages drawn at random (seeded, kept in corpus order), or
    the corpus itself when ``n`` is None or not smaller than it."""
    if n is None or n >= len(corpus):
        return corpus
    rows = sorted(random.Random(seed).sample(range(len(corpus)), n))
    return dataclasses.replace(corpus, passages=corpus.passages.take(rows))


def _path_task(spec: str) -> tuple[Path, str | None]:
    path, sep, task = spec.partition(":")
    if sep and not Path(spec).exists():
        return Path(path), task or None
    return Path(spec), None


def evaluate_before_after(
    config: DistillConfig, model_dir: Path, out: Path
) -> list[dict[str, Any]]:
    """Evaluate base and distilled model with mteb on the ``config.eval`` benchmarks into
    ``out`` (mteb result files, results.md, manifest), at full width and the distilled
    model's Matryoshka dims; the base both plain (as it was trained) and in the unified
    format, the distilled model in the format it was trained in. Returns the full-width
    retrieval rows: benchmark, model, nDCG@10, Recall@10."""
    from geckokit.evaluate.run import evaluate

    table = evaluate(
        [config.base, str(model_dir)],
        list(config.eval),
        formats=["auto"],
        model_formats={config.base: ["plain", "gecko"]},
        out=out,
    )
    return before_after(table.to_pylist())


def before_after(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The full-width retrieval rows of an evaluation of base (the first model of ``rows``)
    and distilled model (:func:`evaluate_before_after`; ``rows`` as
    :func:`geckokit.evaluate.run.evaluate` returns them, or as its manifest records them):
    benchmark, model (base, base (unified format), distilled), nDCG@10, Recall@10."""
    if not rows:
        return []
    full = {r["model"]: max(x["dim"] for x in rows if x["model"] == r["model"]) for r in rows}
    labels = {
        (rows[0]["model"], "plain"): "base",
        (rows[0]["model"], "gecko"): "base (unified format)",
    }
    summary = []
    for r in rows:
        if r["dim"] != full[r["model"]] or r["kind"] != "retrieval":
            continue
        label = labels.get((r["model"], r["format"]), "distilled")
        summary.append(
            {
                "benchmark": r["task"],
                "model": label,
                "ndcg@10": round(100 * r["score"], 2),
                "recall@10": round(100 * (r["recall_at_10"] or 0.0), 2),
            }
        )
    return summary
