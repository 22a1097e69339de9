"""distill's executor settings: top-level keys and flags, never recorded as run settings,
so a run resumes with another executor."""

from __future__ import annotations

import json
from pathlib import Path

from geckokit.pipeline.distill import load_config
from geckokit.runs.executor import Executor, ExecutorSettings


def test_the_executor_keys_of_a_config_file_and_the_flags(tmp_path: Path) -> None:
    toml = tmp_path / "distill.toml"
    toml.write_text('corpus = "c.jsonl"\nexecutor = "ray"\nworkers = 4\nworker_cpus = 2\n')
    config = load_config(toml, {"ray_address": "10.0.0.1:6379"})
    assert config.execution == ExecutorSettings(
        executor=Executor.RAY, workers=4, worker_cpus=2.0, ray_address="10.0.0.1:6379"
    )
    assert load_config(None, {"corpus": "c"}).execution == ExecutorSettings()


def test_a_run_started_locally_resumes_on_ray(tmp_path: Path) -> None:
    from geckokit.pipeline.stages import check_config

    out = tmp_path / "run"
    check_config(load_config(None, {"corpus": "c"}), out)
    (out / "queries").mkdir(parents=True)  # generate has started
    ray = load_config(None, {"corpus": "c", "executor": "ray", "workers": 8})
    check_config(ray, out)  # not refused: where the stages run does not change their output
    saved = json.loads((out / "config.json").read_text())
    assert not {"executor", "ray_address", "workers", "worker_cpus"} & saved.keys()
