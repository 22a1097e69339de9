"""The task string of each benchmark (Gecko, Table 9); they live in :mod:`geckokit.tasks`,
with every other task string, and are re-exported here."""

from __future__ import annotations

from geckokit.tasks import KIND_DEFAULTS, TASK_STRINGS, normalise_name, task_string

__all__ = ["KIND_DEFAULTS", "TASK_STRINGS", "normalise_name", "task_string"]
