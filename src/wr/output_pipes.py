"""The pipes of a running command's stdout and stderr, read on the runner's event loop.

Each pipe is read whenever it is readable, into a bounded capture (wr.capture), so a
command with big output never blocks on a full pipe and the runner never holds more than a
capture keeps. After the command exits, what is left is read until the pipes go quiet for
DRAIN_IDLE_S, or DRAIN_MAX_S in any case: background processes the command left behind may
hold the pipes open indefinitely (wr stops reading at exit; docs/compatibility.md).
"""

from __future__ import annotations

import asyncio
import os

from wr.capture import StreamCapture

DRAIN_IDLE_S = 0.25
"""After the command exits, stop reading its pipes once they have been silent this long."""
DRAIN_MAX_S = 2.0
"""After the command exits, stop reading its pipes after this long in any case."""

_READ_SIZE = 1 << 16


class OutputPipes:
    """The read ends of one command's two pipes, and what was read from them."""

    def __init__(self) -> None:
        self.out = StreamCapture()
        self.err = StreamCapture()
        self.problems: list[str] = []
        """Errors reading a pipe, as text for the job's stderr."""
        self._pipes: dict[int, asyncio.Future] = {}
        self._last_output = 0.0

    def watch(self, loop: asyncio.AbstractEventLoop, out_fd: int, err_fd: int) -> None:
        """Start reading both pipes (the command has just been spawned)."""
        self._last_output = loop.time()
        self._pipes = {out_fd: self._read_pipe(loop, out_fd, self.out, "STDOUT")}
        self._pipes[err_fd] = self._read_pipe(loop, err_fd, self.err, "STDERR")

    def _read_pipe(self, loop: asyncio.AbstractEventLoop, fd: int, capture: StreamCapture,
                   name: str) -> asyncio.Future:
        """Feed `capture` from `fd` whenever it is readable; the future resolves at EOF."""
        os.set_blocking(fd, False)
        eof = loop.create_future()

        def on_readable() -> None:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self.problems.append(f"\n\n{name} handling problems:\n{exc}")
                data = b""
            if data:
                capture.feed(data)
                self._last_output = loop.time()
                return
            loop.remove_reader(fd)
            if not eof.done():
                eof.set_result(None)

        loop.add_reader(fd, on_readable)
        return eof

    async def drain(self) -> None:
        """Read what is left in the pipes; give up once they go quiet or after DRAIN_MAX_S;
        close them and the captures."""
        loop = asyncio.get_running_loop()
        self._last_output = max(self._last_output, loop.time())
        hard_stop = loop.time() + DRAIN_MAX_S
        try:
            pending = [f for f in self._pipes.values() if not f.done()]
            while pending:
                now = loop.time()
                timeout = min(hard_stop, self._last_output + DRAIN_IDLE_S) - now
                if timeout <= 0:
                    break
                _, pending = await asyncio.wait(pending, timeout=timeout)
        finally:
            self.close()
        self.out.close()
        self.err.close()

    def close(self) -> None:
        """Stop reading and close the pipes (on the event loop)."""
        loop = asyncio.get_running_loop()
        for fd in self._pipes:
            loop.remove_reader(fd)
            os.close(fd)
        self._pipes = {}
