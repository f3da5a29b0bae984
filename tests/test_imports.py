"""docs/architecture.md's import table holds for the code: no import crosses the page's
"may import" rule, no two units import each other, and the generated column is current
(scripts/imports.py, run as the script it is).  A made-up tree shows what the check sees:
imports inside functions and relative ones count, ``TYPE_CHECKING`` ones do not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import imports  # noqa: E402


def test_the_code_follows_the_pages_import_table() -> None:
    p = subprocess.run([sys.executable, "scripts/imports.py", "--check"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rules = imports.read_rules((REPO / "docs" / "architecture.md").read_text())
    assert rules["report"] == {"analyze", "finding", "result"} and rules["bpf"] == {"syscalls"} and rules["cli"] is None


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"__init__.py": "", **files}.items():
        f = tmp_path / "investigator" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    for d in {p.parent for p in (tmp_path / "investigator").rglob("*.py")}:
        (d / "__init__.py").touch()
    return tmp_path


RULES = {"engine": {"report", "result"}, "report": {"result"}, "result": set(), "evidence": {"engine"}}


def test_an_import_across_the_rule_is_found_and_a_type_only_one_is_not(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "result.py": "X = 1\n",
        "engine/run.py": "from ..result import X\nfrom ..report import model\n",
        "report/model.py": ("from typing import TYPE_CHECKING\nfrom ..result import X\n"
                            "if TYPE_CHECKING:\n    from ..engine.run import Y\n"),
        "report/text.py": "def f():\n    from ..engine import run\n    import investigator.engine.run\n",
        "evidence/replay.py": "from investigator.engine.run import Z\n",
    })
    found = imports.problems(imports.unit_imports(src), RULES)
    assert found == ["report imports engine (report.text); the page allows result",
                     "import cycle: engine -> report -> engine"], found


def test_a_tree_within_its_rules_has_no_problem(tmp_path: Path) -> None:
    src = _tree(tmp_path, {
        "result.py": "X = 1\n",
        "engine/run.py": "from ..result import X\nfrom ..report import model\n",
        "report/model.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..engine.run import Y\n",
        "evidence/replay.py": "from investigator.engine.run import Z\n",
    })
    got = imports.unit_imports(src)
    assert {u: set(t) for u, t in got.items()} == {"engine": {"report", "result"}, "evidence": {"engine"},
                                                   "report": set(), "result": set()}
    assert imports.problems(got, RULES) == []
    assert imports.problems(got, {**RULES, "engine": {"result"}}) == [
        "engine imports report (engine.run); the page allows result"]
