"""The unified text format of Gecko (paper section 3.1 and Appendix B), defined once.

Queries carry their task: ``task: {task} | query: {text}``; documents carry their title:
``title: {title} | text: {text}`` with ``none`` for a missing title. Symmetric tasks (STS,
NLI, classification) put the task/query form on both sides. Training, evaluation and serving
all call these functions; the task strings themselves are :mod:`geckokit.tasks`.
"""

from __future__ import annotations


def query_text(task: str, query: str) -> str:
    """``task: {task} | query: {query}``."""
    return f"task: {task.strip()} | query: {query.strip()}"


def document_text(title: str | None, text: str) -> str:
    """``title: {title} | text: {text}`` (title ``none`` when empty or missing)."""
    title = (title or "").strip() or "none"
    return f"title: {title} | text: {text.strip()}"
