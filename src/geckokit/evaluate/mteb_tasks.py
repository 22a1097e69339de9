"""mteb task objects whose data comes from local files, so mteb's evaluators do the scoring.

Each local kind becomes a subclass of the matching mteb abstract task with a ``load_data``
that fills ``dataset`` from a :class:`~geckokit.evaluate.local.LocalTask` (no hub access).
Scores are therefore mteb's own (nDCG@10 for retrieval, Spearman of cosine similarity for
STS, accuracy of a logistic regression for classification, V-measure for clustering,
max average precision for pair classification) and mean what the MTEB leaderboard means.

Settings follow MTEB's task definitions where MTEB has the set (AmazonCounterfactual trains
on 32 examples per label, other classification sets on 8, over 10 experiments). Clustering
of a labelled set has no MTEB counterpart: all texts are embedded and k-means runs on 10
bootstrap samples of up to 2,048 texts, as MTEB's newer clustering tasks do.

Import this module only after ``require("mteb", ...)``: it imports mteb at the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import Dataset, DatasetDict
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.clustering import AbsTaskClustering
from mteb.abstasks.pair_classification import AbsTaskPairClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata

from geckokit.evaluate.local import LocalTask, TaskKind, TaskSpec, load_local, parse_task_spec
from geckokit.tasks import task_string

_BASES: dict[TaskKind, tuple[type, str, str, str]] = {
    # kind: (mteb base class, mteb type, category, main score)
    TaskKind.RETRIEVAL: (AbsTaskRetrieval, "Retrieval", "t2t", "ndcg_at_10"),
    TaskKind.STS: (AbsTaskSTS, "STS", "t2t", "cosine_spearman"),
    TaskKind.CLASSIFICATION: (AbsTaskClassification, "Classification", "t2c", "accuracy"),
    TaskKind.CLUSTERING: (AbsTaskClustering, "Clustering", "t2c", "v_measure"),
    TaskKind.PAIR_CLASSIFICATION: (
        AbsTaskPairClassification,
        "PairClassification",
        "t2t",
        "max_ap",
    ),
}

#: mteb task type -> our kind, for tasks given by MTEB name.
_MTEB_KINDS = {
    "retrieval": TaskKind.RETRIEVAL,
    "semantic-similarity": TaskKind.STS,
    "classification": TaskKind.CLASSIFICATION,
    "clustering": TaskKind.CLUSTERING,
    "pair-classification": TaskKind.PAIR_CLASSIFICATION,
}


@dataclass(frozen=True)
class TaskInfo:
    """What the manifest and the report say about a task."""

    name: str
    kind: str
    source: str  # local path, or "mteb" for a task given by name
    split: str
    main_score: str
    task_string: str
    revision: str

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def _dataset(local: LocalTask) -> Any:
    data = local.data
    if local.kind is TaskKind.RETRIEVAL:
        corpus = Dataset.from_dict(
            {
                "id": list(data.corpus),
                "title": [d["title"] for d in data.corpus.values()],
                "text": [d["text"] for d in data.corpus.values()],
            }
        )
        queries = Dataset.from_dict({"id": list(data.queries), "text": list(data.queries.values())})
        qrels = {q: {d: int(g) for d, g in data.qrels[q].items()} for q in data.queries}
        split = {"corpus": corpus, "queries": queries, "relevant_docs": qrels, "top_ranked": None}
        return {"default": {local.split: split}}
    if local.kind in (TaskKind.STS, TaskKind.PAIR_CLASSIFICATION):
        column = "score" if local.kind is TaskKind.STS else "label"
        values = data.values if local.kind is TaskKind.STS else [int(v) for v in data.values]
        rows = {"sentence1": data.sentence1, "sentence2": data.sentence2, column: values}
        return DatasetDict({local.split: Dataset.from_dict(rows)})
    if local.kind is TaskKind.CLUSTERING:
        rows = {"sentences": data.texts, "labels": [str(x) for x in data.labels]}
        return DatasetDict({local.split: Dataset.from_dict(rows)})
    train, test = data
    return DatasetDict(
        {
            local.train_split: Dataset.from_dict({"text": train.texts, "label": train.labels}),
            local.split: Dataset.from_dict({"text": test.texts, "label": test.labels}),
        }
    )


def _settings(local: LocalTask) -> dict[str, Any]:
    if local.kind is TaskKind.CLASSIFICATION:
        per_label = 32 if local.name.startswith("amazon_counterfactual") else 8
        return {"train_split": local.train_split, "samples_per_label": per_label}
    if local.kind is TaskKind.CLUSTERING:
        return {
            "max_fraction_of_documents_to_embed": None,
            "max_documents_per_cluster": min(2048, len(local.data.texts)),
        }
    if local.kind is TaskKind.STS:
        # mteb rescales gold scores to [0, 1] with these bounds (correlations do not change)
        lo, hi = min(local.data.values), max(local.data.values)
        return {"min_score": lo, "max_score": hi if hi > lo else lo + 1}
    if local.kind is TaskKind.PAIR_CLASSIFICATION:
        return {"label_column_name": "label"}
    return {}


def local_mteb_task(local: LocalTask, *, language: str = "eng-Latn") -> Any:
    """An mteb task object over the data of ``local`` (already read; never downloads).

    ``language`` only fills mteb's metadata (an ISO 639-3 code and script)."""
    base, mteb_type, category, main_score = _BASES[local.kind]
    metadata = TaskMetadata(
        name=local.name,
        dataset={"path": f"local/{local.source}", "revision": local.revision},
        description=f"{local.kind.value} task read from {local.source}",
        type=mteb_type,
        category=category,
        modalities=["text"],
        eval_splits=[local.split],
        eval_langs=[language],
        main_score=main_score,
    )

    def load_data(self: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        if not self.data_loaded:
            self.dataset = _dataset(local)
            self.data_loaded = True

    attrs = {"metadata": metadata, "load_data": load_data, **_settings(local)}
    cls = type(f"Local{mteb_type}Task", (base,), attrs)
    return cls()


def build_task(spec: str | TaskSpec) -> tuple[Any, TaskInfo]:
    """The mteb task object for a ``--tasks`` entry and what to record about it.

    A local path is read now; an MTEB task name is looked up in mteb's registry and loads
    its data from the hub later (online only)."""
    import mteb

    parsed = parse_task_spec(spec) if isinstance(spec, str) else spec
    if parsed.kind is not None:
        local = load_local(parsed)
        task = local_mteb_task(local)
        info = TaskInfo(
            name=local.name,
            kind=local.kind.value,
            source=str(local.source),
            split=local.split,
            main_score=task.metadata.main_score,
            task_string=task_string(local.name, local.kind.value),
            revision=local.revision,
        )
        return task, info
    try:
        task = mteb.get_task(parsed.name)
    except (KeyError, ValueError) as exc:
        raise ValueError(
            f"task {parsed.name!r} is neither an existing path nor an MTEB task name ({exc})"
        ) from None
    kind = mteb_kind(task.metadata)
    info = TaskInfo(
        name=task.metadata.name,
        kind=kind.value,
        source="mteb",
        split=",".join(task.eval_splits),
        main_score=task.metadata.main_score,
        task_string=task_string(task.metadata.name, kind.value),
        revision=str(task.metadata.dataset.get("revision", "")),
    )
    return task, info


def mteb_kind(metadata: Any) -> TaskKind:
    """Our kind of an mteb task (by its simplified type); ValueError for other types."""
    simplified = metadata.simplified_task_type
    if simplified not in _MTEB_KINDS:
        raise ValueError(
            f"MTEB task {metadata.name} is of type {metadata.type}; supported: retrieval, STS, "
            "classification, clustering, pair classification"
        )
    return _MTEB_KINDS[simplified]
