"""The demo's LLM stages on the llama.cpp backend's paths, and the estimate against what they took.

`geckokit demo` writes 48 queries and scores 240 pairs with the default 0.5B model. This runs
those two stages (``geckokit distill --until mine`` on the demo's settings) once per path,
each into its own fresh folder, and prints for each the estimate printed before the run
(time per stage at the rates probed just then) beside the LLM seconds the stage took:

- ``today``: the backend as it ran before batched decoding: one sequence
  (``n_seq_max=1``), llama.cpp's repacked weights, a passage's pairs one at a time
  (``mine.parallel`` 1);
- ``default``: the defaults (a passage's pairs decoded together, passages written one at
  a time);
- ``K together``: the defaults with ``generate.parallel`` K (FRet step 1 only).

The demo's time after its LLM stages (training three seeds, evaluation) does not depend on
the path. Rates depend on what else the machine runs: measure on a quiet one.

    python bench/demo_llm_time.py                  # today, default, 4 written together
    python bench/demo_llm_time.py --parallel 0     # without the third path
    python bench/demo_llm_time.py --paths default,together   # some of them
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any


def run_path(
    name: str, options: dict[str, Any], settings: dict[str, Any], *, until: str, work: Path
) -> dict[str, Any]:
    from geckokit.llm.llamacpp import LlamaCppLLM
    from geckokit.pipeline.config import DistillConfig
    from geckokit.pipeline.demo import demo_config
    from geckokit.pipeline.distill import run_distill
    from geckokit.registry import DEFAULT_LLM, pull

    data = demo_config().model_dump(exclude_unset=True)
    for dotted, value in settings.items():
        table, key = dotted.split(".")
        data.setdefault(table, {})[key] = value
    config = DistillConfig.model_validate(data)
    llm = LlamaCppLLM(str(pull(DEFAULT_LLM)), **options)
    estimates: list[dict[str, Any]] = []
    try:
        manifest = run_distill(
            config,
            work / name.replace(" ", "-"),
            until=until,
            llm=llm,
            on_estimate=estimates.append,
            show_progress=False,
        )
    finally:
        llm.close()
    estimate = estimates[0]
    stages = ("generate", "mine") if until == "mine" else ("generate",)
    took = {s: getattr(manifest.stages, s).llm_this_run for s in stages}
    return {
        "path": name,
        "rates": estimate["rates"],
        "estimate_s": estimate["seconds_by_stage"],
        "llm_s": {s: round(u.seconds, 1) for s, u in took.items()},
        "prompt_tokens": {s: u.prompt_tokens_evaluated for s, u in took.items()},
        "written_tokens": took["generate"].completion_tokens,
        "estimate_tokens": estimate["tokens"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parallel", type=int, default=4, help="answers written together (0: skip that path)"
    )
    parser.add_argument(
        "--paths",
        default="today,default,together",
        help="which paths to run, comma-separated (the ratios need today and default)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    paths: dict[str, tuple[str, dict[str, Any], dict[str, Any], str]] = {
        "today": ("today", {"n_seq_max": 1, "repack": True}, {"mine.parallel": 1}, "mine"),
        "default": ("default", {}, {}, "mine"),
    }
    if args.parallel > 1:
        k = args.parallel
        paths["together"] = (f"{k} together", {}, {"generate.parallel": k}, "generate")
    chosen = [paths[name] for name in args.paths.split(",") if name in paths]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_path(*p[:3], until=p[3], work=Path(tmp)) for p in chosen]
    print("the demo's LLM stages (48 queries written, their pairs scored), LLM seconds:")
    print(f"{'path':<14}{'stage':<10}{'estimate':>10}{'took':>8}{'took/est':>10}{'tok/s':>8}")
    for row in rows:
        for stage, took in row["llm_s"].items():
            est = row["estimate_s"][stage]
            tokens = row["prompt_tokens"][stage] + (
                row["written_tokens"] if stage == "generate" else 0
            )
            print(
                f"{row['path']:<14}{stage:<10}{est:>10.0f}{took:>8.1f}{took / est:>9.2f}x"
                f"{tokens / took:>8.1f}"
            )
    took = {row["path"]: row["llm_s"] for row in rows}
    today, default = took.get("today"), took.get("default")
    if today and default:
        both = sum(today.values()) / sum(default.values())
        print(
            f"default against today: writing {today['generate'] / default['generate']:.2f}x, "
            f"scoring {today['mine'] / default['mine']:.2f}x, both stages {both:.2f}x as fast"
        )
    together = [row for row in rows if row["path"].endswith("together")]
    if together and default:
        k = together[0]["llm_s"]["generate"]
        print(f"{together[0]['path']} against default, writing: {default['generate'] / k:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
