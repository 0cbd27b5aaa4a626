"""One door for every change (issue 14): the rules of the house, checked on its code.

* Handlers (REST, the web page, the runner channel, the summaries) never run a queue command
  nor persist its events themselves: they call an awaited `Manager` method, which returns
  once the change is stored. A new handler that reaches past the manager fails here.
* Only queue.py assigns a job's state or why it failed (through `Queue._move`).
* The queue never reaches into the manager: it imports nothing of `wr.manager`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from wr.queue import Queue

SRC = Path(__file__).resolve().parents[2] / "src" / "wr"
HANDLERS = ["manager/rest.py", "manager/actions.py", "manager/runner_ws.py", "manager/web.py",
            "manager/web_live.py", "manager/summary.py", "manager/stream.py",
            "manager/metrics.py", "manager/lsf_api.py", "manager/app.py",
            "manager/answers.py", "manager/selection.py"]
READS = {"get", "in_rep_grp", "rep_grp_names", "has_dependants", "unresolved",
         "next_deadline", "limits_allow", "window_check_peek", "cycle_among", "has_events"}
"""Queue methods that only read (a handler may use them)."""


def _queue_commands() -> set[str]:
    """Every public method of the queue that is not a read: its commands."""
    return {name for name in dir(Queue) if not name.startswith("_")
            and callable(getattr(Queue, name)) and name not in READS}


def _tree(rel: str) -> ast.Module:
    return ast.parse((SRC / rel).read_text(), filename=rel)


def _reaches(node: ast.AST) -> str:
    """The dotted text of an attribute chain (``self.manager.queue.kill``)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


@pytest.mark.parametrize("rel", HANDLERS)
def test_handlers_change_nothing_but_through_the_manager(rel: str) -> None:
    commands = _queue_commands()
    bad = []
    for node in ast.walk(_tree(rel)):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _reaches(node)
        persists = node.attr in ("_after", "_persist")
        commands_queue = node.attr in commands and chain.endswith(f"queue.{node.attr}")
        if persists or commands_queue:
            bad.append(f"{rel}:{node.lineno} {chain}")
    assert not bad, "handlers must ask the Manager: " + "; ".join(bad)


def test_only_the_queue_sets_a_jobs_state_or_why_it_failed() -> None:
    allowed = {"queue.py", "queue_intake.py", "jobs.py", "job_fields.py"}  # the queue; the record
    bad = []
    for path in SRC.rglob("*.py"):
        rel = str(path.relative_to(SRC))
        if rel in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                if (isinstance(target, ast.Attribute) and target.attr in ("state", "fail_reason")
                        and _reaches(target.value).split(".")[-1] in ("job", "j", "new", "old")):
                    bad.append(f"{rel}:{node.lineno}")
    assert not bad, "only queue.py moves a job or says why it failed: " + ", ".join(bad)


def test_the_queue_never_reaches_into_the_manager() -> None:
    for node in ast.walk(_tree("queue.py")):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("wr.manager"), node.module
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("wr.manager") for a in node.names)


def test_the_rules_catch_what_they_are_about() -> None:
    """The checks above can fail: a handler that kills through the queue is caught."""
    code = ("async def h(self):\n    self.manager.queue.kill(['k'], 0)\n"
            "    await self.manager._after()\n")
    caught = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Attribute)
              and (n.attr in _queue_commands() and _reaches(n).endswith("queue.kill")
                   or n.attr == "_after")]
    assert len(caught) == 2
