"""The ``geckokit`` command."""

from __future__ import annotations

import logging
import sys

import click

from geckokit import __version__


class _Group(click.Group):
    """Turns expected errors (bad input, missing model or extra) into one clear line."""

    def invoke(self, ctx: click.Context) -> object:
        from geckokit._deps import MissingDependencyError
        from geckokit.registry import ModelError

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # --help, usage errors and ^C keep click's own handling
        except (ValueError, ModelError, MissingDependencyError, RuntimeError, OSError) as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geckokit")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug, with tracebacks).")
def cli(verbose: int) -> None:
    """Distil a compact text-embedding model from a corpus and an LLM (the Gecko recipe).

    Models are named as in `geckokit models list`; wherever a model is asked for, a local
    path (or, online, a hub id) works too. The LLM may also be an OpenAI-compatible server
    URL such as http://127.0.0.1:8000/v1.
    """
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose >= 2 else logging.INFO
    logging.basicConfig(
        level=logging.DEBUG if verbose >= 2 else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, markup=False)],
    )
    logging.getLogger("geckokit").setLevel(level)
    if not verbose:
        import os

        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def _register() -> None:
    from geckokit.cli import (
        cache,
        check,
        distill,
        evaluate,
        export,
        generate,
        llm_serve,
        mine,
        mix,
        models,
        report,
        rerank_eval,
        serve,
        train,
    )

    cli.add_command(models.models)
    cli.add_command(cache.cache)
    cli.add_command(check.check)
    cli.add_command(generate.generate)
    cli.add_command(mine.mine)
    cli.add_command(rerank_eval.rerank_eval)
    cli.add_command(mix.mix)
    cli.add_command(train.train)
    cli.add_command(evaluate.evaluate)
    cli.add_command(report.report)
    cli.add_command(llm_serve.llm_serve)
    cli.add_command(distill.distill)
    cli.add_command(distill.demo)
    cli.add_command(serve.serve)
    cli.add_command(export.export)


_register()


def main() -> None:
    cli(prog_name="geckokit")


if __name__ == "__main__":
    main()
