"""Does a larger LLM judge the same mined queries differently?

Takes a finished mine folder (``geckokit mine``, or the ``mine/`` of a distill run), keeps the
first ``--queries`` of its FRet examples, mines just those queries again with another LLM and
the same settings (top N, fusion, drop-solved, rerank prompt, encoder), and compares the two
judges' choices on them: how often each moves the positive off the seed passage
(the relabel rate), how often they pick the same positive and the same hard negative, and
how the positive of each sits in the other's fused ranking. No training: with a few dozen
queries, what the choices are is measurable; what they would teach the encoder is not.

    python -m experiments.scifact.judge_agreement runs/scifact-bench-science/distill/mine \\
      --llm qwen2.5-coder-1.5b-instruct --queries 80 --out runs/scifact-judge-1.5b

The second mine folder is ``OUT/mine`` (resumable: rerun the command after a stop); the
subset's queries are written to ``OUT/queries``. Prints one JSON line and writes it to
``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pyarrow as pa


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.scifact.judge_agreement", description=__doc__.splitlines()[0]
    )
    parser.add_argument("mine_dir", type=Path, help="a finished mine folder (fret/, manifest)")
    parser.add_argument("--llm", required=True, help="the other judge (registry name, GGUF, URL)")
    parser.add_argument("--queries", type=int, default=80, help="FRet examples to judge again")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from geckokit.encoder import EncoderRef
    from geckokit.fret.fusion import Fusion, NegativeChoice
    from geckokit.fret.mine_run import MineConfig, mine
    from geckokit.io import read_json, read_shards, write_table
    from geckokit.llm import load_llm

    first = read_json(args.mine_dir / "manifest.json")
    fret = read_shards(args.mine_dir / "fret")
    if first is None or first.get("status") != "finished" or fret is None:
        raise SystemExit(f"{args.mine_dir}: not a finished mine folder")
    if first.get("queries") is None:
        raise SystemExit(f"{args.mine_dir}: mined a queries file alone; this needs a generate run")
    kept = fret.slice(0, args.queries)
    ids = set(kept["query_id"].to_pylist())
    source = Path(first["queries"]["source"])
    queries = read_shards(source / "queries")
    assert queries is not None
    subset = queries.filter(pa.array([q in ids for q in queries["query_id"].to_pylist()]))
    qdir = args.out / "queries"
    if not (qdir / "queries" / "part-00000.parquet").exists():
        write_table(subset, qdir / "queries" / "part-00000.parquet")
        shutil.copy(source / "manifest.json", qdir / "manifest.json")  # its corpus split

    # the corpus embeddings of the registry encoder come from $GECKOKIT_HOME/embeddings

    selection = first["selection"]
    config = MineConfig(
        **{k: v for k, v in first["config"].items() if k in MineConfig.model_fields},
        fusion=Fusion(selection["fusion"]),
        weights=tuple(selection["weights"]),
        negative=NegativeChoice(selection["negative"]),
        negatives_k=selection["negatives_k"],
    )
    t0 = time.perf_counter()
    second = mine(
        qdir,
        first["corpus"]["source"],
        args.out / "mine",
        llm=load_llm(args.llm),
        encoder=EncoderRef.load(first["encoder"]),
        config=config,
    )
    seconds = time.perf_counter() - t0
    other = read_shards(args.out / "mine" / "fret")
    assert other is not None
    a = {r["query_id"]: r for r in kept.to_pylist()}
    b = {r["query_id"]: r for r in other.to_pylist()}
    both = sorted(a.keys() & b.keys())
    n = len(both)

    def share(hits: int) -> float:
        return round(hits / n, 4) if n else 0.0

    def rank_in(row: dict, passage: str) -> int:  # 1-based, in the row's fused ranking
        order = sorted(range(len(row["candidate_ids"])), key=lambda i: -row["fused_scores"][i])
        return 1 + [row["candidate_ids"][i] for i in order].index(passage)

    result = {
        "first": {"mine": str(args.mine_dir), "llm": first["model"].get("registry_name")},
        "second": {"mine": str(args.out / "mine"), "llm": args.llm},
        "queries": n,
        "top_n": config.top_n,
        "fusion": config.fusion.value,
        "relabel_rate": {
            "first": share(sum(a[q]["relabelled"] for q in both)),
            "second": share(sum(b[q]["relabelled"] for q in both)),
        },
        "same_positive": share(sum(a[q]["positive_id"] == b[q]["positive_id"] for q in both)),
        "same_negative": share(sum(a[q]["negative_ids"] == b[q]["negative_ids"] for q in both)),
        # where each judge puts the other's positive (1 = it agrees)
        "mean_rank_of_other_positive": {
            "first": round(sum(rank_in(a[q], b[q]["positive_id"]) for q in both) / max(1, n), 2),
            "second": round(sum(rank_in(b[q], a[q]["positive_id"]) for q in both) / max(1, n), 2),
        },
        # LLM time: the first judge's over its whole run, the second's over the subset
        "llm": {k: _llm_time(m["summary"]) for k, m in (("first", first), ("second", second))},
        "seconds": round(seconds),
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def _llm_time(summary: dict) -> dict:
    """A mine summary's LLM seconds, candidate passages scored and seconds per passage."""
    passages = summary["passages_scored"]
    return {
        "seconds": summary["llm_seconds"],
        "passages_scored": passages,
        "seconds_per_passage": round(summary["llm_seconds"] / max(1, passages), 2),
    }


if __name__ == "__main__":
    main()
