"""The task string each benchmark gets in the unified format (Gecko, Appendix, Table 9).

Gecko evaluates with one short task string per dataset, put in front of every query (and of
both sides of a symmetric task): ``task: {task} | query: {text}``. Table 9 of the paper lists
them; for example SciFact and NFCorpus take "fact checking", FiQA "question answering" and
ArguAna "semantic similarity". The strings below follow that table where it names the set;
entries marked "ours" apply the same reasoning to sets the table does not cover. Every
other task takes the default of its kind (:data:`KIND_DEFAULTS`).

This module is the one place that holds them: evaluation reads them through
:func:`task_string`, and the formatted text itself comes from :mod:`geckokit.format`.
"""

from __future__ import annotations

import re

#: Per-benchmark strings, keyed by :func:`normalise_name` of the task name (local folder
#: name or MTEB task name: "scifact" and "SciFact" both match "scifact").
TASK_STRINGS: dict[str, str] = {
    # retrieval, paper Table 9
    "scifact": "fact checking",
    "nfcorpus": "fact checking",
    "fiqa": "question answering",
    "fiqa2018": "question answering",
    "arguana": "semantic similarity",
    # retrieval, ours: claim verification reads like SciFact, open QA like FiQA
    "fever": "fact checking",
    "climatefever": "fact checking",
    "hotpotqa": "question answering",
    "nq": "question answering",
}

#: The string of a task kind when its benchmark has no entry of its own. Retrieval takes
#: "search result", the generic task the trained models' saved prompts carry.
KIND_DEFAULTS: dict[str, str] = {
    "retrieval": "search result",
    "sts": "sentence similarity",
    "pair_classification": "sentence similarity",
    "classification": "classification",
    "clustering": "clustering",
}


def normalise_name(name: str) -> str:
    """Lower case, letters and digits only: "FiQA2018" -> "fiqa2018", "sts-b" -> "stsb"."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def task_string(name: str, kind: str) -> str:
    """The task string for benchmark ``name`` of ``kind`` (a :class:`~geckokit.evaluate.local.TaskKind`
    value); the kind's default when the benchmark has no entry."""
    if kind not in KIND_DEFAULTS:
        raise ValueError(f"unknown task kind {kind!r}; valid: {', '.join(KIND_DEFAULTS)}")
    return TASK_STRINGS.get(normalise_name(name), KIND_DEFAULTS[kind])
