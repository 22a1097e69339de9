"""MkDocs hook: the stages of a distill run as a markdown table, from the code.

A page asks for it with a line of its own::

    <!-- stage-table -->

and gets one row per stage (:class:`geckokit.runs.manifest.Stage`, in pipeline order): its
folder in the run, what it does, and the settings whose change leaves it (and every later
stage) stale (less those that only say how the stage drives its LLM), as
:mod:`geckokit.pipeline.stages` declares them, so the page cannot drift from what a rerun
actually refuses.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Document the code of this checkout, whichever geckokit is installed.
_SRC = str(Path(__file__).resolve().parents[2] / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

MARKER = "<!-- stage-table -->"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace every marker line of the page with the stage table."""
    if MARKER not in markdown:
        return markdown
    return (
        "\n".join(
            stage_table() if line.strip() == MARKER else line for line in markdown.splitlines()
        )
        + "\n"
    )


def stage_table() -> str:
    from geckokit.pipeline.stages import STEPS

    rows = [
        "| stage (`--until`) | writes | what it does | stale when these settings change |",
        "|---|---|---|---|",
    ]
    for i, step in enumerate(STEPS):
        keys = ", ".join(f"`{k}`" for k in step.settings)
        before = STEPS[i - 1] if i else None
        if before is not None and before.in_place:  # the stage before takes them in place
            taken = ", ".join(f"`{k}`" for k in before.in_place)
            keys += f"; {taken} (`{before.stage.folder}/` chooses again from what it stored)"
        if step.driving:  # how the LLM is driven: free to change
            keys += "; not " + ", ".join(f"`{k}`" for k in step.driving)
        folder = step.stage.folder + ("" if "." in step.stage.folder else "/")
        what = keys or "none: written anew each time"
        rows.append(f"| `{step.stage.value}` | `{folder}` | {step.title} | {what} |")
    return "\n".join(rows)
