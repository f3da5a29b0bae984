"""The HTML report in a real browser: headless Chromium renders the bundle's report.html;
the rendered page must carry the verdict, its entities and the plots, and a screenshot is
kept for people to look at (test-artifacts/report.png)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import REPO

from investigator.report.html import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FIXTURE = REPO / "playbooks" / "tests" / "freeze" / "rt-hog-per-cpu-work"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _page(tmp_path: Path) -> tuple[Path, dict]:  # type: ignore[type-arg]
    rep = json.loads((FIXTURE / "report.json").read_text())
    ev = json.loads((FIXTURE / "evidence.json").read_text())
    page = tmp_path / "report.html"
    page.write_text(render_html(rep, ev))
    return page, rep


def test_page_is_self_contained(tmp_path: Path) -> None:
    page, rep = _page(tmp_path)
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert text.count("<svg") >= 3            # two histograms and the per-CPU timeline
    for v in rep["verdicts"]:
        assert v["summary"].replace("'", "&#x27;") in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh test installs it)")
def test_chromium_renders_the_verdict(tmp_path: Path) -> None:
    page, rep = _page(tmp_path)
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120)
        shot = tmp_path / "report.png"
        subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,2400",
                        f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    v = next(v for v in rep["verdicts"] if v["node"] == "workqueue-stall")
    assert "STARVATION" in dom.stdout.upper()
    assert all(t["comm"] in dom.stdout for t in v["tasks"])
    assert v["summary"].split(",")[0] in dom.stdout
    assert shot.exists() and shot.stat().st_size > 50_000   # a rendered page, not a blank one
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    shutil.copy(shot, REPO / "test-artifacts" / "report.png")
