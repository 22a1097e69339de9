"""The HTML report: produced for a whole run and for an eval folder, parses, has the expected
sections and plots, and loads nothing from outside the file."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from geckokit.cli.main import cli
from geckokit.evaluate import svg, write_report
from geckokit.evaluate.report import find_stages


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.tags: dict[str, int] = {}
        self.links: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.links += [
            v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "data", "action")
        ]
        if tag in ("h2", "h3"):
            self._in, self.headings = tag, [*self.headings, ""]

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.headings[-1] += data


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def assert_self_contained(path: Path, page: Page) -> None:
    assert all(not link.startswith(("http:", "https:", "//")) for link in page.links), page.links
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text and "@import" not in text


def test_report_of_a_whole_run(fake_run: Path) -> None:
    stages = find_stages(fake_run)
    assert [s.stage for s in stages] == [
        "generate",
        "mine",
        "mix",
        "train",
        "eval",
    ]  # no checkpoint
    path = write_report(fake_run)
    assert path == fake_run / "report.html"
    page = parse(path)
    headings = " | ".join(page.headings)
    for expected in (
        "Run",
        "FRet step 1: generated queries",
        "FRet step 2: mined positives",
        "Training mixture",
        "Training",
        "Evaluation",
        "Scores per task",
        "Score against Matryoshka dimension",
    ):
        assert expected in headings
    # task types, relabel rate, QL and RC histograms, loss curve, scores, one per task per dim
    assert page.tags["svg"] == 2 + 2 + 1 + 1 + 3
    assert_self_contained(path, page)
    html = path.read_text()
    facts = (
        "question answering",
        "15.0%",
        "62.5%",
        "fact checking",
        "run1/model",
        "@64<br>(plain)",
    )
    for fact in facts:
        assert fact in html
    assert "23</" in html and "queries left out: the encoder already ranks" in html


def test_report_of_an_eval_folder_and_the_command(fake_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "r.html"
    result = CliRunner().invoke(cli, ["report", str(fake_run / "eval"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = parse(out)
    assert page.headings[0] == "Run" and "Evaluation" in page.headings
    assert not any(h.startswith("FRet") for h in page.headings)
    assert_self_contained(out, page)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["report", str(empty)])
    assert result.exit_code == 2 and "holds no manifest.json of a geckokit stage" in result.output


def test_svg_helpers() -> None:
    assert svg.nice_ticks(0.0, 0.93) == [0.0, 0.2, 0.4, 0.6000000000, 0.8, 1.0]
    assert svg.nice_ticks(3, 3) == [3, 3.2, 3.4, 3.6, 3.8, 4.0]
    chart = svg.histogram([1.0, 1.0, 2.0, 3.0], title="h", x_label="x", bins=2)
    assert "[1, 2): 2</title>" in chart and "[2, 3): 2</title>" in chart
    with pytest.raises(ValueError, match="has no points"):
        svg.line_chart({}, title="empty", x_label="x", y_label="y")
    assert "&lt;b&gt;" in svg.bar_chart(["<b>"], {"m": [0.5]}, title="t", y_label="y")
