"""The manager's log: one logfmt line per event (``t=... lvl=info msg="..."``).

wr's tools scan the log for ``lvl=eror``/``lvl=crit`` lines since the last start to explain a
failed start or a sick manager; we keep the same markers so ``wr manager status`` can too.
The token is never logged.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

_LEVELS = {"DEBUG": "dbug", "INFO": "info", "WARNING": "warn", "ERROR": "eror",
           "CRITICAL": "crit"}
STARTED_MARK = 'msg="wr manager started'


class LogfmtFormatter(logging.Formatter):
    """``t=<iso time> lvl=<wr level> msg="<message>"`` plus a traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record.created))
        msg = record.getMessage().replace("\\", "\\\\").replace('"', '\\"')
        line = f't={t} lvl={_LEVELS.get(record.levelname, "info")} msg="{msg}"'
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(log_file: Path, *, foreground: bool, debug: bool = False) -> None:
    root = logging.getLogger("wr")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.handlers.clear()
    # The log names jobs, commands and paths: the manager's user only, whatever the umask
    # and however an earlier run left it (issue 13).
    os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(log_file, 0o600)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(LogfmtFormatter())
    root.addHandler(handler)
    if foreground:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        console.setLevel(logging.WARNING)
        root.addHandler(console)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.WARNING)


def errors_since_start(log_file: Path) -> list[str]:
    """The error and critical lines logged since the manager last started."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found: list[str] = []
    for line in lines:
        if STARTED_MARK in line:
            found = []
        elif "lvl=eror" in line or "lvl=crit" in line:
            found.append(line)
    return found
