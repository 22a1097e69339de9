"""Options shared by several commands, so they read the same everywhere."""

from __future__ import annotations

from typing import Any

import click

llm_option = click.option(
    "--llm",
    "llm_spec",
    default=None,
    help="Registry name, GGUF path or OpenAI-compatible URL such as http://host:8000/v1 "
    "(default: qwen2.5-coder-0.5b-instruct).",
)
encoder_option = click.option(
    "--encoder",
    default=None,
    help="Registry name, sentence-transformers folder or hub id (default: all-minilm-l6-v2).",
)


def llm_usage_line(spent: dict[str, Any], label: str = "LLM this sitting") -> str:
    """One line for a stage manifest's ``llm_this_run`` (what a sitting cost the LLM)."""
    written = f", {spent['completion_tokens']:,} written" if spent.get("completion_tokens") else ""
    return (
        f"{label}: {spent['prompt_tokens_evaluated']:,} prompt tokens evaluated, "
        f"{spent['prompt_tokens_cached']:,} reused from cache{written}, {spent['seconds']:g} s"
    )
