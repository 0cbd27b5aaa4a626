"""Reading ``GET /rest/v1/events/`` (server-sent events) with httpx, for the tests of the
stream (test_events.py) and of anything whose changes it should show (test_runner_batches.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from tests.conftest import ManagerHandle

HAPPY_PATH = [(None, "ready"), ("ready", "reserved"), ("reserved", "running"),
              ("running", "complete")]


def client(mgr: ManagerHandle) -> httpx.Client:
    return mgr.http(timeout=httpx.Timeout(30, read=20))


def blocks(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The stream's blocks as {field: value}; comments under ":" (a list)."""
    block: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if block:
                yield block
            block = {}
            continue
        if line.startswith(":"):
            block.setdefault(":", []).append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        block[name] = f"{block[name]}\n{value}" if name == "data" and name in block else value
    if block:
        yield block


def events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, data) of each job change; other blocks are skipped."""
    for block in blocks(response):
        if "data" in block and block.get("event", "message") == "message":
            yield block["id"], orjson.loads(block["data"])
