"""``geckokit train``: contrastive fine-tuning on a mixture with sentence-transformers' trainer.

The loss is paper eq. 3 (:func:`geckokit.train.losses.matryoshka_loss`): in-batch
positives, same-tower query negatives and each example's own hard negative, averaged over
Matryoshka dimensions. Batches come from :func:`geckokit.train.batching.plan_batches` (one
source per batch, no repeated text, per-source weights). Checkpoints, resumption and
logging are the trainer's; the saved folder loads with ``SentenceTransformer(path)``,
carries the unified-format prompts and records the Matryoshka dimensions.

Under ``torchrun`` (several processes, one per GPU, or gloo on CPUs) ``batch_size`` is the
global batch: each process takes an equal slice of every planned batch, eq. 3 gathers the
global batch's queries and positives (``gather_across_devices``), and rank 0 writes the run.

``objective`` ``kl`` or ``margin-mse`` adds score distillation to eq. 3
(:func:`geckokit.train.losses.distill_loss`, weighted by ``distill_weight``): FRet rows
teach the encoder the LLM's scores of ``distill_candidates`` of their query's candidates
(:mod:`geckokit.train.teacher`). The dataset then gets one text column per candidate
beyond the positive and the hard negative (whose embeddings are reused) and a ``label``
column with the teacher scores; a batch without teacher scores (another source) embeds no
candidates.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from geckokit._deps import require
from geckokit.encoder import embedding_width
from geckokit.format import plain_document, plain_query
from geckokit.io import MANIFEST, environment, read_json, read_shards, write_json
from geckokit.registry import DEFAULT_ENCODER
from geckokit.tasks import DOCUMENT_PROMPT, QUERY_PROMPT
from geckokit.train.distributed import barrier, is_main_process
from geckokit.train.losses import Objective
from geckokit.train.teacher import CANDIDATE_COLUMNS, Teacher
from geckokit.types import ClosedSet

log = logging.getLogger(__name__)

AUTO_MINI_BATCH = 32  # gradient caching's mini-batch when gradcache_mini_batch is -1 (auto)
AUTO_CACHE_ABOVE = 128  # ... and a step embeds more texts than this


class TextFormat(ClosedSet):
    UNIFIED = "unified"  # task: ... | query: ... and title: ... | text: ... (the paper)
    PLAIN = "plain"  # the query alone, title and text joined: as the base was trained


class TrainConfig(BaseModel):
    """Settings of ``geckokit train``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error

    base: str = Field(
        DEFAULT_ENCODER, description="encoder to fine-tune (registry name, path or hub id)"
    )
    max_steps: int = Field(-1, description="stop after this many steps (-1: run the epochs)")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(32, ge=2)
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    temperature: float = Field(0.05, gt=0)
    same_tower: bool = True
    gradcache_mini_batch: int = Field(
        -1,
        ge=-1,
        description="gradient caching with this mini-batch (0: off; -1: auto, on with "
        f"mini-batch {AUTO_MINI_BATCH} when a step embeds more than {AUTO_CACHE_ABOVE} texts, "
        "as the distillation objectives' candidates make it)",
    )
    matryoshka_dims: list[int] = Field(
        default_factory=list, description="empty: full, 2/3, 1/3 and 1/6 of the width"
    )
    max_seq_length: int = Field(256, ge=16)
    save_steps: int = Field(500, ge=1)
    logging_steps: int = Field(10, ge=1)
    seed: int = 0
    weights: dict[str, float] | None = Field(
        None, description="per-source weights (default: the mixture's)"
    )
    prefinetune_steps: int = Field(
        -1, description="pre-finetuning steps (-1: run prefinetune_epochs over the pairs)"
    )
    prefinetune_epochs: float = Field(1.0, gt=0)
    prefinetune_learning_rate: float | None = Field(
        None, gt=0, description="pre-finetuning learning rate (None: learning_rate)"
    )
    objective: Objective = Field(
        Objective.CONTRASTIVE,
        description="contrastive: eq. 3 alone; kl: + listwise KL to the LLM's softmax over a "
        "query's candidates (ART); margin-mse: + MSE of positive-minus-candidate score "
        "margins (GPL)",
    )
    distill_weight: float = Field(
        1.0, ge=0, description="weight of the distillation term added to eq. 3"
    )
    teacher: Teacher = Field(
        Teacher.QL,
        description="the stored LLM score to distil: ql (query likelihood, a mean "
        "log-probability per query token: ART's teacher, on the scale of logits, and every "
        "LLM fusion scores it), rc (relevance classification: log P(relevant), or the "
        "expected grade with a graded prompt) or fused (the reciprocal-rank fusion that "
        "chose the positive: ranks only)",
    )
    teacher_temperature: float = Field(
        1.0,
        gt=0,
        description="the teacher's scores are divided by this (kl: before the softmax; "
        "margin-mse: its margins); the student's are cosine / temperature",
    )
    text_format: TextFormat = Field(
        TextFormat.PLAIN,
        description="plain: strip the task and title prefixes from the mixture and save no "
        "prompts, so the model is used as the base was (queries and passages as they are); "
        "unified: train in Gecko's format (the paper's recipe) and save its prompts with the "
        "model",
    )
    gather_across_devices: bool = Field(
        True,
        description="on several processes (torchrun): gather every process's queries and "
        "positives, so each query meets the global batch's in-batch and same-tower negatives "
        "and the loss is that of one process on the global batch (batch_size is the global "
        "batch, split evenly over the processes); off: each process contrasts its own slice "
        "alone. No effect on one process",
    )
    distill_candidates: int = Field(
        8,
        ge=2,
        le=200,
        description="candidates per query in the distillation term (K): the positive, the "
        "hard negative and K-2 others spread over the teacher's ranking; each is one more "
        "passage embedded per example",
    )


def mini_batch_size(config: TrainConfig) -> int:
    """The gradient-caching mini-batch a run uses (0: none): ``gradcache_mini_batch``, or
    for ``-1`` (auto) :data:`AUTO_MINI_BATCH` when one step embeds more than
    :data:`AUTO_CACHE_ABOVE` texts (query, positive, negative, and with a distillation
    objective K-2 more candidates per row): the activations of a step of MiniLM at 256
    tokens take about 60 MB per text, so batch 32 with the default 8 candidates (288 texts)
    would need some 20 GB uncached."""
    if config.gradcache_mini_batch >= 0:
        return config.gradcache_mini_batch
    columns = 3 + (
        config.distill_candidates - 2 if config.objective is not Objective.CONTRASTIVE else 0
    )
    return AUTO_MINI_BATCH if config.batch_size * columns > AUTO_CACHE_ABOVE else 0


def default_dims(width: int) -> list[int]:
    """Matryoshka dims for a width: e.g. 384 -> [384, 256, 128, 64]."""
    dims = [width, width * 2 // 3, width // 3, width // 6]
    return sorted({d for d in dims if d >= 16}, reverse=True)


def build_loss(
    model: Any,
    dims: list[int],
    *,
    temperature: float = 0.05,
    same_tower: bool = True,
    mini_batch_size: int = 0,
    objective: Objective | str = Objective.CONTRASTIVE,
    distill_weight: float = 1.0,
    teacher_temperature: float = 1.0,
    gather_across_devices: bool = False,
) -> Any:
    """The training loss as a sentence-transformers loss module: paper eq. 3 over Matryoshka
    ``dims``; rows whose negative text is empty have no hard negative.
    ``gather_across_devices``: on several processes, eq. 3 sees the global batch
    (:func:`geckokit.train.losses.gecko_loss`); the distillation term, one query's own
    candidates, stays local.

    With ``objective`` ``kl`` or ``margin-mse``, ``distill_weight`` times the distillation
    term (:func:`geckokit.train.losses.distill_loss`, over the same ``dims``) is added. Its
    inputs are the columns query, positive, negative, then the other candidates, and the
    labels: (B, K) teacher scores for positive, negative and those candidates, NaN where
    there is none. The student's logits are cos / ``temperature``, those of eq. 3. A batch
    whose labels are all NaN (a source without candidates) skips the term and does not
    embed its candidate columns.

    ``mini_batch_size > 0`` turns on gradient caching (GradCache, through
    sentence-transformers' ``CachedLossMixin``): embeddings are computed in mini-batches
    without a graph, the loss of the whole batch is back-propagated to them, and each
    mini-batch is embedded again with its cached gradient, so memory follows the mini-batch
    while the loss sees the full batch. It works with every objective: the distillation term
    is a function of the embeddings like eq. 3.
    """
    torch = require("torch", extra="train", purpose="training")
    from sentence_transformers.base.losses.gradcache import CachedLossMixin
    from sentence_transformers.base.losses.merged_forward import embed_columns

    from geckokit.train.losses import distill_loss, matryoshka_loss

    objective = Objective.parse(objective) if isinstance(objective, str) else objective
    distilling = objective is not Objective.CONTRASTIVE

    class GeckoLoss(CachedLossMixin, torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.mini_batch_size = mini_batch_size
            self._neg_mask: Any = None
            self._teacher: Any = None

        def _loss(self, embeddings: list[Any]) -> Any:
            neg = embeddings[2] if len(embeddings) > 2 else None
            loss = matryoshka_loss(
                embeddings[0],
                embeddings[1],
                neg,
                dims=dims,
                temperature=temperature,
                same_tower=same_tower,
                neg_mask=self._neg_mask,
                gather_across_devices=gather_across_devices,
            )
            if self._teacher is None:
                return loss
            candidates = torch.stack(embeddings[1:], dim=1)  # (B, K, dim): pos, neg, others
            return loss + distill_weight * distill_loss(
                embeddings[0],
                candidates,
                self._teacher,
                objective=objective,
                dims=dims,
                temperature=temperature,
                teacher_temperature=teacher_temperature,
            )

        def forward(self, sentence_features: list[dict[str, Any]], labels: Any = None) -> Any:
            features = list(sentence_features)
            self._teacher = None
            if distilling and labels is not None and bool(torch.isfinite(labels).any()):
                if labels.shape != (labels.shape[0], len(features) - 1):
                    raise ValueError(
                        f"teacher scores of shape {tuple(labels.shape)} for {len(features) - 1} "
                        "candidate columns (positive, negative and the others)"
                    )
                self._teacher = labels.float()  # (B, K)
            else:
                features = features[:3]  # no teacher in this batch: its candidates stay unembedded
            # an empty negative tokenizes to [CLS] [SEP] only
            self._neg_mask = (
                features[2]["attention_mask"].sum(dim=1) > 2 if len(features) > 2 else None
            )
            if self.mini_batch_size > 0:
                return self.forward_cached(features, labels)
            return self._loss(embed_columns(self.model, features))

        def calculate_loss(
            self, reps: list[list[Any]], labels: Any = None, *, with_backward: bool = False
        ) -> Any:
            loss = self._loss([torch.cat(mbs, dim=0) for mbs in reps])  # (B, dim) per column
            if with_backward:
                loss.backward()
                loss = loss.detach()
            return loss

    return GeckoLoss()


def _batch_sampler(
    sources: list[str],
    texts: list[tuple[str, str, str]],
    weights: dict[str, float] | None,
    *,
    world_size: int = 1,
) -> Any:
    """A sampler class over planned batches. The trainer gives it the per-process batch
    size; it plans global batches of ``world_size`` times that (the same plan on every
    process: the seed is shared) and yields their slices (:func:`device_slices`), which the
    trainer's sharded loader deals out one per process."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    from geckokit.train.batching import device_slices, plan_batches

    class PlannedBatchSampler(DefaultBatchSampler):
        def __init__(self, dataset: Any, batch_size: int, drop_last: bool, **kwargs: Any) -> None:
            super().__init__(dataset, batch_size=batch_size, drop_last=drop_last, **kwargs)
            self._plan = self._slices(self.seed)

        def _slices(self, seed: int) -> list[list[int]]:
            plan = plan_batches(
                sources,
                texts,
                batch_size=self.batch_size * world_size,
                weights=weights,
                seed=seed,
            )
            return device_slices(plan, world_size=world_size)

        def __iter__(self):  # type: ignore[no-untyped-def]
            yield from self._slices(self.seed + self.epoch)

        def __len__(self) -> int:
            return len(self._plan)

    return PlannedBatchSampler


def train(
    mixture_dir: str | Path,
    out: str | Path,
    *,
    config: TrainConfig | None = None,
    resume: bool = True,
    prefinetune: str | Path | None = None,
) -> dict[str, Any]:
    """Fine-tune ``config.base`` on the mixture in ``mixture_dir`` into ``out/model`` and
    return the run manifest. With ``resume`` the newest checkpoint under ``out/checkpoints``
    is continued.

    ``prefinetune`` (pairs as :func:`geckokit.train.pairs.load_pairs` reads them) adds the
    paper's optional first stage: the base is first trained on those pairs with in-batch
    negatives only (no same-tower or hard negatives, full width) into
    ``out/prefinetune/model``, and fine-tuning starts from there. A finished stage is not
    run again."""
    config = config or TrainConfig()
    mixture_dir, out = Path(mixture_dir), Path(out)
    # eq. 3 alone reads the text columns, not the FRet rows' candidates
    contrastive = config.objective is Objective.CONTRASTIVE
    columns = ["query", "positive", "negative", "source"] if contrastive else None
    table = read_shards(mixture_dir / "mixture", columns=columns)
    if table is None or table.num_rows == 0:
        raise ValueError(f"{mixture_dir}: no mixture/ shards; run `geckokit mix` first")
    if config.text_format is TextFormat.PLAIN:
        table = as_plain_text(table)
    mix_manifest = read_json(mixture_dir / MANIFEST) or {}
    weights = config.weights if config.weights is not None else mix_manifest.get("weights")
    extra, distillation = _distillation_columns(table, config, mixture_dir)

    pre_manifest = None
    base = config.base
    if prefinetune is not None:
        pre_manifest = prefinetune_encoder(
            prefinetune, out / "prefinetune", config=config, resume=resume
        )
        base = pre_manifest["model"]

    model = _load_base(base, config)
    width = embedding_width(model)
    dims = config.matryoshka_dims or default_dims(width)
    if any(d > width or d < 1 for d in dims):
        raise ValueError(f"Matryoshka dims must lie in [1, {width}] for {config.base}, got {dims}")
    if config.gradcache_mini_batch < 0 and mini_batch_size(config):
        log.info(
            "gradient caching with mini-batch %d (auto: a step embeds more than %d texts)",
            mini_batch_size(config),
            AUTO_CACHE_ABOVE,
        )
    loss = build_loss(
        model,
        dims,
        temperature=config.temperature,
        same_tower=config.same_tower,
        mini_batch_size=mini_batch_size(config),
        objective=config.objective,
        distill_weight=config.distill_weight,
        teacher_temperature=config.teacher_temperature,
        gather_across_devices=config.gather_across_devices,
    )
    rows = table.select(["query", "positive", "negative", "source"]).to_pydict()
    fit = _fit(
        model,
        rows,
        out,
        loss=loss,
        config=config,
        weights=weights,
        max_steps=config.max_steps,
        epochs=config.epochs,
        learning_rate=config.learning_rate,
        resume=resume,
        extra=extra,
    )
    unified = config.text_format is TextFormat.UNIFIED
    model.prompts = {"query": QUERY_PROMPT, "document": DOCUMENT_PROMPT} if unified else {}
    model.default_prompt_name = None
    target = out / "model"
    info = {
        "geckokit": environment()["geckokit"],
        "base": config.base,
        "matryoshka_dims": dims,
        "loss": "Gecko eq. 3: in-batch positives + same-tower query negatives + own hard negative, Matryoshka",
        "temperature": config.temperature,
        "same_tower": config.same_tower,
        "objective": config.objective.value,
        "distillation": distillation,
        "prefinetune": _pre_info(pre_manifest),
        "mixture": {
            "source": str(mixture_dir),
            "rows": table.num_rows,
            "sources": mix_manifest.get("sources"),
            "weights": weights,
        },
        "text_format": config.text_format.value,
        "prompts": model.prompts,
    }
    manifest = {
        "stage": "train",
        "config": config.model_dump(mode="json"),
        "model": str(target),
        **fit,
        "matryoshka_dims": dims,
        "gradcache_mini_batch": mini_batch_size(config),
        "distillation": distillation,
        "prefinetune": pre_manifest,
        "environment": environment(),
    }
    if is_main_process():  # under torchrun, one process writes the run
        model.save(str(target))
        (target / "geckokit.json").write_text(json.dumps(info, indent=2) + "\n")
        _append_card(target / "README.md", info, config, fit["steps"])
        write_json(manifest, out / MANIFEST)
    barrier()
    return manifest


#: The TrainConfig settings that only a distillation objective reads.
_DISTILL_SETTINGS = ("distill_weight", "teacher", "teacher_temperature", "distill_candidates")

#: What each distillation objective adds to eq. 3, for the model card.
_OBJECTIVES = {
    Objective.KL: "listwise KL divergence from the LLM's softmax over a query's candidates to "
    "the encoder's (ART)",
    Objective.MARGIN_MSE: "MSE between the encoder's and the LLM's positive-minus-candidate "
    "score margins (Margin-MSE, as in GPL)",
}


def as_plain_text(table: Any) -> Any:
    """The mixture with its text columns in plain text (:func:`geckokit.format.plain_query`
    for queries, :func:`~geckokit.format.plain_document` for passages and candidates)."""
    import pyarrow as pa

    converters = {"query": plain_query, "positive": plain_document, "negative": plain_document}
    for column, convert in converters.items():
        if column in table.column_names:
            values = [convert(v) if v else v for v in table[column].to_pylist()]
            table = table.set_column(
                table.schema.get_field_index(column), column, pa.array(values, pa.string())
            )
    if "candidate_texts" in table.column_names:
        lists = [
            None if texts is None else [plain_document(t) if t else t for t in texts]
            for texts in table["candidate_texts"].to_pylist()
        ]
        table = table.set_column(
            table.schema.get_field_index("candidate_texts"),
            "candidate_texts",
            pa.array(lists, pa.list_(pa.string())),
        )
    return table


def _distillation_columns(
    table: Any, config: TrainConfig, mixture_dir: Path
) -> tuple[dict[str, list[Any]], dict[str, Any] | None]:
    """The extra dataset columns of a distillation objective (``candidate_1`` ... text
    columns, then ``label`` with the teacher scores) and its summary for the manifest; no
    columns and None for the contrastive objective.

    FRet rows without a usable teacher score (a ``seed``-fusion mine, a fret table from
    before the candidates' texts were stored) train with eq. 3 alone, with a warning; a
    mixture where no row can teach is an error, as the objective would change nothing."""
    if config.objective is Objective.CONTRASTIVE:
        unused = sorted(set(_DISTILL_SETTINGS) & config.model_fields_set)
        if unused:
            log.warning("%s: no effect with the contrastive objective", ", ".join(unused))
        return {}, None
    if config.distill_weight == 0:
        log.warning(
            "distill_weight is 0: the %s term is computed but adds nothing", config.objective.value
        )
    what = f"--objective {config.objective.value} with --teacher {config.teacher.value}"
    missing = [c for c in CANDIDATE_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(
            f"{mixture_dir}: the mixture has no candidate columns ({', '.join(missing)}): it was "
            f"built before mixtures carried the LLM's ranking; rebuild it with `geckokit mix` "
            f"to train with {what}"
        )
    from geckokit.train.teacher import TeacherColumns, teacher_columns

    k = config.distill_candidates
    rng = random.Random(config.seed)
    parts = [  # in chunks: a row's N candidate texts are Python strings only while it is read
        teacher_columns(batch.to_pydict(), teacher=config.teacher, k=k, rng=rng)
        for batch in table.select(["positive", "negative", *CANDIDATE_COLUMNS]).to_batches(4096)
    ]
    columns = TeacherColumns(
        texts=[t for part in parts for t in part.texts],
        scores=[v for part in parts for v in part.scores],
        with_teacher=sum(part.with_teacher for part in parts),
        fret_rows=sum(part.fret_rows for part in parts),
    )
    if columns.with_teacher == 0:
        raise ValueError(
            f"{what}: none of the mixture's {table.num_rows} rows ({columns.fret_rows} from "
            f"FRet) has two or more {config.teacher.value} scores with candidate texts. A mine "
            "with the seed fusion scores nothing (mine with an LLM fusion); a fret table "
            "written before it stored the candidates' texts needs `geckokit mine` rerun on "
            "its folder (no LLM work) and `geckokit mix` again. Or train with --objective "
            "contrastive."
        )
    if columns.with_teacher < columns.fret_rows:
        log.warning(
            "%d of %d FRet rows have no usable %s scores: they train with eq. 3 alone",
            columns.fret_rows - columns.with_teacher,
            columns.fret_rows,
            config.teacher.value,
        )
    extra: dict[str, list[Any]] = {
        f"candidate_{j + 1}": [texts[j] for texts in columns.texts] for j in range(k - 2)
    }
    extra["label"] = columns.scores
    summary = {
        "objective": config.objective.value,
        "term": _OBJECTIVES[config.objective],
        "weight": config.distill_weight,
        "teacher": config.teacher.value,
        "teacher_temperature": config.teacher_temperature,
        "candidates": k,
        "student_scores": f"cosine / temperature ({config.temperature})",
        "dims": "the Matryoshka dims of eq. 3",
        "rows_with_teacher": columns.with_teacher,
        "fret_rows": columns.fret_rows,
    }
    return extra, summary


def prefinetune_encoder(
    pairs: str | Path,
    out: str | Path,
    *,
    config: TrainConfig | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """Pre-finetune ``config.base`` on text pairs with in-batch negatives only (Gecko,
    section 3.3) into ``out/model``; returns the stage manifest. A finished stage with the
    same pairs and settings is returned as it is."""
    from geckokit.train.pairs import load_pairs

    config = config or TrainConfig()
    out = Path(out)
    settings: dict[str, Any] = {
        "pairs": str(Path(pairs).resolve()),
        "base": config.base,
        "steps": config.prefinetune_steps,
        "epochs": config.prefinetune_epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.prefinetune_learning_rate or config.learning_rate,
        "temperature": config.temperature,
        "seed": config.seed,
    }
    if config.text_format is TextFormat.PLAIN:  # unified: the key is absent, as it was before
        settings["text_format"] = config.text_format.value
    done = read_json(out / MANIFEST)
    if resume and done and done.get("settings") == settings and (out / "model").is_dir():
        log.info("pre-finetuning: reusing the finished stage in %s", out)
        return done
    table = load_pairs(pairs)
    if config.text_format is TextFormat.PLAIN:
        table = as_plain_text(table)
    rows = table.to_pydict()
    rows["negative"] = [""] * table.num_rows
    model = _load_base(config.base, config)
    width = embedding_width(model)
    loss = build_loss(
        model,
        [width],
        temperature=config.temperature,
        same_tower=False,
        gather_across_devices=config.gather_across_devices,
    )
    fit = _fit(
        model,
        rows,
        out,
        loss=loss,
        config=config,
        weights=None,
        max_steps=config.prefinetune_steps,
        epochs=config.prefinetune_epochs,
        learning_rate=settings["learning_rate"],
        resume=resume,
        with_negatives=False,
    )
    manifest = {
        "stage": "prefinetune",
        "settings": settings,
        "model": str(out / "model"),
        "pairs": table.num_rows,
        "sources": dict(Counter(rows["source"])),
        "loss": "in-batch negatives only (InfoNCE), full width",
        **fit,
        "environment": environment(),
    }
    if is_main_process():  # under torchrun, one process writes; the others wait to read it
        model.save(str(out / "model"))
        write_json(manifest, out / MANIFEST)
    barrier()
    return manifest


def _load_base(name: str, config: TrainConfig) -> Any:
    require("sentence_transformers", extra="train", purpose="training")
    require(
        "datasets", extra="train", purpose="training (pip install 'sentence-transformers[train]')"
    )
    from geckokit.encoder import load_encoder

    model = load_encoder(name)
    model.max_seq_length = config.max_seq_length
    return model


def _pre_info(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    if manifest is None:
        return None
    return {
        "pairs": manifest["settings"]["pairs"],
        "rows": manifest["pairs"],
        "steps": manifest["steps"],
        "loss": manifest["loss"],
    }


def _fit(
    model: Any,
    rows: dict[str, list[Any]],
    out: Path,
    *,
    loss: Any,
    config: TrainConfig,
    weights: dict[str, float] | None,
    max_steps: int,
    epochs: float,
    learning_rate: float,
    resume: bool,
    with_negatives: bool = True,
    extra: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    """Run sentence-transformers' trainer over ``rows`` (query, positive, negative, source)
    with planned batches; checkpoints under ``out/checkpoints`` (the newest is resumed).
    ``extra`` columns (distillation candidates and labels) follow the three text columns."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )

    sources = rows["source"]
    texts = list(zip(rows["query"], rows["positive"], rows["negative"], strict=True))
    columns = ["query", "positive", "negative"] if with_negatives else ["query", "positive"]
    dataset = Dataset.from_dict({**{c: rows[c] for c in columns}, **(extra or {})})
    world_size = processes()
    per_device = _per_device_batch(config, world_size)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=per_device,
        num_train_epochs=epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        report_to="none",
        dataloader_drop_last=True,
        disable_tqdm=False,
        # under torchrun without CUDA the trainer would run each process alone (one process
        # each, the same batches) unless told it trains on CPUs (accelerate's MULTI_CPU)
        use_cpu=world_size > 1 and not _cuda(),
    )
    if args.world_size != world_size:
        raise ValueError(
            f"torchrun started {world_size} processes but the trainer sees {args.world_size}; "
            "each would train alone on the same batches"
        )
    from geckokit.train.batching import plan_batches

    if not plan_batches(sources, texts, batch_size=config.batch_size, weights=weights):
        raise ValueError(
            f"no full batch of {config.batch_size} rows with distinct texts can be drawn from "
            f"{len(texts)} rows; use a smaller batch size or more data"
        )
    sampler_class = _batch_sampler(sources, texts, weights, world_size=world_size)

    class PlannedTrainer(SentenceTransformerTrainer):
        # the sampler lives on the trainer, not in the (pickled) training arguments
        def get_batch_sampler(
            self,
            dataset: Any,
            batch_size: int,
            drop_last: bool,
            valid_label_columns: Any = None,
            generator: Any = None,
            seed: int = 0,
        ) -> Any:
            return sampler_class(
                dataset,
                batch_size=batch_size,
                drop_last=drop_last,
                valid_label_columns=valid_label_columns,
                generator=generator,
                seed=seed,
            )

    trainer = PlannedTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    _log_instead_of_printing(trainer)
    checkpoints = _whole_checkpoints(out / "checkpoints", delete=is_main_process())
    t0 = time.perf_counter()
    resumed_from = str(checkpoints[-1]) if resume and checkpoints else None
    trainer.train(resume_from_checkpoint=resumed_from)
    seconds = time.perf_counter() - t0
    losses = [
        {"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e
    ]
    return {
        "steps": trainer.state.global_step,
        "processes": world_size,
        "resumed_from": resumed_from,
        "seconds": round(seconds, 1),
        "loss_curve": losses,
    }


def _cuda() -> bool:
    torch = require("torch", extra="train", purpose="training")
    return bool(torch.cuda.is_available())


def processes() -> int:
    """How many processes train together: ``WORLD_SIZE`` as ``torchrun`` sets it (1 when
    unset). Read before the trainer starts torch.distributed, so the batch can be split."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be a whole number, got {value!r}") from None
    if size < 1:
        raise ValueError(f"WORLD_SIZE must be at least 1, got {size}")
    return size


def _per_device_batch(config: TrainConfig, world_size: int) -> int:
    """Each process's share of the global batch ``config.batch_size``; logs what several
    processes do with it."""
    if world_size == 1:
        return config.batch_size
    if config.batch_size % world_size:
        raise ValueError(
            f"batch_size {config.batch_size} does not split evenly over {world_size} processes; "
            f"use a multiple of {world_size} (it is the global batch)"
        )
    per_device = config.batch_size // world_size
    if config.gather_across_devices:
        log.info(
            "%d processes, %d rows each: eq. 3 gathers the global batch of %d from all of them",
            world_size,
            per_device,
            config.batch_size,
        )
    else:
        log.warning(
            "gather_across_devices is off: each of the %d processes contrasts its %d queries "
            "with its own slice only, not the global batch of %d (fewer in-batch and "
            "same-tower negatives than one process would use)",
            world_size,
            per_device,
            config.batch_size,
        )
    return per_device


#: what a checkpoint holds once written whole: the trainer's state and the model's weights
_STATE = "trainer_state.json"
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def _whole_checkpoints(folder: Path, *, delete: bool = True) -> list[Path]:
    """The checkpoints under ``folder`` that were written whole, oldest first. One cut
    short (the run was stopped while writing it) is deleted with a warning (with
    ``delete``: under torchrun only rank 0 deletes), so that a resumed run starts from the
    newest whole one and writes that step again."""
    whole = []
    for path in sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])):
        if (path / _STATE).is_file() and any((path / w).is_file() for w in _WEIGHTS):
            whole.append(path)
        elif delete:
            log.warning(
                "%s was not written whole (the run stopped while writing it): deleted", path
            )
            shutil.rmtree(path)
    return whole


def _log_instead_of_printing(trainer: Any) -> None:
    """Keep the trainer's progress bar, but send the lines it prints under it (loss and
    learning rate every ``logging_steps``, the run's speed at the end) to this module's log,
    which the CLI shows or keeps in the run's log file."""
    from transformers.trainer_callback import ProgressCallback

    class LoggedProgress(ProgressCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            if state.is_world_process_zero and logs:
                log.info("training: %s", {k: v for k, v in logs.items() if k != "total_flos"})

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(LoggedProgress())


def _distill_card(distillation: dict[str, Any] | None) -> list[str]:
    if not distillation:
        return []
    d = distillation
    return [
        f"- Score distillation (`{d['objective']}`): plus {d['weight']} x the {d['term']}, "
        f"over {d['candidates']} of each query's candidates (the positive, the hard negative "
        f"and others spread over the ranking); teacher: the LLM's `{d['teacher']}` scores / "
        f"{d['teacher_temperature']}; student: {d['student_scores']}, over {d['dims']}; "
        f"{d['rows_with_teacher']} of {d['fret_rows']} FRet rows had teacher scores."
    ]


def _append_card(card: Path, info: dict[str, Any], config: TrainConfig, steps: int) -> None:
    text = card.read_text() if card.exists() else ""
    sources = info["mixture"]["sources"] or {}
    lines = [
        "",
        "## Trained with geckokit",
        "",
        f"- Base model: `{config.base}`; {steps} steps, batch size {config.batch_size}, learning rate {config.learning_rate}.",
        f"- Loss: {info['loss']}, temperature {config.temperature}.",
        *_distill_card(info.get("distillation")),
        f"- Matryoshka dimensions: {', '.join(map(str, info['matryoshka_dims']))} (truncate with `truncate_dim=`).",
        "- Data: "
        + (
            ", ".join(f"{s} ({n} rows)" for s, n in sources.items())
            or str(info["mixture"]["source"])
        ),
        f"- Prompts: queries `{QUERY_PROMPT}...` (replace the task to suit), documents `{DOCUMENT_PROMPT}...`",
    ]
    pre = info.get("prefinetune")
    if pre:
        lines.append(
            f"- Pre-finetuned first on {pre['rows']} text pairs from `{pre['pairs']}` "
            f"({pre['steps']} steps, {pre['loss']})."
        )
    lines.append("")
    card.write_text(text + "\n".join(lines))
