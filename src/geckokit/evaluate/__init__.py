"""Evaluation: local benchmark loaders, the mteb bridge, metrics, and the HTML report.

Entry points for a pipeline::

    from geckokit.evaluate import evaluate, write_report

    table = evaluate(["run/model"], ["../shared/data/beir/scifact"], out="run/eval")
    write_report("run")  # run/report.html

Neither import pulls in mteb or torch; :func:`evaluate` loads them when called.
"""

from geckokit.evaluate.report import write_report
from geckokit.evaluate.run import evaluate

__all__ = ["evaluate", "write_report"]
