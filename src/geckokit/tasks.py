"""Every task string geckokit uses, and the prompts derived from them, defined once.

A task string is what the unified format (:mod:`geckokit.format`, Gecko section 3.1 and
Appendix B) puts in front of a query: ``task: {task} | query: {text}``. Training, evaluation,
serving and rerank-eval import their strings from here, so that a benchmark is trained on
(``geckokit mix --pairs``) and evaluated with the same one.

- :data:`DEFAULT_QUERY_TASK`: the task of a query that names none (users' own queries, the
  server's ``input_type="query"``), and the one the trained model's saved prompts carry
  (:data:`QUERY_PROMPT`, :data:`DOCUMENT_PROMPT`).
- Evaluation (Table 9): :data:`TASK_STRINGS` per benchmark and :data:`KIND_DEFAULTS` per
  task kind, read through :func:`task_string`. A BEIR folder's train qrels
  (:func:`pairs_task`) take the same string as its evaluation.
- The training mixture's human-labelled sets: :data:`NLI_TASK`, :data:`STS_TASK`,
  :data:`QA_TASK`, :data:`CLAIMS_TASK` and :data:`CLASSIFICATION_TASKS`.
- rerank-eval: :data:`RERANK_TASKS`, the instructions the LLM judge reads
  (:func:`rerank_task`).
"""

from __future__ import annotations

import re

from geckokit.format import document_text, query_text

#: The task of a retrieval query that names none: the generic one (users' own queries).
DEFAULT_QUERY_TASK = "search result"

#: The prompts a trained model saves (sentence-transformers' ``prompts``): a query in
#: :data:`DEFAULT_QUERY_TASK`, a document without a title, each the unified format with the
#: text left out, so that ``prompt + text`` is what :mod:`geckokit.format` builds.
QUERY_PROMPT = query_text(DEFAULT_QUERY_TASK, "")
DOCUMENT_PROMPT = document_text(None, "")

# --- evaluation (Gecko, Appendix, Table 9) ---------------------------------------------------
# Gecko evaluates with one short task string per dataset, put in front of every query (and
# of both sides of a symmetric task). Table 9 of the paper lists them; for example SciFact
# and NFCorpus take "fact checking", FiQA "question answering" and ArguAna "semantic
# similarity". The strings below follow that table where it names the set; entries marked
# "ours" apply the same reasoning to sets the table does not cover. Every other task takes
# the default of its kind (:data:`KIND_DEFAULTS`).

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
    "retrieval": DEFAULT_QUERY_TASK,
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


def pairs_task(name: str) -> str:
    """The task of the (query, relevant passage) pairs of BEIR folder ``name``'s train qrels:
    the string its evaluation uses, so that training and evaluation of a benchmark agree."""
    return task_string(name, "retrieval")


# --- the training mixture's human-labelled sets (Gecko section 3.1) --------------------------

NLI_TASK = "Given a premise, retrieve a hypothesis that is entailed by the premise"
STS_TASK = "Retrieve semantically similar text"
QA_TASK = "Given a question, retrieve a sentence that answers it"
CLAIMS_TASK = "Given a claim, retrieve documents that support or refute the claim"

#: Task strings for classification sets in ../shared/data, after Gecko's Table 9 style,
#: keyed by the set's folder name.
CLASSIFICATION_TASKS: dict[str, str] = {
    "banking77": "Given an online banking query, find the corresponding intent",
    "amazon_counterfactual_en": "Classify a given Amazon customer review text as either counterfactual or not-counterfactual",
}

# --- rerank-eval (Gecko, Appendix A) ---------------------------------------------------------
# The LLM judge reads an instruction, not a short label: these describe each benchmark's
# queries and documents for the query-likelihood and relevance prompts. They are not the
# strings a trained model is evaluated with (:func:`task_string`).

#: Instructions per benchmark for ``geckokit rerank-eval``, after Gecko's Table 9 style,
#: keyed by :func:`normalise_name` of the BEIR folder's name.
RERANK_TASKS: dict[str, str] = {
    "scifact": "Given a scientific claim, retrieve documents that support or refute the claim",
    "nfcorpus": "Given a question, retrieve relevant documents that best answer the question",
    "fiqa": "Given a financial question, retrieve user replies that best answer the question",
    "arguana": "Given a claim, find documents that refute the claim",
    "cranfield": "Given a question about aeronautics, retrieve abstracts that answer it",
    "cisi": "Given a question about library and information science, retrieve relevant abstracts",
    "cacm": "Given a query about computing, retrieve relevant article records",
}
#: The rerank-eval instruction of a benchmark without one of its own.
RERANK_DEFAULT_TASK = "Given a query, retrieve relevant passages"


def rerank_task(name: str) -> str:
    """The instruction rerank-eval gives the LLM for BEIR folder ``name``."""
    return RERANK_TASKS.get(normalise_name(name), RERANK_DEFAULT_TASK)
