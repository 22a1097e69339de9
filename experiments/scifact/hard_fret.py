"""Do the hard FRet examples carry the signal? Train on them alone.

Takes a finished ``geckokit distill`` (or ``distill_scifact.py``) run on SciFact and
keeps only its FRet examples whose positive the initial encoder does not already rank first
(``positive_first_for_encoder`` in the mine summary counts the others), then fine-tunes the
base on them with the same trainer as ``distill_scifact.py``'s FRet-only rows (3 epochs,
learning rate 5e-5, no human-labelled sets) and scores nDCG@10 on the 300 SciFact test claims and
STS-Benchmark test Spearman, both in the unified format (STS-Benchmark in plain text too,
as ``stsb_spearman_plain``), with a paired randomisation test against the base in plain
text. Real SciFact claims split the same
way train to no gain (easy) and to +4 (hard): ``scifact_supervised.py --claims``.

    python -m experiments.scifact.hard_fret runs/scifact-bench-rrf/distill \
      --out runs/scifact-hard-fret

Several runs pool their hard examples (query ids prefixed by the run's position, since runs
sampled with the same seed write for the same passages). ``--all`` keeps every FRet example
instead, to train the mine folders of two judges on the same claims the same way:

    python -m experiments.scifact.hard_fret runs/scifact-judge-1.5b --all \
      --out runs/scifact-judge-1.5b-train

``--no-negative`` leaves the mined hard negatives out (in-batch and same-tower negatives
only), as ``scifact_supervised.py`` trains the real claims, which have none.

``--human-sets nli,sts,qa,claims`` adds human-labelled sets to the mixture (the first
``--human-rows`` lines of each, as ``distill_scifact.py --human-sets`` takes them), to see
whether the examples' gain survives beside the data that keeps STS-Benchmark up:

    python -m experiments.scifact.hard_fret runs/scifact-bench-science/distill --all --no-negative \
      --human-sets nli,sts,qa,claims --human-rows 300 --out runs/scifact-science-noneg-mixed

``--plain`` trains and scores in plain text instead of Gecko's unified format (the claim
without its task prefix, the abstract as title and text joined), as the base was trained:

    python -m experiments.scifact.hard_fret runs/scifact-science-seed --all --no-negative --plain \
      --out runs/scifact-science-seed-noneg-plain

``--prefinetune`` first pre-finetunes the base on SciFact's own 5,183 (title, abstract)
pairs, Gecko's optional first stage (in-batch negatives only, one epoch, unified format),
then trains on the examples as above: the whole recipe, still without queries or labels:

    python -m experiments.scifact.hard_fret runs/scifact-science-seed --all --no-negative \
      --prefinetune --out runs/scifact-science-seed-noneg-pre

Prints one JSON line and writes it to ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow as pa

from experiments.scifact import ROOT, SHARED_DATA
from experiments.scifact.distill_scifact import base_scores, human_sets, train_from_args


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.scifact.hard_fret", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "runs", type=Path, nargs="+", help="distill run folders (each holding mine/fret)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "scifact-hard-fret")
    parser.add_argument(
        "--all",
        action="store_true",
        help="keep every FRet example, not only those whose positive the base misses",
    )
    parser.add_argument(
        "--no-negative",
        action="store_true",
        help="train without the mined hard negatives (in-batch and same-tower ones only), "
        "as the real-claim runs of scifact_supervised.py train",
    )
    parser.add_argument(
        "--human-sets",
        default="",
        help="human-labelled sets to add to the mixture, as distill_scifact.py takes them: "
        "nli, sts, qa, claims (default: none, the examples alone)",
    )
    parser.add_argument("--human-rows", type=int, default=2000, help="rows per human-labelled set")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed: batch order and dropout (default 0)"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="train and evaluate in plain text (the claim alone; title and abstract joined), "
        "as the base was trained, instead of Gecko's unified format: how much the format "
        "itself costs",
    )
    parser.add_argument(
        "--prefinetune",
        action="store_true",
        help="pre-finetune the base on SciFact's (title, abstract) pairs first (Gecko's "
        "optional first stage; unified format, so not with --plain)",
    )
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    if args.prefinetune and args.plain:
        parser.error("--prefinetune writes its pairs in the unified format; drop --plain")

    from geckokit.io import read_shards, write_table
    from geckokit.mixture.build import build_mixture
    from geckokit.retrieval.metrics import paired_randomisation_p

    examples, kept = 0, []
    for n, run in enumerate(args.runs):
        fret = read_shards(run / "mine" / "fret")
        if fret is None:
            raise SystemExit(f"{run}: no mine/fret shards; pass a finished distill run folder")
        rows = fret.to_pylist()
        examples += len(rows)
        # the encoder's own first (runs mined before the column came from the encoder alone)
        first = [r.get("encoder_first_id") or r["candidate_ids"][0] for r in rows]
        hard = fret.take(
            [i for i, r in enumerate(rows) if args.all or r["positive_id"] != first[i]]
        )
        if len(args.runs) > 1:
            ids = [f"{n}:{q}" for q in hard["query_id"].to_pylist()]
            hard = hard.set_column(
                hard.schema.get_field_index("query_id"), "query_id", pa.array(ids)
            )
        if args.no_negative:
            empty = pa.array([[]] * hard.num_rows, type=hard.schema.field("negative_ids").type)
            hard = hard.set_column(
                hard.schema.get_field_index("negative_ids"), "negative_ids", empty
            )
        kept.append(hard)
    pooled = pa.concat_tables(kept, promote_options="default")
    out: Path = args.out
    if not (out / "mine" / "fret" / "part-00000.parquet").exists():
        write_table(pooled, out / "mine" / "fret" / "part-00000.parquet")
    human = human_sets(args.shared, out / "human", args.human_rows, args.human_sets)
    if not (out / "mix" / "manifest.json").exists():
        build_mixture(out / "mix", fret=[out / "mine"], **{k: [p] for k, p in human.items()})
        if args.plain:
            to_plain(out / "mix" / "mixture")
    scores = train_from_args(out, args)
    mix = json.loads((out / "mix" / "manifest.json").read_text())
    # against the base in plain text (the README's base row), paired per query
    base = base_scores(args.shared, encoder="all-minilm-l6-v2", gecko_format=False)
    p_base = paired_randomisation_p(scores.pop("ndcg@10_per_query"), base.pop("ndcg@10_per_query"))
    result = {
        "runs": [str(r) for r in args.runs],
        "examples": examples,
        "kept": "all" if args.all else "hard",
        "kept_examples": pooled.num_rows,
        "hard_negatives": not args.no_negative,
        "human_sets": sorted(human),
        "human_rows": args.human_rows if human else 0,
        "train_rows": mix["rows"],
        "mixture": mix["sources"],
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "format": "plain" if args.plain else "unified",
        "prefinetune": args.prefinetune,
        **scores,
        "base_ndcg@10": base["ndcg@10"],
        "p_vs_base": p_base,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def to_plain(folder: Path) -> None:
    """Rewrite a mixture's shards from the unified format to plain text, as the base encoder
    and the plain-text evaluation see text: a query without its ``task: ... | query: ``
    prefix, a document as its title and text joined by a space (no title: the text)."""
    import pyarrow.parquet as pq

    def query(text: str) -> str:
        return text.split(" | query: ", 1)[1] if text.startswith("task: ") else text

    def document(text: str) -> str:
        if not text.startswith("title: ") or " | text: " not in text:
            return query(text)  # a symmetric task's side is in the query form
        title, body = text[len("title: ") :].split(" | text: ", 1)
        return body if title == "none" else f"{title} {body}".strip()

    for shard in sorted(folder.glob("part-*.parquet")):
        table = pq.read_table(shard)
        for column, convert in (("query", query), ("positive", document), ("negative", document)):
            values = [convert(v) if v else v for v in table[column].to_pylist()]
            table = table.set_column(
                table.schema.get_field_index(column), column, pa.array(values, pa.string())
            )
        if "candidate_texts" in table.column_names:  # FRet rows' ranking, for distillation
            lists = [
                None if texts is None else [document(t) if t else t for t in texts]
                for texts in table["candidate_texts"].to_pylist()
            ]
            table = table.set_column(
                table.schema.get_field_index("candidate_texts"),
                "candidate_texts",
                pa.array(lists, pa.list_(pa.string())),
            )
        pq.write_table(table, shard)


if __name__ == "__main__":
    main()
