"""``geckokit distill``: corpus + LLM -> a better embedding model, as one resumable run.

The stages of the Gecko recipe run in order, each into its own folder of ``out``::

    queries/   FRet step 1 (LLM: task + query per passage)          sharded, resumable
               (none with ``queries_file`` alone: the user's queries take its place)
    mine/      FRet step 2 (neighbours, LLM QL + RC, fusion)       sharded, resumable
    mix/       FRet + the human-labelled sets, unified format
    train/     optional pre-finetuning, then contrastive + Matryoshka fine-tuning
    eval/      base and distilled model on the held-out benchmarks
    report.html

A stage whose manifest says it finished is not run again, and the sharded stages skip their
finished shards, so rerunning the same command after a stop continues where it stopped.
The effective configuration is saved as ``config.json``; a rerun with another one is refused
rather than mixing two runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from geckokit.fret.generate import GenerateConfig, task_type_pool
from geckokit.fret.mine_run import MineConfig, check_seedless
from geckokit.fret.prompts import GeneratePrompt, load_generate_prompt
from geckokit.fret.user_queries import UserQueries, read_user_queries
from geckokit.io import MANIFEST, environment, read_json, write_json
from geckokit.retrieval.hybrid import Retriever
from geckokit.runs.clock import stage_clock
from geckokit.runs.folder import RunMismatchError, run_lock
from geckokit.runs.manifest import Stage
from geckokit.tasks import DEFAULT_QUERY_TASK
from geckokit.train.trainer import TrainConfig

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


STAGES = list(Stage)
#: The run folder's stage folders, in pipeline order (generate writes ``queries/``; the
#: report is a file).
FOLDERS = ("queries", "mine", "mix", "train", "eval")


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


class DistillConfig(BaseModel):
    """Everything ``geckokit distill`` needs; a TOML/YAML config file holds the same keys
    (nested tables ``generate``, ``mine``, ``mix``, ``train``)."""

    model_config = ConfigDict(extra="forbid")

    corpus: str
    llm: str | None = Field(None, description="LLM (default: the registry's default)")
    base: str = Field("all-minilm-l6-v2", description="encoder to distil into")
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
    if "fusion" not in config.mine.model_fields_set:
        config.mine.fusion = Fusion.parse(default_fusion(config.llm))
    config.encoder = config.encoder or config.base
    config.train.base = config.base
    return config


#: Beside the settings, config.json keeps the queries file's hash: its content changed under
#: the same path is a change like a setting's.
QUERIES_SHA256 = "queries_file_sha256"

#: The first stage each setting affects: a changed setting is accepted while neither that
#: stage's folder nor a later one exists yet (they would hold results of the old one).
_FIRST_STAGE = {
    "corpus": "queries",
    "llm": "queries",
    "limit": "queries",
    "sample": "queries",
    "passage_tokens": "queries",
    "prompt": "queries",
    "generate": "queries",
    "also_generate": "queries",
    "queries_file": "mine",
    "queries_task": "mine",
    QUERIES_SHA256: "mine",
    "encoder": "mine",
    "rerank_prompt": "mine",
    "mine": "mine",
    "mix": "mix",
    "base": "train",
    "prefinetune": "train",
    "train": "train",
    "eval": "eval",
}


def _save_config(config: DistillConfig, out: Path, *, queries_sha256: str | None = None) -> None:
    saved = read_json(out / CONFIG_FILE)
    current = {**config.model_dump(mode="json"), QUERIES_SHA256: queries_sha256}
    if saved is not None:
        # a setting the saved config lacks (added in a later version) is at its default there
        saved = {k: _at_defaults(k, saved.get(k, _default(k))) for k in current}
        changed = sorted(k for k in current if saved[k] != current[k])
        first = {_FIRST_STAGE.get(k, "queries") for k in changed}
        if "mine" in changed and _only_selection_differs(saved["mine"], current["mine"]):
            first = (first - {"mine"}) | {"mix"}  # mine/ re-selects from its stored scores
        # the first stage a change affects and every stage after it would be stale
        stale = FOLDERS[min(FOLDERS.index(f) for f in first) :] if first else ()
        started = [f for f in stale if (out / f).is_dir()]
        if started:
            raise RunMismatchError(
                f"{out} holds a distill run with other settings ({', '.join(changed)}) and its "
                f"{', '.join(s + '/' for s in started)} already ran with the old ones; rerun with "
                "the same settings to resume, delete those folders to redo them, or use another "
                "--out folder"
            )
    write_json(current, out / CONFIG_FILE)


def _default(key: str) -> Any:
    """The default of a top-level setting, as it is saved (None for the queries file's hash)."""
    if key not in DistillConfig.model_fields:
        return None
    value = DistillConfig.model_fields[key].get_default(call_default_factory=True)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _at_defaults(key: str, saved: Any) -> Any:
    """A saved nested table (``mine``, ``train``...) with the settings it lacks at their
    defaults, at any depth (``generate.validation``)."""
    from geckokit.runs.folder import with_defaults

    return with_defaults(_default(key), saved)


def _only_selection_differs(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    from geckokit.fret.mine_run import SELECTION

    def scoring(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in SELECTION}

    return scoring(saved) == scoring(current)


def _selection_changed(mine_dir: Path, config: MineConfig) -> bool:
    """A finished mine/ whose positives and negatives were chosen with other selection
    settings than ``config``'s (it then re-selects from its scores, with no LLM work)."""
    from geckokit.fret.mine_run import SELECTION

    manifest = read_json(mine_dir / MANIFEST) or {}
    old = {k: v for k, v in (manifest.get("config") or {}).items() if k in SELECTION}
    recorded = manifest.get("selection") or old  # in the config: a run from before
    wanted = config.model_dump(mode="json", include=set(SELECTION))
    return bool(recorded) and recorded != wanted


def _finished(folder: Path) -> bool:
    manifest = read_json(folder / MANIFEST)
    if not manifest:
        return False
    return bool(manifest.get("status", "finished") == "finished")


def llm_stages_left(
    queries_dir: Path, mine_dir: Path, config: MineConfig, *, generate: bool = True
) -> list[str]:
    """The FRet stages that still have LLM work to do: ``generate`` until its queries are
    finished (never when ``generate`` is False: the user's queries take its place);
    ``mine`` until its pairs are scored, which a finished mine/ that chose with the ``seed``
    fusion never did (switching it to an LLM fusion scores them all)."""
    from geckokit.fret.mine_run import Fusion

    left = [] if _finished(queries_dir) or not generate else ["generate"]
    if config.fusion is not Fusion.SEED:
        manifest = read_json(mine_dir / MANIFEST) or {}
        scored = _finished(mine_dir) and (manifest.get("counts") or {}).get("pairs", 0) > 0
        if not scored:
            left.append("mine")
    return left


def distill(
    config: DistillConfig,
    out: str | Path,
    *,
    until: Stage | str = Stage.REPORT,
    llm: Any = None,
    on_estimate: Callable[[dict[str, Any]], None] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the whole pipeline into ``out`` up to and including ``until`` and
    return the run manifest. ``llm`` overrides loading ``config.llm`` (tests pass a loaded
    model); ``on_estimate`` receives the cost estimate before any LLM work. While it runs,
    another process that opens ``out`` fails with :class:`~geckokit.runs.folder.RunLockedError`."""
    config = resolve_defaults(config)
    prompt = load_generate_prompt(config.prompt)  # a bad template fails before any work
    until = Stage.parse(until)
    user = None  # a bad queries file fails before any work too
    if config.queries_file is not None:
        user = read_user_queries(config.queries_file, task=config.queries_task)
    with run_lock(Path(out)):
        return _run(config, Path(out), until, prompt, user, llm, on_estimate, show_progress)


def _run(
    config: DistillConfig,
    out: Path,
    until: Stage,
    prompt: GeneratePrompt,
    user: UserQueries | None,
    llm: Any,
    on_estimate: Callable[[dict[str, Any]], None] | None,
    show_progress: bool,
) -> dict[str, Any]:
    from geckokit.corpus import load_corpus

    last = STAGES.index(until)
    _save_config(config, out, queries_sha256=None if user is None else user.sha256)
    manifest: dict[str, Any] = read_json(out / MANIFEST) or {"stages": {}}
    manifest.update(stage="distill", status="running", out=str(out))
    for entry in manifest["stages"].values():
        if entry.get("status") == "running":  # its process was killed: this one holds the lock
            entry["status"] = "stopped"

    def sitting(
        stage: Stage, *, again: bool = False
    ) -> AbstractContextManager[Callable[..., None]]:
        return stage_clock(manifest, out / MANIFEST, stage.value, again=again)

    corpus = load_corpus(config.corpus, max_tokens=config.passage_tokens, limit=config.limit)
    seeds = sample_passages(corpus, config.sample, seed=config.generate.seed)
    queries_dir, mine_dir, mix_dir, train_dir, eval_dir = (out / n for n in FOLDERS)
    bm25 = config.mine.retriever is not Retriever.ENCODER and last >= STAGES.index(Stage.MINE)
    if bm25 and not (mine_dir / "candidates").is_dir():
        from geckokit.retrieval.bm25 import require_bm25

        require_bm25()  # BM25 is missing: say so before the queries are written, not after
    reselect = _finished(mine_dir) and _selection_changed(mine_dir, config.mine)
    left = llm_stages_left(queries_dir, mine_dir, config.mine, generate=config.generates)
    # mining with the seed fusion asks nothing of the LLM; choosing again from stored scores
    # only records which LLM scored them
    if left or reselect:
        from geckokit.llm import load_llm

        llm = llm or load_llm(config.llm)
    if left:
        from geckokit.fret.mine_run import scoring_left
        from geckokit.runs.shards import unfinished_rows

        generated = read_json(queries_dir / MANIFEST) or {}
        unwritten = None  # the passages whose query shards are not finished
        if "generate" in left and generated:
            n = seeds.passages.num_rows
            unwritten = unfinished_rows(queries_dir, "queries", n, generated["shard_size"])
        written = generated.get("counts", {}).get("queries") if config.generates else 0
        estimate = estimate_cost(
            # without FRet step 1 no passage has queries written for it
            seeds.passages if config.generates else corpus.passages.slice(0, 0),
            config,
            llm,
            corpus=corpus.passages,
            stages=left,
            queries=None if "generate" in left else written,
            user_queries=0 if user is None else user.counts["queries"],
            unwritten=unwritten,
            unscored=scoring_left(mine_dir) if "mine" in left else None,
        )
        manifest["estimate"] = estimate
        if on_estimate is not None:
            on_estimate(estimate)

    # FRet step 1 (the user's queries alone take its place)
    if config.generates and not _finished(queries_dir):
        from geckokit.fret.generate_run import generate_queries

        with sitting(Stage.GENERATE) as done:
            gen = generate_queries(
                seeds,
                queries_dir,
                llm=llm,
                config=config.generate,
                prompt=prompt,
                show_progress=show_progress,
            )
            done(summary=gen["summary"], llm_this_run=gen.get("llm_this_run"))
    if last == STAGES.index(Stage.GENERATE):
        return _close(manifest, out, until)

    # FRet step 2
    if not _finished(mine_dir) or reselect:
        from geckokit.encoder import load_encoder
        from geckokit.fret.mine_run import mine
        from geckokit.fret.rerank import load_rerank_prompt

        assert config.encoder is not None
        with sitting(Stage.MINE, again=reselect) as done:
            mined = mine(
                queries_dir if config.generates else None,
                corpus,
                mine_dir,
                llm=llm,
                encoder=load_encoder(config.encoder),
                encoder_name=config.encoder,
                config=config.mine,
                prompt=load_rerank_prompt(config.rerank_prompt),
                queries_file=config.queries_file,
                queries_task=config.queries_task,
                show_progress=show_progress,
            )
            done(summary=mined.get("summary"), llm_this_run=mined.get("llm_this_run"))
    if last == STAGES.index(Stage.MINE):
        return _close(manifest, out, until)
    llm = None  # the LLM's work is done; let it go before training

    if not _finished(mix_dir):
        from geckokit.mixture.build import build_mixture

        mix = config.mix
        with sitting(Stage.MIX) as done:
            mixed = build_mixture(
                mix_dir,
                fret=[mine_dir],
                nli=[Path(p) for p in mix.nli],
                classification=[_path_task(c) for c in mix.classification],
                sts=[Path(p) for p in mix.sts],
                qa=[Path(p) for p in mix.qa],
                pairs=[Path(p) for p in mix.pairs],
                claims=[Path(p) for p in mix.claims],
                weights=mix.weights,
                sts_min_score=mix.sts_min_score,
            )
            done(rows=mixed["rows"], sources=mixed["sources"])
    if last == STAGES.index(Stage.MIX):
        return _close(manifest, out, until)

    if not (_finished(train_dir) and (train_dir / "model").is_dir()):
        from geckokit.train.trainer import train

        with sitting(Stage.TRAIN) as done:
            trained = train(mix_dir, train_dir, config=config.train, prefinetune=config.prefinetune)
            curve = trained["loss_curve"]
            done(
                steps=trained["steps"],
                loss=[curve[0]["loss"], curve[-1]["loss"]] if curve else None,
            )
    manifest["model"] = str(train_dir / "model")
    if last == STAGES.index(Stage.TRAIN):
        return _close(manifest, out, until)

    if config.eval and not (eval_dir / MANIFEST).exists():
        with sitting(Stage.EVAL) as done:
            done(results=evaluate_before_after(config, train_dir / "model", eval_dir))
    if last == STAGES.index(Stage.EVAL):
        return _close(manifest, out, until)

    with sitting(Stage.REPORT) as done:
        report = write_run_report(out)
        done()
    manifest["report"] = str(report)
    return _close(manifest, out, until)


def sample_passages(corpus: Any, n: int | None, *, seed: int = 0) -> Any:
    """The corpus with ``n`` passages drawn at random (seeded, kept in corpus order), or
    the corpus itself when ``n`` is None or not smaller than it."""
    import dataclasses
    import random

    if n is None or n >= len(corpus):
        return corpus
    rows = sorted(random.Random(seed).sample(range(len(corpus)), n))
    return dataclasses.replace(corpus, passages=corpus.passages.take(rows))


def _close(manifest: dict[str, Any], out: Path, until: Stage) -> dict[str, Any]:
    manifest["status"] = "finished" if until == Stage.REPORT else f"stopped after {until.value}"
    manifest["environment"] = environment()
    write_json(manifest, out / MANIFEST)
    return manifest


def _path_task(spec: str) -> tuple[Path, str | None]:
    path, sep, task = spec.partition(":")
    if sep and not Path(spec).exists():
        return Path(path), task or None
    return Path(spec), None


_CHAT_MARKUP = 5  # tokens a chat template adds around one message (role tags, ends)
_RETRIES = 1.15  # written tokens per query slot over one answer's: rejected attempts retried


def estimate_cost(
    passages: Any,
    config: DistillConfig,
    llm: Any,
    *,
    corpus: Any = None,
    stages: Collection[str] = ("generate", "mine"),
    queries: int | None = None,
    user_queries: int = 0,
    unwritten: list[int] | None = None,
    unscored: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Rough LLM cost of the FRet ``stages`` still to run for ``passages`` (the passages
    queries are written for, a table) whose neighbours come from ``corpus`` (default:
    ``passages``); ``queries``, when the queries are already written, is their number
    (default: passages x ``generate.queries_per_passage``; 0: none are written, as with a
    queries file alone), and ``user_queries`` the number of the user's own queries mined
    beside them (``top_n`` pairs each, their candidates counted apart). A stage stopped part way:
    ``unwritten`` are the rows of ``passages`` with no finished query shard (default: all), and
    ``unscored`` the candidate passages and pairs ``mine`` has still to score, once its
    candidates are retrieved.

    Prompt tokens: the few-shot prefix once (every time without ``generate.reuse_prefix``),
    then per generated query the passage, its title and the template's last turn (the part
    not shared between passages, counted with the LLM's tokenizer, plus a few tokens of chat
    markup), and as many written tokens as the prompt's few-shot answers have on average (60
    without examples), plus 15% for retries of rejected answers (measured: 12% on the demo,
    19% on SciFact with a science prompt), or with a ``max_word_overlap`` limit every one of
    ``max_attempts`` (``written_at_most``); a query slot whose task type repeats the previous
    slot's sends the same prompt again, which a backend that reuses its cached state
    (``generate.reuse_prefix``) does not evaluate twice, so with one task type a passage's
    prompt counts once. For mining, each distinct candidate passage once
    (scored once, then reused by every query that retrieved it; the slots of one passage
    mostly retrieve the same neighbours, so at most passages x ``top_n`` of them, at most the
    whole corpus) plus ``top_n`` x about 45 tokens per query (lead-in, query, relevance
    question); with ``mine.drop_solved`` that is an upper bound until the candidates are
    retrieved (``pairs_at_most``). Time: at the rates of a short probe of the LLM (prompt and
    writing speed), so the figure holds for this machine and model."""
    tokenize = getattr(llm, "tokenize", None)

    def count(text: str) -> int:
        return len(tokenize(text)) if tokenize is not None else max(1, len(text) // 4)

    def lengths_of(table: Any, most: int | None = None) -> list[int]:
        return [count(t) for t in table.column("text").to_pylist()[:most]]

    unknown = set(stages) - {"generate", "mine"}
    if unknown:
        raise ValueError(f"stages: unknown {sorted(unknown)}; the LLM stages are generate, mine")
    lengths = lengths_of(passages)
    qpp = config.generate.queries_per_passage
    queries = len(lengths) * qpp if queries is None else queries
    rows = range(len(lengths)) if unwritten is None else unwritten
    todo = [lengths[i] for i in rows]
    prompt = load_generate_prompt(config.prompt)
    pool = task_type_pool(prompt, config.generate.task_types)
    # expected prompts evaluated per passage: the first slot, then each slot whose task type
    # (drawn uniformly) differs from the one before it
    prompts = qpp if not config.generate.reuse_prefix else 1 + (qpp - 1) * (1 - 1 / len(pool))
    chats = [prompt.messages(t, "", "") for t in pool]
    turn = sum(count(c[-1]["content"]) for c in chats) / len(pool) + _CHAT_MARKUP
    prefix = sum(count(m["content"]) + _CHAT_MARKUP for m in chats[0][:-1])
    titles = passages.column("title").to_pylist() if "title" in passages.column_names else None
    title_tokens = sum(count(titles[i]) for i in rows if titles[i]) if titles else 0
    per_passage = sum(todo) + len(todo) * (turn + (0 if config.generate.reuse_prefix else prefix))
    gen_prompt = round(prompts * (per_passage + title_tokens))
    if config.generate.reuse_prefix and todo:
        gen_prompt += prefix  # evaluated once, then reused
    answers = [m["content"] for m in chats[0] if m["role"] == "assistant"]  # few-shot answers
    answer = sum(count(a) + 1 for a in answers) / len(answers) if answers else 60  # +1: the end
    # a word-overlap limit rejects most answers (95% at 0.6 on SciFact with the 0.5B model):
    # count every attempt, an upper bound
    echo_limit = config.generate.validation.max_word_overlap < 1
    retries = config.generate.max_attempts if echo_limit else _RETRIES
    gen_written = round(len(todo) * qpp * answer * retries)
    cut = config.mine.passage_max_tokens
    sample = lengths if corpus is None else lengths_of(corpus, 2000)  # the first 2,000: the mean
    corpus_size = len(lengths) if corpus is None else corpus.num_rows
    seeded = len(lengths) if queries else 0  # the passages with queries written for them
    distinct = min(corpus_size, (seeded + user_queries) * config.mine.top_n)
    mean_cut = sum(min(n, cut) for n in sample) / max(1, len(sample))
    pairs = (queries + user_queries) * config.mine.top_n
    if unscored is not None:
        distinct, pairs = unscored
    mine_prompt = round(distinct * mean_cut) + pairs * 45
    generate, mine = "generate" in stages, "mine" in stages
    if not generate:
        gen_prompt = gen_written = 0
    if not mine:
        mine_prompt = 0
    rates = probe_rates(llm)
    seconds = by_stage = None
    if rates is not None:
        prompt_rate, written_rate = rates["prompt_tokens_per_s"], rates["written_tokens_per_s"]
        spent = {
            "generate": gen_prompt / prompt_rate + gen_written / written_rate,
            "mine": mine_prompt / prompt_rate,
        }
        seconds = round(sum(spent.values()))
        by_stage = {k: round(v) for k, v in spent.items() if k in stages}
    return {
        "passages": len(lengths),
        "user_queries": user_queries,
        "llm_calls": {
            "generate": len(todo) * qpp if generate else 0,
            "score_pairs": pairs if mine else 0,
        },
        # drop_solved leaves out queries once their candidates are retrieved
        "pairs_at_most": mine and config.mine.drop_solved and unscored is None,
        # with a word-overlap limit every slot may use all its attempts
        "written_at_most": generate and echo_limit,
        # the generate template's share: its few-shot prefix, and its per-passage turn
        "template_tokens": {
            "prefix": prefix,
            "per_prompt": round(turn, 1),
            "per_answer": round(answer, 1),
        },
        "tokens": {
            "generate_prompt": gen_prompt,
            "generate_written": gen_written,
            "mine_prompt": mine_prompt,
        },
        "rates": rates,
        "seconds": seconds,
        # the same time per LLM stage (writing queries, scoring pairs)
        "seconds_by_stage": by_stage,
    }


def describe_estimate(e: dict[str, Any]) -> str:
    """One line for an :func:`estimate_cost` result, as ``geckokit distill`` prints it."""
    t, rate = e["tokens"], e["rates"]
    at_most = "at most " if e.get("pairs_at_most") else ""
    # with drop_solved the mining share is an upper bound, and so are the totals it is in
    eta = f"{at_most}about {e['seconds'] / 60:.0f} min" if e["seconds"] is not None else "unknown"
    split = e.get("seconds_by_stage") or {}
    if len(split) == 2:  # both stages left: say which is which
        eta += (
            f" (writing queries about {split['generate'] / 60:.0f}, "
            f"scoring pairs {at_most}about {split['mine'] / 60:.0f})"
        )
    speed = (
        f" at {rate['prompt_tokens_per_s']:.0f} / {rate['written_tokens_per_s']:.0f} tokens/s "
        "(measured just now)"
        if rate
        else ""
    )
    calls = e["llm_calls"]
    work = [f"{calls['generate']} queries to write"] if calls["generate"] else []
    work += [f"{at_most}{calls['score_pairs']} pairs to score"] if calls["score_pairs"] else []
    written = (
        f" and {'at most ' if e.get('written_at_most') else ''}"
        f"{t['generate_written'] / 1000:.0f}k written tokens"
        if calls["generate"]
        else ""
    )
    user = e.get("user_queries") or 0
    mined = [f"{e['passages']} passages"] if e["passages"] or not user else []
    mined += [f"{user} queries of yours"] if user else []
    return (
        f"{', '.join(mined)} -> {' and '.join(work) or 'no LLM calls'}; {at_most}about "
        f"{(t['generate_prompt'] + t['mine_prompt']) / 1000:.0f}k prompt tokens{written}{speed}; "
        f"LLM time {eta}"
    )


def probe_rates(llm: Any) -> dict[str, float] | None:
    """Prompt and writing speed of ``llm`` from one short call of each (None when the
    backend does not count tokens).

    The timed prompt is passage-sized (about 300 tokens), as the prompts of both stages are:
    llama.cpp evaluates a short one at fewer tokens per second, which made the estimate
    pessimistic. An untimed call first keeps one-off start-up costs out of the timing."""
    usage = getattr(llm, "usage", None)
    if usage is None:
        return None
    llm.score(["Warm-up: a short text the timed calls do not start with."], [" Ready."])
    text = (
        "Gecko distils a compact text embedding model from a large language model. "
        "It writes queries for passages and relabels positives and hard negatives. "
    ) * 10
    before = usage.prompt_tokens_evaluated
    t0 = time.perf_counter()
    llm.score([text], [" The probe measures speed."])
    prompt_s = time.perf_counter() - t0
    prompt_tokens = usage.prompt_tokens_evaluated - before
    before_written = usage.completion_tokens
    t0 = time.perf_counter()
    llm.generate([text + "\nSummarise in one line:"], max_tokens=16, temperature=0.0)
    written_s = time.perf_counter() - t0
    written = max(1, usage.completion_tokens - before_written)
    if prompt_tokens <= 0 or prompt_s <= 0:
        return None
    return {
        "prompt_tokens_per_s": round(prompt_tokens / prompt_s, 1),
        "written_tokens_per_s": round(written / written_s, 1),
    }


def evaluate_before_after(
    config: DistillConfig, model_dir: Path, out: Path
) -> list[dict[str, Any]]:
    """Evaluate base and distilled model with mteb on the ``config.eval`` benchmarks into
    ``out`` (mteb result files, results.md, manifest), at full width and the distilled
    model's Matryoshka dims; the base both plain (as it was trained) and in the unified
    format. Returns the full-width retrieval rows: benchmark, model, nDCG@10, Recall@10."""
    from geckokit.evaluate.run import evaluate

    table = evaluate(
        [config.base, str(model_dir)], list(config.eval), formats=["auto", "gecko"], out=out
    )
    rows = table.to_pylist()
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


def write_run_report(out: Path) -> Path:
    """The HTML report of the run (:func:`geckokit.evaluate.report.write_report`)."""
    from geckokit.evaluate.report import write_report

    return Path(write_report(out))
