"""Adapters from each data layout to mixture rows.

Every row holds already-formatted texts (see :mod:`geckokit.format`): ``query``,
``positive`` and ``negative`` (empty when the set has none), plus ``task`` and ``source``.
Asymmetric sets (FRet, QA, BEIR qrels) pair a task/query text with title/text documents;
symmetric sets (NLI, STS, classification) use the task/query form on both sides.

FRet rows also carry the LLM's whole ranking, for score distillation
(:mod:`geckokit.train.teacher`): ``positive_id`` and ``negative_id``, the query's N
``candidate_ids`` with their formatted ``candidate_texts``, and per candidate the
retriever's ``encoder_scores`` and the LLM's ``ql_scores``, ``rc_scores`` and
``fused_scores`` (NaN where a pair was not scored). Other sources leave these null.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from geckokit.format import document_text, query_text
from geckokit.retrieval.beir import load_beir
from geckokit.tasks import CLAIMS_TASK, NLI_TASK, QA_TASK, STS_TASK, pairs_task

log = logging.getLogger(__name__)

MIXTURE_SCHEMA = pa.schema(
    [
        ("task", pa.string()),
        ("query", pa.string()),
        ("positive", pa.string()),
        ("negative", pa.string()),
        ("source", pa.string()),
        # FRet only (null elsewhere): the candidates and the scores of every one of them
        ("positive_id", pa.string()),
        ("negative_id", pa.string()),
        ("candidate_ids", pa.list_(pa.string())),
        ("candidate_texts", pa.list_(pa.string())),
        ("encoder_scores", pa.list_(pa.float64())),
        ("ql_scores", pa.list_(pa.float64())),
        ("rc_scores", pa.list_(pa.float64())),
        ("fused_scores", pa.list_(pa.float64())),
    ]
)

#: The fret/ columns a mixture row's candidates and scores come from.
_FRET_SCORES = ("encoder_scores", "ql_scores", "rc_scores", "fused_scores")

#: Evidence labels that make an evidence relevant to its claim (either way) or not.
_EVIDENCE = {"supports": True, "refutes": True, "not_enough_info": False, "nei": False}


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None


def _require(record: dict[str, Any], fields: tuple[str, ...], path: Path) -> None:
    missing = [f for f in fields if f not in record]
    if missing:
        raise ValueError(
            f"{path}: records need fields {', '.join(fields)}; missing {', '.join(missing)} in {sorted(record)}"
        )


def _table(rows: list[dict[str, str]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=MIXTURE_SCHEMA)


def from_fret(fret: pa.Table, *, source: str = "fret") -> pa.Table:
    """FRet examples: the task/query against the LLM-chosen positive and hard negative,
    with the query's candidates, their formatted texts and all their scores.

    A fret/ table written before it stored the candidates' texts (``candidate_texts``) gives
    rows without them (and a warning): they train with eq. 3 but cannot teach a distillation
    objective until ``geckokit mine`` is rerun on the folder (it rebuilds fret/ from the
    stored scores, with no LLM work)."""
    names = set(fret.column_names)
    has_texts = {"candidate_ids", "candidate_titles", "candidate_texts"} <= names
    if not has_texts and fret.num_rows:
        log.warning(
            "%s: the fret table has no candidate texts (written by an older geckokit): its "
            "rows cannot teach --objective kl or margin-mse; rerun `geckokit mine` on the "
            "folder with the same settings to add them (no LLM work)",
            source,
        )
    rows = []
    for r in fret.to_pylist():
        neg = (
            document_text(r["negative_titles"][0], r["negative_texts"][0])
            if r["negative_ids"]
            else ""
        )
        row = {
            "task": r["task"],
            "query": query_text(r["task"], r["query"]),
            "positive": document_text(r["positive_title"], r["positive_text"]),
            "negative": neg,
            "source": source,
            "positive_id": r.get("positive_id"),
            "negative_id": r["negative_ids"][0] if r["negative_ids"] else None,
            "candidate_ids": r.get("candidate_ids"),
            **{c: r.get(c) for c in _FRET_SCORES},
        }
        titles, texts = r.get("candidate_titles"), r.get("candidate_texts")
        if titles is not None and texts is not None:  # null in rows pooled from older tables
            row["candidate_texts"] = [
                document_text(t, x) for t, x in zip(titles, texts, strict=True)
            ]
        rows.append(row)
    return _table(rows)


def from_nli(path: str | Path, *, task: str = NLI_TASK, source: str = "nli") -> pa.Table:
    """SNLI/MNLI-style JSONL (premise, hypothesis, label): premise as query, an entailed
    hypothesis as positive, a contradicting one as hard negative; symmetric format. Premises
    without both are skipped."""
    path = Path(path)
    by_premise: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in _jsonl(path):
        _require(r, ("premise", "hypothesis", "label"), path)
        label = str(r["label"]).lower()
        label = {"0": "entailment", "1": "neutral", "2": "contradiction"}.get(label, label)
        by_premise[r["premise"]][label].append(r["hypothesis"])
    rows = []
    for premise, labels in by_premise.items():
        for k, hyp in enumerate(labels.get("entailment", [])):
            contra = labels.get("contradiction", [])
            if not contra:
                continue
            rows.append(
                {
                    "task": task,
                    "query": query_text(task, premise),
                    "positive": query_text(task, hyp),
                    "negative": query_text(task, contra[k % len(contra)]),
                    "source": source,
                }
            )
    return _table(rows)


def from_classification(
    path: str | Path, *, task: str, source: str, seed: int = 0, max_per_label: int | None = None
) -> pa.Table:
    """JSONL (text, label): positive = another text with the same label, negative = a text
    with another label; the same unique id is appended to query, positive and negative (the
    paper's trick), so in-batch texts of the same label are not pushed apart as negatives."""
    path = Path(path)
    by_label: dict[str, list[str]] = defaultdict(list)
    for r in _jsonl(path):
        _require(r, ("text", "label"), path)
        by_label[str(r["label"])].append(str(r["text"]))
    labels = sorted(lab for lab, texts in by_label.items() if len(texts) >= 2)
    if len(labels) < 2:
        raise ValueError(f"{path}: classification needs at least two labels with two texts each")
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for label in labels:
        texts = by_label[label][: max_per_label or None]
        for i, text in enumerate(texts):
            pos = rng.choice([t for j, t in enumerate(texts) if j != i] or texts)
            other = rng.choice([lab for lab in labels if lab != label])
            neg = rng.choice(by_label[other])
            uid = f"{source}-{len(rows)}"
            rows.append(
                {
                    "task": task,
                    "query": query_text(task, f"{text} [{uid}]"),
                    "positive": query_text(task, f"{pos} [{uid}]"),
                    "negative": query_text(task, f"{neg} [{uid}]"),
                    "source": source,
                }
            )
    return _table(rows)


def from_sts(
    path: str | Path, *, min_score: float = 4.0, task: str = STS_TASK, source: str = "sts"
) -> pa.Table:
    """STS JSONL (sentence1, sentence2, score): pairs scoring at least ``min_score`` become
    symmetric positives (both directions); no hard negative."""
    path = Path(path)
    rows = []
    for r in _jsonl(path):
        _require(r, ("sentence1", "sentence2", "score"), path)
        if float(r["score"]) >= min_score:
            for a, b in ((r["sentence1"], r["sentence2"]), (r["sentence2"], r["sentence1"])):
                rows.append(
                    {
                        "task": task,
                        "query": query_text(task, a),
                        "positive": query_text(task, b),
                        "negative": "",
                        "source": source,
                    }
                )
    return _table(rows)


def from_qa_pairs(path: str | Path, *, task: str = QA_TASK, source: str = "qa") -> pa.Table:
    """Answer-selection JSONL (question, answer_sentence, label): a correct answer is the
    positive, a wrong answer to the same question the hard negative (when there is one)."""
    path = Path(path)
    by_q: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in _jsonl(path):
        _require(r, ("question", "answer_sentence", "label"), path)
        by_q[r["question"]][int(r["label"])].append(r["answer_sentence"])
    rows = []
    for question, answers in by_q.items():
        wrong = answers.get(0, [])
        for k, right in enumerate(answers.get(1, [])):
            neg = document_text(None, wrong[k % len(wrong)]) if wrong else ""
            rows.append(
                {
                    "task": task,
                    "query": query_text(task, question),
                    "positive": document_text(None, right),
                    "negative": neg,
                    "source": source,
                }
            )
    return _table(rows)


def from_claims(path: str | Path, *, task: str = CLAIMS_TASK, source: str = "claims") -> pa.Table:
    """Fact-checking JSONL in the Climate-FEVER layout: ``claim`` and ``evidences``, a list of
    ``{"evidence", "evidence_label", "article"}``. Each evidence labelled SUPPORTS or REFUTES
    is a positive (title: its article), an evidence of the same claim labelled
    NOT_ENOUGH_INFO the hard negative (the retrieved sentence annotators found beside the
    point), when there is one. Claims without a supporting or refuting evidence are skipped.
    Gecko's mixture holds FEVER for this kind of task (section 3.1)."""
    path = Path(path)
    rows = []
    for r in _jsonl(path):
        _require(r, ("claim", "evidences"), path)
        relevant: list[str] = []
        other: list[str] = []
        for ev in r["evidences"]:
            _require(ev, ("evidence", "evidence_label"), path)
            label = str(ev["evidence_label"]).lower()
            if label not in _EVIDENCE:
                raise ValueError(
                    f"{path}: evidence_label {ev['evidence_label']!r} is not one of "
                    "SUPPORTS, REFUTES, NOT_ENOUGH_INFO"
                )
            doc = document_text(ev.get("article"), ev["evidence"])
            (relevant if _EVIDENCE[label] else other).append(doc)
        for k, positive in enumerate(relevant):
            rows.append(
                {
                    "task": task,
                    "query": query_text(task, r["claim"]),
                    "positive": positive,
                    "negative": other[k % len(other)] if other else "",
                    "source": source,
                }
            )
    return _table(rows)


def from_beir_pairs(
    folder: str | Path, *, split: str = "train", task: str | None = None, source: str | None = None
) -> pa.Table:
    """A BEIR folder's qrels for ``split`` as asymmetric (query, relevant passage) pairs. The
    task defaults to the one the benchmark is evaluated with (:func:`geckokit.tasks.pairs_task`)."""
    data = load_beir(folder, split=split)
    task = task or pairs_task(data.name)
    rows = []
    for qid, rels in data.qrels.items():
        if qid not in data.queries:
            continue
        for pid, grade in rels.items():
            if grade > 0 and pid in data.corpus:
                doc = data.corpus[pid]
                rows.append(
                    {
                        "task": task,
                        "query": query_text(task, data.queries[qid]),
                        "positive": document_text(doc["title"], doc["text"]),
                        "negative": "",
                        "source": source or f"beir:{data.name}",
                    }
                )
    return _table(rows)
