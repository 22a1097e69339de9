"""``--llm-timeout`` reaches the HTTP client wherever the LLM is chosen: the executor
settings of ``generate`` and ``mine``, ``distill``'s config (which does not record it: how
long to wait for a server does not change what a run computes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from geckokit.cli.main import cli
from geckokit.llm import load_llm
from geckokit.llm.openai_http import OpenAICompatibleLLM
from geckokit.llm.pool import ServerPool
from geckokit.pipeline.config import DistillConfig, load_config, saved_settings
from geckokit.registry import DEFAULT_LLM_TIMEOUT
from geckokit.runs.executor import ExecutorSettings


def test_generate_passes_the_timeout_to_its_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geckokit.cli.generate as command
    import geckokit.corpus
    import geckokit.fret.generate_run

    seen: dict[str, Any] = {}
    monkeypatch.setattr(geckokit.corpus, "load_corpus", lambda *a, **k: None)
    monkeypatch.setattr(
        geckokit.fret.generate_run,
        "generate_queries",
        lambda *a, executor, **k: seen.update(e=executor),
    )
    monkeypatch.setattr(command, "print_summary", lambda *a: None)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("")
    args = ["--corpus", str(corpus), "--out", str(tmp_path)]
    result = CliRunner().invoke(cli.commands["generate"], args)
    assert result.exit_code == 0, result.output
    assert seen["e"].llm_timeout == DEFAULT_LLM_TIMEOUT
    result = CliRunner().invoke(cli.commands["generate"], [*args, "--llm-timeout", "2.5"])
    assert result.exit_code == 0, result.output
    assert seen["e"].llm_timeout == 2.5


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_bad_timeout_is_refused_by_the_flag(tmp_path: Path, value: str) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("")
    args = ["--corpus", str(corpus), "--out", str(tmp_path), "--llm-timeout", value]
    result = CliRunner().invoke(cli.commands["mine"], [*args, "--queries", str(tmp_path)])
    assert result.exit_code == 2 and "--llm-timeout" in result.output


def test_distill_takes_the_timeout_and_does_not_record_it() -> None:
    config = load_config(None, {"corpus": "c.jsonl", "llm_timeout": 3.0})
    assert config.llm_timeout == 3.0 and config.execution.llm_timeout == 3.0
    assert "llm_timeout" not in saved_settings(config, queries_sha256=None)
    for bad in (0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="llm_timeout"):
            DistillConfig(corpus="c.jsonl", llm_timeout=bad)
    assert ExecutorSettings().llm_timeout == DEFAULT_LLM_TIMEOUT


def test_load_llm_gives_the_timeout_to_http_clients_only() -> None:
    client = load_llm("http://127.0.0.1:1/v1#m", timeout=4.0)
    assert isinstance(client, OpenAICompatibleLLM)
    assert client._client.timeout.read == 4.0 and client._client.timeout.connect == 4.0
    pool = load_llm("http://127.0.0.1:1/v1,http://127.0.0.1:2/v1#m", timeout=5.0)
    assert isinstance(pool, ServerPool)
    assert {s.client._client.timeout.read for s in pool.servers} == {5.0}
