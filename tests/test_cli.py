"""The command line: help, version, models, errors, and `check` with the real models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from geckokit import __version__
from geckokit.cli.main import cli


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geckokit.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_help_and_version() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("models", "check", "llm-serve", "eval", "report", "serve", "distill", "demo"):
        assert command in result.output
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_distill_summary_counts_every_sitting_and_the_llm_share(tmp_path: Path) -> None:
    from io import StringIO

    from rich.console import Console

    from geckokit.cli.distill import print_summary
    from geckokit.runs.manifest import RunManifest

    manifest = {
        "status": "finished",
        "model": "run/train/model",
        "report": "run/report.html",
        "stages": {
            "generate": {
                "seconds": 100.0,
                "sittings": 1,
                "summary": {"llm_seconds": 95.5},
                "llm_this_run": {
                    "prompt_tokens_evaluated": 5951,
                    "prompt_tokens_cached": 20000,
                    "completion_tokens": 1200,
                    "seconds": 95.5,
                },
            },
            "mine": {
                "seconds": 200.0,
                "sittings": 3,
                "summary": {"llm_seconds": 180.0},
                "llm_this_run": {
                    "prompt_tokens_evaluated": 4000,
                    "prompt_tokens_cached": 100,
                    "completion_tokens": 0,
                    "seconds": 60.0,
                },
            },
            "train": {"seconds": 50.0, "sittings": 1, "steps": 4},
            "eval": {
                "seconds": 10.0,
                "results": [{"benchmark": "b", "model": "base", "ndcg@10": 50, "recall@10": 60}],
            },
        },
    }
    buf = StringIO()
    print_summary(Console(file=buf, width=120), RunManifest.model_validate(manifest), tmp_path)
    text = buf.getvalue()
    assert "mine         200.0 s (3 sittings)" in text
    assert "generate     100.0 s\n" in text  # one sitting: not said
    assert "total        360.0 s, of which the LLM 275.5 s" in text
    assert "50.00" in text and "report: run/report.html" in text
    # each LLM stage's tokens; a stage of several sittings says its figures are the last one's
    assert (
        "generate LLM: 5,951 prompt tokens evaluated, 20,000 reused from cache, 1,200 written, "
        "95.5 s" in text
    )
    assert "mine LLM, the last of 3 sittings: 4,000 prompt tokens evaluated" in text
    assert "train LLM" not in text
    assert "FRet:" not in text  # a summary without the encoder's share says nothing of it
    summary = {"llm_seconds": 180.0, "examples": 954, "relabel_rate": 0.064}
    manifest["stages"]["mine"]["summary"] = {**summary, "positive_first_for_encoder": 0.775}
    buf = StringIO()
    print_summary(Console(file=buf, width=400), RunManifest.model_validate(manifest), tmp_path)
    text = buf.getvalue()
    assert "FRet: 954 examples, relabel rate 6.4%, positive already first for the base " in text
    assert "encoder for 77.5%. Such examples teach the encoder little: --drop-solved" in text
    # with --drop-solved, or when few are solved, no hint
    for extra in ({"solved_dropped": 699, "positive_first_for_encoder": 0.0},
                  {"positive_first_for_encoder": 0.3}):  # fmt: skip
        manifest["stages"]["mine"]["summary"] = {**summary, **extra}
        buf = StringIO()
        print_summary(Console(file=buf, width=400), RunManifest.model_validate(manifest), tmp_path)
        assert "FRet: 954 examples" in buf.getvalue() and "--drop-solved" not in buf.getvalue()
    manifest["stages"]["mine"]["summary"] = {"llm_seconds": None}  # shards from before
    buf = StringIO()
    print_summary(Console(file=buf, width=120), RunManifest.model_validate(manifest), tmp_path)
    assert "of which the LLM 95.5 s (not counting mine: not recorded)" in buf.getvalue()


def test_every_command_has_help() -> None:
    for name in cli.commands:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output


def test_import_stays_light() -> None:
    code = (
        "import sys, geckokit, geckokit.registry, geckokit.llm, geckokit.cli.main\n"
        "heavy = [m for m in ('torch', 'llama_cpp', 'ray', 'fastapi', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from geckokit._deps import MissingDependencyError, require

    with pytest.raises(MissingDependencyError, match=r"pip install 'geckokit\[ray\]'"):
        require("surely_not_installed_pkg", extra="ray", purpose="Ray pipelines")


def test_models_list_and_path() -> None:
    result = CliRunner().invoke(cli, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "qwen2.5-coder-0.5b-instruct" in result.output and "Apache-2.0" in result.output
    result = CliRunner().invoke(cli, ["models", "path", "all-minilm-l6-v2"])
    assert result.exit_code == 0 and result.output.strip().endswith("model")


def test_unknown_model_is_a_clear_error() -> None:
    result = run("models", "pull", "gpt-17")
    assert result.returncode == 2
    assert "unknown model 'gpt-17'" in result.stderr and "Known models:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_check_runs_every_operation_with_the_real_models() -> None:
    result = run("check")
    assert result.returncode == 0, result.stderr + result.stdout
    out = " ".join(result.stdout.split())
    assert "generate" in out and "query likelihood" in out and "relevance labels" in out
    assert "cosine(query, passage)" in out and out.rstrip().endswith("ok")


@pytest.mark.slow
def test_generate_command_writes_queries_and_summary(shared_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from geckokit.corpus import load_corpus
    from geckokit.fret.validate import word_overlap
    from geckokit.io import read_shards

    out = tmp_path / "run"
    args = (
        "generate",
        "--corpus",
        str(shared_data / "beir" / "scifact"),
        "--out",
        str(out),
        "--limit",
        "2",
        "--shard-size",
        "1",
        "--task-types",
        "fact checking",
        "--max-word-overlap",
        "0.9",
    )
    result = run(*args)
    assert result.returncode == 0, result.stderr
    printed = " ".join(result.stdout.split())  # rich wraps long lines
    assert "queries for 2 passages" in printed and "reject rate" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    spent = manifest["llm_this_run"]
    assert f"{spent['prompt_tokens_evaluated']:,} prompt tokens evaluated" in printed, printed
    assert f"{spent['completion_tokens']:,} written" in printed
    assert manifest["status"] == "finished" and manifest["corpus"]["passages"] == 2
    assert set(manifest["summary"]["task_types"]) <= {"fact checking"}
    # the word-overlap limit reaches the checks: no accepted query echoes its passage
    assert manifest["config"]["validation"]["max_word_overlap"] == 0.9
    passages = load_corpus(shared_data / "beir" / "scifact", limit=2).passages.to_pylist()
    text = {p["passage_id"]: f"{p['title']}\n{p['text']}" for p in passages}
    queries = read_shards(out / "queries")
    assert queries is not None and queries.num_rows > 0
    for row in queries.to_pylist():
        assert word_overlap(row["query"], text[row["passage_id"]]) <= 0.9
    corpus = str(shared_data / "beir" / "scifact")
    unknown = run(
        "generate", "--corpus", corpus, "--out", str(tmp_path / "other"), "--limit", "1",
        "--task-types", "fact checking,poetry",
    )  # fmt: skip
    assert unknown.returncode == 2 and "unknown task type 'poetry'" in unknown.stderr
    again = run(*args)  # a rerun resumes: nothing left to do, same manifest counts
    assert (
        again.returncode == 0
        and json.loads((out / "manifest.json").read_text())["counts"] == manifest["counts"]
    )
    bad = run(
        "generate",
        "--corpus",
        str(shared_data / "beir" / "scifact"),
        "--out",
        str(out),
        "--limit",
        "2",
        "--seed",
        "5",
    )
    assert bad.returncode == 2 and "different config" in bad.stderr


def test_bad_corpus_is_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "bad.jsonl"
    corpus.write_bytes(b'{"_id": "1", "text": "fine"}\n{"_id": "2", "text": "bad \xff"}\n')
    result = run("generate", "--corpus", str(corpus), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "bad.jsonl:2: invalid UTF-8" in result.stderr and "--skip-invalid" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_input_errors_are_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = ["eval", "--model", "all-minilm-l6-v2", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*base, "--tasks", "x", "--dims", "384,abc"])
    assert result.exit_code == 2 and "expected integers like 384,128" in result.output
    result = CliRunner().invoke(cli, [*base, "--tasks", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = CliRunner().invoke(cli, [*base, "--tasks", "x", "--format", "fancy"])
    assert result.exit_code == 2 and "unknown prompt format 'fancy'" in result.output
    assert "Traceback" not in result.output


def test_report_writes_one_html_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    row = {"model": "m", "format": "plain", "dim": 8, "task": "t", "kind": "sts"}
    manifest = {"stage": "eval", "results": [{**row, "metric": "cosine_spearman", "score": 0.5}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "50.00" in html


def test_distill_flags_reach_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import geckokit.cli.distill as command

    seen = {}
    monkeypatch.setattr(
        command,
        "run_and_print",
        lambda config, out, until: seen.update(config=config, out=out, until=until),
    )
    corpus, prompt = tmp_path / "c.jsonl", tmp_path / "p.toml"
    corpus.write_text("")
    bundled = Path(__file__).parents[1] / "src" / "geckokit" / "prompts" / "generate_v1.toml"
    prompt.write_text(bundled.read_text())
    args = ["distill", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--top-n", "7"]
    result = CliRunner().invoke(cli, [*args, "--prompt", str(prompt), "--until", "generate"])
    assert result.exit_code == 0, result.output
    assert seen["config"].prompt == str(prompt) and seen["config"].mine.top_n == 7
    assert seen["until"] == "generate"
    assert seen["config"].mine.drop_solved is False  # off unless asked for
    result = CliRunner().invoke(cli, [*args, "--drop-solved"])
    assert result.exit_code == 0 and seen["config"].mine.drop_solved is True, result.output
    assert seen["config"].mine.retriever == "encoder"  # the paper's, unless asked for
    result = CliRunner().invoke(cli, [*args, "--retriever", "hybrid"])
    assert result.exit_code == 0 and seen["config"].mine.retriever == "hybrid", result.output
    result = CliRunner().invoke(cli, [*args, "--retriever", "dense"])
    assert result.exit_code == 2 and "'dense' is not one of 'encoder', 'bm25', 'hybrid'" in (
        result.output
    )
    assert seen["config"].train.objective.value == "contrastive"  # unset: the default
    distilling = ["--objective", "margin-mse", "--distill-weight", "0.3", "--teacher", "rc"]
    distilling += ["--teacher-temperature", "2", "--distill-candidates", "5"]
    result = CliRunner().invoke(cli, [*args, *distilling])
    train = seen["config"].train
    assert result.exit_code == 0 and train.objective.value == "margin-mse", result.output
    assert (train.distill_weight, train.teacher.value) == (0.3, "rc")
    assert (train.teacher_temperature, train.distill_candidates) == (2.0, 5)
    result = CliRunner().invoke(cli, [*args, "--objective", "kld"])
    assert result.exit_code == 2 and "'contrastive', 'kl', 'margin-mse'" in result.output
    result = CliRunner().invoke(cli, [*args, "--prompt", "science-claims"])
    assert result.exit_code == 0 and seen["config"].prompt == "science-claims", result.output
    result = CliRunner().invoke(cli, [*args, "--prompt", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "neither a readable file nor a bundled prompt" in result.output
    prompt.write_text("")  # a template that does not parse stops the command too
    result = CliRunner().invoke(cli, [*args, "--prompt", str(prompt)])
    assert result.exit_code == 2 and "not a valid generate prompt template" in result.output


def test_train_flags_reach_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import geckokit.train.trainer as trainer

    seen = {}

    def fake_train(mixture_dir, out, *, config, prefinetune):  # type: ignore[no-untyped-def]
        seen["config"] = config
        return {"steps": 0, "seconds": 0.0, "loss_curve": [], "matryoshka_dims": [], "model": "m"}

    monkeypatch.setattr(trainer, "train", fake_train)
    args = ["train", "--mixture", str(tmp_path), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert seen["config"] == trainer.TrainConfig()  # the flags default to the config
    assert seen["config"].model_fields_set == {"matryoshka_dims"}  # what was not given is unset
    result = CliRunner().invoke(cli, [*args, "--text-format", "plain"])
    assert seen["config"].model_fields_set == {"matryoshka_dims", "text_format"}
    distilling = ["--objective", "kl", "--distill-weight", "2", "--teacher", "fused"]
    distilling += ["--teacher-temperature", "0.1", "--distill-candidates", "12"]
    result = CliRunner().invoke(cli, [*args, *distilling])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (config.objective.value, config.distill_weight, config.teacher.value) == (
        "kl",
        2.0,
        "fused",
    )
    assert (config.teacher_temperature, config.distill_candidates) == (0.1, 12)
    result = CliRunner().invoke(cli, [*args, "--distill-candidates", "1"])
    assert result.exit_code == 2 and "2<=x<=200" in result.output


def test_distill_queries_file_flags_reach_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geckokit.cli.distill as command

    seen = {}
    monkeypatch.setattr(
        command,
        "run_and_print",
        lambda config, out, until: seen.update(config=config, out=out, until=until),
    )
    corpus, log = tmp_path / "c.jsonl", tmp_path / "log.txt"
    corpus.write_text("")
    log.write_text("how do I delete a file\n")
    args = ["distill", "--corpus", str(corpus), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, [*args, "--queries-file", str(log), "--until", "mine"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert config.queries_file == str(log) and config.queries_task == "search result"
    assert not config.also_generate and not config.generates
    result = CliRunner().invoke(
        cli, [*args, "--queries-file", str(log), "--task", "code search", "--also-generate"]
    )
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert config.queries_task == "code search" and config.also_generate and config.generates
    result = CliRunner().invoke(cli, [*args, "--queries-file", str(log), "--fusion", "seed"])
    assert result.exit_code == 2 and "choose an LLM fusion" in result.output, result.output
    result = CliRunner().invoke(cli, [*args, "--queries-file", str(tmp_path / "nope.txt")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_mine_needs_queries_and_refuses_the_seed_fusion_for_the_users(tmp_path: Path) -> None:
    corpus, log = tmp_path / "c.jsonl", tmp_path / "log.txt"
    corpus.write_text("")
    log.write_text("how do I delete a file\n")
    args = ["mine", "--corpus", str(corpus), "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(cli, args)
    assert (
        result.exit_code == 2 and "give --queries (a generate run), --queries-file" in result.output
    )
    result = CliRunner().invoke(cli, [*args, "--queries", str(tmp_path), "--task", "code search"])
    assert result.exit_code == 2, result.output
    assert "--task is the task of the --queries-file queries" in result.output
    # refused before any model is loaded, in one line
    result = CliRunner().invoke(cli, [*args, "--queries-file", str(log), "--fusion", "seed"])
    assert result.exit_code == 2 and "choose an LLM fusion" in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def _noisy() -> None:
    """What the libraries under a stage print: sentence-transformers' and the model card's
    tqdm bars, torch's DataLoader warning, a transformers log line; and a geckokit detail."""
    import logging
    import warnings

    from tqdm import tqdm

    for _ in tqdm(range(3), desc="Batches"):
        pass
    for _ in tqdm(range(2), desc="Computing widget examples", leave=False):
        pass
    warnings.warn(
        "'pin_memory' argument is set as true but no accelerator is found", UserWarning, 2
    )
    logging.getLogger("transformers.trainer").warning("a library's own warning")
    logging.getLogger("tests.own_handler").warning("printed by a handler of its own")
    logging.getLogger("geckokit.fret.scripted").info("a geckokit detail")


@pytest.fixture(params=["propagate-off", "ci"])
def noisy_stages(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Path]:
    """distill's FRet and mix stages replaced at the plumbing level by scripted ones that
    print like the real libraries do (one through a handler of its own, as transformers
    does); yields a three-passage corpus. Run twice: with transformers' logger as it is
    set up here, and as it is where ``CI`` is set and ``TRANSFORMERS_VERBOSITY=error`` was
    read at import (propagating, at ERROR, with its own handler)."""
    import logging

    from transformers.utils import logging as transformers_logging

    import geckokit.encoder
    import geckokit.fret.generate_run
    import geckokit.fret.mine_run
    import geckokit.llm
    import geckokit.mixture.build
    from geckokit.io import write_json
    from geckokit.testing import ScriptedLLM

    def generate_queries(seeds: Any, out: Path, **kwargs: Any) -> dict[str, Any]:
        _noisy()
        summary = {"passages": 3, "queries": 3}
        write_json({"stage": "generate", "summary": summary}, out / "manifest.json")
        return {"summary": summary}

    def mine(queries: Any, corpus: Any, out: Path, **kwargs: Any) -> dict[str, Any]:
        _noisy()
        selection = {"fusion": "rrf", "weights": [1, 1, 0], "negative": "rank-n", "negatives_k": 1}
        manifest = {"stage": "mine", "selection": selection, "counts": {"pairs": 6}}
        write_json(manifest, out / "manifest.json")
        return {"summary": {"examples": 3, "positive_first_for_encoder": 0.3}}

    def build_mixture(out: Path, **kwargs: Any) -> dict[str, Any]:
        _noisy()
        write_json({"stage": "mix", "rows": 3}, out / "manifest.json")
        return {"rows": 3, "sources": {"fret:mine": 3}}

    monkeypatch.setattr(geckokit.fret.generate_run, "generate_queries", generate_queries)
    monkeypatch.setattr(geckokit.fret.mine_run, "mine", mine)
    monkeypatch.setattr(geckokit.mixture.build, "build_mixture", build_mixture)
    monkeypatch.setattr(geckokit.llm, "load_llm", lambda spec, **options: ScriptedLLM())
    monkeypatch.setattr(geckokit.encoder, "load_encoder", lambda name, **kwargs: None)
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"_id": f"p{i}", "title": "", "text": f"passage number {i} " * 5} for i in range(3)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    own = logging.getLogger("tests.own_handler")
    handler = logging.StreamHandler()
    own.addHandler(handler)
    own.propagate = False
    library = transformers_logging.get_logger()  # its handler is added on first use
    state = (library.propagate, library.level)
    if request.param == "ci":
        library.propagate, library.level = True, logging.ERROR
    yield corpus
    library.propagate, library.level = state
    own.removeHandler(handler)
    own.propagate = True


def test_distill_shows_one_line_per_stage_and_logs_the_rest(
    noisy_stages: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["distill", "--corpus", str(noisy_stages), "--out", str(out), "--until", "mix"]
    result = CliRunner().invoke(cli, [*args, "--fusion", "rrf"])
    assert result.exit_code == 0, result.output
    for noise in ("Batches", "Computing widget examples", "pin_memory", "library's own", "detail"):
        assert noise not in result.output
    lines = result.output.splitlines()
    for stage in ("generate", "mine", "mix"):  # one line as each starts
        assert sum(line.startswith(stage + " ") for line in lines) == 1, result.output
    assert any(line.startswith("estimate: 3 passages -> 3 queries to write") for line in lines)
    assert "distill.log" in result.output.split("log:")[-1]
    log = (out / "distill.log").read_text()
    assert log.count("Batches: 100%") == 3 and "Computing widget examples" in log
    assert "UserWarning: 'pin_memory' argument" in log
    assert "transformers.trainer: a library's own warning" in log
    assert "geckokit.fret.scripted: a geckokit detail" in log
    assert "tests.own_handler: printed by a handler of its own" in log
    # a rerun says what it keeps; -v shows the libraries' output again
    result = CliRunner().invoke(cli, ["-v", *args, "--fusion", "rrf"])
    assert result.exit_code == 0 and "finished before: kept" in result.output, result.output
    shutil.rmtree(out / "mix")  # so that another fusion is taken: mine chooses again
    result = CliRunner().invoke(cli, [*args, "--fusion", "ql", "-v"])
    assert result.exit_code == 0, result.output
    assert "again, from its stored output" in result.output and "Batches" in result.output


def test_executor_flags_reach_the_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import geckokit.cli.distill as command
    import geckokit.fret.generate_run as generate_run

    seen: dict[str, Any] = {}
    monkeypatch.setattr(command, "run_and_print", lambda config, out, until: seen.update(c=config))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "p1", "text": "Tor reads its configuration from torrc."}\n')
    args = ["distill", "--corpus", str(corpus), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, [*args, "--executor", "ray", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert (seen["c"].execution.executor, seen["c"].execution.workers) == ("ray", 3)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and seen["c"].execution.executor == "local", result.output

    def generate_queries(corpus: Any, out: Any, **options: Any) -> dict[str, Any]:
        seen.update(options)
        raise SystemExit(0)

    monkeypatch.setattr(generate_run, "generate_queries", generate_queries)
    args = ["generate", "--corpus", str(corpus), "--out", str(tmp_path / "g"), "--llm", "x.gguf"]
    ray = ["--executor", "ray", "--ray-address", "10.0.0.1:6379", "--workers", "2"]
    result = CliRunner().invoke(cli, [*args, *ray])
    assert result.exit_code == 0, result.output
    assert seen["llm"] == "x.gguf"  # the spec: each Ray worker loads it
    assert seen["executor"].ray_address == "10.0.0.1:6379" and seen["executor"].workers == 2
    result = CliRunner().invoke(cli, [*args, "--executor", "dask"])
    assert result.exit_code == 2 and "'dask' is not one of 'local', 'ray'" in result.output


def test_mine_executor_flags_reach_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geckokit.fret.mine_run as mine_run
    from geckokit.encoder import EncoderRef
    from geckokit.runs.executor import Executor, ExecutorSettings

    seen: dict[str, Any] = {}

    def mine(*args: Any, **options: Any) -> dict[str, Any]:
        seen.update(options)
        raise SystemExit(0)

    monkeypatch.setattr(mine_run, "mine", mine)
    monkeypatch.setattr(EncoderRef, "load", classmethod(lambda cls, name: None))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "p1", "text": "Tor reads its configuration from torrc."}\n')
    args = ["mine", "--corpus", str(corpus), "--queries", str(tmp_path), "--out", str(tmp_path)]
    args += ["--llm", "http://127.0.0.1:1/v1,http://127.0.0.1:2/v1", "--fusion", "rrf"]
    ray = ["--executor", "ray", "--ray-address", "10.0.0.1:6379", "--workers", "2"]
    result = CliRunner().invoke(cli, [*args, *ray])
    assert result.exit_code == 0, result.output
    assert seen["llm"] == "http://127.0.0.1:1/v1,http://127.0.0.1:2/v1"  # each worker loads it
    assert seen["executor"] == ExecutorSettings(
        executor=Executor.RAY, ray_address="10.0.0.1:6379", workers=2
    )
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert seen["executor"] == ExecutorSettings()  # local, one loop in this process
    result = CliRunner().invoke(cli, [*args, "--executor", "spark"])
    assert result.exit_code == 2 and "'spark' is not one of 'local', 'ray'" in result.output
    result = CliRunner().invoke(cli, [*args, "--executor", "ray", "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output
    assert "0 is not in the range x>=1" in result.output
