"""Does distillation help? SciFact from its passages alone, against the base and the
paper's no-relabelling baseline, in one run.

1. ``geckokit distill`` on the SciFact corpus in ../shared/data (passages only: no queries,
   no labels): the LLM writes ``--queries-per-passage`` queries for each of ``--sample``
   passages drawn at random (task types from the prompt's pool, or ``--task-types``), the
   base encoder retrieves ``--top-n`` neighbours from the whole corpus, the LLM rescores
   them, and MiniLM is fine-tuned on FRet plus the human-labelled sets that keep general
   ability (``--human-sets``: SNLI, STS-Benchmark train, TrecQA, Climate-FEVER).
2. The ablation (paper Table 5's baseline): the same queries and candidates, positive = the
   seed passage, a random lower-ranked candidate as negative, no LLM scoring; same mixture
   and training.
3. A reference without FRet: the human-labelled sets alone, same training.
4. nDCG@10 on the 300 SciFact test queries (and STS-Benchmark test Spearman) for the base
   model, the distilled model, the ablation and the reference.

``--prefinetune`` adds Gecko's pre-finetuning stage to the trainings: in-batch contrastive
training on the corpus's own (title, abstract) pairs, still no queries or labels; the stage
is trained once and shared, and the table gains a row for the pre-finetuned model alone.

    # about an hour on 2 cores
    python -m experiments.scifact.distill_scifact --sample 96 --top-n 5 --out runs/scifact-bench

``--only distilled,ablation`` trains and evaluates only those rows (a SciFact evaluation
takes minutes on 2 cores). The base in plain text (the README's base row) is always in the
table, as every row's reference in a paired randomisation test (``p_vs_base``); its corpus
embeddings are cached, so after the first run it takes under a minute.

Rerunning the same command resumes (the LLM stages are sharded; ``--until generate`` or
``--until mine`` stops after an LLM stage, and training settings may change until the
training has started). Prints a table and writes ``results.json`` in the run folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from experiments.scifact import ROOT, SHARED_DATA


def sts_spearman(model: object, path: Path, *, gecko_format: bool) -> float:
    """Spearman correlation (x100) between cosine similarity and the gold scores."""
    import numpy as np
    from scipy.stats import spearmanr

    from geckokit.format import query_text
    from geckokit.tasks import task_string

    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

    def fmt(texts: list[str]) -> list[str]:
        task = task_string("stsbenchmark", "sts")
        return [query_text(task, t) for t in texts] if gecko_format else texts

    a = model.encode(fmt([r["sentence1"] for r in rows]), normalize_embeddings=True)  # type: ignore[attr-defined]
    b = model.encode(fmt([r["sentence2"] for r in rows]), normalize_embeddings=True)  # type: ignore[attr-defined]
    sims = np.sum(a * b, axis=1)  # (pairs,)
    return round(100 * float(spearmanr(sims, [r["score"] for r in rows]).statistic), 2)


def base_scores(shared: Path, *, encoder: str, gecko_format: bool) -> dict[str, Any]:
    """The base encoder's row: nDCG@10 and Recall@10 on the SciFact test claims (each
    claim's nDCG@10 under ``ndcg@10_per_query``, for paired tests) and STS-Benchmark test
    Spearman, in plain text or the unified format. The corpus embeddings, most of its four
    minutes on 2 cores, are computed once and kept under ``$GECKOKIT_HOME/embeddings``
    (a registry encoder's, by its name), so later runs take under a minute."""
    from geckokit.encoder import load_encoder

    model = load_encoder(encoder)
    return score_model(model, shared, gecko_format=gecko_format, per_query=True, name=encoder)


def train_and_score(
    out: Path,
    shared: Path,
    *,
    epochs: float,
    learning_rate: float,
    per_query: bool = False,
    seed: int = 0,
    gecko_format: bool = True,
    prefinetune: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune the base on ``out/mix`` into ``out/train`` (kept when its model exists),
    then score it on the SciFact test claims and STS-Benchmark test, both in the unified
    format (in plain text with ``gecko_format=False``, for a mixture written in plain text);
    ``seconds`` covers both. ``per_query`` keeps each claim's nDCG@10; ``seed`` sets the
    training's batch order and dropout; ``prefinetune`` (pairs, as ``geckokit train
    --prefinetune`` takes them) pre-finetunes the base on them first."""
    from geckokit.encoder import load_encoder
    from geckokit.train.trainer import TrainConfig, train

    t0 = time.perf_counter()
    if not (out / "train" / "model").is_dir():
        config = TrainConfig(
            epochs=epochs,
            learning_rate=learning_rate,
            save_steps=1000,
            logging_steps=10,
            seed=seed,
            text_format="unified",  # as its figures were measured (--plain writes plain rows)
        )
        train(out / "mix", out / "train", config=config, prefinetune=prefinetune)
    model = load_encoder(str(out / "train" / "model"))
    scores = score_model(model, shared, gecko_format=gecko_format, per_query=per_query)
    return {**scores, "seconds": round(time.perf_counter() - t0)}


def train_from_args(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``train_and_score`` with a study's ``--epochs``, ``--learning-rate``,
    ``--seed``, ``--shared``, and ``--plain`` and ``--prefinetune`` where it has them
    (``--prefinetune`` pre-finetunes on SciFact's title-abstract pairs), keeping each
    claim's nDCG@10 for paired tests."""
    return train_and_score(
        out,
        args.shared,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_query=True,
        seed=args.seed,
        gecko_format=not getattr(args, "plain", False),
        prefinetune=(
            args.shared / "beir" / "scifact" if getattr(args, "prefinetune", False) else None
        ),
    )


def score_model(
    model: object, shared: Path, *, gecko_format: bool, per_query: bool = False, name: str = ""
) -> dict[str, Any]:
    """nDCG@10 and Recall@10 on the SciFact test claims and STS-Benchmark test Spearman,
    in the unified format or plain text (``gecko_format``). A model scored in the unified
    format is also scored on STS-Benchmark in plain text (``stsb_spearman_plain``, seconds
    more): the base itself loses 7.5 points there in the unified format, so the plain figure
    tells a change of format from forgetting. ``name`` (a registry name or hub id) caches
    the corpus embeddings, as ``base_scores`` does for the base."""
    from geckokit.encoder import EncoderRef
    from geckokit.evaluate.retrieval import evaluate_retrieval
    from geckokit.tasks import task_string

    ret = evaluate_retrieval(
        EncoderRef.named(model, name) if name else EncoderRef(model),
        shared / "beir" / "scifact",
        task=task_string("scifact", "retrieval"),
        gecko_format=gecko_format,
        per_query=per_query,
    )
    sts = shared / "sts" / "stsbenchmark" / "test.jsonl"
    ret["stsb_spearman"] = sts_spearman(model, sts, gecko_format=gecko_format)
    if gecko_format:
        ret["stsb_spearman_plain"] = sts_spearman(model, sts, gecko_format=False)
    return ret


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.scifact.distill_scifact", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "scifact-bench")
    parser.add_argument("--sample", type=int, default=96, help="passages to write queries for")
    parser.add_argument("--top-n", type=int, default=5)
    parser.add_argument("--llm", default=None)
    parser.add_argument(
        "--task-types",
        default=None,
        help="comma-separated task types to write queries for (default: the prompt's whole pool)",
    )
    parser.add_argument(
        "--queries-per-passage", type=int, default=1, help="query slots per sampled passage"
    )
    parser.add_argument(
        "--max-word-overlap",
        type=float,
        default=1.0,
        help="reject a claim sharing more than this share of its content words with its "
        "passage (1 = no limit), as `geckokit generate --max-word-overlap`",
    )
    parser.add_argument(
        "--max-attempts", type=int, default=3, help="tries per query slot (generate)"
    )
    parser.add_argument(
        "--prompt",
        default=None,
        help="FRet step 1 prompt template, a TOML file or a bundled name (default: the "
        "bundled generate_v1.toml), e.g. science-claims",
    )
    parser.add_argument(
        "--fusion",
        choices=["rrf", "ql", "rc"],
        default=None,
        help="FRet step 2 fusion (default: the LLM's measured best); changing it on a run "
        "whose mixture has not been built re-selects from the stored scores, no LLM work",
    )
    parser.add_argument(
        "--drop-solved",
        action="store_true",
        help="FRet step 2 (and the ablation): leave out the queries whose seed passage the base "
        "already ranks first; their pairs are not scored",
    )
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument(
        "--until",
        choices=["generate", "mine"],
        default=None,
        help="stop after this LLM stage (rerun without it to go on)",
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--human-rows", type=int, default=2000, help="rows per human-labelled set")
    parser.add_argument(
        "--human-sets",
        default="nli,sts,qa,claims",
        help="human-labelled sets in both mixtures: nli (SNLI), sts (STS-Benchmark train), "
        "qa (TrecQA), claims (Climate-FEVER); empty for FRet alone",
    )
    parser.add_argument(
        "--prefinetune",
        action="store_true",
        help="pre-finetune on the corpus's own title-body pairs first (distilled and ablation)",
    )
    parser.add_argument(
        "--only",
        default="base,distilled,ablation,human-only",
        help="comma-separated rows to train and evaluate (each SciFact evaluation takes "
        "minutes on 2 cores): base, distilled, ablation, human-only; the base in plain text "
        "is always scored (its corpus embeddings cached after the first time)",
    )
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    args = parser.parse_args()

    from geckokit.encoder import EncoderRef, load_encoder
    from geckokit.fret.fusion import Fusion, NegativeChoice
    from geckokit.fret.mine_run import MineConfig, mine
    from geckokit.mixture.build import build_mixture
    from geckokit.pipeline.distill import distill, load_config, resolve_defaults
    from geckokit.retrieval.metrics import paired_randomisation_p
    from geckokit.train.trainer import TrainConfig, train

    scifact = args.shared / "beir" / "scifact"
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    human = human_sets(args.shared, out / "human", args.human_rows, args.human_sets)
    only = set(args.only.split(","))
    unknown = only - {"base", "distilled", "ablation", "human-only"}
    if unknown:
        raise SystemExit(f"--only: unknown {sorted(unknown)}")
    if "human-only" in only and not human:
        raise SystemExit("--only human-only: no human-labelled sets (--human-sets is empty)")
    train_cfg = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "save_steps": 200,
        "logging_steps": 5,
        "text_format": "unified",  # as its figures were measured (--plain writes plain rows)
    }
    config = load_config(
        None,
        {
            "corpus": str(scifact / "corpus.jsonl"),
            "llm": args.llm,
            "sample": args.sample,
            "mine.top_n": args.top_n,
            "mine.fusion": args.fusion,
            "mine.drop_solved": args.drop_solved,
            "generate.task_types": args.task_types.split(",") if args.task_types else None,
            "generate.queries_per_passage": args.queries_per_passage,
            "generate.max_attempts": args.max_attempts,
            "generate.validation.max_word_overlap": args.max_word_overlap,
            "prompt": str(args.prompt) if args.prompt else None,
            **{f"mix.{kind}": [str(path)] for kind, path in human.items()},
            "train": train_cfg,
            "prefinetune": str(scifact) if args.prefinetune else None,
        },
    )
    config = resolve_defaults(config)  # the LLM and its fusion, as the run records them
    t0 = time.perf_counter()
    manifest = distill(
        config, out / "distill", until=args.until or "train", on_estimate=_print_estimate
    )
    distill_s = time.perf_counter() - t0
    if args.until:
        print(f"stopped after {args.until}; rerun without --until to go on")
        return

    # the ablation: same queries and candidates, no LLM relabelling
    abl = out / "ablation"
    mined = mine(
        out / "distill" / "queries",
        scifact / "corpus.jsonl",
        abl / "mine",
        llm=None,
        encoder=EncoderRef.load(config.base),
        config=MineConfig(
            top_n=args.top_n,
            fusion=Fusion.SEED,
            negative=NegativeChoice.RANDOM,
            drop_solved=args.drop_solved,
        ),
    )
    # with --prefinetune, the references start from the distilled run's pre-finetuned model
    pre = out / "distill" / "train" / "prefinetune" / "model"
    base = {"base": str(pre)} if args.prefinetune else {}
    human_lists = {kind: [path] for kind, path in human.items()}
    references = {"ablation": (abl, [abl / "mine"]), "human-only": (out / "human-only", [])}
    for folder, fret in (v for k, v in references.items() if k in only):
        if not (folder / "mix" / "manifest.json").exists():
            build_mixture(folder / "mix", fret=fret, **human_lists)
        if not (folder / "train" / "model").is_dir():
            train(folder / "mix", folder / "train", config=TrainConfig(**train_cfg, **base))

    rows = {  # name: (row for --only, model folder, unified format)
        "distilled": ("distilled", manifest["model"], True),
        "ablation: seed positive, random negative": (
            "ablation",
            str(abl / "train" / "model"),
            True,
        ),
        "human-labelled sets only (no FRet)": (
            "human-only",
            str(out / "human-only" / "train" / "model"),
            True,
        ),
    }
    models = {
        name: (load_encoder(path), fmt) for name, (row, path, fmt) in rows.items() if row in only
    }
    if args.prefinetune:
        models["pre-finetuned on title-body pairs only"] = (
            load_encoder(str(out / "distill" / "train" / "prefinetune" / "model")),
            True,
        )
    results, per_query = {}, {}
    # the base in plain text is every row's reference (p_vs_base), so it is always scored
    bases = {"base (plain)": False} | ({"base (unified format)": True} if "base" in only else {})
    for name, fmt in bases.items():
        results[name] = base_scores(args.shared, encoder=config.base, gecko_format=fmt)
        per_query[name] = results[name].pop("ndcg@10_per_query")
    for name, (model, fmt) in models.items():
        results[name] = score_model(model, args.shared, gecko_format=fmt, per_query=True)
        per_query[name] = results[name].pop("ndcg@10_per_query")
    # is a row's difference from the base, and the distilled model's from each other row,
    # more than chance? (paired randomisation tests on the per-query nDCG@10)
    for name in results:
        if name != "base (plain)":
            results[name]["p_vs_base"] = paired_randomisation_p(
                per_query[name], per_query["base (plain)"]
            )
        if name != "distilled" and "distilled" in per_query:
            results[name]["p_vs_distilled"] = paired_randomisation_p(
                per_query["distilled"], per_query[name]
            )
    summary = manifest["stages"]["mine"]["summary"]
    report = {
        "sample": args.sample,
        "top_n": args.top_n,
        "prefinetune": config.prefinetune,
        "queries_per_passage": args.queries_per_passage,
        "task_types": config.generate.task_types,
        "prompt": config.prompt,
        "human_sets": sorted(human),
        "train": train_cfg,
        "llm": config.llm,
        "fusion": config.mine.fusion.value,
        "drop_solved": args.drop_solved,
        "relabel_rate": summary["relabel_rate"],
        "seed_at_rank_1": summary.get("seed_at_rank_1"),
        "positive_first_for_encoder": summary.get("positive_first_for_encoder"),
        "generate": {
            k: manifest["stages"]["generate"]["summary"].get(k)
            for k in ("queries", "attempts", "passages_without_query", "reject_rate")
        },
        "ablation_examples": mined["counts"]["examples"],
        "solved_dropped": summary.get("solved_dropped"),
        "distill_seconds": round(distill_s),
        "stages": {k: v["seconds"] for k, v in manifest["stages"].items()},
        # the LLM time of every sitting from its score shards, whatever stopped them
        "mine_llm_seconds": summary.get("llm_seconds"),
        "sizes": _sizes(out / "distill"),
        "results": results,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"SciFact: {args.queries_per_passage} queries for each of {args.sample} passages "
        f"(task types: {', '.join(config.generate.task_types or ['all'])}), top {args.top_n}, "
        f"LLM {config.llm} (fusion {report['fusion']}), relabel rate {summary['relabel_rate']:.1%}; "
        f"training: {args.epochs:g} epochs, learning rate {args.learning_rate:g}"
    )
    gen = report["generate"]
    print(
        f"generate: {gen['queries']} queries kept of {gen['attempts']} attempts "
        f"(reject rate {gen['reject_rate']:.1%}), {gen['passages_without_query']} passages "
        f"without one; mine: seed at rank 1 after rescoring for {summary['seed_at_rank_1']:.1%}"
        + (
            f", positive already first for the base encoder for {first:.1%}"
            if (first := summary.get("positive_first_for_encoder")) is not None
            else ""
        )
    )
    sizes = report["sizes"]
    dropped = report["solved_dropped"]
    print(
        (f"{dropped} queries left out (base ranks their seed first); " if dropped else "")
        + f"{sizes['fret_examples']} FRet examples; scored {sizes['candidate_passages']} of "
        f"{sizes['candidate_passages_retrieved']} distinct candidate passages retrieved, "
        f"{sizes['pairs_scored']} of {sizes['pairs_retrieved']} pairs; "
        f"mixture {sizes['mixture_rows']} rows {sizes['mixture']}"
    )
    seconds = report["stages"]
    llm_s = report["mine_llm_seconds"]
    # score shards written before the per-pair "seconds" column carry no LLM time
    mine_llm = (
        f"LLM {llm_s:.0f} s over all sittings "
        f"({summary['seconds_per_passage']:.1f} s per candidate passage)"
        if llm_s is not None and summary.get("seconds_per_passage") is not None
        else "LLM time not recorded in its score shards"
    )
    print(
        f"generate {seconds['generate']:.0f} s "
        f"({seconds['generate'] / max(1, gen['queries']):.1f} s per kept query), "
        f"mine {seconds['mine']:.0f} s, {mine_llm}, train {seconds['train']:.0f} s"
    )
    print(
        f"{'model':<44}{'nDCG@10':>9}{'R@10':>8}{'STS-B':>8}{'plain':>8}"
        f"{'p vs base (plain)':>19}{'p vs distilled':>16}"
    )
    for name, r in results.items():
        p = [f"{r[k]:.3f}" if k in r else "" for k in ("p_vs_base", "p_vs_distilled")]
        # STS-B in the row's own format, then in plain text (a plain-text row has no
        # stsb_spearman_plain: its stsb_spearman is that figure)
        plain = r.get("stsb_spearman_plain", r["stsb_spearman"])
        print(
            f"{name:<44}{r['ndcg@10']:>9.2f}{r['recall@10']:>8.2f}{r['stsb_spearman']:>8.2f}"
            f"{plain:>8.2f}{p[0]:>19}{p[1]:>16}"
        )


def _sizes(run: Path) -> dict[str, Any]:
    """FRet examples; distinct candidate passages and (query, passage) pairs the LLM scored,
    and those retrieved (more with --drop-solved, which scores only the kept queries'); the
    mixture's rows."""
    import pyarrow.parquet as pq

    fret = pq.read_table(run / "mine" / "fret", columns=["query_id"])
    retrieved = pq.read_table(run / "mine" / "candidates", columns=["candidate_ids"])
    ids = retrieved["candidate_ids"].to_pylist()
    scores = run / "mine" / "scores"
    scored = pq.read_table(scores, columns=["passage_id"])["passage_id"] if scores.is_dir() else []
    mix = json.loads((run / "mix" / "manifest.json").read_text())
    return {
        "fret_examples": fret.num_rows,
        "candidate_passages": len(set(scored)),
        "pairs_scored": len(scored),
        "candidate_passages_retrieved": len({pid for c in ids for pid in c}),
        "pairs_retrieved": sum(len(c) for c in ids),
        "mixture_rows": mix["rows"],
        "mixture": mix["sources"],
    }


def _print_estimate(e: dict[str, Any]) -> None:
    from geckokit.cli.distill import describe_estimate

    print(f"estimate: {describe_estimate(e)}", flush=True)


def human_sets(shared: Path, out: Path, rows: int, names: str) -> dict[str, Path]:
    """The first ``rows`` lines of each human-labelled set named in ``names`` (comma-
    separated, as ``--human-sets`` takes them; empty for none), copied into ``out`` (the
    mixture names a source after its folder)."""
    kinds = [k for k in names.split(",") if k]
    picks = {
        "nli": shared / "training_pairs/snli_esnli/test.jsonl",
        "sts": shared / "sts/stsbenchmark/train.jsonl",
        "qa": shared / "training_pairs/trecqa_wang/train.jsonl",
        "claims": shared / "training_pairs/climate_fever/test.jsonl",
    }
    unknown = set(kinds) - set(picks)
    if unknown:
        raise SystemExit(f"--human-sets: unknown {sorted(unknown)}; choose from {sorted(picks)}")
    paths = {}
    for key in kinds:
        src = picks[key]
        if not src.exists():
            found = sorted(src.parent.glob("*.jsonl"))
            if not found:
                raise SystemExit(f"{src.parent}: no JSONL file")
            src = found[0]
        dst = out / src.parent.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.write_text("".join(src.read_text().splitlines(keepends=True)[:rows]))
        paths[key] = dst
    return paths


if __name__ == "__main__":
    main()
