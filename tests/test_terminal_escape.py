"""Names any user sets (a task's comm: prctl or /proc/self/comm), paths and other kernel- or
user-supplied strings never reach the terminal as control characters: the terminal report,
the live view and the plain progress lines show them escaped (report/text.py terminal_safe),
rich shows them as text, never as markup; the HTML report escapes its markup."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, investigate

from investigator.report.html import render_html
from investigator.report.live import LiveView, plain_printer
from investigator.report.text import render_evidence, render_markdown, render_text, terminal_safe

EVIL = "\x1b[31mevil[/b]"                  # 13 bytes: fits the kernel's 15-byte comm
SHOWN = "\\x1b[31mevil[/b]"                # how every terminal renderer must show it
RECORDED = REPO / "playbooks" / "tests" / "freeze" / "rt-hog"


def test_terminal_safe_escapes_controls_and_keeps_the_rest() -> None:
    assert terminal_safe(EVIL) == SHOWN
    for raw, shown in (("\x9b31m", "\\x9b31m"),              # C1 CSI
                       ("a\u202eexe.txt", "a\\u202eexe.txt"),  # bidi override
                       ("x\u2066y\u200fz", "x\\u2066y\\u200fz"),
                       ("two\nlines\r\t", "two\\nlines\\r\\t"),
                       ("del\x7f bell\x07", "del\\x7f bell\\x07"),
                       ("back\\slash", "back\\\\slash"),       # so that an escape is never ambiguous
                       ("lone \udc9b", "lone \\udc9b")):
        assert terminal_safe(raw) == shown
    # look-alikes that must come through unchanged: printable text of any script, markup-like
    # brackets (shown as text by the renderers), spaces
    for same in ("kworker/0:1H-events", "périodique 中文 🚀", "[bold]not markup[/bold]", "a b", ""):
        assert terminal_safe(same) == same
    assert terminal_safe({"k\x1b": [EVIL, 1, None, 2.5, True]}) == {"k\\x1b": [SHOWN, 1, None, 2.5, True]}


def _hostile_report() -> tuple[dict[str, Any], dict[str, Any]]:
    """The recorded rt-hog bundle with its victim renamed to the escape sequence (and to
    HTML) everywhere a name appears."""
    rep = json.loads((RECORDED / "report.json").read_text())
    ev = json.loads((RECORDED / "evidence.json").read_text())
    text = json.dumps([rep, ev]).replace('"periodic', json.dumps(EVIL + "<script>x</script>")[:-1])
    rep, ev = json.loads(text)
    return rep, ev


def test_text_and_markdown_reports_escape_every_name() -> None:
    rep, ev = _hostile_report()
    assert any(t["comm"].startswith(EVIL) for v in rep["verdicts"] for t in v["tasks"])
    for out in (render_text(rep, bundle="/tmp/b\x1b]0;title\x07"), render_evidence(ev), render_markdown(rep)):
        assert "\x1b" not in out and "\x07" not in out
        assert SHOWN in out


def test_html_report_escapes_markup() -> None:
    rep, ev = _hostile_report()
    page = render_html(rep, ev)
    assert "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    # the look-alike: the page's own markup is there
    assert page.count("<table>") >= 2 and "<svg" in page
    # nor does `cat report.html` drive a terminal: controls are written as escapes
    assert "\x1b" not in page and SHOWN in page


def test_validate_quotes_a_playbook_escaped(tmp_path: Path) -> None:
    """A playbook's YAML "\\e" escape reaches diagnostics as text, not as ESC."""
    book = tmp_path / "p.yaml"
    book.write_text('apiVersion: investigator/v1\nkind: Playbook\nmetadata: {name: x}\nstart: ["\\e[2Jgone"]\n'
                    'nodes:\n  a: {hypothesis: h, probes: [{use: sched.runqlat}], observe: {window: 1s},\n'
                    '      conclude: [{when: "runqlat.count >= 0", verdict: refuted}]}\n')
    p = investigate("validate", str(book))
    assert p.returncode == 2 and "unknown node" in p.stderr, p.stderr
    assert "\x1b" not in p.stderr and "\\x1b[2Jgone" in p.stderr


class _Playbook:
    """The parts of a LoadedPlaybook the live view reads."""

    def __init__(self) -> None:
        from types import SimpleNamespace
        node = SimpleNamespace(hypothesis="tasks \x1b[5mblink [bold]sleep[/bold]")
        self.name = "evil"
        self.spec = SimpleNamespace(metadata=SimpleNamespace(description="desc \u202eexe"),
                                    nodes={"n\x1b[2J": node}, start=["n\x1b[2J"])


def test_live_view_and_plain_lines_show_names_as_text() -> None:
    stream = io.StringIO()
    view = LiveView(_Playbook(), stream=stream)
    view.console.force_terminal = True        # styles (ESC sequences of rich's own) are drawn
    try:
        view("node_started", {"node": "n\x1b[2J", "window_s": 1.0})
        view("probe_attached", {"node": "n\x1b[2J", "probe": "sched.blocked", "hook": "iter"})
        view("node_concluded", {"node": "n\x1b[2J", "status": "confirmed", "verdict": "hung-task",
                                "summary": f"{EVIL} (tid 7) is in D state"})
        view("probe_attach_slow", {"probe": "p", "after_s": 5, "state": "D", "kernel_stack": [EVIL + "+0x1"]})
    finally:
        view.close()
    out = stream.getvalue()
    assert "\x1b[31mevil" not in out and "\x1b[5m" not in out and "\x1b[2J" not in out
    assert SHOWN in out and "\\x1b[5mblink [bold]sleep[/bold]" in out and "\\u202eexe" in out
    lines = io.StringIO()
    show = plain_printer(lines)
    show("node_started", {"node": "n\x1b[2J", "window_s": 1.0, "hypothesis": EVIL, "t": 0.1})
    show("probe_unavailable", {"probe": "p", "reason": "no\nfake line", "t": 0.2})
    assert lines.getvalue() == ("[  0.10s] node n\\x1b[2J: observing 1.0 s -- \\x1b[31mevil[/b]\n"
                                "[  0.20s] cannot attach p: no\\nfake line\n")


PLAYBOOK = r"""apiVersion: investigator/v1
kind: Playbook
metadata:
  name: evil-names
  description: "Tasks whose names are escape sequences \e[2J"
start: [blocked]
nodes:
  blocked:
    hypothesis: "A task sits in D state \e[5m"
    probes:
      - use: sched.blocked
    conclude:
      - when: blocked.count > 0
        verdict: hung-task
        about: blocked.worst
        explain: "{blocked.worst.task.comm} (tid {blocked.worst.task.tid}) is in D state"
      - when: blocked.count == 0
        verdict: refuted
        explain: "No task in D state."
"""


NAMED_VFORK = r"""
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>
/* Usage: named_vfork NAME SECONDS: take NAME as comm, then sit in D state (vfork) SECONDS */
int main(int argc, char **argv)
{
	if (argc < 3 || prctl(PR_SET_NAME, argv[1], 0, 0, 0))
		return 2;
	if (vfork() == 0) {
		sleep((unsigned int)atoi(argv[2]));
		_exit(0);
	}
	return 0;
}
"""


def _d_state_task(tmp_path: Path) -> subprocess.Popen[bytes]:
    """A process that names itself EVIL (prctl, as any user may) and sits in D state: a
    vfork() parent waits so while its child sleeps."""
    src, exe = tmp_path / "named_vfork.c", tmp_path / "named_vfork"
    src.write_text(NAMED_VFORK)
    subprocess.run(["cc", "-O1", "-o", str(exe), str(src)], check=True, timeout=60)
    p = subprocess.Popen([str(exe), EVIL, "30"], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    state = ""
    while time.monotonic() < deadline and state != "D":
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            pass
        time.sleep(0.02)
    with open(f"/proc/{p.pid}/comm") as f:
        assert state == "D" and f.read().rstrip("\n") == EVIL
    return p


def _kill(p: subprocess.Popen[bytes]) -> None:
    for kid in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split():
        os.kill(int(kid), 9)
    p.kill()
    p.wait(timeout=10)


@pytest.mark.bpf
@pytest.mark.parametrize("view", ["plain", "live"])
def test_a_real_task_named_with_escapes_reaches_the_terminal_escaped(tmp_path: Path, view: str) -> None:
    """A real run: the renamed task is the verdict's (the --comm filter, itself the escape
    sequence, keeps every other D task out); stdout (the report) and stderr (the plain
    lines, or the live view drawn on a real pseudo-terminal) never carry its ESC byte."""
    book = tmp_path / "evil.yaml"
    book.write_text(PLAYBOOK)
    task = _d_state_task(tmp_path)
    try:
        argv = [sys.executable, "-m", "investigator", str(book), "--window", "1", "--comm", EVIL,
                "--out", str(tmp_path / "b")]
        if view == "plain":
            p = subprocess.run(argv + ["--plain"], capture_output=True, timeout=60, cwd=REPO)
            rc, out, err = p.returncode, p.stdout, p.stderr
        else:
            rc, out, err = _run_on_a_terminal(argv)
    finally:
        _kill(task)
    assert rc == 1, (out + err).decode(errors="replace")
    assert b"HUNG-TASK" in out and SHOWN.encode() in out
    assert f"{SHOWN} (tid {task.pid}) is in D state".encode() in out
    assert b"\x1b" not in out
    assert b"\x1b[31mevil" not in err and b"\x1b[5m" not in err and b"\x1b[2J" not in err
    assert b"\\x1b[5m" in err               # the hypothesis, shown escaped
    if view == "live":
        assert b"\x1b[" in err and SHOWN.encode() in err      # rich drew (styles), the name as text
    else:
        assert b"\x1b" not in err


def _run_on_a_terminal(argv: list[str]) -> tuple[int, bytes, bytes]:
    """Run with stderr on a pseudo-terminal (the live view draws there), stdout a pipe."""
    import fcntl
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                         cwd=REPO, env=env)
    os.close(slave)
    err = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:              # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                err += chunk
            elif p.poll() is not None:
                break
        out = p.stdout.read() if p.stdout else b""
        rc = p.wait(timeout=30)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    return rc, out, err
