"""Run folders: one stage's settings per folder, checked before a rerun resumes it; the
run's own records (its settings and history), each kept with a copy."""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from geckokit.io import MANIFEST, DamagedFileError, environment, read_json, write_json

log = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # not on POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

#: The file in a run folder that the process writing there holds locked (it records its pid).
LOCK_FILE = ".lock"

F = TypeVar("F", bound=Callable[..., Any])

# run folders this process holds: resolved path -> (file descriptor, depth)
_held: dict[str, tuple[int, int]] = {}


class RunMismatchError(ValueError):
    """The output folder holds a run made with other settings."""


class RunLockedError(RuntimeError):
    """Another process is writing to the run folder."""


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock while a run writes there. A second process that opens the same
    folder fails at once with :class:`RunLockedError` instead of writing the same shards;
    the operating system releases the lock when its holder exits, however it exits (``kill
    -9`` included), so a stopped run never leaves the folder locked. This process may take
    the lock again while it holds it (a stage run inside ``distill``)."""
    key = str(Path(out).resolve())
    if key in _held or fcntl is None:
        fd, depth = _held.get(key, (-1, 0))
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            _release(key)
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(out) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        pid = f" (pid {holder})" if holder else ""
        raise RunLockedError(
            f"{out} is in use by another geckokit run{pid}; wait for it to finish or use "
            "another --out folder"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held[key] = (fd, 1)
    try:
        yield
    finally:
        _release(key)


def _release(key: str) -> None:
    fd, depth = _held.pop(key)
    if depth > 1:
        _held[key] = (fd, depth - 1)
    elif fd >= 0:
        os.close(fd)  # closing the last descriptor releases the lock


def holds_run_lock(func: F) -> F:
    """Run ``func`` holding the lock of its ``out`` argument (see :func:`run_lock`)."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = signature.bind(*args, **kwargs).arguments["out"]
        with run_lock(Path(out)):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def copy_path(path: Path) -> Path:
    """Where the copy of a run record is kept: ``.NAME.bak`` beside it."""
    return path.with_name(f".{path.name}.bak")


def set_aside(path: Path) -> Path:
    """Rename a damaged ``path`` to ``NAME.damaged`` (kept for a look), and return that."""
    aside = path.with_name(f"{path.name}.damaged")
    os.replace(path, aside)
    return aside


def write_record(payload: dict[str, Any], path: Path) -> None:
    """Write a run record (the run manifest, its settings) to ``path`` and then its copy
    (:func:`copy_path`), each atomically: one lost or damaged, the other still holds it."""
    write_json(payload, path)
    write_json(payload, copy_path(path))


def read_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A run record written by :func:`write_record`: the content of ``path``, or of its copy
    when ``path`` is missing or damaged (a damaged one is set aside as ``NAME.damaged``);
    None when neither reads. Second, a note of what happened (None: nothing went wrong)."""
    copy = copy_path(path)
    problem = None
    try:
        data = read_json(path)
    except DamagedFileError as exc:
        data, problem = None, f"{path} was damaged ({exc}); set aside as {set_aside(path).name}"
    if data is not None:
        return data, None
    if problem is None and not copy.exists():
        return None, None  # a new run (or one written before records had copies)
    problem = problem or f"{path} was missing"
    try:
        data = read_json(copy)
    except DamagedFileError as exc:
        return None, f"{problem}, and its copy {copy.name} is damaged too ({exc})"
    if data is None:
        return None, f"{problem}, and so is its copy {copy.name}"
    return data, f"{problem}; restored from its copy {copy.name}"


def with_defaults(defaults: Any, saved: Any) -> Any:
    """``saved`` (settings as a run folder recorded them) with each setting it lacks taken
    from ``defaults``, at any depth: a setting added after the folder was written is at its
    default there, which is how the code behaved before the setting existed."""
    if isinstance(defaults, dict) and isinstance(saved, dict):
        return {**defaults, **{k: with_defaults(defaults.get(k), v) for k, v in saved.items()}}
    return saved


def open_run(
    out: Path, identity: dict[str, Any], *, defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Start or resume the run in ``out`` whose settings are ``identity``: check it with
    :func:`check_run`, then record it as running. Returns the identity recorded."""
    identity = check_run(out, identity, defaults=defaults)
    record_run(out, identity)
    return identity


def record_run(out: Path, identity: dict[str, Any]) -> None:
    """Record ``identity`` (as :func:`check_run` returned it) as the run running in ``out``."""
    write_json({**identity, "status": "running", "environment": environment()}, out / MANIFEST)


def check_run(
    out: Path, identity: dict[str, Any], *, defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Check that the run in ``out`` (if any) may be resumed with ``identity`` (a dict with
    ``stage``, and ``model`` holding an ``id`` when an LLM is involved). ``defaults``, the
    identity's default settings (e.g. ``{"config": ...}``), fill in what a folder written
    before a setting existed lacks (:func:`with_defaults`), so that it resumes.

    A folder that holds a run with other settings raises :class:`RunMismatchError` instead
    of mixing two runs; the model is compared by id (its path may differ between machines),
    and the ``source`` paths that inputs were read from are recorded but not compared, so a
    run folder and its inputs may move (their counts, formats and hashes are compared).

    A model id of None means a sitting without an LLM (mining with the ``seed`` fusion): a
    folder no LLM has worked on yet may be taken on by one, and a sitting without one keeps
    the record of the LLM whose work the folder holds, so that a later sitting with another
    LLM is still refused. Writes nothing (a garbled manifest is set aside); returns the
    identity to record.
    """
    try:
        previous = read_json(out / MANIFEST)
    except DamagedFileError as exc:  # its shards carry their own record: they are checked
        log.warning("%s; set aside as %s", exc, set_aside(out / MANIFEST).name)
        previous = None
    if previous is not None:
        previous = with_defaults(defaults or {}, previous)
        mismatched = [
            k
            for k in identity
            if k != "model" and _located(previous.get(k)) != _located(identity[k])
        ]
        was = (previous.get("model") or {}).get("id")
        now = (identity.get("model") or {}).get("id")
        if was is not None and now is None:
            identity = {**identity, "model": previous["model"]}
        elif was is not None and was != now:
            mismatched.append("model")
        if mismatched:
            raise RunMismatchError(
                f"{out} holds a {previous.get('stage', '')} run with different "
                f"{', '.join(mismatched)}; use another --out folder (or delete this one) to start afresh"
            )
    return identity


def _located(value: Any) -> Any:
    """``value`` without the ``source`` entries of its dicts, at any depth."""
    if isinstance(value, dict):
        return {k: _located(v) for k, v in value.items() if k != "source"}
    return value
