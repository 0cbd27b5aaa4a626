"""Capture a job's stdout or stderr the way wr stores it, in bounded memory.

A job may print gigabytes, or redraw a progress bar a million times; the manager only wants
enough to explain a failure. wr therefore (spec/rest-and-queue.md §3.3, cli-manager-web-scheduler
§3.8) collapses carriage-return redraws and keeps only the first and last 4096 bytes:

* every ``\\n``-terminated chunk is split on ``\\r`` into segments s0..sk. With k=0 the chunk passes
  unchanged. Otherwise s0 is written; if k>=2 also ``\\n``, then ``[...]\\n`` if k>=3, then
  s(k-1) and ``\\n``. So whatever follows the last ``\\r`` is dropped, and ``abc\\r\\n`` loses its
  newline (a wr quirk we keep, so stored output matches wr's byte for byte);
* of the filtered stream the first and last 4096 bytes are kept, joined by
  ``\\n... omitting N bytes ...\\n`` when bytes were dropped;
* the result is decoded as UTF-8 (bad bytes replaced) and stripped of surrounding whitespace.

The filter works on the stream as it arrives, a pipe read at a time, and never holds more than
three 8 KiB windows, whatever the size of the output or the length of a line. An unterminated
last chunk (output not ending in ``\\n``) is treated as a chunk when the stream is closed.
"""

from __future__ import annotations

KEEP_BYTES = 4096
"""How many bytes of the start, and of the end, of a filtered stream are kept."""


class HeadTail:
    """The first and last KEEP_BYTES of a byte stream, and how many bytes fell between them."""

    __slots__ = ("head", "tail", "skipped")

    def __init__(self, data: bytes = b"") -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.skipped = 0
        if data:
            self.write(data)

    def write(self, data: bytes) -> None:
        room = KEEP_BYTES - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            extra = len(self.tail) - KEEP_BYTES
            if extra > 0:
                # Deleting from the front of a bytearray is amortised O(1) in CPython.
                del self.tail[:extra]
                self.skipped += extra

    def skip(self, count: int) -> None:
        """Record that `count` bytes went by unseen; what was in the tail is no longer the end."""
        self.skipped += count + len(self.tail)
        self.tail.clear()

    def write_to(self, other: HeadTail) -> None:
        """Append this (possibly gapped) stream to `other`, keeping `other`'s bounds exact."""
        other.write(self.head)
        if self.skipped:
            # A gap means our head is full, so `other`'s head has been filled by it already.
            other.skip(self.skipped)
        other.write(self.tail)

    def getvalue(self) -> bytes:
        if not self.skipped:
            return bytes(self.head + self.tail)
        gap = b"\n... omitting %d bytes ...\n" % self.skipped
        return bytes(self.head) + gap + bytes(self.tail)


class StreamCapture:
    """Feed it a pipe's bytes as they come; call close() at EOF, then text() for what to store."""

    __slots__ = ("_out", "_k", "_prev", "_cur", "_closed")

    def __init__(self) -> None:
        self._out = HeadTail()
        self._k = 0  # how many \r the current chunk has had so far
        self._prev: HeadTail | None = None  # s(k-1): the segment before the last \r
        self._cur: HeadTail | None = None  # sk: the segment after the last \r
        self._closed = False

    def feed(self, data: bytes) -> None:
        out = self._out
        pos, end_of_data = 0, len(data)
        while pos < end_of_data:
            if self._k == 0:
                # Complete plain chunks and the s0 of a redrawn one pass through unchanged.
                cr = data.find(b"\r", pos)
                if cr < 0:
                    out.write(data[pos:] if pos else data)
                    return
                out.write(data[pos:cr])
                self._k = 1
                self._prev = None
                self._cur = HeadTail()
                pos = cr + 1
                continue
            nl = data.find(b"\n", pos)
            end = end_of_data if nl < 0 else nl
            last_cr = data.rfind(b"\r", pos, end)
            if last_cr < 0:
                self._cur.write(data[pos:end])
            else:
                crs = data.count(b"\r", pos, end)
                if crs == 1:
                    self._cur.write(data[pos:last_cr])
                    self._prev = self._cur
                else:
                    before = data.rfind(b"\r", pos, last_cr)
                    self._prev = HeadTail(data[before + 1 : last_cr])
                self._cur = HeadTail(data[last_cr + 1 : end])
                self._k += crs
            if nl < 0:
                return
            self._end_chunk()
            pos = nl + 1

    def _end_chunk(self) -> None:
        k, out = self._k, self._out
        if k >= 2:
            out.write(b"\n")
            if k >= 3:
                out.write(b"[...]\n")
            self._prev.write_to(out)
            out.write(b"\n")
        self._k = 0
        self._prev = self._cur = None

    def close(self) -> None:
        """End of stream: an unterminated last chunk is filtered like a terminated one."""
        if not self._closed:
            self._closed = True
            if self._k:
                self._end_chunk()

    def text(self) -> str:
        self.close()
        return self._out.getvalue().decode("utf-8", errors="replace").strip()
