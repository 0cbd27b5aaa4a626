"""``wr mount``: mount S3 buckets by hand, as jobs mount them, to try out mount options.

wr's daemon forks before it even parses its options, so every mistake in a ``wr mount``
disappears with the child's output and relative paths resolve against ``/``
(spec/containers-mounts-lsf-env.md §4.7, §7 item 5). Ours parses and mounts first, in a
detached child that tells its parent over a pipe whether it mounted: the parent reports the
error and exits 1, or says where the mounts are and exits 0, leaving the child to unmount
(uploading) on SIGTERM. Relative and default mount points are resolved against the
directory ``wr mount`` was run in.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import click

HELP = """Mount S3 buckets (or paths inside them) as local directories, the way jobs
mount them with 'wr add --mounts/--mount_json', to test mount options by hand.

Give the mounts with --mounts (-m) in the simple form, a comma-separated list of
[c|u][r|w]:[profile@]bucket[/path] (c = cached, u = uncached; r = read-only, w =
writable, at most one writable), all multiplexed onto ./mnt; or with --mount_json (-j)
as a JSON array of mount configs:

\b
  [{"Mount":"/tmp/wr_mnt","CacheBase":"/tmp","Retries":3,"Verbose":true,
    "Targets":[{"Profile":"default","Path":"mybucket/subdir","Cache":true,
                "CacheDir":"/tmp/cache","Write":true}]}]

Mount is the local directory (default ./mnt; created if missing, must be empty);
CacheBase is where automatic cache directories go (default .); Retries is the retries
per remote call (default 10); Targets are overlaid in one directory. Per target, Profile
names the S3 profile (default $AWS_DEFAULT_PROFILE, else $AWS_PROFILE, else default),
Path the bucket and sub-path, Cache turns on caching, CacheDir fixes the cache
directory (kept afterwards), Write makes it writable.

S3 endpoints and keys come from ~/.s3cfg, ~/.aws/credentials and ~/.aws/config
(host_base, use_https, region, access_key/aws_access_key_id,
secret_key/aws_secret_access_key) and $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY,
$AWS_DEFAULT_REGION. Mounting needs rclone and FUSE (fusermount3).

By default wr mount runs in the background once everything is mounted, printing its
pid; with --foreground it stays. Either way, stop it with SIGTERM (kill <pid>) or,
in the foreground, Ctrl-C: files written to a writable target are uploaded then, and
it waits for the uploads before unmounting. Do not stop it with SIGKILL: writes that
were not uploaded stay in the cache (and are uploaded the next time the same cache
directory is mounted)."""


@click.command(help=HELP)
@click.option("-j", "--mount_json", default="",
              help="mount configs as a JSON array (see above)")
@click.option("-m", "--mounts", default="",
              help="mounts in the simple form [c|u][r|w]:[profile@]bucket[/path],...")
@click.option("-f", "--foreground", is_flag=True,
              help="stay in the foreground instead of running in the background")
@click.option("-v", "--verbose", is_flag=True,
              help="log every remote call to stderr (rclone's INFO level)")
@click.option("--notify_fd", type=int, default=-1, hidden=True,
              help="internal: the background child reports mounting on this pipe")
def mount(mount_json: str, mounts: str, foreground: bool, verbose: bool,
          notify_fd: int) -> None:
    from wr.mounts import JobMounts

    configs = _configs(mount_json, mounts)
    job_mounts = JobMounts(configs, cwd=os.getcwd(), cwd_matters=True,
                           log_to_stderr=verbose)
    if not foreground and notify_fd < 0:
        _detach(job_mounts, verbose)
        return
    code = asyncio.run(_serve(job_mounts, notify_fd))
    sys.exit(code)


def _configs(mount_json: str, mounts: str) -> list[Any]:
    import orjson

    from wr.mounts import MountError, from_json, parse_simple

    if mount_json and mounts:
        raise click.UsageError("--mounts and --mount_json are mutually exclusive")
    if not mount_json and not mounts:
        raise click.UsageError("--mounts or --mount_json is required")
    try:
        if mount_json:
            try:
                decoded = orjson.loads(mount_json)
            except orjson.JSONDecodeError as exc:
                raise click.UsageError(f"had a problem with the provided mount JSON "
                                       f"({mount_json}): {exc}") from None
            configs = from_json(decoded)
        else:
            configs = from_json(parse_simple(mounts))
        for config in configs:
            config.check()
    except MountError as exc:
        raise click.UsageError(f"bad configuration: {exc.message}") from None
    return configs


async def _serve(job_mounts: Any, notify_fd: int) -> int:
    """Mount, say so, wait for SIGTERM or SIGINT, unmount uploading; the exit code."""
    from wr.mounts import MountError

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await job_mounts.mount()
    except MountError as exc:
        _notify(notify_fd, f"could not mount: {exc.message}")
        click.echo(f"Error: could not mount: {exc.message}", err=True)
        return 1
    where = ", ".join(job_mounts.mount_points)
    _notify(notify_fd, "")
    click.echo(f"info: mounted {where}; stop with kill -TERM {os.getpid()} (or Ctrl-C)",
               err=True)
    await stop.wait()
    click.echo("info: unmounting (uploading written files first)", err=True)
    report = await job_mounts.unmount(upload=True)
    for problem in report.problems:
        click.echo(f"Failed to unmount: {problem}" if not report.failed else problem, err=True)
    if report.failed:
        click.echo("Error: not everything written was uploaded", err=True)
        return 1
    click.echo(f"info: unmounted {where}", err=True)
    return 0


def _notify(fd: int, error: str) -> None:
    """Tell the waiting parent (if any) that we mounted ("") or why not."""
    if fd < 0:
        return
    try:
        os.write(fd, (error or "mounted").encode())
    finally:
        os.close(fd)


def _detach(job_mounts: Any, verbose: bool) -> None:
    """Run ourselves in the foreground in a new session, with absolute paths and no
    terminal, and wait until that child has mounted (or failed to)."""
    import orjson

    read_fd, write_fd = os.pipe()
    argv = [sys.executable, "-m", "wr.cli.main", "mount", "--foreground",
            "--mount_json", orjson.dumps(_absolute(job_mounts)).decode(),
            "--notify_fd", str(write_fd)]
    if verbose:
        argv.append("--verbose")
    with open(os.devnull, "r+b") as devnull:
        child = subprocess.Popen(argv, stdin=devnull, stdout=devnull, stderr=devnull,
                                 cwd="/", pass_fds=(write_fd,), start_new_session=True,
                                 close_fds=True)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    said = b"".join(chunks).decode(errors="replace")
    if said != "mounted":
        child.wait()
        raise click.ClickException(said or f"the background wr mount exited with code "
                                           f"{child.returncode} before mounting")
    click.echo(f"info: mounted {', '.join(job_mounts.mount_points)} in the background "
               f"(pid {child.pid}); stop with kill -TERM {child.pid}", err=True)


def _absolute(job_mounts: Any) -> list[dict[str, Any]]:
    """The configs with every directory made absolute, for a child running in /."""
    out = []
    for config, placed in zip(job_mounts.configs, job_mounts.placements, strict=True):
        targets = []
        for t in config.targets:
            target: dict[str, Any] = {"Path": t.path, "Cache": t.cache, "Write": t.write}
            if t.profile:
                target["Profile"] = t.profile
            if t.cache_dir:
                target["CacheDir"] = placed.cache_dir
            targets.append(target)
        out.append({"Mount": placed.mount_point, "CacheBase": placed.cache_base,
                    "Retries": config.retries, "Verbose": config.verbose,
                    "Targets": targets})
    return out
