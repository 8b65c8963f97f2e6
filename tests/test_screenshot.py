"""The report as a reader sees it: rendered to PNG in headless Chromium, with its figures drawn (skipped with
a reason when no browser is installed, unless SIM_REQUIRE_BROWSER=1)."""

from __future__ import annotations

import os

import pytest

from sim import cli
from sim.analysis import screenshot
from tests.conftest import TINY

BROWSER = screenshot.find_browser()
if BROWSER is None and os.environ.get("SIM_REQUIRE_BROWSER") != "1":
    pytest.skip("no Chromium on PATH (Debian: apt-get install chromium); set SIM_REQUIRE_BROWSER=1 to fail instead",
                allow_module_level=True)


def test_report_renders_to_png_with_its_figures(tmp_path, capsys):
    from PIL import Image, ImageStat

    assert BROWSER is not None, "SIM_REQUIRE_BROWSER=1 but no Chromium on PATH"
    (tmp_path / "tiny.yaml").write_text(TINY)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert cli.main(["run", str(tmp_path / "tiny.yaml"), "--db", url, "--figures", str(tmp_path / "fig"),
                     "--record", "participants-weekly", "--jobs", "1"]) == 0
    html = tmp_path / "report.html"
    assert cli.main(["report", "--db", url, "--scenario", "tiny", "--out", str(html)]) == 0
    anchors = ("s0-tiny-fig-dose_response", "s0-tiny-fig-forest")
    paths = screenshot.render(html, tmp_path / "report.png", BROWSER, anchors)
    assert [p.name for p in paths] == ["report.png", *(f"report_{a}.png" for a in anchors)]
    with Image.open(paths[0]) as page:
        width, height = page.size
        assert width == 1280 and 4000 < height < 16000  # cropped to the page, which holds every section
        # the figures are drawn: the page has far more than text on white
        assert ImageStat.Stat(page.convert("L")).stddev[0] > 20
    for p in paths[1:]:  # each figure, scrolled into view, is not a blank window
        with Image.open(p) as shot:
            colours = shot.convert("RGB").getcolors(maxcolors=1_000_000)
            assert colours is not None and len(colours) > 200, p.name
    assert screenshot.main([str(tmp_path / "missing.html"), "--browser", BROWSER]) == 2
    assert "run make run" in capsys.readouterr().err
