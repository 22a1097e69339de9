"""``geckokit mix``: the sources of a training mixture into one folder.

Output: ``mixture/part-00000.parquet`` (task, query, positive, negative, source; FRet rows
also their candidates, candidate texts and LLM scores, see :mod:`geckokit.mixture.adapters`)
and ``manifest.json`` with the rows per source and the sampling weights training should use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from geckokit.io import MANIFEST, environment, read_shards, write_json, write_table
from geckokit.mixture.adapters import (
    from_beir_pairs,
    from_claims,
    from_classification,
    from_fret,
    from_nli,
    from_qa_pairs,
    from_sts,
)
from geckokit.tasks import CLASSIFICATION_TASKS


def build_mixture(
    out: str | Path,
    *,
    fret: Sequence[Path] = (),
    nli: Sequence[Path] = (),
    classification: Sequence[tuple[Path, str | None]] = (),
    sts: Sequence[Path] = (),
    qa: Sequence[Path] = (),
    pairs: Sequence[Path] = (),
    claims: Sequence[Path] = (),
    weights: dict[str, float] | None = None,
    sts_min_score: float = 4.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Read every source, write the mixture and return its manifest."""
    parts: list[pa.Table] = []
    for folder in fret:
        table = read_shards(Path(folder) / "fret")
        if table is None:
            raise ValueError(f"{folder}: no fret/ shards; run `geckokit mine` first")
        parts.append(from_fret(table, source=f"fret:{Path(folder).name}"))
    parts += [from_nli(p, source=f"nli:{Path(p).parent.name}") for p in nli]
    for path, task in classification:
        name = Path(path).parent.name
        task = task or CLASSIFICATION_TASKS.get(name)
        if not task:
            raise ValueError(f"{path}: no task string known for {name!r}; pass it as PATH:TASK")
        parts.append(
            from_classification(path, task=task, source=f"classification:{name}", seed=seed)
        )
    parts += [
        from_sts(p, min_score=sts_min_score, source=f"sts:{Path(p).parent.name}") for p in sts
    ]
    parts += [from_qa_pairs(p, source=f"qa:{Path(p).parent.name}") for p in qa]
    parts += [from_beir_pairs(p) for p in pairs]
    parts += [from_claims(p, source=f"claims:{Path(p).parent.name}") for p in claims]
    if not parts:
        raise ValueError(
            "no sources given; pass at least one of --fret, --nli, --classification, --sts, --qa, --pairs, --claims"
        )
    mixture = pa.concat_tables(parts)
    counts: dict[str, int] = {}
    for s in mixture["source"].to_pylist():
        counts[s] = counts.get(s, 0) + 1
    unknown = set(weights or {}) - set(counts)
    if unknown:
        raise ValueError(
            f"--weights names unknown sources {sorted(unknown)}; the sources are {sorted(counts)}"
        )
    out = Path(out)
    write_table(mixture, out / "mixture" / "part-00000.parquet")
    manifest = {
        "stage": "mix",
        "rows": mixture.num_rows,
        "sources": counts,
        "weights": {s: (weights or {}).get(s, 1.0) for s in counts},
        "sts_min_score": sts_min_score,
        "seed": seed,
        "environment": environment(),
    }
    write_json(manifest, out / MANIFEST)
    return manifest
