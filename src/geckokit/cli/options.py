"""Options shared by several commands, so they read the same everywhere."""

from __future__ import annotations

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
