"""Running a job's command with its unix `group` as the effective group (issue 15).

wr started `newgrp <group>` and fed it the command text on standard input (spec
containers-mounts-lsf-env.md §3), so a command that reads stdin ate the rest of its own
script, and an unknown group only failed as "command exited non-zero", retried. We run
`sg <group> -c 'exec <shell> -c <command>'`: the same set-group-id program (sg is newgrp's
other name), the job's own shell, standard input left alone. A group that does not exist on
the runner's host, or that the runner's user may not switch to, buries the job at once with
a FailReason naming the group, before anything runs. A job whose group is already the
runner's effective group runs as it is.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
from collections.abc import Sequence

from wr.jobs import FailReason


def _failure(reason: str, detail: str) -> Exception:
    """An ExecSetupError that buries (imported late: execute.py imports this module)."""
    from wr.execute import ExecSetupError, Outcome

    return ExecSetupError(reason, detail, Outcome.BURY)


def resolve_group(group: str) -> grp.struct_group:
    """The group named `group` (or with that number), or ExecSetupError naming it."""
    try:
        return grp.getgrnam(group)
    except KeyError:
        pass
    if group.isdigit():
        try:
            return grp.getgrgid(int(group))
        except KeyError:
            pass
    raise _failure(f"{FailReason.START}: unix group '{group}' does not exist",
                   f"the job asks to run as unix group '{group}', which this host does not "
                   f"know; the command was not run")


def may_switch_to(entry: grp.struct_group) -> bool:
    """Whether sg will let this process's user take the group without a password: root
    may take any; others only groups they belong to."""
    if os.geteuid() == 0 or entry.gr_gid == os.getgid() or entry.gr_gid in os.getgroups():
        return True
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return False
    return user in entry.gr_mem


def in_group(group: str, argv: Sequence[str], path: str | None) -> list[str]:
    """`argv`, to be run with `group` as its effective (and real) group id.

    `path` is the PATH of the command's environment, where `sg` is looked for.
    Raises ExecSetupError (bury) if the group is unknown, not open to us, or sg is missing.
    """
    entry = resolve_group(group)
    if entry.gr_gid == os.getegid():
        return list(argv)
    if not may_switch_to(entry):
        user = _user_name()
        raise _failure(f"{FailReason.START}: not a member of unix group '{entry.gr_name}'",
                       f"user {user} is not a member of unix group '{entry.gr_name}', so "
                       f"the command cannot run as that group; the command was not run")
    sg = shutil.which("sg", path=path)
    if not sg:
        raise _failure(f"{FailReason.START}: sg not found for unix group '{entry.gr_name}'",
                       f"running as unix group '{entry.gr_name}' needs the sg command "
                       f"(from the login/shadow package), which is not on PATH {path!r}")
    return [sg, entry.gr_name, "-c", "exec " + shlex.join(argv)]


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
