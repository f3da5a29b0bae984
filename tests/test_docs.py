"""Docs that are generated stay generated: docs/probes.md matches the manifests."""

from pathlib import Path

from investigator.probes.docs import render

REPO = Path(__file__).resolve().parent.parent


def test_probe_reference_is_up_to_date() -> None:
    assert (REPO / "docs" / "probes.md").read_text() == render(), \
        "regenerate: python -m investigator.probes.docs > docs/probes.md"


def test_readme_has_the_two_commands_ci_uses() -> None:
    readme = (REPO / "README.md").read_text()
    assert "sudo make run" in readme and "sudo make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_playbook_key_reference_is_up_to_date() -> None:
    from investigator.playbook.docs import splice
    doc = (REPO / "docs" / "playbooks.md").read_text()
    assert splice(doc) == doc, "regenerate: python -m investigator.playbook.docs docs/playbooks.md"


def test_walkthrough_quotes_a_real_fixture() -> None:
    import json
    doc = (REPO / "docs" / "playbooks.md").read_text()
    rep = json.loads((REPO / "playbooks/tests/freeze/rt-hog-per-cpu-work/report.json").read_text())
    summary = next(v["summary"] for v in rep["verdicts"] if v["node"] == "workqueue-stall")
    assert summary in doc


def test_report_tour_shows_the_fixture_as_rendered_today() -> None:
    import json
    from investigator.report.text import render_evidence, render_text
    c = REPO / "playbooks/tests/freeze/rt-hog"
    txt = render_text(json.loads((c / "report.json").read_text())) + \
        render_evidence(json.loads((c / "evidence.json").read_text()))
    assert txt.rstrip() in (REPO / "docs" / "report-tour.md").read_text()
