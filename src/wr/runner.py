"""The runner: reserve a job of one scheduler group, run it, report, take the next.

A scheduler starts runners (``python -m wr.runner --group G --server host:port``); each holds
one websocket to the manager (protocol in wr.manager.runner_ws) and runs many jobs, one at a
time, until no job of its group turns up for ``--idle`` seconds. The job runs in its own
process group, so killing it never kills the runner.

If the connection drops while a job runs (the manager crashed or is restarting), the job
keeps running and the runner reconnects with back-off and reports to whichever manager is
there; the manager knows the job by key and by this runner's id.

Jobs that end within milliseconds cost more in messages than in running, so a runner whose
jobs keep ending within START_REPORT_DELAY reserves several at a time (up to MAX_BATCH), runs
them one after another and reports their ends together, with their starts, when it asks for
the next ones. A report waits at most START_REPORT_DELAY for the rest of its batch, and a
job that runs longer has its start reported on its own, with the ends before it. Reserved
jobs it has not started are given back when it stops; after a reconnection it leaves them,
as the manager has already put them back in the queue.

A runner inside a batch job (Slurm) is given ``--ref`` (the batch system's name for it, which
becomes part of its id so the scheduler can say what became of it) and ``--max-time`` (its
time limit): it takes no job it could not finish before the batch system would kill it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
import uuid
from typing import Any
from urllib.parse import quote

import orjson

log = logging.getLogger("wr.runner")

RECONNECT_FOR = 24 * 3600.0
"""How long a runner holding a finished job's report keeps trying to reach a manager."""


RETRY_FOR = 30.0
"""Least time a runner keeps asking again when the manager cannot store a change yet."""

START_REPORT_DELAY = 0.05
"""Seconds a command runs before the runner reports its start on its own; one that ends
sooner has its start reported with its end, in one message (docs/benchmarks.md). Also the
longest a finished job's end report waits for the others of its batch."""

MAX_BATCH = 16
"""Most jobs a runner reserves at once. It asks for twice as many each time a job ends
within START_REPORT_DELAY, up to this, and for one again as soon as a job takes longer."""


class ManagerGone(Exception):
    """The manager cannot be reached (and the runner has nothing worth waiting for)."""


class Link:
    """A request/response channel over a reconnecting websocket."""

    def __init__(self, url: str, token: str, ssl_ctx: Any, domain: str) -> None:
        self.url = url
        self.token = token
        self.ssl_ctx = ssl_ctx
        self.domain = domain
        self.ws: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.on_push: Any = lambda msg: None
        self.closed_by_manager = False
        self.generation = 0
        """How many connections have been made: the manager gives back the reservations of
        a connection that closes, so jobs reserved on an earlier one are no longer ours."""

    async def connect(self, patience: float) -> None:
        import websockets

        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        delay = 0.2
        while True:
            try:
                self.ws = await websockets.connect(
                    self.url, ssl=self.ssl_ctx, server_hostname=self.domain,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    max_size=None, ping_interval=None, open_timeout=10, compression=None,
                )
                self.generation += 1
                break
            except (TimeoutError, OSError, websockets.WebSocketException) as exc:
                if loop.time() + delay > deadline:
                    raise ManagerGone(str(exc)) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._reader = asyncio.ensure_future(self._read(self.ws))

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                msg = orjson.loads(raw)
                mid = msg.get("id")
                if mid is None:
                    self.on_push(msg)
                    continue
                fut = self._pending.pop(mid, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except Exception:
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection to the manager closed"))
            self._pending.clear()

    async def request(self, msg: dict[str, Any], *, patience: float = 0.0) -> dict[str, Any]:
        """Send and await the answer; on a dropped connection, reconnect for up to
        ``patience`` seconds and send again. An answer marked ``retry`` (the manager could
        not store the change yet: a full disk) is asked again, with back-off, for up to
        ``patience`` seconds (at least ``RETRY_FOR``: a runner that gave up at once would
        only be replaced by another that does the same)."""
        delay = 0.2
        loop = asyncio.get_running_loop()
        retry_until = loop.time() + max(patience, RETRY_FOR)
        while True:
            mid = next(self._ids)
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending[mid] = fut
            try:
                await self.ws.send(orjson.dumps({**msg, "id": mid}))
                reply = await fut
            except Exception as exc:
                self._pending.pop(mid, None)
                if patience <= 0:
                    raise ManagerGone(str(exc)) from exc
                await self._close()
                await self.connect(patience)
                continue
            if "error" in reply and reply.get("retry"):
                if loop.time() + delay > retry_until:
                    raise ManagerGone(reply["error"])
                if delay == 0.2:
                    log.warning("manager asked to retry later: %s", reply["error"])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if "error" in reply:
                raise RuntimeError(reply["error"])
            return reply

    async def _close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()

    async def close(self) -> None:
        await self._close()


def host_ip() -> str:
    """This host's first non-loopback IPv4 address (what wr reports as HostIP)."""
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                if a.family == socket.AF_INET and not a.address.startswith("127."):
                    return a.address
    except Exception:
        pass
    return "127.0.0.1"


class Runner:
    """Runs jobs of one group until there are none."""

    def __init__(self, link: Link, *, idle: float, touch: float, max_time: float = 0.0) -> None:
        self.link = link
        self.idle = idle
        self.touch_interval = touch
        self.max_time = max_time
        self.born = 0.0
        self.host = socket.gethostname()
        self.ip = host_ip()
        self.current: Any = None
        self.current_key = ""
        self.env = dict(os.environ)
        """The environment commands start from: ours, which does not change while we run."""
        self.stopping = False
        self.ran = 0
        self.batch = 1
        """How many jobs to ask for next."""
        self.held: collections.deque[dict[str, Any]] = collections.deque()
        """Jobs reserved for us and not yet started, in order."""
        self.held_on = 0
        """The link generation the held jobs were reserved on."""
        self.killed: set[str] = set()
        """Held jobs the manager asked us to kill before we started them."""
        self.reports: list[dict[str, Any]] = []
        """Ends (with their starts) not yet sent."""
        self.reports_since = 0.0
        self.sending: list[asyncio.Future[None]] = []
        """Reports on their way, sent without asking for jobs."""
        link.on_push = self._push

    def _push(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "stop":
            self.stopping = True
            if self.current is not None:
                self.current.kill("stop")
        elif op == "kill":
            key = msg.get("key")
            if self.current is not None and key == self.current_key:
                self.current.kill("user")
            elif any(job["key"] == key for job in self.held):
                self.killed.add(str(key))

    def signalled(self) -> None:
        self.stopping = True
        if self.current is not None:
            self.current.kill("signal")

    def fits(self, job: dict[str, Any]) -> bool:
        """Whether ``job`` can finish within this runner's ``max_time`` (0: no limit)."""
        if self.max_time <= 0:
            return True
        elapsed = asyncio.get_running_loop().time() - self.born
        return elapsed + float(job["expected_time_s"]) <= self.max_time

    async def run(self) -> str:
        loop = asyncio.get_running_loop()
        self.born = loop.time()
        try:
            while True:
                if not self.held:
                    if not await self._exchange(None if self.stopping else self.idle):
                        break
                    continue
                if self.stopping or self.link.generation != self.held_on:
                    await self._give_back(self.held)
                    continue
                job = self.held.popleft()
                if not self.fits(job):
                    self.held.appendleft(job)
                    await self._give_back(self.held)
                    await self._exchange(None)
                    return "its next command would not finish within its time limit"
                if job["key"] in self.killed:
                    self.killed.discard(job["key"])
                    end, short = _killed_before_start(job["key"]), True
                else:
                    end, short = await self._execute(job)
                self.ran += 1
                self.batch = min(self.batch * 2, MAX_BATCH) if short else 1
                if not self.reports:
                    self.reports_since = loop.time()
                self.reports.append(end)
                if self.held and loop.time() - self.reports_since >= START_REPORT_DELAY:
                    self._send_soon()
        finally:
            for sending in self.sending:
                sending.cancel()
        if self.stopping:
            return "it was told to stop"
        return "there are no more commands in its scheduler group"

    async def _exchange(self, reserve: float | None) -> bool:
        """Send the reports held back and, with ``reserve``, ask for more jobs (waiting up
        to ``reserve`` seconds for one); whether any came."""
        await self._settle()
        ends, self.reports = self.reports, []
        if ends:
            msg = _end_message(ends)
        elif reserve is None:
            return False
        else:
            msg = {"op": "reserve"}
        msg["reserve" if ends else "timeout"] = reserve
        if reserve is not None and self.batch > 1:
            msg["many"] = self.batch
        try:
            reply = await self.link.request(msg, patience=RECONNECT_FOR if ends else 0.0)
        except RuntimeError as exc:
            if not ends:
                raise
            # The manager no longer wants this report (the job was removed, or another
            # attempt owns it now): never retry it, just move on.
            log.warning("report for %s refused: %s", ", ".join(e["key"] for e in ends), exc)
            if reserve is None:
                return False
            reply = await self.link.request(
                {"op": "reserve", "timeout": reserve, "many": self.batch})
        _log_refused(reply)
        jobs = [reply["job"], *reply.get("more", ())] if reply.get("job") else []
        self.held.extend(jobs)
        self.held_on = self.link.generation
        return bool(jobs)

    def _send_soon(self) -> None:
        """Send the reports held back now, without waiting for the answer."""
        if self.reports:
            msg = {**_end_message(self.reports), "reserve": None}
            self.reports = []
            self.sending.append(asyncio.ensure_future(self._report(msg)))

    async def _report(self, msg: dict[str, Any]) -> None:
        try:
            _log_refused(await self.link.request(msg, patience=RECONNECT_FOR))
        except RuntimeError as exc:
            keys = msg["key"] if "key" in msg else ", ".join(e["key"] for e in msg["ends"])
            log.warning("report for %s refused: %s", keys, exc)

    async def _settle(self) -> None:
        """Wait for the reports on their way (a manager that cannot be reached raises)."""
        while self.sending:
            await self.sending[0]
            self.sending.pop(0)

    async def _give_back(self, jobs: collections.deque[dict[str, Any]]) -> None:
        """Release reserved jobs we will not start (the manager may have already)."""
        while jobs:
            job = jobs.popleft()
            self.killed.discard(job["key"])
            with contextlib.suppress(RuntimeError, ManagerGone):
                await self.link.request({"op": "release", "key": job["key"]})

    async def _execute(self, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Run one job: its end report (with its start, unless that was reported already)
        and whether it was over within START_REPORT_DELAY."""
        from wr.execute import ExecSetupError, ExecSpec, Execution

        key = job["key"]
        spec = ExecSpec(
            key=key, cmd=job["cmd"], cwd=job["cwd"], cwd_matters=job["cwd_matters"],
            change_home=job["change_home"], env_override=list(job["env_override"]),
            base_env=self.env, expected_ram_mb=int(job["expected_ram_mb"]),
            expected_time_s=float(job["expected_time_s"]),
            retries_left=int(job["retries_left"]),
            no_retry_over_walltime_s=float(job["no_retry_over_walltime_s"]),
            modules=list(job["modules"]), behaviours=list(job["behaviours"]),
            shell=job.get("shell") or "bash", bsub=job.get("bsub"),
        )
        execution = Execution(spec)
        try:
            pid = await execution.start()
        except ExecSetupError as exc:
            report = {"outcome": exc.outcome, "exitcode": 0, "fail_reason": exc.fail_reason}
            detail = str(getattr(exc, "detail", ""))
            return {"key": key, "report": report, "stdout": "", "stderr": detail}, True
        self.current = execution
        self.current_key = key
        if self.stopping:
            execution.kill("stop")
        start = {"pid": pid, "host": self.host, "ip": self.ip, "at": execution.started_at}
        announced: asyncio.Future[dict[str, Any]] | None = None
        toucher: asyncio.Future[None] | None = None

        def announce() -> None:
            # Still running after START_REPORT_DELAY: send the ends held back, then say it
            # started. The start report travels while the job runs; the end report follows
            # it on the same connection, so the manager always sees them in order.
            nonlocal announced, toucher
            self._send_soon()
            announced = asyncio.ensure_future(self.link.request(
                {"op": "started", "key": key, **start}, patience=RECONNECT_FOR))
            toucher = asyncio.ensure_future(self._touch(key, execution))

        timer = asyncio.get_running_loop().call_later(START_REPORT_DELAY, announce)
        try:
            result = await execution.wait()
            timer.cancel()
            if announced is not None:
                try:
                    await announced
                except RuntimeError as exc:
                    log.warning("manager refused the start of %s: %s", key, exc)
        finally:
            timer.cancel()
            self.current = None
            self.current_key = ""
            if toucher is not None:
                toucher.cancel()
        end = {"key": key, "report": {
            "outcome": result.outcome, "exitcode": result.exitcode,
            "fail_reason": result.fail_reason, "peak_ram": result.peak_ram_mb,
            "peak_disk": result.peak_disk_mb, "cpu_time": result.cpu_time,
            "ended": result.ended, "actual_cwd": result.actual_cwd,
            "remove": result.remove_requested,
        }, "stdout": result.stdout, "stderr": result.stderr}
        if announced is None:
            end["start"] = start
        return end, announced is None

    async def _touch(self, key: str, execution: Any) -> None:
        while True:
            await asyncio.sleep(self.touch_interval)
            try:
                reply = await self.link.request({"op": "touch", "key": key},
                                                patience=RECONNECT_FOR)
            except RuntimeError as exc:
                log.warning("touch of %s refused: %s", key, exc)
                continue
            if reply.get("kill"):
                execution.kill("user")
                return


def _end_message(ends: list[dict[str, Any]]) -> dict[str, Any]:
    """An ``end`` request for one report, or several."""
    if len(ends) == 1:
        return {"op": "end", **ends[0]}
    return {"op": "end", "ends": ends}


def _killed_before_start(key: str) -> dict[str, Any]:
    """The end of a held job killed before we started it: buried, as a killed one is."""
    from wr.jobs import FailReason

    report = {"outcome": "bury", "exitcode": 0, "fail_reason": str(FailReason.KILLED)}
    return {"key": key, "report": report, "stdout": "", "stderr": ""}


def _log_refused(reply: dict[str, Any]) -> None:
    for key, why in (reply.get("refused") or {}).items():
        log.warning("report for %s refused: %s", key, why)


async def _amain(args: argparse.Namespace) -> int:
    from wr.config import load_config_from_process
    from wr.security import client_ssl_context

    config = load_config_from_process()
    token = config.token_file.read_text().strip()
    ssl_ctx = client_ssl_context(config.ca_file)
    runner_id = uuid.uuid4().hex + (f"@{args.ref}" if args.ref else "")
    url = (f"wss://{args.server}/runner_ws?id={quote(runner_id, safe='')}"
           f"&group={quote(args.group, safe='')}")
    link = Link(url, token, ssl_ctx, args.domain)
    try:
        await link.connect(patience=10.0)
    except ManagerGone as exc:
        log.error("could not reach the manager at %s: %s", args.server, exc)
        return 1
    runner = Runner(link, idle=args.idle, touch=args.touch, max_time=args.max_time)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.signalled)
    try:
        why = await runner.run()
    except ManagerGone as exc:
        why = f"the manager could not be reached ({exc})"
    finally:
        await link.close()
    log.info("wr runner exiting, having run %d commands, because %s", runner.ran, why)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wr runner", description=__doc__.split("\n")[0])
    parser.add_argument("--group", required=True, help="scheduler group to take jobs from")
    parser.add_argument("--server", required=True, help="manager host:port")
    parser.add_argument("--domain", default="localhost", help="TLS name of the manager")
    parser.add_argument("--idle", type=float, default=2.0,
                        help="seconds to wait for a job before exiting")
    parser.add_argument("--touch", type=float, default=15.0,
                        help="seconds between keep-alives while a job runs")
    parser.add_argument("--max-time", type=float, default=0.0,
                        help="seconds this runner may live (a batch job's time limit); it "
                             "takes no job whose expected time would not fit (0: no limit)")
    parser.add_argument("--ref", default="",
                        help="the scheduler's name for this runner (e.g. slurm:12_3), kept "
                             "in its id so the scheduler can tell what became of it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s: %(message)s")
    os.environ.pop("WR_DAEMON", None)
    try:
        import uvloop

        return uvloop.run(_amain(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
