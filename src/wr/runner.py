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

A runner is two processes (wr.keeper): a small *keeper*, started by the scheduler, forks the
*worker* that does all of the above and waits for it. The worker journals each command's start
and exit on this host before telling the manager (wr.journal); if it dies (``kill -9``, the
OOM killer), its commands, now the keeper's children, are reaped or killed by the keeper,
which reports their real outcomes to the manager under the worker's id (issue 13, item 3).

A runner inside a batch job (Slurm) is given ``--ref`` (the batch system's name for it, which
becomes part of its id so the scheduler can say what became of it) and ``--max-time`` (its
time limit): it takes no job it could not finish before the batch system would kill it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from wr.journal import Journal
from wr.runner_link import RECONNECT_FOR, Link, ManagerGone, host_ip
from wr.workdirs import Sweeper

if TYPE_CHECKING:
    from wr.exec_spec import ExecResult, ExecSpec

log = logging.getLogger("wr.runner")

START_REPORT_DELAY = 0.05
"""Seconds a command runs before the runner reports its start on its own; one that ends
sooner has its start reported with its end, in one message (docs/benchmarks.md). Also the
longest a finished job's end report waits for the others of its batch."""

MAX_BATCH = 16
"""Most jobs a runner reserves at once. It asks for twice as many each time a job ends
within START_REPORT_DELAY, up to this, and for one again as soon as a job takes longer."""


class Runner:
    """Runs jobs of one group until there are none."""

    def __init__(self, link: Link, *, idle: float, touch: float, max_time: float = 0.0,
                 journal: Journal | None = None, runner_id: str = "",
                 keeper_pid: int = 0, container_runtime: str = "auto") -> None:
        self.link = link
        self.container_runtime = container_runtime
        """The containerruntime setting: which docker-compatible command runs containers."""
        self.journal = journal
        """Where starts and ends are recorded before the manager hears of them."""
        self.runner_id = runner_id
        self.keeper_pid = keeper_pid
        """Our keeper (the parent that reports for us if we die); 0: none."""
        self.comm = ""
        """The name our commands have (wr.journal.command_name), when run through links."""
        self._links: dict[str, str] = {}
        """Each shell's named link (wr.procs.shell_link), made when first needed."""
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
        self.sweeper = Sweeper()
        """Removes the directories of jobs that are over while the next ones run; ends are
        reported only once it has caught up (issue 17)."""
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
                if self.keeper_pid and os.getppid() != self.keeper_pid and not self.stopping:
                    # Our keeper is gone, so nobody would report for us if we died: finish
                    # what we hold and take nothing new (the scheduler counts us as gone).
                    log.warning("the runner's keeper (pid %d) is gone: taking no more jobs",
                                self.keeper_pid)
                    self.stopping = True
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
                if self.journal is not None:
                    self.journal.ended(end)
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
            await self.sweeper.settled()  # no job is said to be over before its directory is
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
        if ends and self.journal is not None and not self.sending:
            # Every end we made is stored now: the journal has nothing left to tell.
            self.journal.clear(os.getpid(), self.runner_id, self.comm)
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
        await self.sweeper.settled()
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
        from wr.execute import ExecSetupError, Execution

        key = job["key"]
        spec = self._spec(job)
        execution = Execution(spec, self.journal, self.sweeper)
        try:
            pid = await execution.start()
        except ExecSetupError as exc:
            return self._setup_failed(key, exc), True
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
        end = _end_report(key, result)
        if announced is None:
            end["start"] = start
        return end, announced is None

    def _spec(self, job: dict[str, Any]) -> ExecSpec:
        """What running a job the manager sent takes (wr.manager.runner_ws)."""
        from wr.container_options import ContainerRequest
        from wr.exec_spec import ExecSpec

        spec = ExecSpec(
            key=job["key"], cmd=job["cmd"], cwd=job["cwd"], cwd_matters=job["cwd_matters"],
            change_home=job["change_home"], env_override=list(job["env_override"]),
            base_env=self.env, expected_ram_mb=int(job["expected_ram_mb"]),
            expected_time_s=float(job["expected_time_s"]),
            retries_left=int(job["retries_left"]),
            no_retry_over_walltime_s=float(job["no_retry_over_walltime_s"]),
            modules=list(job["modules"]), behaviours=list(job["behaviours"]),
            shell=job.get("shell") or "bash", mounts=list(job.get("mounts") or ()),
            bsub=job.get("bsub"),
            container=ContainerRequest.from_job(job, self.container_runtime),
            group=job.get("group") or "",
        )
        if self.journal is not None:
            spec.shell_via = self._shell_link(spec.shell)
        return spec

    def _shell_link(self, shell: str) -> str:
        """The link to run ``shell`` through, so that the keeper can tell our commands by
        name, even once they have exited (wr.keeper); "" to run it as it is."""
        link = self._links.get(shell)
        if link is None:
            from wr.journal import command_name, journal_path
            from wr.procs import shell_link

            folder = journal_path(self.runner_id).with_suffix(f".bin{len(self._links)}")
            with contextlib.suppress(OSError):
                folder.mkdir(mode=0o700, exist_ok=True)
            self.comm = command_name(self.runner_id)
            link = self._links[shell] = shell_link(folder, self.comm, shell,
                                                   self.env.get("PATH"))
        return link

    def remove_links(self) -> None:
        for link in self._links.values():
            if link:
                with contextlib.suppress(OSError):
                    os.unlink(link)
                    os.rmdir(os.path.dirname(link))

    def _setup_failed(self, key: str, exc: Any) -> dict[str, Any]:
        """The end of a job whose command could not be set up or started: an attempt like
        any other (issue 13, item 5: it counts against its retries), so its start is
        reported with it."""
        fail_reason = exc.fail_reason
        if exc.detail and exc.fail_reason == "command failed to start":
            fail_reason = f"{exc.fail_reason}: {exc.detail}"  # what the system answered
        report = {"outcome": exc.outcome, "exitcode": 0, "fail_reason": fail_reason,
                  "ended": time.time()}
        start = {"pid": 0, "host": self.host, "ip": self.ip, "at": time.time()}
        return {"key": key, "report": report, "stdout": "", "stderr": str(exc.detail),
                "start": start}

    async def _touch(self, key: str, execution: Any) -> None:
        while True:
            await asyncio.sleep(self.touch_interval)
            try:
                # With the memory the command has reached, so that the manager can tell a
                # batch system's memory kill from a lost runner (issue 13, item 10).
                reply = await self.link.request(
                    {"op": "touch", "key": key, "peak_ram": execution.peak_ram_mb},
                    patience=RECONNECT_FOR)
            except RuntimeError as exc:
                log.warning("touch of %s refused: %s", key, exc)
                continue
            if reply.get("kill"):
                execution.kill("user")
                return


def _end_report(key: str, result: ExecResult) -> dict[str, Any]:
    """A job's end, in the form the manager takes it."""
    return {"key": key, "report": {
        "outcome": result.outcome, "exitcode": result.exitcode,
        "fail_reason": result.fail_reason, "peak_ram": result.peak_ram_mb,
        "peak_disk": result.peak_disk_mb, "cpu_time": result.cpu_time,
        "ended": result.ended, "actual_cwd": result.actual_cwd,
        "remove": result.remove_requested,
    }, "stdout": result.stdout, "stderr": result.stderr}


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


def runner_link(args: argparse.Namespace, runner_id: str, config: Any = None) -> Link:
    """A link to the manager as runner ``runner_id`` (the keeper reports under the id of
    the worker it kept)."""
    from wr.config import load_config_from_process
    from wr.security import client_ssl_context

    config = config or load_config_from_process()
    token = config.token_file.read_text().strip()
    ssl_ctx = client_ssl_context(config.ca_file)
    url = (f"wss://{args.server}/runner_ws?id={quote(runner_id, safe='')}"
           f"&group={quote(args.group, safe='')}")
    return Link(url, token, ssl_ctx, args.domain)


async def _amain(args: argparse.Namespace, runner_id: str, keeper_pid: int) -> int:
    from wr.config import load_config_from_process

    config = load_config_from_process()
    link = runner_link(args, runner_id, config)
    try:
        await link.connect(patience=10.0)
    except ManagerGone as exc:
        log.error("could not reach the manager at %s: %s", args.server, exc)
        return 1
    journal = None
    if keeper_pid:
        from wr.journal import command_name, journal_path

        journal = Journal(journal_path(runner_id))
        journal.clear(os.getpid(), runner_id, command_name(runner_id))
    runner = Runner(link, idle=args.idle, touch=args.touch, max_time=args.max_time,
                    journal=journal, runner_id=runner_id, keeper_pid=keeper_pid,
                    container_runtime=config.container_runtime)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.signalled)
    told = False
    try:
        why = await runner.run()
        told = not runner.reports
    except ManagerGone as exc:
        why = f"the manager could not be reached ({exc})"
    finally:
        runner.sweeper.close()
        await link.close()
        if journal is not None:
            # Kept when ends were never stored: the keeper then tries to report them.
            journal.close(remove=told)
        if told:
            runner.remove_links()
    log.info("wr runner exiting, having run %d commands, because %s", runner.ran, why)
    return 0 if told else 1


def stand_by(args: argparse.Namespace) -> bool:
    """Import what a runner will need, then wait for its orders on stdin: the group to run
    (and the id to run as, if given). False at end of input (nobody needs us any more).

    Starting Python and importing a runner's modules takes 100–300 ms of CPU, most of the
    time between adding a job to an idle manager and its start (issue 17)."""
    import importlib
    import json

    for module in ("uvloop", "websockets.asyncio.client", "wr.config",
                   "wr.container_options", "wr.execute", "wr.keeper", "wr.security"):
        importlib.import_module(module)
    line = sys.stdin.readline()
    if not line.strip():
        return False
    try:
        orders = json.loads(line)
        args.group = str(orders["group"])
        args.id = str(orders.get("id") or args.id)
    except (ValueError, KeyError, TypeError) as exc:
        log.error("a standby runner was given %r, not {\"group\": ..., \"id\": ...}: %s",
                  line.strip(), exc)
        return False
    # Our stdin was only for the orders; what we start gets /dev/null (wr.procs.spawn).
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wr runner", description=__doc__.split("\n")[0])
    parser.add_argument("--group", default="", help="scheduler group to take jobs from "
                        "(required unless --standby)")
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
    parser.add_argument("--id", default="",
                        help="this runner's id (default: made up), given by a scheduler that "
                             "wants to know which runner it started")
    parser.add_argument("--standby", action="store_true",
                        help="load everything a runner needs, then wait for one line on "
                             'stdin, {"group": ..., "id": ...}, and run as that runner (a '
                             "local scheduler keeps runners ready like this, so that jobs "
                             "added to an idle manager start at once); exit at end of input")
    parser.add_argument("--no-keeper", action="store_true",
                        help="run without a keeper process (nobody then reports for this "
                             "runner if it is killed: for tests and debugging)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s: %(message)s")
    if args.standby and not stand_by(args):
        return 0
    if not args.group:
        parser.error("--group is required (unless --standby)")
    os.environ.pop("WR_DAEMON", None)
    runner_id = (args.id or uuid.uuid4().hex) + (f"@{args.ref}" if args.ref else "")
    keeper_pid = 0
    if not args.no_keeper:
        from wr.keeper import become_worker

        keeper_pid = become_worker(args, runner_id)  # returns in the worker only
    try:
        import uvloop

        return uvloop.run(_amain(args, runner_id, keeper_pid))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
