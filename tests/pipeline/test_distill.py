"""``geckokit distill`` end to end with the real models, stopped and resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geckokit.fret.fusion import Fusion, NegativeChoice
from geckokit.pipeline.demo import demo_dir
from geckokit.pipeline.distill import DistillConfig, distill, load_config
from geckokit.retrieval.hybrid import Retriever
from geckokit.runs.folder import RunMismatchError

pytestmark = pytest.mark.slow

PASSAGES = [
    "DNSPort",
    "HashedControlPassword",
    "SIGHUP",
    "AvoidDiskWrites",
    "DirPortFrontPage",
    "--dump-config",
]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six demo passages with the demo's test questions about them, as a BEIR folder."""
    src, out = demo_dir(), tmp_path_factory.mktemp("small")
    rows = [json.loads(x) for x in (src / "corpus.jsonl").read_text().splitlines()]
    (out / "corpus.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows if r["_id"] in PASSAGES)
    )
    qrels = [x.split("\t") for x in (src / "qrels/test.tsv").read_text().splitlines()[1:]]
    keep = {q for q, p, _ in qrels if p in PASSAGES}
    (out / "qrels").mkdir()
    (out / "qrels/test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in qrels if r[0] in keep)
    )
    queries = [json.loads(x) for x in (src / "queries.jsonl").read_text().splitlines()]
    (out / "queries.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in queries if q["_id"] in keep)
    )
    return out


def _config(corpus: Path, *, top_n: int = 3, **train: object) -> DistillConfig:
    return DistillConfig.model_validate(
        {
            "corpus": str(corpus),
            "eval": [str(corpus)],
            "mine": {"top_n": top_n},
            "train": {"batch_size": 2, "epochs": 2, "logging_steps": 1, **train},
        }
    )


def test_distill_runs_every_stage_and_resumes_after_a_stop(
    small_set: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    llm,  # type: ignore[no-untyped-def]
) -> None:
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "run"
    estimates: list[dict] = []
    # Ctrl-C in the middle of mining: the stage keeps the time it spent so far
    real, calls = llm.eval_rows, []

    def interrupted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(llm, "eval_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distill(_config(small_set), out, until="mine", llm=llm, on_estimate=estimates.append)
    monkeypatch.undo()
    stopped = json.loads((out / "manifest.json").read_text())
    assert stopped["status"] == "stopped during mine"
    assert stopped["stages"]["mine"]["status"] == "stopped"
    assert stopped["stages"]["mine"]["seconds"] > 0
    assert estimates and estimates[0]["passages"] == 6
    assert estimates[0]["llm_calls"] == {"generate": 6, "score_pairs": 18}
    assert estimates[0]["rates"]["prompt_tokens_per_s"] > 0

    first = distill(_config(small_set), out, until="mine", llm=llm, on_estimate=estimates.append)
    assert first["status"] == "stopped after mine"
    # the queries were written before the stop: only their pairs are left to estimate
    written = json.loads((out / "queries" / "manifest.json").read_text())["counts"]["queries"]
    assert estimates[1]["llm_calls"] == {"generate": 0, "score_pairs": 3 * written}
    assert set(first["stages"]) == {"generate", "mine"}
    mine = first["stages"]["mine"]
    assert mine["sittings"] == 2 and "status" not in mine  # both sittings counted
    assert mine["seconds"] >= stopped["stages"]["mine"]["seconds"]
    assert first["stages"]["generate"] == stopped["stages"]["generate"]
    # each LLM stage keeps the token counts of the sitting that finished it, as its folder's
    # manifest has them
    for stage, folder in (("generate", "queries"), ("mine", "mine")):
        spent = json.loads((out / folder / "manifest.json").read_text())["llm_this_run"]
        assert first["stages"][stage]["llm_this_run"] == spent
        assert spent["prompt_tokens_evaluated"] > 0
    assert not (out / "train").exists()

    # another fusion before mix/ ran: mine/ chooses again from its scores, no LLM work
    # a training killed outright (kill -9) left its heartbeat entry "running"; a sitting that
    # stops before training marks it stopped, and the one that trains adds its time on
    killed = json.loads((out / "manifest.json").read_text())
    killed["stages"]["train"] = {"seconds": 7.0, "sittings": 1, "status": "running"}
    (out / "manifest.json").write_text(json.dumps(killed))
    spent = llm.usage.prompt_tokens_evaluated
    rc = _config(small_set)
    rc.mine.fusion = Fusion.RC
    reselected = distill(rc, out, until="mine", llm=llm)
    assert reselected["stages"]["train"] == {"seconds": 7.0, "sittings": 1, "status": "stopped"}
    assert llm.usage.prompt_tokens_evaluated == spent
    assert json.loads((out / "mine" / "manifest.json").read_text())["selection"]["fusion"] == "rc"
    assert reselected["stages"]["mine"]["sittings"] == 3
    assert reselected["stages"]["mine"]["seconds"] >= mine["seconds"]

    spent = llm.usage.prompt_tokens_evaluated
    again = distill(_config(small_set), out, llm=llm, on_estimate=estimates.append)
    assert llm.usage.prompt_tokens_evaluated == spent  # FRet was finished: no LLM work redone
    assert len(estimates) == 2  # no LLM work left: no estimate
    assert again["status"] == "finished"
    assert set(again["stages"]) == {"generate", "mine", "mix", "train", "eval", "report"}
    assert again["stages"]["generate"] == first["stages"]["generate"]  # kept, not rerun
    train = again["stages"]["train"]
    assert train["sittings"] == 2 and train["seconds"] > 7.0 and "status" not in train

    for part in ("queries/queries", "mine/fret", "mix/mixture"):
        assert list((out / part).glob("part-*.parquet")), part
    saved = json.loads((out / "config.json").read_text())
    assert saved["mine"]["top_n"] == 3 and saved["llm"] == "qwen2.5-coder-0.5b-instruct"
    assert saved["mine"]["fusion"] == "ql"  # the 0.5B model's measured default
    model = SentenceTransformer(again["model"])
    assert model.encode(["task: search result | query: reload torrc"]).shape == (1, 384)
    rows = again["stages"]["eval"]["results"]
    assert [r["model"] for r in rows] == ["base", "base (unified format)", "distilled"]
    for r in rows:
        assert 0 <= r["recall@10"] <= 100 and r["benchmark"]
    assert rows[0]["ndcg@10"] > 50 and rows[0]["recall@10"] == 100  # six passages only
    assert (out / "eval" / "results.md").exists()
    html = (out / "report.html").read_text()
    assert again["report"] == str(out / "report.html") and "<svg" in html
    with pytest.raises(RunMismatchError, match="its mine/, mix/, train/, eval/ already ran"):
        distill(_config(small_set, top_n=4), out, llm=llm)


def test_config_file_and_flags_are_equivalent(tmp_path: Path) -> None:
    toml = tmp_path / "distill.toml"
    toml.write_text('corpus = "c.jsonl"\nlimit = 50\n[mine]\ntop_n = 12\n[train]\nbatch_size = 8\n')
    yaml = tmp_path / "distill.yaml"
    yaml.write_text("corpus: c.jsonl\nlimit: 50\nmine:\n  top_n: 12\ntrain:\n  batch_size: 8\n")
    flags = load_config(
        None,
        {"corpus": "c.jsonl", "limit": 50, "mine.top_n": 12, "train.batch_size": 8, "llm": None},
    )
    assert load_config(toml, {}) == load_config(yaml, {}) == flags
    assert load_config(toml, {"mine.top_n": 5}).mine.top_n == 5  # a flag wins over the file
    with pytest.raises(ValueError, match="top_m"):
        load_config(None, {"corpus": "c", "mine.top_m": 5})


def test_a_changed_setting_is_refused_only_once_its_stage_has_run(tmp_path: Path) -> None:
    from geckokit.pipeline.stages import check_config

    out = tmp_path / "run"
    out.mkdir()
    check_config(_config(tmp_path), out)  # recorded before the stages run
    (out / "queries").mkdir()
    (out / "mine").mkdir()
    (out / "train").mkdir()
    check_config(_config(tmp_path), out)
    with pytest.raises(RunMismatchError, match=r"\(train\) and its train/ already ran"):
        check_config(_config(tmp_path, epochs=5), out)
    (out / "train").rmdir()  # deleting the stage's folder lets it run again, anew
    check_config(_config(tmp_path, epochs=5), out)
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 5

    # a fusion or negative choice only re-selects from mine/'s scores: refused once mix/ ran
    other = _config(tmp_path, epochs=5)
    other.mine.fusion, other.mine.negative = Fusion.RC, NegativeChoice.RANDOM
    check_config(other, out)
    (out / "mix").mkdir()
    other.mine.fusion = Fusion.RRF
    with pytest.raises(RunMismatchError, match=r"\(mine\) and its mix/ already ran"):
        check_config(other, out)
    with pytest.raises(RunMismatchError, match=r"its mine/, mix/ already ran"):
        check_config(_config(tmp_path, top_n=4, epochs=5), out)
    # so is another retriever: it proposes other candidates
    bm25 = _config(tmp_path, epochs=5)
    bm25.mine.retriever = Retriever.BM25
    with pytest.raises(RunMismatchError, match=r"\(mine\) and its mine/, mix/ already ran"):
        check_config(bm25, out)


def test_estimate_counts_each_distinct_candidate_passage_once() -> None:
    """Queries for a sample of a larger corpus: the mined candidates come from the whole
    corpus, at most queries x top_n distinct passages (each scored once), at most all of it."""
    import pyarrow as pa

    from geckokit.cli.distill import describe_estimate
    from geckokit.fret.cost import estimate_cost

    def table(n: int, chars: int) -> pa.Table:
        return pa.table({"text": ["x" * chars] * n})

    config = load_config(None, {"corpus": "unused", "mine.top_n": 5})
    config.mine.passage_max_tokens = 100
    seeds, corpus = table(4, 400), table(1000, 800)  # 100 and 200 tokens at 4 chars a token
    got = estimate_cost(seeds, config, None, corpus=corpus)
    assert got["llm_calls"] == {"generate": 4, "score_pairs": 20}
    # the few-shot prefix once, then each passage with the template's last turn
    t = got["template_tokens"]
    assert 20 < t["per_prompt"] < 60 and t["prefix"] > 500  # the bundled template's sizes
    assert got["tokens"]["generate_prompt"] == pytest.approx(
        t["prefix"] + 4 * (100 + t["per_prompt"]), abs=1
    )
    titled = seeds.append_column("title", pa.array(["y" * 80] * 4))  # 20 tokens each
    assert estimate_cost(titled, config, None, corpus=corpus)["tokens"][
        "generate_prompt"
    ] == pytest.approx(got["tokens"]["generate_prompt"] + 4 * 20, abs=1)
    assert got["tokens"]["mine_prompt"] == 20 * 100 + 20 * 45  # 20 candidates, cut to 100
    small = estimate_cost(seeds, config, None, corpus=table(8, 200))
    assert small["tokens"]["mine_prompt"] == 8 * 50 + 20 * 45  # the whole corpus, once
    assert got["seconds"] is None  # no LLM to measure rates on
    # drop_solved leaves out queries only once their candidates are retrieved
    config.mine.drop_solved = True
    bound = estimate_cost(seeds, config, None, corpus=corpus)
    assert bound["pairs_at_most"] and bound["llm_calls"]["score_pairs"] == 20
    assert "at most 20 pairs to score" in describe_estimate(bound)
    known = estimate_cost(seeds, config, None, corpus=corpus, stages=["mine"], unscored=(3, 10))
    assert not known["pairs_at_most"] and known["llm_calls"]["score_pairs"] == 10
    # a word-overlap limit rejects most answers: every attempt counts, as an upper bound
    assert not got["written_at_most"]
    config.generate.validation.max_word_overlap = 0.6
    echo = estimate_cost(seeds, config, None, corpus=corpus)
    assert echo["written_at_most"] and "at most" in describe_estimate(echo).split("tokens")[1]
    per_slot = got["tokens"]["generate_written"] / 4 / 1.15  # one answer, without retries
    assert echo["tokens"]["generate_written"] == pytest.approx(4 * 3 * per_slot, abs=2)


def test_the_estimate_gives_each_llm_stage_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the probed rates, the time splits into writing queries and scoring pairs (an upper
    bound with drop_solved); with one stage left the line gives the total alone."""
    import pyarrow as pa

    from geckokit.cli.distill import describe_estimate
    from geckokit.fret import cost

    rates = {"prompt_tokens_per_s": 1.0, "written_tokens_per_s": 0.1}  # minutes, not seconds
    monkeypatch.setattr(cost, "probe_rates", lambda llm, **_: rates)
    seeds, corpus = pa.table({"text": ["x" * 400] * 4}), pa.table({"text": ["x" * 800] * 1000})
    config = load_config(None, {"corpus": "unused", "mine.top_n": 5})
    config.mine.passage_max_tokens = 100
    got = cost.estimate_cost(seeds, config, None, corpus=corpus)
    t = got["tokens"]
    writing, scoring = t["generate_prompt"] + t["generate_written"] / 0.1, t["mine_prompt"]
    assert scoring > 1200  # 20 candidates of 100 tokens, 20 pairs: over 20 minutes
    assert got["seconds_by_stage"] == {"generate": round(writing), "mine": round(scoring)}
    assert got["seconds"] == round(writing + scoring)
    split = f"(writing queries about {writing / 60:.0f}, scoring pairs about {scoring / 60:.0f})"
    assert split in describe_estimate(got)
    config.mine.drop_solved = True
    bound = cost.estimate_cost(seeds, config, None, corpus=corpus)
    line = describe_estimate(bound)
    assert f"scoring pairs at most about {scoring / 60:.0f})" in line
    # the totals hold the mining share, so they are upper bounds too
    assert f"LLM time at most about {bound['seconds'] / 60:.0f} min" in line
    assert "; at most about" in line.split("prompt tokens")[0]
    mine_only = cost.estimate_cost(seeds, config, None, corpus=corpus, stages=["mine"])
    assert mine_only["seconds_by_stage"] == {"mine": mine_only["seconds"]}
    assert "writing" not in describe_estimate(mine_only)


def test_estimate_counts_a_repeated_prompt_once() -> None:
    """Several query slots of one task type send one passage's prompt again and again; a
    backend that reuses its cached state evaluates it once when it writes one passage at a
    time (passages written together each start from the shared prefix). The slots'
    neighbours mostly coincide, so the distinct candidates follow the passages, not the
    queries."""
    import pyarrow as pa

    from geckokit.fret.cost import estimate_cost
    from geckokit.fret.prompts import load_generate_prompt

    seeds, corpus = pa.table({"text": ["x" * 400] * 4}), pa.table({"text": ["x" * 800] * 1000})
    overrides = {
        "corpus": "unused",
        "mine.top_n": 5,
        "generate.queries_per_passage": 3,
        "generate.parallel": 1,
    }
    one = load_config(None, {**overrides, "generate.task_types": ["fact checking"]})
    one.mine.passage_max_tokens = 100
    got = estimate_cost(seeds, one, None, corpus=corpus)
    assert got["llm_calls"] == {"generate": 12, "score_pairs": 60}
    t = got["template_tokens"]
    once = 4 * (100 + t["per_prompt"])  # each passage's prompt once
    assert got["tokens"]["generate_prompt"] == pytest.approx(t["prefix"] + once, abs=1)
    # each slot's answer as long as the few-shot answers, 15% more for retries
    assert 25 < t["per_answer"] < 50
    assert got["tokens"]["generate_written"] == pytest.approx(12 * t["per_answer"] * 1.15, abs=1)
    assert got["tokens"]["mine_prompt"] == 4 * 5 * 100 + 60 * 45
    # passages written together each continue from the shared prefix: every slot anew
    one.generate.parallel = 4
    assert estimate_cost(seeds, one, None, corpus=corpus)["tokens"][
        "generate_prompt"
    ] == pytest.approx(t["prefix"] + 3 * once, abs=1)
    one.generate.reuse_prefix = False  # every slot evaluates its whole prompt, prefix too
    assert estimate_cost(seeds, one, None, corpus=corpus)["tokens"][
        "generate_prompt"
    ] == pytest.approx(3 * (once + 4 * t["prefix"]), abs=1)
    k = len(load_generate_prompt().task_types)
    pool = estimate_cost(seeds, load_config(None, overrides), None, corpus=corpus)
    t = pool["template_tokens"]  # the whole pool's mean last turn
    expected = (1 + 2 * (1 - 1 / k)) * 4 * (100 + t["per_prompt"])  # anew when the type changes
    assert pool["tokens"]["generate_prompt"] == pytest.approx(t["prefix"] + expected, abs=1)
    # a task type the prompt does not define fails here, before any LLM work
    with pytest.raises(ValueError, match="unknown task type 'poetry'"):
        estimate_cost(
            seeds, load_config(None, {**overrides, "generate.task_types": ["poetry"]}), None
        )


def test_a_finished_mine_knows_when_it_must_choose_again(tmp_path: Path) -> None:
    from geckokit.pipeline.runner import Action, plan
    from geckokit.pipeline.stages import DistillRun, Mine
    from geckokit.runs.manifest import Stage

    def mine_step(fusion: str) -> Mine:
        config = load_config(None, {"corpus": "unused", "mine.fusion": fusion})
        return Mine(DistillRun(config, tmp_path, prompt=None))  # type: ignore[arg-type]

    mine_dir = tmp_path / "mine"
    mine_dir.mkdir()
    selection = {"fusion": "ql", "weights": [1.0, 1.0, 0.0], "negative": "rank-n", "negatives_k": 1}
    (mine_dir / "manifest.json").write_text(json.dumps({"config": {}, "selection": selection}))
    assert plan([mine_step("ql")]) == {Stage.MINE: Action.SKIP}
    assert plan([mine_step("rrf")]) == {Stage.MINE: Action.AGAIN}
    # a run from before the selection had its own key kept it in its config: refused
    (mine_dir / "manifest.json").write_text(json.dumps({"config": {"top_n": 5, **selection}}))
    with pytest.raises(RunMismatchError, match="written by an earlier geckokit"):
        plan([mine_step("ql")])


def test_the_estimate_counts_only_the_llm_stages_left(tmp_path: Path) -> None:
    """A rerun whose queries are written estimates the scoring alone, for the queries it
    has; a finished mine/ that chose with ``seed`` scored no pairs, so an LLM fusion still
    has all of them to score."""
    import pyarrow as pa

    from geckokit.cli.distill import describe_estimate
    from geckokit.fret.cost import estimate_cost
    from geckokit.fret.mine_run import MineConfig
    from geckokit.pipeline.stages import llm_stages_left

    seeds, corpus = pa.table({"text": ["x" * 400] * 4}), pa.table({"text": ["x" * 800] * 1000})
    config = load_config(None, {"corpus": "unused", "mine.top_n": 5})
    config.mine.passage_max_tokens = 100
    mine_only = estimate_cost(seeds, config, None, corpus=corpus, stages=["mine"], queries=7)
    assert mine_only["llm_calls"] == {"generate": 0, "score_pairs": 35}
    assert mine_only["tokens"] == {
        "generate_prompt": 0,
        "generate_written": 0,
        "mine_prompt": 4 * 5 * 100 + 35 * 45,
    }
    # stopped part way: the passages with no finished query shard, the pairs not scored
    partial = estimate_cost(seeds, config, None, corpus=corpus, unwritten=[3], unscored=(6, 9))
    assert partial["llm_calls"] == {"generate": 1, "score_pairs": 9}
    t = partial["template_tokens"]
    assert partial["tokens"] == {
        "generate_prompt": pytest.approx(t["prefix"] + 100 + t["per_prompt"], abs=1),
        "generate_written": pytest.approx(t["per_answer"] * 1.15, abs=1),
        "mine_prompt": 6 * 100 + 9 * 45,
    }
    line = describe_estimate(mine_only)
    assert "35 pairs to score" in line and "queries to write" not in line
    with pytest.raises(ValueError, match="unknown \\['train'\\]"):
        estimate_cost(seeds, config, None, stages=["train"])

    queries, mine_dir = tmp_path / "queries", tmp_path / "mine"
    rrf, seed = MineConfig(fusion=Fusion.RRF), MineConfig(fusion=Fusion.SEED)
    assert llm_stages_left(queries, mine_dir, rrf) == ["generate", "mine"]
    assert llm_stages_left(queries, mine_dir, seed) == ["generate"]  # seed mining: no LLM
    queries.mkdir()
    (queries / "manifest.json").write_text(json.dumps({"status": "partial"}))
    assert llm_stages_left(queries, mine_dir, rrf) == ["generate", "mine"]
    (queries / "manifest.json").write_text(json.dumps({"status": "finished"}))
    assert llm_stages_left(queries, mine_dir, rrf) == ["mine"]
    mine_dir.mkdir()
    manifest = {"status": "finished", "counts": {"examples": 7, "pairs": 0}}
    (mine_dir / "manifest.json").write_text(json.dumps(manifest))  # chosen with seed
    assert llm_stages_left(queries, mine_dir, seed) == []
    assert llm_stages_left(queries, mine_dir, rrf) == ["mine"]  # seed -> rrf: score them all
    manifest["counts"]["pairs"] = 35
    (mine_dir / "manifest.json").write_text(json.dumps(manifest))
    assert llm_stages_left(queries, mine_dir, rrf) == []  # scored: re-selection only


def test_distill_writes_queries_with_the_prompt_it_is_given(
    small_set: Path,
    tmp_path: Path,
    llm,  # type: ignore[no-untyped-def]
) -> None:
    """``prompt`` (``--prompt``) reaches FRet step 1 and its estimate; once queries/ holds
    queries from one prompt, another is refused instead of mixing the two."""
    from importlib import resources

    import pyarrow as pa

    from geckokit.fret.cost import estimate_cost
    from geckokit.fret.prompts import load_generate_prompt

    text = (
        resources.files("geckokit.prompts")
        .joinpath("generate_v1.toml")
        .read_text()
        .replace('version = "generate-v1"', 'version = "mine-v1"')
    )
    mine = tmp_path / "mine.toml"
    mine.write_text(text)
    config = _config(small_set)
    config.limit, config.prompt = 2, str(mine)
    config.generate.task_types = ["question answering"]
    out = tmp_path / "run"
    manifest = distill(config, out, until="generate", llm=llm)
    queries = json.loads((out / "queries" / "manifest.json").read_text())
    assert queries["prompt"]["version"] == "mine-v1"
    assert queries["prompt"]["source"] == str(mine)
    assert manifest["stages"]["generate"]["summary"]["passages"] == 2
    assert json.loads((out / "config.json").read_text())["prompt"] == str(mine)

    other = config.model_copy(deep=True)
    other.prompt = None  # the bundled prompt
    with pytest.raises(RunMismatchError, match=r"\(prompt\) and its queries/ already ran"):
        distill(other, out, until="generate", llm=llm)
    missing = config.model_copy(update={"prompt": str(tmp_path / "nope.toml")})
    with pytest.raises(ValueError, match="neither a readable file nor a bundled prompt"):
        distill(missing, tmp_path / "never", llm=llm)
    assert not (tmp_path / "never").exists()  # refused before the run folder is made

    # the estimate's prompt count follows the given prompt's task types
    head, first_type = text.split("[[task_types]]")[:2]
    first_example = text.split("[[examples]]")[1]  # of the first task type
    single = tmp_path / "single.toml"
    single.write_text(f"{head}[[task_types]]{first_type}[[examples]]{first_example}")
    assert len(load_generate_prompt(single).task_types) == 1

    seeds = pa.table({"text": ["x" * 400] * 4})
    many = load_config(None, {"corpus": "unused", "generate.queries_per_passage": 3})
    pool = estimate_cost(seeds, many, None)
    t = pool["template_tokens"]  # the task type changes between slots: more than once each
    assert pool["tokens"]["generate_prompt"] > t["prefix"] + 4 * (100 + t["per_prompt"])
    many.prompt = str(single)  # one task type: each passage's prompt is evaluated once
    one = estimate_cost(seeds, many, None)
    t = one["template_tokens"]
    assert one["tokens"]["generate_prompt"] == pytest.approx(
        t["prefix"] + 4 * (100 + t["per_prompt"]), abs=1
    )


def test_seed_mining_loads_no_llm_and_an_llm_fusion_takes_it_on_later(
    small_set: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    llm,  # type: ignore[no-untyped-def]
) -> None:
    """Once the queries are written, mining with the ``seed`` fusion asks nothing of the
    LLM, so distill does not load it; switching that run to an LLM fusion scores its pairs."""
    import geckokit.llm

    config = _config(small_set, top_n=2)
    config.limit = 2
    out = tmp_path / "run"
    distill(config, out, until="generate", llm=llm)
    written = json.loads((out / "queries" / "manifest.json").read_text())["counts"]["queries"]
    assert written > 0

    def no_llm(*args: object, **kwargs: object) -> None:
        raise AssertionError("the LLM was loaded")

    monkeypatch.setattr(geckokit.llm, "load_llm", no_llm)
    seed = config.model_copy(deep=True)
    seed.mine.fusion = Fusion.SEED
    estimates: list[dict] = []
    distill(seed, out, until="mine", on_estimate=estimates.append)
    mined = json.loads((out / "mine" / "manifest.json").read_text())
    assert mined["counts"] == {"examples": written, "pairs": 0}
    assert mined["model"]["id"] is None and not estimates  # no LLM work, no estimate
    monkeypatch.undo()

    scored = config.model_copy(deep=True)
    scored.mine.fusion = Fusion.QL
    distill(scored, out, until="mine", llm=llm, on_estimate=estimates.append)
    assert estimates[0]["llm_calls"] == {"generate": 0, "score_pairs": 2 * written}
    mined = json.loads((out / "mine" / "manifest.json").read_text())
    assert mined["counts"] == {"examples": written, "pairs": 2 * written}
    assert mined["model"]["id"] == llm.model_id and mined["selection"]["fusion"] == "ql"


def test_a_saved_config_without_a_newer_setting_still_resumes(tmp_path: Path) -> None:
    """A run folder from before a setting existed: the setting left at its default is not
    a change, whatever stages already ran."""
    from geckokit.pipeline.stages import check_config

    out = tmp_path / "run"
    (out / "eval").mkdir(parents=True)
    config = _config(tmp_path)
    saved = config.model_dump(mode="json")
    del saved["prompt"], saved["rerank_prompt"]
    (out / "config.json").write_text(json.dumps(saved))
    check_config(config, out)
    assert json.loads((out / "config.json").read_text())["prompt"] is None
    # away from its default it is a change like any other
    (out / "config.json").write_text(json.dumps(saved))
    (out / "mine").mkdir()
    graded = config.model_copy(update={"rerank_prompt": "graded"})
    with pytest.raises(RunMismatchError, match=r"\(rerank_prompt\) and its mine/, eval/"):
        check_config(graded, out)

    # so is a setting of a nested table (mine.drop_solved) that the saved table lacks
    (out / "mine").rmdir()
    del saved["mine"]["drop_solved"]
    (out / "config.json").write_text(json.dumps(saved))
    check_config(config, out)
    assert json.loads((out / "config.json").read_text())["mine"]["drop_solved"] is False
    (out / "config.json").write_text(json.dumps(saved))
    dropping = config.model_copy(deep=True)
    dropping.mine.drop_solved = True
    with pytest.raises(RunMismatchError, match=r"\(mine\) and its eval/"):
        check_config(dropping, out)

    # and one two tables deep (generate.validation.max_word_overlap)
    del saved["generate"]["validation"]["max_word_overlap"]
    (out / "config.json").write_text(json.dumps(saved))
    (out / "queries").mkdir()
    check_config(config, out)
    assert (
        json.loads((out / "config.json").read_text())["generate"]["validation"]["max_word_overlap"]
        == 1.0
    )
    (out / "config.json").write_text(json.dumps(saved))
    limited = config.model_copy(deep=True)
    limited.generate.validation.max_word_overlap = 0.6
    with pytest.raises(RunMismatchError, match=r"\(generate\) and its queries/"):
        check_config(limited, out)


def test_a_missing_bm25_stops_the_run_before_any_query_is_written(
    small_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from geckokit._deps import MissingDependencyError

    config = _config(small_set)
    config.mine.retriever = Retriever.HYBRID
    monkeypatch.setitem(sys.modules, "bm25s", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"geckokit\[bm25\]"):
        distill(config, tmp_path / "run", llm=object(), show_progress=False)
    assert not (tmp_path / "run" / "queries").exists()
