"""FRet step 1 prompt templates: the bundled ones by name, files, errors; the science prompt
with the real 0.5B model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geckokit.fret.prompts import BUNDLED_PROMPTS, load_generate_prompt


def test_bundled_prompts_load_by_name() -> None:
    default = load_generate_prompt()
    assert load_generate_prompt("default") == default
    assert default.source == "geckokit:prompts/generate_v1.toml"
    assert len(default.task_types) == 6
    science = load_generate_prompt("science-claims")
    assert science.source == "geckokit:prompts/science_claims_v1.toml"
    assert science.version == "science-claims-v1"
    assert [t.name for t in science.task_types] == ["fact checking"]
    assert len(science.examples) == 4 and science.sha256 != default.sha256
    for name in BUNDLED_PROMPTS:  # each renders a chat: its examples' task types exist
        prompt = load_generate_prompt(name)
        chat = prompt.messages(prompt.task_types[0].name, "t", "p")
        assert chat[-1]["content"].endswith("Passage: p") and len(chat) == 2 + 2 * len(
            prompt.examples
        )


def test_a_file_is_read_and_wins_over_a_bundled_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    science = load_generate_prompt("science-claims")
    text = Path(__file__).parents[2] / "src" / "geckokit" / "prompts" / "science_claims_v1.toml"
    own = tmp_path / "science-claims"
    own.write_text(text.read_text().replace('"science-claims-v1"', '"mine-v1"'))
    monkeypatch.chdir(tmp_path)
    mine = load_generate_prompt("science-claims")  # the file in the working folder
    assert mine.version == "mine-v1" and mine.source == "science-claims"
    assert mine.task_types == science.task_types and mine.sha256 != science.sha256
    assert load_generate_prompt(own).source == str(own)


def test_unknown_prompt_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'nope': neither a readable file nor a bundled prompt "
                       r"\(default, science-claims\)"):  # fmt: skip
        load_generate_prompt("nope")
    broken = tmp_path / "broken.toml"
    broken.write_text('version = "x"\n')
    with pytest.raises(ValueError, match="not a valid generate prompt template"):
        load_generate_prompt(broken)
    # on the command line: one line, exit status 2, before any model loads
    result = subprocess.run(
        [sys.executable, "-m", "geckokit.cli.main", "generate", "--corpus", str(broken),
         "--out", str(tmp_path / "out"), "--prompt", "nope"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "neither a readable file nor a bundled prompt" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_science_prompt_writes_claims_with_the_real_model(
    llm, shared_data: Path, tmp_path: Path
) -> None:
    from geckokit.corpus import load_corpus
    from geckokit.fret.generate import GenerateConfig
    from geckokit.fret.generate_run import generate_queries
    from geckokit.io import read_shards

    passages = load_corpus(shared_data / "beir" / "scifact", limit=3)
    prompt = load_generate_prompt("science-claims")
    manifest = generate_queries(
        passages, tmp_path, llm=llm, config=GenerateConfig(), prompt=prompt,
        show_progress=False,
    )  # fmt: skip
    assert manifest["prompt"] == {
        "version": "science-claims-v1",
        "sha256": prompt.sha256,
        "source": "geckokit:prompts/science_claims_v1.toml",
    }
    queries = read_shards(tmp_path / "queries")
    assert queries is not None and queries.num_rows >= 2, manifest["summary"]
    rows = queries.to_pylist()
    assert {r["task_type"] for r in rows} == {"fact checking"}
    examples = {e.query for e in prompt.examples}
    for r in rows:
        assert r["query"] not in examples and 3 <= len(r["query"].split()) <= 48, r
        assert r["task"].startswith("Given"), r
