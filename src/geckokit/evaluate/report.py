"""``geckokit report``: one self-contained HTML page (inline SVG, no network) for a run.

The run folder is a ``geckokit eval`` output folder, or a whole run whose stage subfolders
each hold a ``manifest.json`` with a ``stage`` key, as ``geckokit distill`` lays them out::

    RUN/queries/manifest.json    stage "generate": FRet step 1 (task-type distribution)
    RUN/mine/manifest.json       stage "mine": FRet step 2 (relabel rate, QL/RC spreads;
    RUN/mine/fret/part-*.parquet   the score histograms come from these shards)
    RUN/mix/manifest.json        stage "mix": training sources
    RUN/train/manifest.json      stage "train": loss curve (a trained model/ sits beside it)
    RUN/eval/manifest.json       stage "eval": scores per task, model, format and dim

Folder names do not matter: manifests are found up to three levels down and told apart by
their ``stage`` (:class:`~geckokit.runs.manifest.Stage`), and read as that stage's model
(:data:`~geckokit.runs.manifest.MANIFEST_TYPES`). Sections for stages the run lacks are
left out.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict
from dataclasses import dataclass
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pyarrow.parquet as pq

from geckokit.evaluate import svg
from geckokit.evaluate.run import column_means, score_grid
from geckokit.io import MANIFEST, read_json
from geckokit.runs.manifest import (
    MANIFEST_TYPES,
    EvalManifest,
    GenerateManifest,
    MineManifest,
    MixManifest,
    Stage,
    StageManifest,
    TrainManifest,
    parse_stage_manifest,
)

REPORT = Stage.REPORT.folder
_SKIP = {"results", "checkpoints"}  # data folders; stage folders may have any name


@dataclass(frozen=True)
class StageFolder:
    """A stage's folder found under a run, with its manifest."""

    stage: Stage
    folder: Path
    manifest: StageManifest


def find_stages(run_dir: str | Path, *, depth: int = 3) -> list[StageFolder]:
    """Every manifest.json of a stage under ``run_dir`` (itself included), in pipeline
    order (generate, mine, mix, train, eval), then by folder; data folders such as
    results/ and checkpoints/ are not searched, and manifests of other stages
    (``prefinetune``) are left out."""
    root = Path(run_dir)
    found = []
    for folder, subdirs, files in os.walk(root):
        here = Path(folder)
        level = len(here.relative_to(root).parts)
        subdirs[:] = sorted(
            d for d in subdirs if level < depth and d not in _SKIP and not d.startswith(".")
        )
        if MANIFEST in files:
            manifest = parse_stage_manifest(read_json(here / MANIFEST) or {}, here / MANIFEST)
            if manifest is not None:
                found.append(StageFolder(Stage(str(manifest.stage)), here, manifest))
    order = list(Stage)
    return sorted(found, key=lambda s: (order.index(s.stage), str(s.folder)))


def _table(header: list[str], rows: list[list[Any]], *, numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    cls = [' class="num"' if i in numeric else "" for i in range(len(header))]
    head = "".join(f"<th{cls[i]}>{escape(str(h))}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{cls[i]}>{escape(str(v))}</td>" for i, v in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _stat(value: str, label: str) -> str:
    return f'<div class="stat"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def _legend(names: list[str]) -> str:
    items = "".join(
        f'<span><i class="swatch" style="background:{svg.color(i)}"></i>{escape(n)}</span>'
        for i, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _rel(stage: StageFolder, root: Path) -> str:
    rel = stage.folder.relative_to(root).as_posix()
    return "." if rel == "." else rel + "/"


def _heading(text: str, stage: StageFolder, root: Path) -> str:
    where = _rel(stage, root)
    suffix = "" if where == "." else f" <small>({escape(where)})</small>"
    return f"<h2>{escape(text)}{suffix}</h2>"


def _fact(m: StageManifest) -> str:
    """What a stage's folder holds, in a few words."""
    if isinstance(m, GenerateManifest):
        return f"{m.counts.get('queries', '?')} queries"
    if isinstance(m, MineManifest):
        return f"{m.counts.get('examples', '?')} FRet examples"
    if isinstance(m, MixManifest):
        return f"{'?' if m.rows is None else m.rows} training rows"
    if isinstance(m, TrainManifest):
        return f"{'?' if m.steps is None else m.steps} steps"
    if isinstance(m, EvalManifest):
        return f"{len(m.models)} model(s) x {len(m.tasks)} task(s)"
    return ""


def _overview(stages: list[StageFolder], root: Path) -> str:
    rows = [[s.stage.value, _rel(s, root), s.manifest.status, _fact(s.manifest)] for s in stages]
    return "<h2>Run</h2>" + _table(["stage", "folder", "status", "contents"], rows)


def _eval_section(m: EvalManifest, stage: StageFolder, root: Path) -> str:
    parts = [_heading("Evaluation", stage, root)]
    if not m.results:
        return parts[0] + '<p class="note">This evaluation holds no results yet.</p>'
    columns, tasks, cells = score_grid([r.model_dump() for r in m.results])
    best = {t: max(cells[(t, c)] for c in columns if (t, c) in cells) for t in tasks}
    groups: list[list[Any]] = []  # [model, columns] runs of one model, header row 1
    for c in columns:
        model = c.rpartition("@")[0]
        if groups and groups[-1][0] == model:
            groups[-1][1] += 1
        else:
            groups.append([model, 1])
    head = '<tr><th rowspan="2">task</th><th rowspan="2">metric</th>' + "".join(
        f'<th colspan="{n}" class="group">{escape(m)}</th>' for m, n in groups
    )
    head += "</tr><tr>" + "".join(
        '<th class="num">@{}<br>{}</th>'.format(*map(escape, c.rpartition("@")[2].split(" ", 1)))
        for c in columns
    )
    body = []
    for task, metric in tasks.items():
        tds = []
        for c in columns:
            v = cells.get((task, c))
            mark = " best" if v is not None and len(columns) > 1 and v == best[task] else ""
            tds.append(f'<td class="num{mark}">{"" if v is None else f"{v:.2f}"}</td>')
        body.append(f"<tr><td>{escape(task)}</td><td>{escape(metric)}</td>{''.join(tds)}</tr>")
    means = column_means(columns, tasks, cells)
    if means is not None:
        mean_tds = "".join(f'<td class="num">{v:.2f}</td>' for v in means)
        body.append(f'<tr class="mean"><td>mean</td><td></td>{mean_tds}</tr>')
    parts.append(
        '<p class="note">Main scores x 100 as mteb defines them; columns are model@dim (format).</p>'
        f'<div class="wide"><table><thead>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    # series = model (format); each at its largest dim for the bar chart
    by_series: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in m.results:
        by_series[f"{r.model} ({r.format})"][r.task][r.dim] = 100 * r.score
    names = list(by_series)
    task_names = list(tasks)
    full = {
        n: [by_series[n][t][max(by_series[n][t])] if by_series[n][t] else None for t in task_names]
        for n in names
    }
    parts.append("<h3>Scores per task</h3>")
    parts.append(
        svg.bar_chart(task_names, full, title="Main score per task (largest dim)", y_label="score")
    )
    parts.append("<h3>Score against Matryoshka dimension</h3>")
    if all(len(d) < 2 for n in names for d in by_series[n].values()):
        parts.append(
            '<p class="note">Each model was evaluated at one dimension; pass several, e.g. '
            "<code>--dims 384,256,128,64</code>, to see how scores fall as embeddings are cut.</p>"
        )
    else:
        charts = []
        for t in task_names:
            series = {n: sorted(by_series[n][t].items()) for n in names if by_series[n][t]}
            dims = sorted({d for pts in series.values() for d, _ in pts})
            charts.append(
                svg.line_chart(
                    series,
                    title=t,
                    x_label="dimension",
                    y_label=tasks[t],
                    x_ticks=dims,
                    log_x=True,
                    width=380,
                    height=250,
                    legend=False,
                )
            )
        parts.append(_legend(names) + f'<div class="grid">{"".join(charts)}</div>')
    task_rows = [[t.name, t.kind, t.split, t.task_string, t.source] for t in m.tasks]
    model_rows = [
        [x.name, x.revision, x.width, ", ".join(map(str, x.dims)), ", ".join(x.formats)]
        for x in m.models
    ]
    parts.append("<h3>Tasks and models</h3>")
    parts.append(
        _table(["task", "kind", "split", "task string (gecko format)", "source"], task_rows)
    )
    parts.append(_table(["model", "revision", "width", "dims", "formats"], model_rows))
    if m.environment:
        versions = ", ".join(f"{k} {v}" for k, v in m.environment.items())
        seconds = "?" if m.seconds is None else m.seconds
        parts.append(f'<p class="note">{escape(versions)}; {seconds} s.</p>')
    return "\n".join(parts)


def _known(value: Any, missing: str = "?") -> str:
    return missing if value is None else str(value)


def _generate_section(m: GenerateManifest, stage: StageFolder, root: Path) -> str:
    summary = m.summary
    parts = [_heading("FRet step 1: generated queries", stage, root)]
    parts.append(
        _stat(_known(summary.passages), "passages")
        + _stat(_known(summary.queries), "queries")
        + _stat(_pct(summary.reject_rate), "rejected attempts")
        + _stat(_known(summary.mean_query_words, "n/a"), "words per query")
    )
    types = summary.task_types
    if types:
        ordered = sorted(types.items(), key=lambda kv: -kv[1])
        parts.append(
            svg.hbar_chart(
                [k for k, _ in ordered],
                [float(v) for _, v in ordered],
                title="Task-type distribution",
                x_label="queries",
            )
        )
    reasons = summary.reject_rate_by_reason
    if reasons:
        parts.append(
            _table(
                ["reject reason", "share of attempts"], [[k, _pct(v)] for k, v in reasons.items()]
            )
        )
    return "\n".join(parts)


def _fret_scores(folder: Path) -> dict[str, list[float]]:
    files = sorted((folder / "fret").glob("part-*.parquet"))
    out: dict[str, list[float]] = {"ql_scores": [], "rc_scores": []}
    for f in files:
        names = set(pq.read_schema(f).names)
        cols = [c for c in out if c in names]
        if cols:
            table = pq.read_table(f, columns=cols)
            for c in cols:
                out[c].extend(v for row in table[c].to_pylist() for v in row)
    return out


def _mine_section(m: MineManifest, stage: StageFolder, root: Path) -> str:
    summary = m.summary
    parts = [_heading("FRet step 2: mined positives", stage, root)]
    relabel = summary.relabel_rate
    parts.append(
        _stat(_known(summary.examples), "examples")
        + (
            _stat(str(user), "of them from your queries (no seed passage)")
            if (user := summary.user_queries)
            else ""
        )
        + _stat(_pct(relabel), "relabelled (paper: about 15%)")
        + _stat(_pct(summary.seed_at_rank_1), "seed passage ranked first")
        + _stat(_known(summary.seed_rank_mean, "n/a"), "mean rank of the seed")
        + _stat(
            _pct(summary.positive_first_for_encoder),
            "positive already first for the initial encoder (teaches it little)",
        )
        + (
            _stat(str(dropped), "queries left out: the encoder already ranks their seed first")
            if (dropped := summary.solved_dropped) is not None
            else ""
        )
    )
    if relabel is not None:
        parts.append(
            svg.hbar_chart(
                ["seed kept as positive", "another passage became positive"],
                [100 * (1 - relabel), 100 * relabel],
                title="Relabel rate",
                x_label="% of examples",
                value_format="{:.1f}%",
            )
        )
    spreads = [
        [name.upper(), s.mean, s.stdev, s.mean_range_per_query]
        for name, s in (("ql", summary.ql), ("rc", summary.rc), ("encoder", summary.encoder))
        if s is not None
    ]
    if spreads:
        parts.append(
            _table(
                ["score", "mean", "stdev", "mean range within a query"], spreads, numeric={1, 2, 3}
            )
        )
    scores = _fret_scores(stage.folder)
    charts = []
    if scores["ql_scores"]:
        charts.append(
            svg.histogram(
                scores["ql_scores"],
                title="QL: query log-likelihood per candidate",
                x_label="mean log-probability",
            )
        )
    if scores["rc_scores"]:
        charts.append(
            svg.histogram(
                scores["rc_scores"],
                title="RC: relevance score per candidate",
                x_label="score",
                fill=svg.color(1),
            )
        )
    if charts:
        parts.append(f'<div class="grid">{"".join(charts)}</div>')
    return "\n".join(parts)


def _train_section(m: TrainManifest, stage: StageFolder, root: Path) -> str:
    parts = [_heading("Training", stage, root)]
    parts.append(
        _stat(_known(m.steps), "steps")
        + _stat(f"{_known(m.seconds)} s", "training time")
        + _stat(", ".join(map(str, m.matryoshka_dims)) or "n/a", "Matryoshka dims")
        + _stat(str(m.config.get("base", "?")), "base encoder")
    )
    curve = [(p.step, p.loss) for p in m.loss_curve]
    if curve:
        parts.append(
            svg.line_chart(
                {"training loss": curve},
                title="Loss curve",
                x_label="step",
                y_label="loss",
                legend=False,
            )
        )
    else:
        parts.append('<p class="note">The manifest records no loss values.</p>')
    return "\n".join(parts)


def _mix_section(m: MixManifest, stage: StageFolder, root: Path) -> str:
    weights = m.weights or {}
    rows = [[s, n, weights.get(s, 1.0)] for s, n in m.sources.items()]
    head = _heading("Training mixture", stage, root)
    return head + _table(["source", "rows", "weight"], rows, numeric={1, 2})


def _section(found: StageFolder, root: Path) -> str:
    m = found.manifest
    if isinstance(m, GenerateManifest):
        return _generate_section(m, found, root)
    if isinstance(m, MineManifest):
        return _mine_section(m, found, root)
    if isinstance(m, MixManifest):
        return _mix_section(m, found, root)
    if isinstance(m, TrainManifest):
        return _train_section(m, found, root)
    if isinstance(m, EvalManifest):
        return _eval_section(m, found, root)
    raise TypeError(f"no report section for {type(m).__name__}")


def render_report(run_dir: str | Path) -> str:
    """The HTML text of the report for ``run_dir`` (see the module docstring)."""
    from geckokit import __version__

    root = Path(run_dir)
    stages = find_stages(root)
    if not stages:
        raise ValueError(
            f"{root} holds no manifest.json of a geckokit stage "
            f"({', '.join(s.value for s in MANIFEST_TYPES)}) up to three levels down; point "
            "at an eval --out folder or a run folder"
        )
    body = [_overview(stages, root), *(_section(s, root) for s in stages)]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    template = Template(
        resources.files("geckokit.evaluate").joinpath("report_template.html").read_text("utf-8")
    )
    return template.substitute(
        title=escape(f"geckokit report: {root.resolve().name}"),
        meta=escape(f"{root.resolve()} · written {now} by geckokit {__version__}"),
        body="\n".join(body),
    )


def write_report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``) and
    return its path."""
    path = Path(out) if out is not None else Path(run_dir) / REPORT
    html = render_report(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
