"""The manager process: start-up, serving, and a graceful stop that loses nothing.

Start-up order matters for users and for the ``wr manager start`` parent that waits on us:
token and certificates, database (recovering incomplete jobs), listening sockets, and only
then ``manager.info`` — the file that says "ready, on these ports". A stop (SIGTERM/SIGINT)
asks every runner to put its job back in the queue, waits for them, stores everything, and
removes the pid and info files; the token stays unless the stop was clean, so runners that
outlive a crash can report to the next manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from wr import __version__
from wr.config import Config, info_path
from wr.errors import ConfigError, WrError
from wr.manager.logs import setup_logging
from wr.security import ensure_certificates, load_or_create_token, write_private

if TYPE_CHECKING:
    from wr.manager.core import Manager
    from wr.schedulers.base import Scheduler
    from wr.store import Store

log = logging.getLogger("wr.manager")

WS_MAX_SIZE = 64 * 1024 * 1024
"""Largest websocket message the manager takes (a runner's end carries a job's output)."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return True


def running_pid(config: Config) -> int | None:
    """The pid of this deployment's running manager, per its pid file."""
    try:
        pid = int(config.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"could not listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(config: Config, *, scheduler: str = "local", max_cores: int = 0, max_ram: int = 0,
          foreground: bool = True, debug: bool = False,
          announce: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run the manager until it is told to stop. Returns the process exit code."""
    # Only the manager's user may look inside its directory, whatever the umask (issue 13).
    config.manager_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(config.manager_dir, 0o700)
    os.umask(config.umask)
    setup_logging(config.log_file, foreground=foreground, debug=debug)
    other = running_pid(config)
    if other is not None and other != os.getpid():
        log.error("wr manager on port %s is already running (pid %d)",
                  config.manager_port, other)
        return 1
    write_private(config.pid_file, f"{os.getpid()}\n".encode(), 0o600)
    with contextlib.suppress(FileNotFoundError):
        info_path(config).unlink()
    try:
        import uvloop

        return uvloop.run(_main(config, scheduler, max_cores, max_ram, announce))
    except WrError as exc:
        log.error("wr manager failed to start: %s", exc.message)
        return 1
    except Exception:
        log.critical("wr manager exited unexpectedly", exc_info=True)
        return 1
    finally:
        with contextlib.suppress(OSError):
            if config.pid_file.read_text().strip() == str(os.getpid()):
                config.pid_file.unlink()


async def _main(config: Config, scheduler_name: str, max_cores: int, max_ram: int,
                announce: Callable[[dict[str, Any]], None] | None) -> int:
    from wr.manager.core import Manager

    # A manager holds many long-lived job records: let the collector run less often, from
    # the start (loading a million records, or a 100k-job POST, spends most of its time in
    # collections that find nothing to free otherwise).
    gc.set_threshold(50_000, 20, 100)
    token, reused = load_or_create_token(config.token_file)
    if reused:
        log.info("will re-use the existing token in %s", config.token_file)
    if ensure_certificates(config.ca_file, config.cert_file, config.key_file,
                           config.cert_domain):
        log.info("created a new key and certificate for TLS")
    store = _open_store(config)
    host = "127.0.0.1" if config.manager_host in ("localhost", "127.0.0.1") else "0.0.0.0"
    manager_sock = _bind(host, config.manager_port)
    web_sock = _bind(host, config.manager_web)
    manager_port = manager_sock.getsockname()[1]
    web_port = web_sock.getsockname()[1]
    scheduler = _scheduler(config, scheduler_name, max_cores, max_ram)
    manager = Manager(config, store=store, scheduler=scheduler,
                      manager_port=manager_port, web_port=web_port)
    await scheduler.start()
    # Loading the queue makes no garbage cycles, and collections during it found none: a
    # third of reading 300,000 records went on them (issue 17).
    gc.disable()
    try:
        await manager.start()
    finally:
        gc.enable()
    # Keep the collector off the long-lived records start-up loaded (see _main's start).
    gc.freeze()
    serving = await _serve(config, manager, token, [manager_sock, web_sock])
    if serving is None:
        return 1
    gate, server, served = serving

    stop = asyncio.Event()
    reason = {"why": ""}
    manager.on_drained = lambda: (reason.update(why="following a drain"), stop.set())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (reason.update(why=signal.Signals(s).name),
                                                    stop.set()))
    _started(config, manager_port, web_port, scheduler.name, announce)
    await stop.wait()
    log.info("wr manager stopping (received %s)", reason["why"])
    try:
        await manager.shutdown(grace=15.0)
    finally:
        gate.close()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(served, 10)
        store.close()
        with contextlib.suppress(FileNotFoundError):
            info_path(config).unlink()
    _stopped(config, manager_port, reason["why"])
    return 0


def _open_store(config: Config) -> Store:
    """The deployment's database, open (production keeps a backup; development starts
    afresh each time)."""
    from wr.store import Store

    backup = config.db_bk_file if config.deployment == "production" else None
    if config.deployment == "development":
        for path in (config.db_file, config.db_bk_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    store = Store(config.db_file, backup, backup_interval=config.backup_interval)
    for message in store.open():
        log.info("%s", message)
    return store


def _scheduler(config: Config, name: str, max_cores: int, max_ram: int) -> Scheduler:
    """The scheduler ``wr manager start -s`` named (not started yet)."""
    if name == "local":
        from wr.schedulers.local import LocalScheduler

        return LocalScheduler(max_cores=max_cores, max_ram=max_ram)
    if name == "slurm":
        from wr.schedulers.slurm import SlurmScheduler

        return SlurmScheduler(
            manager_dir=config.manager_dir, deployment=config.deployment,
            partition=config.slurm_partition, account=config.slurm_account,
            options=config.slurm_options)
    if name == "external":
        from wr.schedulers.external import ExternalScheduler

        return ExternalScheduler()
    raise ConfigError(f"scheduler '{name}' is not available; use local, slurm or external")


async def _serve(config: Config, manager: Manager, token: str,
                 sockets: list[socket.socket]) -> tuple[Any, Any, asyncio.Future[Any]] | None:
    """Serve the app on ``sockets`` through the gate; returns the gate, the uvicorn server
    and its serving task, or None if the server ended before it started."""
    import uvicorn

    from wr.manager.app import build_app

    app = build_app(manager, token, max_body=config.max_body_size)
    gate, http, ws = _gate(config)
    ws = _runner_wire(ws, manager, token)
    uv_config = uvicorn.Config(
        app, http=http, ws=ws, lifespan="off", log_config=None,
        access_log=False, timeout_graceful_shutdown=3, ws_max_size=WS_MAX_SIZE,
        ws_ping_interval=None, ws_per_message_deflate=False,
    )
    server = _Server(uv_config)
    # The gate accepts on both sockets and does TLS, so that it can count connections from
    # their accept (issue 13); uvicorn runs each connection once TLS is up.
    serving = asyncio.ensure_future(server.serve(sockets=[]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if serving.done():
        serving.result()
        return None
    gate.serve(sockets, functools.partial(
        uv_config.http_protocol_class, config=uv_config, server_state=server.server_state,
        app_state=server.lifespan.state))
    return gate, server, serving


def _started(config: Config, manager_port: int, web_port: int, scheduler: str,
             announce: Callable[[dict[str, Any]], None] | None) -> None:
    """Say the manager is ready: ``manager.info`` (what ``wr manager start`` waits for),
    the log, and ``announce``."""
    info = {
        "pid": os.getpid(), "port": manager_port, "web_port": web_port,
        "host": config.cert_domain, "started": time.time(), "version": __version__,
        "scheduler": scheduler,
    }
    write_private(info_path(config), orjson.dumps(info), 0o600)
    log.info("wr manager started on %s:%d, pid %d", config.cert_domain, manager_port,
             os.getpid())
    if announce is not None:
        announce(info)


def _stopped(config: Config, manager_port: int, why: str) -> None:
    """The last words of a manager that stopped cleanly; after a drain its token goes too
    (no runner is left to report with it)."""
    if why == "following a drain":
        with contextlib.suppress(FileNotFoundError):
            config.token_file.unlink()
        log.info("wr manager on %s:%d gracefully stopped following a drain",
                 config.cert_domain, manager_port)
    else:
        log.info("wr manager on %s:%d gracefully stopped (received %s)", config.cert_domain,
                 manager_port, why)


def _runner_wire(ws: type[Any], manager: Any, token: str) -> type[Any]:
    """Runners' websockets served below ASGI (issue 16, wr.manager.runner_wire); the
    page's through ``ws``."""
    from wr.manager.runner_wire import switching
    from wr.manager.runner_ws import PATH, RunnerEndpoint

    return switching(ws, PATH, RunnerEndpoint(manager, token), max_size=WS_MAX_SIZE)


def _gate(config: Config) -> tuple[Any, type[Any], type[Any]]:
    """The gate on both ports (at most ``maxconnections`` open, within the descriptor
    limit, raised to its hard limit first) and the protocol classes that report to it."""
    from wr.manager.gate import Gate, connection_cap, gated_protocols, raise_descriptor_limit
    from wr.manager.guard import guarded
    from wr.security import server_ssl_context

    limit = raise_descriptor_limit()
    cap, warning = connection_cap(config.max_connections, limit)
    if warning:
        log.warning("%s", warning)
    context = server_ssl_context(config.cert_file, config.key_file)
    gate = Gate(cap, context, handshake_timeout=config.client_timeout or 60.0)
    http, ws = gated_protocols(gate, guarded(config.client_timeout))
    log.info("accepting at most %d connections (open files limit %d)", cap, limit)
    return gate, http, ws


class _Server:
    """uvicorn's server without its own signal handling: we stop in our own order."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # type: ignore[override]
                yield

        return Server(config)
