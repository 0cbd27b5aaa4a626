from dataclasses import fields
from pathlib import Path

import pytest

from wr.config import (
    SETTINGS,
    Config,
    config_files,
    default_deployment,
    load_config,
)
from wr.errors import ConfigError, WrError


@pytest.fixture
def dirs(tmp_path):
    """A home, a current directory and a WR_CONFIG_DIR, all empty."""
    home, cwd, conf = tmp_path / "home", tmp_path / "cwd", tmp_path / "conf"
    for d in (home, cwd, conf):
        d.mkdir()
    return home, cwd, conf


def load(dirs, deployment=None, environ=None, uid=1000):
    home, cwd, conf = dirs
    env = {"WR_CONFIG_DIR": str(conf), **(environ or {})}
    return load_config(deployment, environ=env, home=home, cwd=cwd, uid=uid)


def write(path: Path, text: str) -> None:
    path.write_text(text)


def test_every_setting_has_a_config_attribute():
    attrs = {f.name for f in fields(Config)}
    assert attrs == {s.attr for s in SETTINGS} | {"deployment", "sources"}
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)
    assert all(s.name == s.name.lower() and s.help for s in SETTINGS)


def test_defaults(dirs):
    home = dirs[0]
    config = load(dirs)
    manager_dir = home / ".wr_production"
    assert config.deployment == "production"
    assert config.manager_dir == manager_dir
    assert config.manager_host == "localhost"
    assert config.pid_file == manager_dir / "pid"
    assert config.log_file == manager_dir / "log"
    assert config.db_file == manager_dir / "db"
    assert config.db_bk_file == manager_dir / "db_bk"
    assert config.token_file == manager_dir / "client.token"
    assert config.upload_dir == manager_dir / "uploads"
    assert config.ca_file == manager_dir / "ca.pem"
    assert config.cert_file == manager_dir / "cert.pem"
    assert config.key_file == manager_dir / "key.pem"
    assert config.umask == 0o007
    assert config.scheduler == "local"
    assert config.cert_domain == "localhost"
    assert config.runner_exec_shell == "bash"
    assert (config.ttr, config.touch_interval) == (60.0, 15.0)
    assert (config.retry_delay_min, config.retry_delay_max) == (30.0, 1800.0)
    assert (config.runner_idle_timeout, config.backup_interval) == (2.0, 30.0)
    assert config.max_body_size == 268435456
    assert (config.slurm_partition, config.slurm_account, config.slurm_options) == ("", "", "")
    assert set(config.sources.values()) == {"default"}
    assert set(config.sources) == {s.name for s in SETTINGS}


@pytest.mark.parametrize(
    ("uid", "deployment", "ports"),
    [
        (1000, "production", (5021, 5022)),
        (1000, "development", (5023, 5024)),
        (2570, "production", (11301, 11302)),
        (2570, "development", (11303, 11304)),
        (0, "production", (1021, 1022)),
        (16127, "development", (65531, 65532)),
    ],
)
def test_default_ports(dirs, uid, deployment, ports):
    config = load(dirs, deployment, uid=uid)
    assert (config.manager_port, config.manager_web) == ports
    assert config.manager_dir == dirs[0] / f".wr_{deployment}"


def test_uid_too_large_for_default_ports(dirs):
    """1021 + 4 * 16128 + 3 = 65536: even production refuses, so both deployments agree."""
    with pytest.raises(ConfigError, match="set the managerport and managerweb"):
        load(dirs, uid=16128)
    with pytest.raises(ConfigError):
        load(dirs, uid=16128, environ={"WR_MANAGERPORT": "4000"})
    config = load(dirs, uid=16128, environ={"WR_MANAGERPORT": "4000", "WR_MANAGERWEB": "4001"})
    assert (config.manager_port, config.manager_web) == (4000, 4001)


def test_configured_ports_win_each_on_its_own(dirs):
    config = load(dirs, environ={"WR_MANAGERWEB": "7000"})
    assert (config.manager_port, config.manager_web) == (5021, 7000)
    config = load(dirs, "development", environ={"WR_MANAGERPORT": "7000"})
    assert (config.manager_port, config.manager_web) == (7000, 5024)


def test_port_zero_means_pick_a_free_port(dirs):
    config = load(dirs, environ={"WR_MANAGERPORT": "0", "WR_MANAGERWEB": "0"})
    assert (config.manager_port, config.manager_web) == (0, 0)


def test_empty_port_means_default(dirs):
    write(dirs[1] / ".wr_config.yml", "managerport: ''\nmanagerweb:\n")
    config = load(dirs)
    assert (config.manager_port, config.manager_web) == (5021, 5022)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "production"),
        ({"WR_DEPLOYMENT": "development"}, "development"),
        ({"WR_DEPLOYMENT": "production"}, "production"),
        ({"WR_DEPLOYMENT": "Development"}, "production"),
        ({"WR_DEPLOYMENT": "dev"}, "production"),
    ],
)
def test_default_deployment(environ, expected):
    assert default_deployment(environ) == expected


def test_deployment_from_environment_and_argument(dirs):
    assert load(dirs, environ={"WR_DEPLOYMENT": "development"}).deployment == "development"
    assert load(dirs, "production", {"WR_DEPLOYMENT": "development"}).deployment == "production"


def test_unknown_deployment(dirs):
    with pytest.raises(ConfigError, match="Deployment 'staging' is not valid"):
        load(dirs, "staging")


def test_config_files_in_order(dirs):
    home, cwd, conf = dirs
    assert config_files("development", {"WR_CONFIG_DIR": str(conf)}, home, cwd) == [
        conf / ".wr_config.yml",
        conf / ".wr_config.development.yml",
        home / ".wr_config.yml",
        home / ".wr_config.development.yml",
        cwd / ".wr_config.yml",
        cwd / ".wr_config.development.yml",
    ]
    assert config_files("production", {}, home, cwd)[0] == home / ".wr_config.yml"


def test_file_precedence(dirs):
    """Each later file overrides the earlier ones; each file sets one more setting."""
    home, cwd, conf = dirs
    order = [
        conf / ".wr_config.yml",
        conf / ".wr_config.production.yml",
        home / ".wr_config.yml",
        home / ".wr_config.production.yml",
        cwd / ".wr_config.yml",
        cwd / ".wr_config.production.yml",
    ]
    keys = ["managerhost", "managercertdomain", "runnerexecshell", "managerscheduler",
            "slurmaccount", "slurmpartition"]
    for i, path in enumerate(order):
        write(path, "".join(f"{key}: from{i}\n" for key in keys[i:]).replace(
            "managerscheduler: from3", "managerscheduler: slurm"))
    config = load(dirs)
    assert config.manager_host == "from0"
    assert config.cert_domain == "from1"
    assert config.runner_exec_shell == "from2"
    assert config.scheduler == "slurm"
    assert config.slurm_account == "from4"
    assert config.slurm_partition == "from5"
    assert config.sources["managerhost"] == str(order[0])
    assert config.sources["slurmpartition"] == str(order[5])
    assert config.sources["ttr"] == "default"


def test_other_deployments_file_is_ignored(dirs):
    write(dirs[1] / ".wr_config.development.yml", "managerhost: dev\n")
    assert load(dirs, "production").manager_host == "localhost"
    assert load(dirs, "development").manager_host == "dev"


def test_environment_beats_files(dirs):
    write(dirs[1] / ".wr_config.production.yml", "managerhost: file\nttr: 5\n")
    config = load(dirs, environ={"WR_MANAGERHOST": "env", "WR_TTR": "0.5"})
    assert (config.manager_host, config.ttr) == ("env", 0.5)
    assert config.sources["managerhost"] == "env WR_MANAGERHOST"
    assert config.sources["ttr"] == "env WR_TTR"


def test_yaml_keys_are_case_insensitive_and_unknown_ones_ignored(dirs):
    write(dirs[0] / ".wr_config.yml", "ManagerHost: h\nCloudFlavor: big\nnested: {a: 1}\n")
    assert load(dirs).manager_host == "h"


def test_empty_and_comment_only_files(dirs):
    write(dirs[0] / ".wr_config.yml", "")
    write(dirs[1] / ".wr_config.yml", "# nothing here\n")
    assert load(dirs).manager_host == "localhost"


def test_missing_config_dir_is_fine(dirs, tmp_path):
    config = load(dirs, environ={"WR_CONFIG_DIR": str(tmp_path / "nowhere")})
    assert config.manager_host == "localhost"


@pytest.mark.parametrize(
    ("text", "umask"),
    [("007", 0o007), ("022", 0o022), ("22", 0o022), ("0", 0), ("777", 0o777), ("0o27", 0o027)],
)
def test_umask_is_octal_from_environment_and_yaml(dirs, text, umask):
    assert load(dirs, environ={"WR_MANAGERUMASK": text}).umask == umask
    write(dirs[1] / ".wr_config.yml", f"managerumask: {text}\n")
    assert load(dirs).umask == umask


def test_relative_and_absolute_paths(dirs, tmp_path):
    home, cwd, _ = dirs
    write(cwd / ".wr_config.yml", "\n".join([
        "managerdir: /srv/wr",
        "managerdbfile: /data/wr.db",
        "managerlogfile: logs/manager.log",
        "managertokenfile: ~/shared/token",
        "",
    ]))
    config = load(dirs, "development")
    assert config.manager_dir == Path("/srv/wr_development")
    assert config.db_file == Path("/data/wr.db")
    assert config.log_file == Path("/srv/wr_development/logs/manager.log")
    assert config.token_file == home / "shared" / "token"
    assert config.pid_file == Path("/srv/wr_development/pid")


def test_manager_dir_tilde_and_relative(dirs):
    home, cwd, _ = dirs
    assert load(dirs, environ={"WR_MANAGERDIR": "~/x/wr/"}).manager_dir == home / "x/wr_production"
    assert load(dirs, environ={"WR_MANAGERDIR": "~"}).manager_dir == Path(f"{home}_production")
    assert load(dirs, environ={"WR_MANAGERDIR": "rel"}).manager_dir == cwd / "rel_production"


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("managerport", "abc", "Not a valid port"),
        ("managerport", "65536", "Not a valid port"),
        ("managerport", "-1", "Not a valid port"),
        ("managerweb", "5.5", "Not a valid port"),
        ("managerumask", "9", "Not a valid umask"),
        ("managerumask", "1000", "Not a valid umask"),
        ("managerumask", "", "Not a valid umask"),
        ("ttr", "soon", "Not a valid number of seconds"),
        ("ttr", "-1", "Not a valid number of seconds"),
        ("ttr", "nan", "Not a valid number of seconds"),
        ("maxbodysize", "0", "Not a valid size"),
        ("maxbodysize", "1G", "Not a valid size"),
        ("managerscheduler", "lsf", "Not a known scheduler: use one of local, slurm"),
        ("managerhost", " ", "Must not be empty"),
        ("managerdbbkfile", "s3://bucket/db", "Not a valid file path"),
        ("managerdir", "", "Not a valid directory"),
    ],
)
def test_bad_values_quote_value_source_and_what_is_accepted(dirs, name, value, accepted):
    env_var = "WR_" + name.upper()
    with pytest.raises(ConfigError) as info:
        load(dirs, environ={env_var: value})
    prefix = f"Config '{name}' has value '{value}' (from env {env_var}). "
    assert info.value.message.startswith(prefix)
    assert info.value.message.removeprefix(prefix).startswith(accepted)


def test_bad_value_in_a_file_names_the_file(dirs):
    path = dirs[0] / ".wr_config.yml"
    write(path, "managerport: abc\n")
    with pytest.raises(ConfigError) as info:
        load(dirs)
    assert info.value.message.startswith(f"Config 'managerport' has value 'abc' (from {path}). ")
    assert info.value.status == 500 and isinstance(info.value, WrError)


def test_non_scalar_value_is_refused(dirs):
    write(dirs[0] / ".wr_config.yml", "managerhost: [a, b]\n")
    with pytest.raises(ConfigError, match="Config 'managerhost' has value"):
        load(dirs)


@pytest.mark.parametrize("text", ["managerport: [unclosed\n", "- a list\n", "just text\n"])
def test_unparseable_file_names_it(dirs, text):
    path = dirs[1] / ".wr_config.production.yml"
    write(path, text)
    with pytest.raises(ConfigError, match=f"Config file {path}"):
        load(dirs)


def test_as_environ_reproduces_the_config(dirs, tmp_path):
    write(dirs[1] / ".wr_config.yml", "managerumask: 022\nttr: 0.25\nmanagerdbfile: /d/db\n")
    config = load(dirs, "development", environ={"WR_MANAGERWEB": "0"}, uid=2570)
    environ = config.as_environ()
    assert environ["WR_DEPLOYMENT"] == "development"
    assert environ["WR_MANAGERDIR"] == str(dirs[0] / ".wr")
    assert environ["WR_MANAGERUMASK"] == "022"
    assert environ["WR_MANAGERPORT"] == "11303"
    # A child elsewhere, with another uid and no config files, resolves the same config.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    child = load_config(environ=environ, home=elsewhere, cwd=Path("/"), uid=1)
    assert child == config
    assert set(child.sources.values()) == {f"env {s.env_var}" for s in SETTINGS}


def test_config_is_frozen(dirs):
    config = load(dirs)
    with pytest.raises(AttributeError):
        config.ttr = 1.0  # type: ignore[misc]
