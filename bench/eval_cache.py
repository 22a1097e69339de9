"""Evaluation with the embeddings cache: a registry encoder on a benchmark, cold and again.

``geckokit.evaluate.evaluate`` keeps a registry encoder's embeddings of each text list of
256 or more under the embeddings cache. This runs the same evaluation twice against an empty
cache folder of its own (``GECKOKIT_EMBEDDINGS`` set to a temporary folder, so the user's
cache is neither used nor changed), with no result folder (mteb's own result cache plays no
part), and prints both wall times, their ratio and both scores, which must be equal:

    python bench/eval_cache.py --task ../shared/data/beir/scifact --format plain
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-minilm-l6-v2", help="a registry encoder")
    parser.add_argument(
        "--task", type=Path, default=ROOT.parent / "shared" / "data" / "beir" / "scifact"
    )
    parser.add_argument("--format", default="plain", choices=["plain", "gecko"])
    args = parser.parse_args()

    from geckokit.evaluate import evaluate

    with tempfile.TemporaryDirectory() as folder:
        os.environ["GECKOKIT_EMBEDDINGS"] = folder
        runs = []
        for name in ("cold", "cached"):
            t0 = time.perf_counter()
            table = evaluate(args.model, str(args.task), dims=None, formats=[args.format])
            seconds = time.perf_counter() - t0
            row = table.to_pylist()[0]
            runs.append({"run": name, "seconds": round(seconds, 1), "score": row["score"]})
        files = sorted(p.name for p in Path(folder).glob("*.npy"))
    result = {
        "model": args.model,
        "task": str(args.task),
        "format": args.format,
        "runs": runs,
        "speedup": round(runs[0]["seconds"] / runs[1]["seconds"], 1),
        "same_score": runs[0]["score"] == runs[1]["score"],
        "cached_arrays": files,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
