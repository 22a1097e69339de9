"""Robust parsing of the LLM's JSON answer for FRet step 1.

Small models wrap JSON in code fences, add prose around it, use single quotes or leave a
trailing comma. The parser finds the first balanced ``{...}``, repairs the common slips and
falls back to pulling the two fields out with a pattern; a failure says why.
"""

from __future__ import annotations

import json
import re
from typing import Any


class ParseError(ValueError):
    """The answer holds no usable task and query; ``reason`` is a short tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_FIELD = r'["\']{name}["\']\s*:\s*"((?:[^"\\]|\\.)*)"'


def _balanced_objects(text: str) -> list[str]:
    found, depth, start, in_str, esc = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                found.append(text[start : i + 1])
    return found


def _loads(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        repaired = re.sub(r",\s*([}\]])", r"\1", candidate)  # trailing commas
        if "'" in repaired and '"' not in repaired:
            repaired = repaired.replace("'", '"')
        return json.loads(repaired)


def parse_task_query(text: str) -> tuple[str, str]:
    """``(task, query)`` from an LLM answer, or :class:`ParseError` (reason ``no_json``,
    ``missing_task`` or ``missing_query``)."""
    if not text or not text.strip():
        raise ParseError("empty_output")
    fenced = _FENCE.findall(text)
    candidates = [c for block in fenced for c in _balanced_objects(block)] + _balanced_objects(text)
    for candidate in candidates:
        try:
            obj = _loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            lowered = {str(k).strip().lower(): v for k, v in obj.items()}
            task, query = lowered.get("task"), lowered.get("query")
            if isinstance(query, str) and query.strip():
                if not isinstance(task, str) or not task.strip():
                    raise ParseError("missing_task", text[:200])
                return task.strip(), query.strip()
            if "query" not in lowered:
                continue
            raise ParseError("missing_query", text[:200])
    # last resort: the fields written out without valid JSON around them
    task_m = re.search(_FIELD.format(name="task"), text)
    query_m = re.search(_FIELD.format(name="query"), text)
    if query_m and task_m:
        return _unescape(task_m.group(1)), _unescape(query_m.group(1))
    if query_m:
        raise ParseError("missing_task", text[:200])
    raise ParseError("no_json", text[:200])


def _unescape(value: str) -> str:
    try:
        return str(json.loads(f'"{value}"')).strip()
    except json.JSONDecodeError:
        return value.strip()
