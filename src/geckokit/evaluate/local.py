"""Local benchmark files as evaluation tasks: the kind from the layout, and plain readers.

Layouts (those of ``../shared/data``, see its README; users' files in the same shapes work):

- retrieval: a BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.
- sts: ``<split>.jsonl`` files (or one ``.jsonl`` file) of ``{"sentence1","sentence2","score"}``.
- pair_classification: the same with ``"label"`` (1 = the pair matches) instead of ``"score"``.
- classification: ``train.jsonl`` and ``test.jsonl`` of ``{"text","label"}``.
- clustering: ``.jsonl`` of ``{"text","label"}`` (cluster = label). It looks like classification,
  so it is never detected: state it as ``clustering:PATH``; a classification folder then has
  its evaluation split clustered.

A task is given as a path (kind detected) or ``kind:path``; anything else that is not a
path is taken for an MTEB task name. The evaluation split is the first of ``test``, ``dev``,
``validation`` that exists. Nothing here imports mteb: :mod:`geckokit.evaluate.mteb_tasks`
turns a :class:`LocalTask` into an mteb task object.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

from geckokit.retrieval.beir import load_beir
from geckokit.types import ClosedSet

log = logging.getLogger(__name__)

EVAL_SPLITS = ("test", "dev", "validation")
#: Where classification takes its training examples, in order; a set without a train split
#: (TweetEval sentiment) trains on its validation split, with a warning.
TRAIN_SPLITS = ("train", "validation", "dev")


class TaskKind(ClosedSet):
    RETRIEVAL = "retrieval"
    STS = "sts"
    CLASSIFICATION = "classification"
    CLUSTERING = "clustering"
    PAIR_CLASSIFICATION = "pair_classification"


@dataclass(frozen=True)
class TaskSpec:
    """A parsed ``--tasks`` entry: a local path with its kind, or an MTEB task name."""

    name: str
    kind: TaskKind | None = None  # None: an MTEB task name
    path: Path | None = None


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[Any]


@dataclass
class Pairs:
    sentence1: list[str]
    sentence2: list[str]
    values: list[float]  # gold score (sts) or 0/1 label (pair_classification)


@dataclass
class LocalTask:
    """One local benchmark, read: ``data`` is a :class:`BeirData` (retrieval), :class:`Pairs`
    (sts, pair_classification), :class:`LabelledTexts` (clustering) or a pair
    ``(train, test)`` of :class:`LabelledTexts` (classification)."""

    name: str
    kind: TaskKind
    source: Path
    split: str
    revision: str  # sha256 prefix of the files read: a changed file is a new revision
    data: Any
    train_split: str | None = None


def parse_task_spec(spec: str) -> TaskSpec:
    """``PATH``, ``KIND:PATH`` or an MTEB task name -> :class:`TaskSpec`."""
    text = spec.strip()
    if not text:
        raise ValueError("empty task; give a path, KIND:PATH or an MTEB task name")
    kind: TaskKind | None = None
    head, sep, rest = text.partition(":")
    kinds = {k.value for k in TaskKind}
    if sep and head.replace("-", "_") in kinds:
        kind, text = TaskKind(head.replace("-", "_")), rest
    path = Path(text).expanduser()
    if path.exists():
        detected: TaskKind | None
        if kind is None:
            kind = detected = detect_kind(path)
        else:
            detected = detect_kind(path, required=False)
        return TaskSpec(name=_task_name(path, kind, detected), kind=kind, path=path)
    if kind is not None or "/" in text or text.endswith((".jsonl", ".tsv")):
        raise ValueError(f"task {spec!r}: {path} does not exist")
    return TaskSpec(name=text)


def _task_name(path: Path, kind: TaskKind, detected: TaskKind | None) -> str:
    base = path.stem if path.is_file() else path.name
    if path.is_file() and base in EVAL_SPLITS + TRAIN_SPLITS:
        base = path.parent.name
    if detected is not None and detected != kind:
        return f"{base}-{kind.value.replace('_', '-')}"
    return base


def _first_keys(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return set(json.loads(line))
    return set()


@overload
def detect_kind(path: Path, *, required: Literal[True] = True) -> TaskKind: ...
@overload
def detect_kind(path: Path, *, required: bool) -> TaskKind | None: ...
def detect_kind(path: Path, *, required: bool = True) -> TaskKind | None:
    """The task kind of a folder or file from its layout (see the module docstring); None
    when it cannot be told and ``required`` is false."""
    if path.is_dir() and (path / "corpus.jsonl").exists() and (path / "queries.jsonl").exists():
        return TaskKind.RETRIEVAL
    files = [path] if path.is_file() else sorted(path.glob("*.jsonl"))
    keys = _first_keys(files[0]) if files else set()
    if {"sentence1", "sentence2"} <= keys and "score" in keys:
        return TaskKind.STS
    if {"sentence1", "sentence2", "label"} <= keys:
        return TaskKind.PAIR_CLASSIFICATION
    if {"text", "label"} <= keys:
        return TaskKind.CLASSIFICATION
    if not required:
        return None
    raise ValueError(
        f"cannot tell the task kind of {path}: expected a BEIR folder (corpus.jsonl, "
        "queries.jsonl, qrels/) or .jsonl rows with sentence1/sentence2/score, "
        "sentence1/sentence2/label or text/label; or state it as KIND:PATH with KIND one of "
        + ", ".join(k.value for k in TaskKind)
    )


def _split_files(path: Path) -> dict[str, Path]:
    if path.is_file():
        return {"test": path}
    return {p.stem: p for p in sorted(path.glob("*.jsonl"))}


def _pick(available: dict[str, Path], order: tuple[str, ...], path: Path, what: str) -> str:
    for split in order:
        if split in available:
            return split
    raise ValueError(
        f"{path}: no {what} split: expected one of {', '.join(f'{s}.jsonl' for s in order)}, "
        f"found {', '.join(sorted(available)) or 'none'}"
    )


def _read_rows(path: Path, need: tuple[str, ...], digest: Any) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    digest.update(raw)
    rows = []
    for n, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [k for k in need if row.get(k) is None]
        if missing:
            raise ValueError(f"{path}:{n}: missing {', '.join(missing)} (need {', '.join(need)})")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no rows")
    return rows


def _labelled(path: Path, digest: Any) -> LabelledTexts:
    rows = _read_rows(path, ("text", "label"), digest)
    return LabelledTexts([str(r["text"]) for r in rows], [r["label"] for r in rows])


def load_local(spec: TaskSpec) -> LocalTask:
    """Read the files of a local task spec (see the module docstring for the layouts)."""
    if spec.path is None or spec.kind is None:
        raise ValueError(f"{spec.name!r} is an MTEB task name, not a local task")
    path, kind, digest = spec.path, spec.kind, hashlib.sha256()
    if kind is TaskKind.RETRIEVAL:
        qrels = {p.stem for p in (path / "qrels").glob("*.tsv")}
        split = _pick({s: path for s in qrels}, EVAL_SPLITS, path / "qrels", "evaluation")
        data: Any = load_beir(path, split=split)
        for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
            digest.update((path / name).read_bytes())
        return LocalTask(spec.name, kind, path, split, digest.hexdigest()[:12], data)
    files = _split_files(path)
    split = _pick(files, EVAL_SPLITS, path, "evaluation")
    if kind in (TaskKind.STS, TaskKind.PAIR_CLASSIFICATION):
        value = "score" if kind is TaskKind.STS else "label"
        rows = _read_rows(files[split], ("sentence1", "sentence2", value), digest)
        pairs = Pairs(
            [str(r["sentence1"]) for r in rows],
            [str(r["sentence2"]) for r in rows],
            [float(r[value]) for r in rows],
        )
        if kind is TaskKind.PAIR_CLASSIFICATION and set(pairs.values) - {0.0, 1.0}:
            raise ValueError(f"{files[split]}: pair labels must be 0 or 1")
        return LocalTask(spec.name, kind, path, split, digest.hexdigest()[:12], pairs)
    if kind is TaskKind.CLUSTERING:
        data = _labelled(files[split], digest)
        return LocalTask(spec.name, kind, path, split, digest.hexdigest()[:12], data)
    candidates = {s: p for s, p in files.items() if s != split}
    train_split = _pick(candidates, TRAIN_SPLITS, path, "training")
    if train_split != "train":
        log.warning("%s has no train split; the classifier trains on %s", path, train_split)
    train = _labelled(files[train_split], digest)
    test = _labelled(files[split], digest)
    return LocalTask(
        spec.name, kind, path, split, digest.hexdigest()[:12], (train, test), train_split
    )
