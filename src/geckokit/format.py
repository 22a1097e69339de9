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


def plain_query(text: str) -> str:
    """A unified-format query as plain text: the query without its ``task: ... | query: ``
    prefix (text not in that form is returned as it is)."""
    if text.startswith("task: ") and " | query: " in text:
        return text.split(" | query: ", 1)[1]
    return text


def plain_document(text: str) -> str:
    """A unified-format document as plain text: its title and text joined by a space (the
    text alone for title ``none``). The query form (a symmetric task's side) loses its task
    prefix; other text is returned as it is."""
    if not text.startswith("title: ") or " | text: " not in text:
        return plain_query(text)
    title, body = text[len("title: ") :].split(" | text: ", 1)
    return body if title == "none" else f"{title} {body}".strip()
