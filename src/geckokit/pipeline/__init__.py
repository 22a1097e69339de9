"""The whole recipe as one resumable run (``geckokit distill``): its settings
(:mod:`~geckokit.pipeline.config`), its stages (:mod:`~geckokit.pipeline.stages`) and the
loop that runs them and decides what a rerun resumes (:mod:`~geckokit.pipeline.runner`);
run folders, shards, the stage clock and the manifests' models are :mod:`geckokit.runs`."""
