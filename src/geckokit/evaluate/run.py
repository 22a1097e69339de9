"""``geckokit eval``: several models, formats and Matryoshka dims on several tasks through mteb.

Output folder::

    results/<model>/<revision>/<Task>.json       mteb's result layout (what mteb's ResultCache
    results/<model>/<revision>/experiments/<e>/  writes and reads); truncated dims and the
                                                  gecko format are mteb "experiments"
    results.md                                    comparison table: rows tasks, columns model@dim
    manifest.json                                 models, tasks, dims, rows, versions, seconds

Rerunning into the same folder reuses the results already there (mteb's cache) and runs the
missing ones; ``overwrite=True`` recomputes everything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa

from geckokit._deps import require
from geckokit.evaluate.models import PromptFormat, describe_model, eval_dims
from geckokit.io import MANIFEST, environment, write_json

log = logging.getLogger(__name__)

RESULT_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("format", pa.string()),
        ("dim", pa.int32()),
        ("task", pa.string()),
        ("kind", pa.string()),
        ("metric", pa.string()),
        ("score", pa.float64()),  # mteb's main score, in [0, 1]
        ("recall_at_10", pa.float64()),  # retrieval tasks only, in [0, 1]; else null
        ("seconds", pa.float64()),
    ]
)
RESULTS_MD = "results.md"


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str | PromptFormat) else list(value)


def _parse_formats(
    formats: str | PromptFormat | Sequence[str | PromptFormat],
) -> list[PromptFormat]:
    return [PromptFormat.parse(str(getattr(f, "value", f))) for f in _as_list(formats)]


def _versions() -> dict[str, str]:
    out = environment()
    for dist in ("mteb", "sentence-transformers", "torch", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _stale(cache: Any, task: Any, meta: Any) -> bool:
    """Whether ``cache`` holds a result of this task computed on other data (mteb itself
    reuses a complete result whatever the dataset revision)."""
    if cache is None:
        return False
    previous = cache.load_task_result(task.metadata.name, meta)
    return previous is not None and previous.dataset_revision != task.metadata.dataset["revision"]


def evaluate(
    models: str | Sequence[str],
    tasks: str | Sequence[str],
    *,
    dims: Sequence[int] | None = None,
    formats: str | PromptFormat | Sequence[str | PromptFormat] = PromptFormat.AUTO,
    model_formats: Mapping[str, Sequence[str | PromptFormat]] | None = None,
    out: str | Path | None = None,
    batch_size: int = 32,
    device: str | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
) -> pa.Table:
    """Evaluate each model on each task, at each dim and in each prompt format, with mteb.

    ``models``: registry names, folders or hub ids. ``tasks``: local paths (kind detected),
    ``kind:path``, or MTEB task names (online only); see :mod:`geckokit.evaluate.local`.
    ``dims``: Matryoshka dims (truncate, then re-normalise); None: each model's full width
    plus the dims its geckokit.json records. ``formats``: ``auto``, ``gecko``, ``plain`` (see
    :class:`~geckokit.evaluate.models.PromptFormat`); ``model_formats`` gives a model (by its
    spec as in ``models``) formats of its own instead. ``out``: where to write mteb's result
    files, ``results.md`` and ``manifest.json``; None writes nothing.

    Returns one row per (model, format, dim, task) with mteb's main score (schema
    :data:`RESULT_SCHEMA`).
    """
    require("mteb", extra="eval", purpose="evaluation")
    import mteb
    from mteb.cache import ResultCache

    from geckokit.encoder import embedding_width, load_encoder
    from geckokit.evaluate.mteb_model import EmbeddingCache, EvalEncoder
    from geckokit.evaluate.mteb_tasks import build_task
    from geckokit.registry import embeddings_dir, pinned_encoder

    model_specs, task_specs = _as_list(models), _as_list(tasks)
    if not model_specs or not task_specs:
        raise ValueError("give at least one model and one task")
    requested = _parse_formats(formats)
    own_formats = {spec: _parse_formats(f) for spec, f in (model_formats or {}).items()}
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    t0 = time.perf_counter()
    built = [build_task(spec) for spec in task_specs]  # reads local files; fails early
    for task, task_info in built:
        try:
            task.load_data()
        except Exception as exc:  # mteb tasks by name fetch from the hub
            if task_info.source != "mteb":
                raise
            raise RuntimeError(
                f"could not load MTEB task {task_info.name} (needs the hub): {exc}"
            ) from exc
    cache = ResultCache(Path(out)) if out is not None else None
    rows: list[dict[str, Any]] = []
    model_records: list[dict[str, Any]] = []
    for spec in model_specs:
        info = describe_model(spec)
        model = load_encoder(info.location, device=device)
        width = embedding_width(model)
        model_dims = eval_dims(dims, width, info)
        formats_here = info.formats(own_formats.get(spec, requested))
        model_records.append(
            {
                "spec": spec,
                "name": info.name,
                "location": info.location,
                "revision": info.revision,
                "width": width,
                "dims": model_dims,
                "formats": [f.value for f in formats_here],
                "geckokit_json": bool(info.geckokit),
            }
        )
        pinned = pinned_encoder(spec)  # its name fixes its weights: embeddings kept on disk
        for fmt in formats_here:
            embeddings = EmbeddingCache(
                folder=embeddings_dir() if pinned else None,
                label=f"{pinned}-eval-{fmt.value}",
                key={"encoder": pinned, "normalized": False},
            )
            for task, task_info in built:
                for dim in model_dims:
                    encoder = EvalEncoder(model, info=info, dim=dim, fmt=fmt, cache=embeddings)
                    log.info("%s (%s) @%d on %s", info.name, fmt.value, dim, task_info.name)
                    fresh = overwrite or _stale(cache, task, encoder.mteb_model_meta)
                    result = mteb.evaluate(
                        encoder,
                        task,
                        cache=cache,
                        overwrite_strategy="always" if fresh else "only-missing",
                        encode_kwargs={
                            "batch_size": batch_size,
                            "show_progress_bar": show_progress,
                        },
                        show_progress_bar=False,
                    ).task_results[0]
                    rows.append(
                        {
                            "model": info.name,
                            "format": fmt.value,
                            "dim": dim,
                            "task": task_info.name,
                            "kind": task_info.kind,
                            "metric": task_info.main_score,
                            "score": float(result.get_score()),
                            "recall_at_10": _recall_at_10(result),
                            "seconds": round(float(result.evaluation_time or 0.0), 2),
                        }
                    )
                embeddings.clear()
    table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
    if out is not None:
        folder = Path(out)
        (folder / RESULTS_MD).write_text(results_markdown(table))
        manifest = {
            "stage": "eval",
            "models": model_records,
            "tasks": [info.as_dict() for _, info in built],
            "dims": list(dims) if dims else None,
            "formats": [f.value for f in requested],
            "results": rows,
            "seconds": round(time.perf_counter() - t0, 1),
            "environment": _versions(),
        }
        write_json(manifest, folder / MANIFEST)
    return table


def _recall_at_10(result: Any) -> float | None:
    """Recall@10 of a retrieval result (mean over its evaluated splits), else None."""
    values = [
        float(entry["recall_at_10"])
        for entries in (getattr(result, "scores", None) or {}).values()
        for entry in entries
        if isinstance(entry, dict) and "recall_at_10" in entry
    ]
    return sum(values) / len(values) if values else None


def column_label(model: str, fmt: str, dim: int) -> str:
    """The name of one results column: ``model@dim (format)``."""
    return f"{model}@{dim} ({fmt})"


def score_grid(
    rows: Sequence[dict[str, Any]],
) -> tuple[list[str], dict[str, str], dict[tuple[str, str], float]]:
    """Result rows as a grid: column labels in first-seen order, tasks with their metric,
    and main scores x 100 by (task, column)."""
    columns: list[str] = []
    tasks: dict[str, str] = {}
    cells: dict[tuple[str, str], float] = {}
    for r in rows:
        label = column_label(r["model"], r["format"], r["dim"])
        if label not in columns:
            columns.append(label)
        tasks.setdefault(r["task"], r["metric"])
        cells[(r["task"], label)] = 100 * r["score"]
    return columns, tasks, cells


def column_means(
    columns: list[str], tasks: dict[str, str], cells: dict[tuple[str, str], float]
) -> list[float] | None:
    """Mean score of each column over the tasks, when there are several tasks and every
    column has them all; else None."""
    if len(tasks) < 2 or not all((t, c) in cells for t in tasks for c in columns):
        return None
    return [sum(cells[(t, c)] for t in tasks) / len(tasks) for c in columns]


def results_markdown(table: pa.Table | Sequence[dict[str, Any]]) -> str:
    """A markdown table of main scores x 100: rows tasks (with their metric), columns
    ``model@dim (format)``, and a mean row when every column has every task."""
    rows = table.to_pylist() if isinstance(table, pa.Table) else list(table)
    columns, tasks, cells = score_grid(rows)
    lines = [
        "| task | metric | " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for task, metric in tasks.items():
        shown = [f"{cells[(task, c)]:.2f}" if (task, c) in cells else "" for c in columns]
        lines.append(f"| {task} | {metric} | " + " | ".join(shown) + " |")
    means = column_means(columns, tasks, cells)
    if means is not None:
        lines.append("| mean | | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    return "\n".join(lines) + "\n"
