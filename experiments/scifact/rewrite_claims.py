"""Do claims in other words teach more? Rewrite a finished run's claims, then train on them.

SciFact's real claims share about half of their content words with their abstracts (52%,
`geckokit.fret.validate.word_overlap`); the claims the 0.5B model writes from a passage share
83%, and the base encoder finds their passage first far more often. Rejecting the echoing
ones (`geckokit generate --max-word-overlap`) costs many attempts and keeps drifting, made-up
claims. This script tries the other order: take the claims a run has already mined, and let
an LLM rewrite each one *without the passage in view* (so it cannot copy the passage's
terms: synonyms, spelled-out or abbreviated names, a broader class), the way a citing
author would state the finding.

    python -m experiments.scifact.rewrite_claims runs/scifact-bench-science/distill \
        --llm qwen2.5-coder-1.5b-instruct --out runs/scifact-rewrite-science
    python -m experiments.scifact.hard_fret runs/scifact-rewrite-science --all --no-negative \
        --out runs/scifact-rewrite-science-train
    python -m experiments.scifact.claim_difficulty runs/scifact-rewrite-science/original \
        runs/scifact-rewrite-science

Writes ``OUT/mine/fret`` (the run's FRet examples, ``query`` rewritten, the claim it came
from in ``original_query``; positives and negatives as mined), ``OUT/queries`` and
``OUT/original/queries`` (passage and claim, rewritten and as it was, for
``claim_difficulty.py OUT/original OUT``) and ``OUT/manifest.json`` (the prompt, the LLM's
tokens and seconds over all sittings, the word overlap before and after). Resumable by
shard of 64 claims. The prompt's examples are written for this file; none comes from a
benchmark.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

SYSTEM = (
    "You rewrite scientific claims the way another paper citing the finding would state "
    "them. Keep the meaning; change the words: use synonyms, spell out or abbreviate terms, "
    "name the general class instead of the exact compound or the reverse, or turn the "
    "sentence around. One sentence, 5 to 20 words. Answer with the rewritten claim only."
)
EXAMPLES = [
    (
        "Transplanting faecal microbiota from obese twins into germ-free mice increases "
        "their fat mass.",
        "Intestinal bacteria from obese humans raise adiposity in recipient rodents.",
    ),
    (
        "ATM phosphorylates p53 on serine 15 within minutes of ionising radiation.",
        "DNA damage rapidly activates the tumour suppressor through the ataxia "
        "telangiectasia kinase.",
    ),
    (
        "Walking two hours per week lowers type 2 diabetes incidence in women.",
        "Moderate physical activity reduces the risk of adult-onset diabetes in females.",
    ),
]
SHARD = 64


def rewrite_chat(claim: str) -> list[dict[str, str]]:
    """The rewrite prompt for one claim: the instructions, the few-shot pairs, the claim.
    The passage is not in it, so the rewrite cannot borrow the passage's words."""
    messages = [{"role": "system", "content": SYSTEM}]
    for before, after in EXAMPLES:
        messages += [
            {"role": "user", "content": before},
            {"role": "assistant", "content": after},
        ]
    return [*messages, {"role": "user", "content": claim}]


def clean(text: str) -> str:
    """The first line of an answer, without quotes around it."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.strip().strip('"').strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.scifact.rewrite_claims", description=__doc__.splitlines()[0]
    )
    parser.add_argument("run", type=Path, help="a finished distill run folder (holding mine/fret)")
    parser.add_argument("--llm", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from rich.progress import track

    from geckokit.fret.validate import check_query, word_overlap
    from geckokit.io import read_shards, write_table
    from geckokit.llm import load_llm

    fret = read_shards(args.run / "mine" / "fret")
    if fret is None:
        raise SystemExit(f"{args.run}: no mine/fret shards; pass a finished distill run folder")
    out: Path = args.out
    llm = load_llm(args.llm)
    before = llm.usage.copy()
    t0 = time.perf_counter()
    shards = range(0, fret.num_rows, SHARD)
    for start in track(shards, description="rewrite (shards of 64 claims)"):
        path = out / "mine" / "fret" / f"part-{start // SHARD:05d}.parquet"
        if path.exists():
            continue
        part = fret.slice(start, SHARD)
        claims = part["query"].to_pylist()
        answers = llm.generate([rewrite_chat(c) for c in claims], max_tokens=64, temperature=0.0)
        rewritten = []
        for claim, answer, task, text in zip(
            claims,
            answers,
            part["task"].to_pylist(),
            part["positive_text"].to_pylist(),
            strict=True,
        ):
            new = clean(answer.text)
            # an answer that is empty, too long or a copy keeps the original claim
            ok = check_query(task, new, title="", passage=text) is None
            rewritten.append(new if ok and new.lower() != claim.lower() else claim)
        part = part.append_column("original_query", pa.array(claims))
        part = part.set_column(part.schema.get_field_index("query"), "query", pa.array(rewritten))
        queries = pa.table({"passage_id": part["seed_id"], "query": part["query"]})
        write_table(queries, out / "queries" / f"part-{start // SHARD:05d}.parquet")
        write_table(part, path)  # last: its presence marks the shard done
    done = read_shards(out / "mine" / "fret")
    assert done is not None
    rows = done.to_pylist()
    # the claims as they were, in the same shape, so claim_difficulty.py can compare the two
    original = out / "original" / "queries" / "part-00000.parquet"
    if not original.exists():
        write_table(
            pa.table({"passage_id": done["seed_id"], "query": done["original_query"]}), original
        )

    def mean_overlap(key: str) -> float:
        return round(
            sum(word_overlap(r[key], f"{r['positive_title']}\n{r['positive_text']}") for r in rows)
            / len(rows),
            3,
        )

    manifest: dict[str, Any] = {
        "run": str(args.run),
        "llm": llm.model_id,
        "prompt": {"system": SYSTEM, "examples": EXAMPLES},
        "claims": len(rows),
        "rewritten": sum(r["query"] != r["original_query"] for r in rows),
        "word_overlap_with_positive": {
            "before": mean_overlap("original_query"),
            "after": mean_overlap("query"),
        },
    }
    # the LLM's tokens and seconds, summed over every sitting of a resumed run
    spent = {**llm.usage.since(before), "seconds": round(time.perf_counter() - t0, 1)}
    earlier = out / "manifest.json"
    if earlier.exists():
        previous = json.loads(earlier.read_text()).get("llm", {})
        spent = {k: round(v + previous.get(k, 0), 1) for k, v in spent.items()}
    manifest["llm"] = spent
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest["word_overlap_with_positive"] | {"claims": len(rows)}))
    print(json.dumps(manifest["llm"]))


if __name__ == "__main__":
    main()
