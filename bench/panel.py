"""Does distillation pay? One set of settings on a panel of corpora, in one table.

For each corpus of the panel (default: SciFact, Cranfield, CISI and CACM from
../shared/data/beir), using only its passages:

1. ``geckokit distill`` (the real command, in a subprocess) writes queries for ``--sample``
   random passages and mines them (FRet steps 1 and 2) into ``OUT/<corpus>/llm-<key>/``.
   The key is a hash of the settings that change the LLM's work, so variants that differ
   only in selection, mixture or training share one LLM run.
2. For each training seed, ``geckokit distill`` trains the base on a copy of that run
   (``OUT/<corpus>/<variant>/seed<S>/``, with ``train.seed = S``); so does the ablation
   (``mine.fusion = "seed"``: the seed passage stays the positive, no relabelling, and
   the contrastive objective alone, since there are no LLM scores to distil).
3. Every model is scored on the corpus's test queries (nDCG@10 and Recall@10, each query's
   nDCG@10 kept for paired randomisation tests) and on STS-Benchmark test (Spearman): the
   base in plain text and in the unified format, BM25 (bm25s, English stopwords, Snowball
   stemmer), the distilled model and the ablation in the format they were trained in.

Settings are ``geckokit distill`` config keys, ``--set key=value`` (dotted for the nested
tables: ``--set train.epochs=3 --set mine.top_n=10``), on top of the defaults; the same
settings apply to every corpus. ``--variant NAME`` names the folder the trainings go to
(default: a hash of the settings), so several variants sit side by side. Rerunning the same
command reuses every finished step (distill resumes; a finished evaluation is read back from
``scores.json``).

    python bench/panel.py --out runs/panel --sample 400 --seeds 0,1

writes ``OUT/<variant>/panel.json`` and ``panel.md``; ``--publish`` also copies them to
``docs/results/panel.json`` and ``docs/results/panel.md``. Per corpus the JSON holds
``base``, ``base_unified``, ``bm25``, ``distilled`` (mean and spread over seeds),
``distilled_seeds``, ``ablation`` (likewise, with ``ablation_seeds``), ``p_vs_base`` (the
distilled model's per-query nDCG@10, averaged over seeds, against the base's better format),
``p_vs_ablation``, ``beats_bm25``, STS-Benchmark figures, the settings and the command.

``--rows user_queries`` adds a row for corpora with a train split (SciFact: 809 claims):
their train queries' texts, without the labels, are given to ``geckokit distill`` as
``--queries-file`` in place of FRet step 1, mined and trained with the same settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PANEL = ("scifact", "cranfield", "cisi", "cacm")
STSB = Path("sts") / "stsbenchmark" / "test.jsonl"


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, booleans, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE, got {pair!r}")
        settings[key.strip()] = parse_value(value.strip())
    return settings


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys into nested tables: {"mine.top_n": 10} -> {"mine": {"top_n": 10}}."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def llm_key(flat: dict[str, Any]) -> str:
    """A hash of the settings that change the LLM stages' output (FRet steps 1 and 2); the
    selection settings only re-choose from stored scores, so they are left out."""
    from geckokit.pipeline.stages import first_stage
    from geckokit.runs.manifest import Stage

    llm_stages = (Stage.GENERATE, Stage.MINE)
    kept = {k: v for k, v in sorted(flat.items()) if first_stage(k) in llm_stages}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:8]


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """The config as JSON-compatible TOML (a small writer: tables, strings, numbers, lists)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, entries in config.items():
        if isinstance(entries, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {value(v)}" for k, v in entries.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_distill(config: dict[str, Any], out: Path, *, until: str, log: Path) -> None:
    """``geckokit distill --config ... --out OUT --until STAGE`` in a subprocess; its output
    goes to ``log``. A failure stops the panel with the log's tail."""
    path = write_config(out.parent / f"{out.name}.toml", config)
    cmd = [sys.executable, "-m", "geckokit.cli.main", "distill", "--config", str(path)]
    cmd += ["--out", str(out), "--until", until]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as sink:
        sink.write(f"\n$ {' '.join(cmd)}\n")
        sink.flush()
        done = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"geckokit distill failed ({done.returncode}) for {out}:\n{tail}")


def train_queries_file(corpus: Path, out: Path) -> Path | None:
    """The texts of the corpus's train queries (those in ``qrels/train.tsv``), one per line,
    written to ``out/train-queries.txt``: a query log without its labels, for the row that
    mines the user's own queries. None when the corpus has no train split."""
    qrels = corpus / "qrels" / "train.tsv"
    if not qrels.exists():
        return None
    ids = {line.split("\t")[0] for line in qrels.read_text().splitlines()[1:] if line.strip()}
    texts = []
    for line in (corpus / "queries.jsonl").read_text().splitlines():
        if line.strip():
            q = json.loads(line)
            if str(q["_id"]) in ids:
                texts.append(" ".join(q["text"].split()))
    path = out / "train-queries.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t + "\n" for t in texts))
    return path


def copy_llm_stages(src: Path, dst: Path) -> None:
    """A training folder starts from the LLM run's queries/ and mine/ (hard links: nothing
    is written into them once finished) and its config."""
    if (dst / "mine").exists():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("queries", "mine"):
        if name == "queries" and not (src / name).exists():
            continue  # the user's queries in place of FRet step 1: nothing was written
        shutil.copytree(src / name, dst / name, copy_function=os.link)
    shutil.copy2(src / "config.json", dst / "config.json")


def score_retrieval(model: Any, corpus: Path, *, gecko: bool, name: str = "") -> dict[str, Any]:
    from geckokit.encoder import EncoderRef
    from geckokit.evaluate.retrieval import evaluate_retrieval
    from geckokit.tasks import task_string

    task = task_string(corpus.name, "retrieval")
    encoder = EncoderRef.named(model, name) if name else EncoderRef(model)
    r = evaluate_retrieval(encoder, corpus, task=task, gecko_format=gecko, per_query=True)
    return {
        "ndcg@10": r["ndcg@10"],
        "recall@10": r["recall@10"],
        "queries": r["queries"],
        "per_query": r["ndcg@10_per_query"],
    }


def sts_spearman(model: Any, path: Path, *, gecko: bool) -> float:
    """STS-Benchmark test Spearman (x100) of cosine similarity, plain or unified format."""
    import numpy as np
    from scipy.stats import spearmanr

    from geckokit.format import query_text
    from geckokit.tasks import task_string

    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    task = task_string("stsbenchmark", "sts")

    def enc(texts: list[str]) -> Any:
        texts = [query_text(task, t) for t in texts] if gecko else texts
        return model.encode(texts, normalize_embeddings=True, show_progress_bar=False)

    a, b = enc([r["sentence1"] for r in rows]), enc([r["sentence2"] for r in rows])
    sims = np.sum(a * b, axis=1)  # (pairs,)
    return round(100 * float(spearmanr(sims, [r["score"] for r in rows]).statistic), 2)


def cached(path: Path, compute: Any) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value) + "\n")
    return value


def score_trained(folder: Path, corpus: Path, shared: Path) -> dict[str, Any]:
    """A trained run's model on the corpus's test queries (in the format it was trained
    for) and STS-Benchmark test (that format and plain text)."""
    from geckokit.encoder import load_encoder

    def compute() -> dict[str, Any]:
        model = load_encoder(str(folder / "train" / "model"))
        gecko = bool(model.prompts.get("query"))
        row = score_retrieval(model, corpus, gecko=gecko)
        row["stsb"] = sts_spearman(model, shared / STSB, gecko=gecko)
        row["stsb_plain"] = sts_spearman(model, shared / STSB, gecko=False)
        row["format"] = "unified" if gecko else "plain"
        return row

    return cached(folder / "scores.json", compute)


def score_base(base: str, corpus: Path, shared: Path, out: Path) -> dict[str, Any]:
    from geckokit.encoder import load_encoder

    def compute() -> dict[str, Any]:
        model = load_encoder(base)
        plain = score_retrieval(model, corpus, gecko=False, name=base)
        unified = score_retrieval(model, corpus, gecko=True, name=base)
        plain["stsb"] = sts_spearman(model, shared / STSB, gecko=False)
        unified["stsb"] = sts_spearman(model, shared / STSB, gecko=True)
        return {"plain": plain, "unified": unified}

    return cached(out / f"base-{base.replace('/', '_')}.json", compute)


def score_bm25(corpus: Path, out: Path) -> dict[str, Any]:
    from geckokit.evaluate.retrieval import evaluate_bm25

    def compute() -> dict[str, Any]:
        r = evaluate_bm25(corpus, per_query=True)
        return {
            "ndcg@10": r["ndcg@10"],
            "recall@10": r["recall@10"],
            "queries": r["queries"],
            "per_query": r["ndcg@10_per_query"],
        }

    return cached(out / "bm25.json", compute)


def over_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over training seeds, and each query's nDCG@10 averaged over them."""
    ndcg = [r["ndcg@10"] for r in rows]
    per_query = [statistics.fmean(q) for q in zip(*(r["per_query"] for r in rows), strict=True)]
    return {
        "ndcg@10": round(statistics.fmean(ndcg), 2),
        "ndcg@10_stdev": round(statistics.stdev(ndcg), 2) if len(ndcg) > 1 else 0.0,
        "ndcg@10_range": [min(ndcg), max(ndcg)],
        "recall@10": round(statistics.fmean(r["recall@10"] for r in rows), 2),
        "stsb": round(statistics.fmean(r["stsb"] for r in rows), 2),
        "stsb_plain": round(statistics.fmean(r["stsb_plain"] for r in rows), 2),
        "per_query": per_query,
    }


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "per_query"}


def run_corpus(
    name: str,
    *,
    args: argparse.Namespace,
    flat: dict[str, Any],
    variant: str,
    command: str,
) -> dict[str, Any]:
    from geckokit.retrieval.metrics import paired_randomisation_p

    corpus = args.shared / "beir" / name
    root = args.out / name
    config = {"corpus": str(corpus), "sample": args.sample, **nest(flat)}
    base_name = flat.get("base", "all-minilm-l6-v2")
    t0 = time.perf_counter()
    llm_dir = root / f"llm-{llm_key({'sample': args.sample, **flat})}"
    if {"distilled", "ablation"} & set(args.rows):
        run_distill(config, llm_dir, until="mine", log=root / "llm.log")
    # the user-queries row: the corpus's train queries, unlabelled, in place of FRet step 1
    user_log = train_queries_file(corpus, root) if "user_queries" in args.rows else None
    user_flat = {**flat, "queries_file": str(user_log)}
    user_dir = root / f"llm-{llm_key(user_flat)}"
    if user_log is not None:
        run_distill(
            {"corpus": str(corpus), **nest(user_flat)}, user_dir, until="mine", log=root / "llm.log"
        )
    llm_seconds = round(time.perf_counter() - t0)
    if args.llm_only:
        return {"corpus": name, "llm_run": str(llm_dir), "llm_stage_seconds": llm_seconds}

    rows: dict[str, list[dict[str, Any]]] = {"distilled": [], "ablation": [], "user_queries": []}
    for row in args.rows:
        if row not in rows or (row == "user_queries" and user_log is None):
            continue
        for seed in args.seeds:
            folder = root / variant / f"{row}-seed{seed}"
            cfg = nest({**flat, "train.seed": seed})
            if row == "ablation":  # no LLM judgement at all: no scores to distil either
                cfg.setdefault("mine", {})["fusion"] = "seed"
                cfg.setdefault("train", {})["objective"] = "contrastive"
            run: dict[str, Any] = {"corpus": str(corpus), "sample": args.sample, **cfg}
            if row == "user_queries":
                copy_llm_stages(user_dir, folder)
                del run["sample"]
                run["queries_file"] = str(user_log)
            else:
                copy_llm_stages(llm_dir, folder)
            run_distill(run, folder, until="train", log=root / variant / "train.log")
            rows[row].append({"seed": seed, **score_trained(folder, corpus, args.shared)})

    base = score_base(base_name, corpus, args.shared, root)
    bm25 = score_bm25(corpus, root)
    better = max(("plain", "unified"), key=lambda f: base[f]["ndcg@10"])
    result: dict[str, Any] = {
        "corpus": name,
        "queries": base["plain"]["queries"],
        "base": public(base["plain"]),
        "base_unified": public(base["unified"]),
        "base_better_format": better,
        "bm25": public(bm25),
    }
    for row, seeds in rows.items():
        if not seeds:
            continue
        summary = over_seeds(seeds)
        result[row] = public(summary)
        result[f"{row}_seeds"] = [public(s) for s in seeds]
        per_query = summary["per_query"]
        result[f"{row}_per_query"] = per_query
        result[f"p_{row}_vs_base" if row != "distilled" else "p_vs_base"] = paired_randomisation_p(
            per_query, base[better]["per_query"]
        )
        result[f"{row}_vs_bm25_p"] = paired_randomisation_p(per_query, bm25["per_query"])
    if rows["distilled"] and rows["ablation"]:
        result["p_vs_ablation"] = paired_randomisation_p(
            result["distilled_per_query"], result["ablation_per_query"]
        )
    if rows["distilled"]:
        d = result["distilled"]["ndcg@10"]
        result["gain_vs_base"] = round(d - base[better]["ndcg@10"], 2)
        result["beats_bm25"] = d > bm25["ndcg@10"]
    for key in [k for k in result if k.endswith("_per_query")]:
        del result[key]
    result.update(
        settings={"sample": args.sample, **flat},
        seeds=args.seeds,
        command=command,
        llm_run=str(llm_dir),
        llm_stage_seconds=llm_seconds,
        llm_manifest=_llm_summary(llm_dir) if (llm_dir / "manifest.json").exists() else None,
    )
    if user_log is not None:
        result["user_queries_run"] = {"llm_run": str(user_dir), **_llm_summary(user_dir)}
    return result


def _llm_summary(folder: Path) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text())
    mine = manifest["stages"].get("mine", {})
    return {
        "stages": {k: v.get("seconds") for k, v in manifest["stages"].items()},
        "fret": {
            k: (mine.get("summary") or {}).get(k)
            for k in ("examples", "relabel_rate", "positive_first_for_encoder")
        },
    }


def table(results: list[dict[str, Any]]) -> str:
    """The markdown table: one row per corpus, the mean over corpora last."""
    cols = ["base (plain)", "base (unified)", "BM25", "distilled", "ablation"]
    keys = ["base", "base_unified", "bm25", "distilled", "ablation"]
    if any(r.get("user_queries") for r in results):
        cols.append("your queries")
        keys.append("user_queries")
    head = "| corpus (test queries) | " + " | ".join(cols)
    head += " | distilled - base | p vs base | p vs ablation | beats BM25 | STS-B (base 82.03) |"
    lines = [head, "|" + "---|" * (len(cols) + 6)]

    def cell(r: dict[str, Any], k: str) -> str:
        row = r.get(k)
        if not row:
            return "-"
        if "ndcg@10_stdev" in row:
            lo, hi = row["ndcg@10_range"]
            return f"{row['ndcg@10']:.2f} ({lo:.2f}-{hi:.2f})"
        return f"{row['ndcg@10']:.2f}"

    for r in results:
        d = r.get("distilled") or {}
        sts = f"{d['stsb']:.2f} / {d['stsb_plain']:.2f} plain" if d else "-"
        lines.append(
            f"| {r['corpus']} ({r['queries']}) | "
            + " | ".join(cell(r, k) for k in keys)
            + f" | {r.get('gain_vs_base', '-'):+} | {r.get('p_vs_base', '-')} | "
            f"{r.get('p_vs_ablation', '-')} | {'yes' if r.get('beats_bm25') else 'no'} | {sts} |"
        )

    def mean(k: str) -> str:
        vals = [r[k]["ndcg@10"] for r in results if r.get(k)]
        return f"{statistics.fmean(vals):.2f}" if len(vals) == len(results) else "-"

    gains = [r["gain_vs_base"] for r in results if "gain_vs_base" in r]
    gain = f"{statistics.fmean(gains):+.2f}" if len(gains) == len(results) else "-"
    lines.append("| **mean** | " + " | ".join(mean(k) for k in keys) + f" | {gain} | | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "runs" / "panel", help="runs and results go here"
    )
    parser.add_argument(
        "--shared", type=Path, default=SHARED, help="the folder holding beir/ (the corpora)"
    )
    parser.add_argument(
        "--corpora", default=",".join(PANEL), help="comma-separated (default: all four)"
    )
    parser.add_argument("--sample", type=int, default=400, help="passages to write queries for")
    parser.add_argument("--seeds", default="0,1", help="training seeds (comma-separated)")
    parser.add_argument(
        "--rows",
        default="distilled,ablation",
        help="trained rows: distilled, ablation, user_queries (the corpus's train queries "
        "without their labels given as --queries-file, where it has a train split)",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a geckokit distill config key (dotted for nested tables), repeatable",
    )
    parser.add_argument("--variant", default=None, help="folder name of this set of settings")
    parser.add_argument(
        "--llm-only",
        action="store_true",
        help="run only the LLM stages (FRet steps 1 and 2) of each corpus, e.g. to queue them",
    )
    parser.add_argument(
        "--publish", action="store_true", help="copy the results to docs/results/panel.*"
    )
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.rows = [r for r in args.rows.split(",") if r]
    flat = parse_settings(args.settings)
    variant = (
        args.variant
        or f"v-{hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:8]}"
    )
    command = "python bench/panel.py " + " ".join(sys.argv[1:])
    results = []
    for name in [c for c in args.corpora.split(",") if c]:
        result = run_corpus(name, args=args, flat=flat, variant=variant, command=command)
        results.append(result)
        if args.llm_only:
            print(json.dumps(result), flush=True)
            continue
        print(
            json.dumps(
                {k: result[k] for k in result if k in ("corpus", "gain_vs_base", "p_vs_base")}
            ),
            flush=True,
        )
    if args.llm_only:
        return
    report = {
        "variant": variant,
        "settings": {"sample": args.sample, **flat},
        "seeds": args.seeds,
        "command": command,
        "corpora": {r["corpus"]: r for r in results},
    }
    gains = [r["gain_vs_base"] for r in results if "gain_vs_base" in r]
    if gains:
        report["mean_gain_vs_base"] = round(statistics.fmean(gains), 2)
    md = table(results)
    target = args.out / variant
    target.mkdir(parents=True, exist_ok=True)
    (target / "panel.json").write_text(json.dumps(report, indent=2) + "\n")
    (target / "panel.md").write_text(md)
    print(md)
    if args.publish:
        docs = ROOT / "docs" / "results"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target / "panel.json", docs / "panel.json")
        shutil.copy2(target / "panel.md", docs / "panel.md")


if __name__ == "__main__":
    main()
