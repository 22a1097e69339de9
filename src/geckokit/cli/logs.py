"""What a long command shows and what it keeps: on the terminal, one line or bar per stage;
in the run folder's log file, the details (geckokit's own log, the libraries' logs and
warnings, and what they write to stderr, such as their progress bars).

``-v`` (on the ``geckokit`` group or on the command) shows the libraries' warnings, bars and
geckokit's info messages on the terminal again, as other commands do; ``-vv`` adds debug
messages and tracebacks.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import click

#: the format of the log file's lines
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

verbose_option = click.option(
    "-v",
    "--verbose",
    count=True,
    help="Show the libraries' progress bars and warnings and geckokit's info messages (-vv: "
    "debug); without it they go to the run's log file only.",
)


def verbosity() -> int:
    """The ``-v`` count of the running command and the groups above it, together."""
    ctx = click.get_current_context(silent=True)
    count = 0
    while ctx is not None:
        count += ctx.params.get("verbose") or 0
        ctx = ctx.parent
    return count


class _FileHandler(logging.FileHandler):
    """A log file made, with its folder, when the first record comes (a run refused before
    any work leaves no folder behind)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self) -> io.TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


class _Terminal(logging.Filter):
    """What the terminal shows: without ``-v`` geckokit's warnings and everyone's errors;
    with ``-v`` geckokit's info messages and everyone's warnings; all with ``-vv``."""

    def __init__(self, verbose: int) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == "geckokit" or record.name.startswith("geckokit.")
        if self.verbose >= 2:
            return True
        if self.verbose == 1:
            return record.levelno >= (logging.INFO if ours else logging.WARNING)
        return record.levelno >= (logging.WARNING if ours else logging.ERROR)


class _StderrLines(io.TextIOBase):
    """A stand-in for stderr that logs each finished line (INFO, ``geckokit.stderr``): a
    progress bar redrawn with carriage returns is logged once, in its last state (also one
    that clears itself when done)."""

    def __init__(self) -> None:
        super().__init__()
        self._line = self._drawn = ""
        self._log = logging.getLogger("geckokit.stderr")

    def write(self, text: str) -> int:
        for part in re.split(r"([\r\n])", text):
            if part == "\n":
                self._emit(self._line.strip() or self._drawn)
            elif part == "\r":  # the line is drawn again from its start
                if self._line.strip():
                    self._drawn = self._line.strip()
                elif self._drawn:  # a bar cleared when done: keep its last state
                    self._emit(self._drawn)
                self._line = ""
            else:
                self._line += part
        return len(text)

    def _emit(self, line: str) -> None:
        if line:
            self._log.info("%s", line)
        self._line = self._drawn = ""

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def close_line(self) -> None:
        """Log what is left of an unfinished line (a bar that never ended)."""
        self._emit(self._line.strip() or self._drawn)


def _adopt_library_loggers() -> list[tuple[logging.Logger, list[logging.Handler], int]]:
    """Libraries that print through handlers of their own (transformers: to stderr, with
    ``propagate`` off, at the level its ``TRANSFORMERS_VERBOSITY`` chose when it was
    imported) log through the root's instead while a run logs, at the root's level, so
    that their records reach the log file and the terminal's filter; returns what to
    restore."""
    adopted = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and not logger.propagate and logger.handlers:
            if name.split(".")[0] != "geckokit":
                adopted.append((logger, list(logger.handlers), logger.level))
                for h in adopted[-1][1]:
                    logger.removeHandler(h)
                logger.propagate = True
                logger.setLevel(logging.NOTSET)
    return adopted


@contextlib.contextmanager
def run_log(path: Path, *, verbose: int) -> Iterator[None]:
    """While the body runs, every logger's records at INFO and above (geckokit's from
    DEBUG) and Python warnings (:func:`logging.captureWarnings`) go to ``path``, made with
    its folder on the first record (a library that prints through a handler of its own is
    made to log through the root's meanwhile); the terminal shows what :class:`_Terminal`
    lets through; without ``verbose`` what the libraries write to stderr (tqdm bars such as
    sentence-transformers' "Batches" and "Computing widget examples", the trainer's) goes
    to the file instead, one line per bar."""
    root, ours = logging.getLogger(), logging.getLogger("geckokit")
    levels = (root.level, ours.level)
    handler = _FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    terminal = _Terminal(verbose)
    shown = list(root.handlers)
    for h in shown:
        h.addFilter(terminal)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    ours.setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    adopted = _adopt_library_loggers()
    stderr = _StderrLines()
    redirect = contextlib.redirect_stderr(stderr) if not verbose else contextlib.nullcontext()
    try:
        with redirect:
            yield
    finally:
        stderr.close_line()
        logging.captureWarnings(False)
        for logger, handlers, level in adopted:
            logger.propagate = False
            logger.setLevel(level)
            for h in handlers:
                logger.addHandler(h)
        root.removeHandler(handler)
        handler.close()
        for h in shown:
            h.removeFilter(terminal)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
