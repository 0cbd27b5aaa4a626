"""Settings: defaults, `.wr_config[.<deployment>].yml` files and `WR_*` variables, resolved once.

Every CLI invocation and the manager resolve the same files the same way, so a client finds
the manager its user configured. Loading is pure: the environment, home directory, current
directory and uid are arguments, never read from the process, so tests pass plain dicts and
the daemoniser can hand a child exactly the config its parent resolved (`Config.as_environ`).

Precedence, lowest first (spec §2.2):

1. the defaults in `SETTINGS`;
2. `$WR_CONFIG_DIR/.wr_config.yml`, then `$WR_CONFIG_DIR/.wr_config.<deployment>.yml`;
3. `~/.wr_config.yml`, then `~/.wr_config.<deployment>.yml`;
4. `./.wr_config.yml`, then `./.wr_config.<deployment>.yml`;
5. `WR_<SETTING>` environment variables, which beat every file.

Then (spec §2.2 step 4): `managerdir` gets `~/` expanded and `_<deployment>` appended, relative
file settings are placed inside it, and unset ports are derived from the uid (§2.4).

Deliberate differences from wr: `managerumask` is octal wherever it comes from (wr read
`WR_MANAGERUMASK` as decimal); a configured `managerweb` is always honoured; a uid too large
for the default ports is an error asking for explicit ports, not an interactive prompt; a
relative `managerdir` is taken relative to the current directory, so the daemon (which runs
in `/`) sees the same one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, cast

from wr.errors import ConfigError

DEPLOYMENTS = ("production", "development")
"""The deployments that can run side by side, each with its own directory and ports."""

SCHEDULERS = ("local", "slurm", "external")
"""Values accepted for `managerscheduler`."""

Kind = Literal["port", "text", "name", "dir", "path", "umask", "seconds", "bytes", "count",
               "scheduler"]


@dataclass(frozen=True, slots=True)
class Setting:
    """One configurable value: its yaml key, default, help and how its text is read."""

    name: str
    """The yaml key; the environment variable is `WR_` + name.upper()."""
    default: str | None
    """The default as it would be written in a config file; None means derived (ports)."""
    help: str
    """One line for `wr conf` and the docs."""
    kind: Kind
    """How the text is parsed and validated (see `_KINDS`)."""
    attr: str
    """The `Config` attribute that holds the parsed value."""

    @property
    def env_var(self) -> str:
        return "WR_" + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("managerport", None, "Port of the manager's runner/CLI socket; 0 picks a free one "
            "(default 1021 + 4*uid, +2 for development).", "port", "manager_port"),
    Setting("managerweb", None, "Port of the HTTPS web page and REST API; 0 picks a free one "
            "(default 1022 + 4*uid, +2 for development).", "port", "manager_web"),
    Setting("managerhost", "localhost", "Host clients connect to.", "name", "manager_host"),
    Setting("managerdir", "~/.wr", "Manager's directory; `_<deployment>` is appended.",
            "dir", "manager_dir"),
    Setting("managerpidfile", "pid", "Pid file of the running manager.", "path", "pid_file"),
    Setting("managerlogfile", "log", "Manager's log file.", "path", "log_file"),
    Setting("managerdbfile", "db", "Manager's database.", "path", "db_file"),
    Setting("managerdbbkfile", "db_bk", "Backup copy of the database (production only).",
            "path", "db_bk_file"),
    Setting("managertokenfile", "client.token", "File holding the access token; put it on "
            "shared disk if runners run on other hosts.", "path", "token_file"),
    Setting("manageruploaddir", "uploads", "Directory for uploaded files.", "path", "upload_dir"),
    Setting("managerumask", "007", "Umask of the manager daemon, in octal.", "umask", "umask"),
    Setting("managerscheduler", "local", "Default scheduler of `wr manager start`.",
            "scheduler", "scheduler"),
    Setting("managercafile", "ca.pem", "CA certificate clients trust.", "path", "ca_file"),
    Setting("managercertfile", "cert.pem", "Manager's TLS certificate.", "path", "cert_file"),
    Setting("managerkeyfile", "key.pem", "Manager's TLS private key.", "path", "key_file"),
    Setting("managercertdomain", "localhost", "Name clients verify in the manager's "
            "certificate; the DNS name of a generated one.", "name", "cert_domain"),
    Setting("runnerexecshell", "bash", "Shell that runs commands (`<shell> -c <cmd>`).",
            "name", "runner_exec_shell"),
    Setting("containerruntime", "auto", "Docker-compatible command that runs with_docker jobs: "
            "auto (podman if installed, else docker), podman, docker, or a path to one.",
            "name", "container_runtime"),
    Setting("ttr", "60", "Seconds without a keep-alive before a running job is lost.",
            "seconds", "ttr"),
    Setting("touchinterval", "15", "Seconds between a runner's keep-alives.",
            "seconds", "touch_interval"),
    Setting("retrydelaymin", "30", "Seconds before the first automatic retry of a failed job.",
            "seconds", "retry_delay_min"),
    Setting("retrydelaymax", "1800", "Longest delay, in seconds, before an automatic retry.",
            "seconds", "retry_delay_max"),
    Setting("runneridletimeout", "2", "Seconds a runner waits for a job of its group before "
            "exiting.", "seconds", "runner_idle_timeout"),
    Setting("backupinterval", "30", "Seconds between database backups (production only).",
            "seconds", "backup_interval"),
    Setting("maxbodysize", "268435456", "Largest REST request body, in bytes.",
            "bytes", "max_body_size"),
    Setting("clienttimeout", "30", "Seconds a client may take to send a request's headers, "
            "or pause while sending its body, before its connection is closed.", "seconds",
            "client_timeout"),
    Setting("maxconnections", "0", "Most client connections (runners' included) open at once "
            "on both ports; past it, idle and unfinished ones are closed, oldest first. 0: "
            "automatic (the open-files limit less up to 1024 kept for files, at most 32768).",
            "count", "max_connections"),
    Setting("slurmpartition", "", "Slurm partition for runners (empty: Slurm's default).",
            "text", "slurm_partition"),
    Setting("slurmaccount", "", "Slurm account for runners (empty: Slurm's default).",
            "text", "slurm_account"),
    Setting("slurmoptions", "", "Extra sbatch options for runners.", "text", "slurm_options"),
)

SETTINGS_BY_NAME: Mapping[str, Setting] = MappingProxyType({s.name: s for s in SETTINGS})


@dataclass(frozen=True, slots=True)
class Config:
    """The resolved settings of one deployment; every path is absolute."""

    deployment: str
    manager_dir: Path
    manager_port: int
    manager_web: int
    manager_host: str
    pid_file: Path
    log_file: Path
    db_file: Path
    db_bk_file: Path
    token_file: Path
    upload_dir: Path
    umask: int
    scheduler: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    cert_domain: str
    runner_exec_shell: str
    container_runtime: str
    ttr: float
    touch_interval: float
    retry_delay_min: float
    retry_delay_max: float
    runner_idle_timeout: float
    backup_interval: float
    max_body_size: int
    client_timeout: float
    max_connections: int
    slurm_partition: str
    slurm_account: str
    slurm_options: str
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Setting name -> what set it last: "default", "env WR_X" or a config file's path."""

    def as_environ(self) -> dict[str, str]:
        """`WR_*` variables that make `load_config` reproduce this config in a child process.

        Variables beat config files, so the child resolves the same values whatever its
        current directory; `managerdir` is given without its `_<deployment>` suffix, since
        loading appends it.
        """
        env = {"WR_DEPLOYMENT": self.deployment}
        suffix = "_" + self.deployment
        for setting in SETTINGS:
            value = getattr(self, setting.attr)
            if setting.kind == "dir":
                text = str(value).removesuffix(suffix)
            elif setting.kind == "umask":
                text = format(value, "03o")
            else:
                text = str(value)
            env[setting.env_var] = text
        return env


def default_deployment(environ: Mapping[str, str]) -> str:
    """`WR_DEPLOYMENT` if it names a deployment exactly, else production.

    wr also chose development inside its own source checkout; we don't, so a directory's
    contents never silently switch which manager a command talks to.
    """
    chosen = environ.get("WR_DEPLOYMENT", "")
    return chosen if chosen in DEPLOYMENTS else "production"


def config_files(deployment: str, environ: Mapping[str, str], home: Path, cwd: Path) -> list[Path]:
    """The config files consulted, lowest precedence first (whether or not they exist)."""
    dirs = []
    config_dir = environ.get("WR_CONFIG_DIR", "")
    if config_dir:
        dirs.append(_absolute(config_dir, home, cwd))
    dirs += [home, cwd]
    return [d / name for d in dirs for name in (".wr_config.yml", f".wr_config.{deployment}.yml")]


def load_config(
    deployment: str | None = None,
    *,
    environ: Mapping[str, str],
    home: Path,
    cwd: Path,
    uid: int,
) -> Config:
    """Resolve every setting for `deployment` (default: `default_deployment(environ)`).

    Raises ConfigError for an unknown deployment, a config file that cannot be read or
    parsed, or a value that is not valid for its setting.
    """
    if deployment is None:
        deployment = default_deployment(environ)
    if deployment not in DEPLOYMENTS:
        raise ConfigError(
            f"Deployment '{deployment}' is not valid. Use one of: {', '.join(DEPLOYMENTS)}."
        )
    home, cwd = Path(home), Path(cwd)
    raw, sources = _raw_values(deployment, environ, home, cwd)
    values = _parse_values(raw, sources)
    manager_dir = Path(str(_absolute(values["managerdir"], home, cwd)) + "_" + deployment)
    attrs: dict[str, object] = {"deployment": deployment, "sources": MappingProxyType(sources)}
    for setting in SETTINGS:
        value = values[setting.name]
        if setting.kind == "dir":
            value = manager_dir
        elif setting.kind == "path":
            value = _absolute(value, home, manager_dir)
        attrs[setting.attr] = value
    attrs["manager_port"], attrs["manager_web"] = _ports(
        deployment, uid, cast("int | None", values["managerport"]),
        cast("int | None", values["managerweb"]),
    )
    return Config(**attrs)


def _raw_values(deployment: str, environ: Mapping[str, str], home: Path,
                cwd: Path) -> tuple[dict[str, object], dict[str, str]]:
    """Every setting's value as given (defaults, then config files, then the environment,
    each winning over the last), and where each came from."""
    raw: dict[str, object] = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    for path in config_files(deployment, environ, home, cwd):
        for key, value in _read_yaml(path).items():
            if key in SETTINGS_BY_NAME:
                raw[key] = value
                sources[key] = str(path)
    for setting in SETTINGS:
        if setting.env_var in environ:
            raw[setting.name] = environ[setting.env_var]
            sources[setting.name] = "env " + setting.env_var
    return raw, sources


def _parse_values(raw: dict[str, object], sources: dict[str, str]) -> dict[str, object]:
    """Each setting's value parsed for its kind; ConfigError names the first bad one, its
    source, and what is accepted."""
    values: dict[str, object] = {}
    for setting in SETTINGS:
        parse, accepted = _KINDS[setting.kind]
        value = raw[setting.name]
        try:
            if value is not None and not isinstance(value, str):
                raise ValueError(value)
            values[setting.name] = parse(value) if value is not None else None
        except ValueError:
            shown = value if isinstance(value, str) else repr(value)
            raise ConfigError(
                f"Config '{setting.name}' has value '{shown}' (from {sources[setting.name]}). "
                f"{accepted}"
            ) from None
    return values


def load_config_from_process(deployment: str | None = None) -> Config:
    """`load_config` with this process's environment, home, current directory and uid."""
    return load_config(
        deployment, environ=os.environ, home=Path.home(), cwd=Path.cwd(), uid=os.getuid()
    )


def _ports(deployment: str, uid: int, port: int | None, web: int | None) -> tuple[int, int]:
    """Configured ports win; unset ones come from the uid (spec §2.4).

    wr overwrote a configured web port whenever the manager port was derived; we keep it.
    """
    if port is not None and web is not None:
        return port, web
    if 1021 + 4 * uid + 3 > 65535:
        raise ConfigError(
            f"The default ports for uid {uid} (1021 + 4 * uid) would be beyond 65535; please "
            "set the managerport and managerweb config options (or WR_MANAGERPORT and "
            "WR_MANAGERWEB) for each deployment."
        )
    base = 1021 + 4 * uid + (2 if deployment == "development" else 0)
    return (base if port is None else port), (base + 1 if web is None else web)


def _absolute(value: object, home: Path, base: Path) -> Path:
    """Expand a leading `~` against `home`; a relative result is placed inside `base`."""
    text = str(value)
    path = home / text[2:] if text == "~" or text.startswith("~/") else Path(text)
    return path if path.is_absolute() else base / path


def _read_yaml(path: Path) -> dict[str, object]:
    """A config file's settings with lower-cased keys; {} if the file does not exist.

    Scalars are read as text (YAML's base loader), so `managerumask: 022` and
    `WR_MANAGERUMASK=022` mean the same, and every value goes through one parser.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} could not be read: {exc}") from None

    import yaml  # only when a file exists: keeps `wr` start-up light

    try:
        data = yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from None
    if data is None or data == "":
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must be a mapping of setting: value lines.")
    return {str(key).lower(): value for key, value in data.items()}


def _parse_port(text: str) -> int | None:
    if text.strip() == "":
        return None  # unset: derived from the uid
    port = _parse_whole(text)
    if port > 65535:
        raise ValueError(text)
    return port


def _parse_umask(text: str) -> int:
    text = text.strip()
    if text.lower().startswith("0o"):
        text = text[2:]
    if not text or not set(text) <= set("01234567"):
        raise ValueError(text)
    umask = int(text, 8)
    if umask > 0o777:
        raise ValueError(text)
    return umask


def _parse_seconds(text: str) -> float:
    seconds = float(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(text)
    return seconds


def _parse_bytes(text: str) -> int:
    size = _parse_whole(text)
    if size < 1:
        raise ValueError(text)
    return size


def _parse_whole(text: str) -> int:
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        raise ValueError(text)
    return int(text)


def _parse_name(text: str) -> str:
    if not text.strip():
        raise ValueError(text)
    return text.strip()


def _parse_path(text: str) -> str:
    if not text.strip():
        raise ValueError(text)
    if "://" in text:
        raise ValueError(text)  # wr allowed s3:// backups; we have no remote storage
    return text


def _parse_scheduler(text: str) -> str:
    if text not in SCHEDULERS:
        raise ValueError(text)
    return text


_KINDS: Mapping[str, tuple[Callable[[str], object], str]] = MappingProxyType({
    "port": (_parse_port, "Not a valid port: use a whole number from 0 to 65535 "
                          "(0 picks a free port), or leave it empty for the default."),
    "text": (str, "Not valid text."),
    "name": (_parse_name, "Must not be empty."),
    "dir": (_parse_path, "Not a valid directory: give a path, which may start with ~/."),
    "path": (_parse_path, "Not a valid file path: give an absolute path, or one relative "
                          "to managerdir."),
    "umask": (_parse_umask, "Not a valid umask: use an octal number from 000 to 777, "
                            "such as 007 or 022."),
    "seconds": (_parse_seconds, "Not a valid number of seconds: use a number of 0 or more, "
                                "such as 30 or 0.5."),
    "bytes": (_parse_bytes, "Not a valid size: use a whole number of bytes greater than 0."),
    "count": (_parse_whole, "Not a valid count: use a whole number, 0 or more."),
    "scheduler": (_parse_scheduler, f"Not a known scheduler: use one of "
                                    f"{', '.join(SCHEDULERS)}."),
})


# -- what a running manager says about itself ------------------------------------------------

INFO_FILE = "manager.info"
"""Written by a started manager into its directory: its pid, ports and version."""


def info_path(config: Config) -> Path:
    return config.manager_dir / INFO_FILE


def read_info(config: Config) -> dict[str, object] | None:
    """What a running manager wrote about itself, or None."""
    import orjson

    try:
        return orjson.loads(info_path(config).read_bytes())
    except (OSError, ValueError):
        return None
