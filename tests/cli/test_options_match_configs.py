"""Each command's flags against its config model, so that a default cannot drift: a flag
that sets a setting is made from the field (``geckokit.cli.settings``) and says the field's
default in its help (which the CLI reference prints), and no flag written by hand restates
a setting's default (as ``serve --workers`` once did: 2 against ``ServeOptions.workers``' 1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel

from geckokit.cli.main import cli
from geckokit.cli.settings import SettingOption, flag_value, setting_default
from geckokit.fret.generate import GenerateConfig
from geckokit.fret.mine_run import MineConfig
from geckokit.pipeline.config import DistillConfig, MixSources
from geckokit.registry import default_fusion
from geckokit.runs.executor import ExecutorSettings
from geckokit.serve.app import ServeOptions
from geckokit.train.trainer import TrainConfig

#: The config model each command's flags set.
CONFIGS: dict[str, type[BaseModel]] = {
    "distill": DistillConfig,
    "generate": GenerateConfig,
    "mine": MineConfig,
    "mix": MixSources,
    "train": TrainConfig,
    "serve": ServeOptions,
}


def fields_named(model: type[BaseModel], name: str, prefix: str = "") -> list[str]:
    """The dotted keys of ``model``'s fields called ``name``, nested tables included."""
    found = [prefix + name] if name in model.model_fields else []
    for key, field in model.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            found += fields_named(nested, name, f"{prefix}{key}.")
    return found


def invoke(args: list[str]) -> Result:
    """Run a command without the ``geckokit`` group, whose set-up of logging and of the
    libraries' verbosity would outlast the test."""
    return CliRunner().invoke(cli.commands[args[0]], args[1:])


def unset_value(param: click.Parameter, ctx: click.Context) -> Any:
    """What the command's handler gets for ``param`` when the flag is not given."""
    return param.process_value(ctx, param.consume_value(ctx, {})[0])


def empty(value: Any) -> bool:
    return value is None or value == () or value == []


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_no_flag_restates_a_setting_by_hand(name: str) -> None:
    command, model = cli.commands[name], CONFIGS[name]
    ctx = click.Context(command)
    for param in command.params:
        if not isinstance(param, click.Option) or isinstance(param, SettingOption):
            continue
        if param.required:
            continue
        flag = param.opts[0].removeprefix("--").removeprefix("no-").replace("-", "_")
        default = unset_value(param, ctx)
        for key in fields_named(model, flag):
            # a flag of its own may only stand for "unset" where the setting has no default
            assert empty(default) and empty(setting_default(model, key)), (
                f"geckokit {name} {param.opts[0]} (default {default!r}) sets {key} "
                f"(default {setting_default(model, key)!r}): make it with setting_option"
            )


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_setting_flags_take_and_state_their_settings_defaults(name: str) -> None:
    command = cli.commands[name]
    ctx = click.Context(command)
    for param in command.params:
        if not isinstance(param, SettingOption):
            continue
        default = setting_default(*param.setting)
        record = param.get_help_record(ctx)
        assert record is not None
        if param.inherit or empty(default) or param.multiple:
            assert empty(unset_value(param, ctx)), (name, param.opts)
        else:
            expected = default if param.is_flag else flag_value(default)
            assert unset_value(param, ctx) == expected, (name, param.opts)
        stated = param.default_text if param.default_text else flag_value(default)
        if not empty(stated) and stated != "" and not param.is_flag:
            assert f"default: {stated}" in record[1], (name, param.opts, record[1])


def test_an_enum_setting_offers_its_members() -> None:
    (negative,) = [p for p in cli.commands["mine"].params if p.name == "negative"]
    assert isinstance(negative.type, click.Choice)
    assert list(negative.type.choices) == ["rank-n", "random", "lowest-k"]


@pytest.mark.parametrize("name", ["generate", "mine"])
def test_the_executor_flags_are_made_from_the_executor_settings(name: str) -> None:
    # generate's and mine's own configs have no executor fields, so the check above cannot
    # see these flags; distill's are DistillConfig's (an ExecutorSettings) and it does
    made = {
        p.name: p.setting
        for p in cli.commands[name].params
        if isinstance(p, SettingOption) and p.setting[0] is ExecutorSettings
    }
    names = ("executor", "ray_address", "workers", "llm_timeout")
    assert made == {k: (ExecutorSettings, k) for k in names}


def test_distill_without_flags_is_the_configs_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geckokit.cli.distill as command

    seen: dict[str, Any] = {}
    monkeypatch.setattr(command, "run_and_print", lambda config, out, until: seen.update(c=config))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("")
    args = ["distill", "--corpus", str(corpus), "--out", str(tmp_path / "o")]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert seen["c"] == DistillConfig(corpus=str(corpus))
    result = invoke([*args, "--llm", "http://127.0.0.1:1/v1", "--base", "x"])
    assert result.exit_code == 0, result.output
    assert (seen["c"].llm, seen["c"].base) == ("http://127.0.0.1:1/v1", "x")


def test_mine_without_flags_is_the_configs_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geckokit.fret.mine_run
    import geckokit.llm
    from geckokit.encoder import EncoderRef

    seen: dict[str, Any] = {}

    def mine(*args: Any, config: MineConfig, **kwargs: Any) -> dict[str, Any]:
        seen["c"] = config
        return {"status": "stopped"}

    monkeypatch.setattr(geckokit.fret.mine_run, "mine", mine)
    monkeypatch.setattr(geckokit.llm, "load_llm", lambda spec: None)
    monkeypatch.setattr(EncoderRef, "load", classmethod(lambda cls, name: None))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("")
    args = ["mine", "--corpus", str(corpus), "--queries", str(tmp_path), "--out", str(tmp_path)]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    # the fusion left unset is the LLM's measured best (resolve_defaults does the same)
    assert seen["c"] == MineConfig(fusion=default_fusion(None) or MineConfig().fusion)


def test_generate_without_flags_is_the_configs_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geckokit.cli.generate as command
    import geckokit.corpus
    import geckokit.fret.generate_run
    import geckokit.llm

    seen: dict[str, Any] = {}
    monkeypatch.setattr(geckokit.corpus, "load_corpus", lambda *a, **k: None)
    monkeypatch.setattr(geckokit.llm, "load_llm", lambda spec: None)
    monkeypatch.setattr(
        geckokit.fret.generate_run,
        "generate_queries",
        lambda *a, config, **k: seen.update(c=config),
    )
    monkeypatch.setattr(command, "print_summary", lambda *a: None)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("")
    result = invoke(["generate", "--corpus", str(corpus), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen["c"] == GenerateConfig()


def test_serve_without_flags_is_the_configs_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import geckokit._deps
    import geckokit.serve.app
    from geckokit.serve.model import ServedModel

    seen: dict[str, Any] = {}

    class Uvicorn:
        @staticmethod
        def run(app: Any, **kwargs: Any) -> None:
            pass

    monkeypatch.setattr(geckokit._deps, "require", lambda name, **kwargs: Uvicorn)
    monkeypatch.setattr(ServedModel, "load", classmethod(lambda cls, *a, **k: None))
    monkeypatch.setattr(
        geckokit.serve.app, "create_app", lambda served, options: seen.update(o=options)
    )
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one worker: torch's threads stay as they are
    result = invoke(["serve"])
    assert result.exit_code == 0, result.output
    assert seen["o"] == ServeOptions()
    result = invoke(["serve", "--workers", "1", "--max-wait-ms", "2"])
    assert result.exit_code == 0, result.output
    assert (seen["o"].workers, seen["o"].max_wait_ms) == (1, 2.0)
