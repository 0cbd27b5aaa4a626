"""The files a manager owns: private modes, and uploads that cannot replace them (issue 13,
item 9).

The manager here keeps every file it can be told to keep elsewhere *outside* its directory
(db, backup, token, CA, certificate, key, log, pid), runs with umask 000, and starts over a
directory and a log an earlier run left world-readable. Then:

* its directory is 0700, and log, pid and manager.info are 0600;
* ``PUT /rest/v1/upload/?path=`` onto any of its files, by its name, through a symlink, a
  ``..`` or a hard link, is a 400 and leaves the file as it was;
* uploads into ``/proc``, ``/sys`` and ``/dev`` and onto things that are not regular files
  (a FIFO, a socket) are a 400, never a 500.
"""

from __future__ import annotations

import os
import socket
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAST_TIMINGS, ManagerHandle, _descendants_of_home, wait_for

pytestmark = pytest.mark.integration


@dataclass
class ScatteredManager(ManagerHandle):
    """A manager whose files live in several directories outside its own."""

    files: dict[str, Path] | None = None

    @property
    def token(self) -> str:
        assert self.files is not None
        return self.files["token"].read_text().strip()

    @property
    def ca(self) -> str:
        assert self.files is not None
        return str(self.files["ca"])

    def log(self) -> str:
        assert self.files is not None
        try:
            return self.files["log"].read_text(errors="replace")
        except OSError:
            return "(no log)"


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScatteredManager]:
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("elsewhere")
    files = {"db": out / "data" / "db", "db_bk": out / "backups" / "db_bk",
             "token": out / "shared" / "client.token", "ca": out / "tls" / "ca.pem",
             "cert": out / "tls" / "cert.pem", "key": out / "tls" / "key.pem",
             "log": out / "logs" / "log", "pid": out / "run" / "pid"}
    variables = {"db": "WR_MANAGERDBFILE", "db_bk": "WR_MANAGERDBBKFILE",
                 "token": "WR_MANAGERTOKENFILE", "ca": "WR_MANAGERCAFILE",
                 "cert": "WR_MANAGERCERTFILE", "key": "WR_MANAGERKEYFILE",
                 "log": "WR_MANAGERLOGFILE", "pid": "WR_MANAGERPIDFILE"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
    env.update(HOME=str(home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
               WR_DEPLOYMENT="production", WR_MANAGERUMASK="000", **FAST_TIMINGS)
    env.update({variables[name]: str(path) for name, path in files.items()})
    handle = ScatteredManager(home=home, env=env, files=files)
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    # What an earlier, careless run could have left: a world-readable directory and log.
    handle.dir.mkdir(mode=0o777)
    os.chmod(handle.dir, 0o777)
    files["log"].write_text("t=earlier lvl=info msg=\"an earlier run\"\n")
    os.chmod(files["log"], 0o666)
    handle.start()
    yield handle
    handle.stop()
    assert "unexpected error" not in handle.log(), handle.log()
    leftovers = _descendants_of_home(home)
    for pid in leftovers:
        os.kill(pid, 9)
    assert not leftovers, f"processes left behind: {leftovers}\n{handle.log()}"


@pytest.fixture(scope="module")
def api(mgr: ScatteredManager) -> Iterator[httpx.Client]:
    with mgr.http(timeout=30) as c:
        yield c


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def upload(api: httpx.Client, path: str, data: bytes = b"overwritten") -> httpx.Response:
    return api.put("/rest/v1/upload/", params={"path": path}, content=data)


# -- modes ----------------------------------------------------------------------------------

def test_the_directory_and_the_files_that_describe_the_manager_are_private(
        mgr: ScatteredManager) -> None:
    assert mgr.files is not None
    assert mode(mgr.dir) == "0o700"
    modes = {name: mode(path) for name, path in [("log", mgr.files["log"]),
                                                 ("pid", mgr.files["pid"]),
                                                 ("info", mgr.dir / "manager.info")]}
    assert modes == {"log": "0o600", "pid": "0o600", "info": "0o600"}
    assert "an earlier run" in mgr.log()  # tightened, not replaced


# -- uploads onto the manager's files ---------------------------------------------------------

def test_uploads_cannot_replace_any_file_the_manager_owns_wherever_it_is(
        mgr: ScatteredManager, api: httpx.Client, tmp_path: Path) -> None:
    """Steps: add a job and wait for the backup that follows; PUT an upload onto each
    owned file by its path, through a symlink, through ``..``, and through a hard link.
    Expected: 400 naming it as the manager's; every byte and inode as it was; the token
    still works; the db still answers."""
    files = mgr.files
    assert files is not None
    r = api.post("/rest/v1/jobs/", content=b'[{"cmd": "true", "limit_grps": ["hold:0"]}]')
    assert r.status_code == 201, r.text
    wait_for(lambda: files["db_bk"].exists(), what="the first backup (a write makes one due)")
    owned = [p for p in (*files.values(), mgr.dir / "manager.info",
                         files["db"].with_name("db-wal")) if p.exists()]
    assert len(owned) == 10
    before = {p: (p.stat().st_ino, p.read_bytes()) for p in owned if p != files["log"]}
    link = tmp_path / "to-backup"
    link.symlink_to(files["db_bk"])
    hard = files["db_bk"].parent.parent / f"hardlink-{uuid.uuid4().hex}"
    os.link(files["token"], hard)
    dotted = f"{files['key'].parent}/../{files['key'].parent.name}/key.pem"
    try:
        for path in [*map(str, owned), str(link), dotted, str(hard),
                     str(files["db"].with_name("db-journal"))]:
            r = upload(api, path)
            assert r.status_code == 400, (path, r.text)
            assert "is the manager's" in r.text or "manager's directory" in r.text, r.text
            assert repr(path) in r.text
    finally:
        hard.unlink()
    after = {p: (p.stat().st_ino, p.read_bytes()) for p in before}
    assert after == before
    assert not files["db"].with_name("db-journal").exists()
    assert "overwritten" not in mgr.log()
    assert api.get("/rest/v1/info/").status_code == 200
    assert api.get("/rest/v1/jobs/").status_code == 200


def test_uploads_elsewhere_still_work(api: httpx.Client, tmp_path: Path) -> None:
    r = upload(api, str(tmp_path / "new" / "file"), b"content")
    assert r.status_code == 200, r.text
    assert (tmp_path / "new" / "file").read_bytes() == b"content"


# -- kernel files and things that are not regular files ---------------------------------------

@pytest.mark.parametrize("path", [
    "/proc/self/mem", "/proc/self/environ", f"/proc/wr-test-{uuid.uuid4().hex}",
    f"/sys/wr-test-{uuid.uuid4().hex}", f"/dev/wr-test-{uuid.uuid4().hex}",
    f"/dev/shm/wr-test-{uuid.uuid4().hex}",
], ids=["proc-mem", "proc-environ", "proc-new", "sys-new", "dev-new", "dev-shm"])
def test_uploads_into_kernel_and_device_file_systems_are_client_errors(
        api: httpx.Client, path: str) -> None:
    try:
        r = upload(api, path)
        assert r.status_code == 400, r.text
        assert repr(path) in r.text and "regular files" in r.text, r.text
        if not path.startswith(("/proc/self", "/sys")):
            assert not os.path.lexists(path)
    finally:
        if path.startswith("/dev/") and os.path.lexists(path):
            os.unlink(path)  # only ever made by a broken guard


def test_uploads_onto_a_fifo_or_a_socket_are_client_errors(api: httpx.Client,
                                                           tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        for path, check in ((fifo, stat.S_ISFIFO), (sock_path, stat.S_ISSOCK)):
            r = upload(api, str(path))
            assert r.status_code == 400, r.text
            assert "not a regular file" in r.text, r.text
            assert check(path.lstat().st_mode)
