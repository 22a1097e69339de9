"""Run folders: one stage's settings per folder, checked before a rerun resumes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geckokit.io import MANIFEST, environment, read_json, write_json


class RunMismatchError(ValueError):
    """The output folder holds a run made with other settings."""


def open_run(out: Path, identity: dict[str, Any]) -> None:
    """Start or resume the run in ``out`` whose settings are ``identity`` (a dict with
    ``stage``, and ``model`` holding an ``id`` when an LLM is involved).

    A folder that holds a run with other settings raises :class:`RunMismatchError` instead
    of mixing two runs; the model is compared by id (its path may differ between machines),
    and the ``source`` paths that inputs were read from are recorded but not compared, so a
    run folder and its inputs may move (their counts, formats and hashes are compared).
    """
    previous = read_json(out / MANIFEST)
    if previous is not None:
        mismatched = [
            k
            for k in identity
            if k != "model" and _located(previous.get(k)) != _located(identity[k])
        ]
        if previous.get("model", {}).get("id") != identity.get("model", {}).get("id"):
            mismatched.append("model")
        if mismatched:
            raise RunMismatchError(
                f"{out} holds a {previous.get('stage', '')} run with different "
                f"{', '.join(mismatched)}; use another --out folder (or delete this one) to start afresh"
            )
    write_json({**identity, "status": "running", "environment": environment()}, out / MANIFEST)


def _located(value: Any) -> Any:
    """``value`` without the ``source`` entries of its dicts, at any depth."""
    if isinstance(value, dict):
        return {k: _located(v) for k, v in value.items() if k != "source"}
    return value
