"""``wr manager start|stop|status|drain|pause|resume|backup``: run and control the manager
daemon (spec cli §1.1)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import click

from wr.cli.options import deployment_option, info, load
from wr.config import Config


@click.group()
def manager() -> None:
    """Start, stop and inspect the manager daemon that holds the job queue."""


def _announce(config: Config, details: dict) -> None:
    token = config.token_file.read_text().strip()
    info(f"wr manager started on {config.cert_domain}:{details['port']}, pid {details['pid']}")
    info(f"wr's web interface can be reached at "
         f"https://{config.cert_domain}:{details['web_port']}/?token={token}")


@manager.command()
@click.option("-f", "--foreground", is_flag=True, help="do not daemonize")
@click.option("-s", "--scheduler", default=None,
              help="where jobs run: local, slurm, or external (runners you start yourself) "
                   "(default: the managerscheduler setting)")
@click.option("-t", "--timeout", default=60, show_default=True, type=click.IntRange(1),
              help="seconds to wait for the daemon to come up")
@click.option("--max_cores", default=0, type=int,
              help="local scheduler: cores jobs may use (default: all)")
@click.option("--max_ram", default=0, type=int,
              help="local scheduler: MB of memory jobs may use (default: all)")
@click.option("--slurm_partition", default=None,
              help="slurm scheduler: partition for runners (default: the slurmpartition "
                   "setting, else the first partition that fits)")
@click.option("--slurm_account", default=None,
              help="slurm scheduler: account for runners (default: the slurmaccount setting)")
@click.option("--slurm_options", default=None,
              help="slurm scheduler: extra sbatch options, e.g. '--qos=long' (default: the "
                   "slurmoptions setting)")
@click.option("--debug", is_flag=True, help="log debug messages too")
@deployment_option
def start(foreground: bool, scheduler: str | None, timeout: int, max_cores: int,
          max_ram: int, slurm_partition: str | None, slurm_account: str | None,
          slurm_options: str | None, debug: bool, deployment: str | None) -> None:
    """Start the manager: a daemon that keeps the queue and runs its jobs."""
    import dataclasses

    from wr.config import SCHEDULERS, read_info
    from wr.manager.server import running_pid, serve

    config = load(deployment)
    scheduler = scheduler or config.scheduler
    if scheduler not in SCHEDULERS:
        raise click.BadParameter(f"'{scheduler}' is not a scheduler wr has here; use one of "
                                 f"{', '.join(SCHEDULERS)}", param_hint="--scheduler")
    slurm = {"slurm_partition": slurm_partition, "slurm_account": slurm_account,
             "slurm_options": slurm_options}
    # The daemon inherits these through config.as_environ() (WR_SLURM* variables).
    config = dataclasses.replace(config, **{k: v for k, v in slurm.items() if v is not None})
    pid = running_pid(config)
    if pid is not None:
        raise click.ClickException(
            f"wr manager on port {_port(config)} is already running (pid {pid})")
    config.manager_dir.mkdir(parents=True, exist_ok=True)
    if foreground:
        code = serve(config, scheduler=scheduler, max_cores=max_cores, max_ram=max_ram,
                     foreground=True, debug=debug, announce=lambda d: _announce(config, d))
        sys.exit(code)
    argv = [sys.executable, "-m", "wr.cli.main", "manager", "start", "--foreground",
            "--deployment", config.deployment, "--scheduler", scheduler,
            "--max_cores", str(max_cores), "--max_ram", str(max_ram)]
    if debug:
        argv.append("--debug")
    env = {**os.environ, **config.as_environ(), "WR_DAEMON": "1"}
    proc = subprocess.Popen(argv, env=env, cwd="/", start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        details = read_info(config)
        if details and details.get("pid") == proc.pid:
            _announce(config, details)
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    from wr.manager.logs import errors_since_start

    for line in errors_since_start(config.log_file):
        click.echo(line, err=True)
    if proc.poll() is None:
        proc.terminate()
    raise click.ClickException(
        f"wr manager failed to start on port {_port(config)} after {timeout}s")


def _port(config: Config) -> int:
    from wr.config import read_info

    details = read_info(config) or {}
    return int(details.get("port") or config.manager_port)


@manager.command()
@click.option("--timeout", default=120, show_default=True, type=click.IntRange(1),
              help="seconds to wait for the manager to finish stopping")
@deployment_option
def stop(timeout: int, deployment: str | None) -> None:
    """Stop the manager gracefully: running jobs go back to the queue, nothing is lost."""
    from wr.manager.server import pid_alive, running_pid

    config = load(deployment)
    port = _port(config)
    pid = running_pid(config)
    if pid is None:
        raise click.ClickException(f"wr manager does not seem to be running on port {port}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"wr manager (pid {pid}) on port {port} is still stopping after {timeout}s")
        time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        config.token_file.unlink()
    info(f"wr manager running on port {port} was gracefully shut down")


@manager.command()
@deployment_option
def status(deployment: str | None) -> None:
    """Say whether the manager is running, and where."""
    from wr.client import Client
    from wr.errors import WrError
    from wr.manager.logs import errors_since_start
    from wr.manager.server import running_pid

    config = load(deployment)
    pid = running_pid(config)
    if pid is None:
        click.echo("stopped")
        return
    try:
        with Client.for_deployment(config=config, timeout=5) as client:
            details = client.info()
    except WrError as exc:
        raise click.ClickException(
            f"wr manager on port {_port(config)} is supposed to be running with pid {pid}, "
            f"but is non-responsive ({exc.message})") from exc
    try:
        token = config.token_file.read_text().strip()
    except OSError:
        token = "[missing token]"
    click.echo(details["Mode"])
    click.echo()
    click.echo(f"Status website: https://{config.cert_domain}:{details['WebPort']}/"
               f"?token={token}")
    click.echo(f"Scheduler: {details['Scheduler']}")
    from wr import __version__

    click.echo(f"Version: {__version__}")
    click.echo(f"Host: {details['Addr']}; PID: {details['PID']}")
    click.echo(f"Log file: {config.log_file}")
    errors = errors_since_start(config.log_file)
    if errors:
        click.echo()
        click.echo("Errors in the log:")
        for line in errors:
            click.echo(line)


# -- drain, pause, resume, backup (spec cli §1.1) -------------------------------------------

def _control(deployment: str | None, op: str, unreachable: str) -> tuple[int, dict]:
    """POST /rest/v1/manager/<op>; returns the manager's port and {"Mode", "Running", "ETC"}."""
    from wr.client import Client, ClientError
    from wr.errors import WrError

    config = load(deployment)
    port = _port(config)
    try:
        with Client.for_deployment(config=config, timeout=30) as client:
            return port, getattr(client, op)()
    except ClientError as exc:
        raise click.ClickException(exc.message) from None
    except WrError:
        raise click.ClickException(unreachable.format(port=port)) from None


def _still_running(stats: dict) -> str:
    """wr's "there is a job still running, and it should ..." tail of a drain or pause."""
    from wr.jobs import format_duration

    n, etc = stats["Running"], stats["ETC"]
    should = (f"complete in less than {format_duration(etc)}" if etc > 0
              else "have already completed")
    if n == 1:
        return f"there is a job still running, and it should {should}"
    return f"there are {n} jobs still running, and they should {should}"


@manager.command()
@deployment_option
def drain(deployment: str | None) -> None:
    """Stop the manager once the running commands finish; start no more.

    Nothing is lost: queued commands wait for the next 'wr manager start'. Repeating the
    command reports progress.
    """
    config = load(deployment)
    port, stats = _control(
        deployment, "drain",
        "could not connect to the manager on port {port}, so could not initiate a drain; "
        "has it already been stopped?")
    if stats["Running"] == 0:
        # "manger" is wr's own spelling of this message (spec cli §1.1).
        info(f"wr manager running on port {port} is drained: there were no jobs still "
             f"running, so the manger should stop right away.")
        with contextlib.suppress(FileNotFoundError):
            config.token_file.unlink()
        return
    info(f"wr manager running on port {port} is now draining; {_still_running(stats)}")


@manager.command()
@deployment_option
def pause(deployment: str | None) -> None:
    """Start no more commands until 'wr manager resume'; running ones carry on."""
    port, stats = _control(
        deployment, "pause",
        "could not connect to the manager on port {port}, so could not pause it; has it "
        "been stopped?")
    if stats["Running"] == 0:
        info(f"wr manager running on port {port} is paused: there were no jobs still "
             f"running.")
        return
    info(f"wr manager running on port {port} is now paused; {_still_running(stats)}")


@manager.command()
@deployment_option
def resume(deployment: str | None) -> None:
    """Start commands again after 'wr manager pause'."""
    port, _ = _control(
        deployment, "resume",
        "could not connect to the manager on port {port}, so could not resume it; has it "
        "been stopped?")
    info(f"wr manager running on port {port} has resumed")


@manager.command()
@click.option("-p", "--path", required=True, type=click.Path(dir_okay=False),
              help="file to write the backup to (written as FILE.tmp, then renamed)")
@click.option("--timeout", default=120, show_default=True, type=click.IntRange(1),
              help="how long (seconds) to wait for the manager")
@deployment_option
def backup(path: str, timeout: int, deployment: str | None) -> None:
    """Write a consistent copy of the manager's database to a file.

    To restore it: 'wr manager stop', copy the file over the deployment's db (removing
    db-wal and db-shm beside it), then 'wr manager start'.
    """
    from wr.client import Client
    from wr.errors import WrError

    config = load(deployment)
    try:
        with Client.for_deployment(config=config, timeout=timeout) as client:
            client.backup(path)
    except WrError as exc:
        raise click.ClickException(exc.message.strip()) from None
    except OSError as exc:
        raise click.ClickException(f"could not write the backup to {path}: "
                                   f"{exc.strerror}") from None
    info(f"wr manager's database was backed up to {path}")
