"""wr.mounts without a server: parsing both forms, placement, S3 profile resolution, cache
modes, the upload wait, rclone's error text, and local disk work that skips mounts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wr.mounts import MountConfigError, MountError, from_json, parse_simple
from wr.mounts.config import MountConfig, Target, place
from wr.mounts.local import local_bytes, remove_empty_parents, remove_local
from wr.mounts.rclone import child_environment, dirty_files, s3_remote, server_answer
from wr.mounts.s3access import resolve
from wr.mounts.session import cache_mode, upload_patience

# -- the simple form -----------------------------------------------------------------------


def test_simple_form_makes_one_multiplexed_config_as_wr_does() -> None:
    assert parse_simple("cr:p1@ref/genome,uw:out/run") == [{"Targets": [
        {"Path": "ref/genome", "Cache": True, "Write": False, "Profile": "p1"},
        {"Path": "out/run", "Cache": False, "Write": True},
    ]}]


def test_simple_form_drops_text_after_a_second_at_as_wr_does() -> None:
    assert parse_simple("ur:p@b@c")[0]["Targets"][0] == {
        "Path": "b", "Cache": False, "Write": False, "Profile": "p"}
    assert "Profile" not in parse_simple("ur:@bucket")[0]["Targets"][0]


@pytest.mark.parametrize("text, said", [
    ("cr", "'cr' was not in the right format"),
    ("cr:a:b", "'cr:a:b' was not in the right format"),
    ("crw:a", "'crw:a' was not in the right format"),
    ("xr:a", "'xr:a' did not start with c or u"),
    ("cx:a", "'cx:a' did not specify w or r"),
    ("cr:a,bad", "'bad' was not in the right format"),
])
def test_simple_form_errors_quote_the_item(text: str, said: str) -> None:
    with pytest.raises(MountConfigError) as info:
        parse_simple(text)
    assert str(info.value) == said


# -- the JSON form -------------------------------------------------------------------------


def test_json_keys_match_case_insensitively_and_unknown_keys_are_ignored() -> None:
    [config] = from_json([{"mount": "m", "CACHEBASE": "/c", "retries": 3, "Verbose": True,
                           "other": 1, "targets": [{"path": "b/p", "cachedir": "d",
                                                    "write": True, "profile": "x"}]}])
    assert config == MountConfig(mount="m", cache_base="/c", retries=3, verbose=True,
                                 targets=(Target(path="b/p", profile="x", cache_dir="d",
                                                 write=True),))
    assert config.targets[0].cached and config.targets[0].bucket == "b"
    assert config.effective_retries == 3


@pytest.mark.parametrize("items, said", [
    ({"Targets": []}, "mounts must be a JSON array"),
    ([1], "a mount config must be an object, not 1"),
    ([{"Retries": "3", "Targets": []}], "mount config field Retries must be int, not '3'"),
    ([{"Retries": True, "Targets": []}], "field Retries must be int"),
    ([{"Targets": {"Path": "a"}}], "Targets must be an array"),
    ([{"Targets": ["a"]}], "a mount target must be an object, not 'a'"),
    ([{"Targets": [{"Path": 5}]}], "mount target field Path must be a string, not 5"),
])
def test_json_errors_say_what_is_wrong(items: object, said: str) -> None:
    with pytest.raises(MountConfigError) as info:
        from_json(items)
    assert said in str(info.value)


@pytest.mark.parametrize("targets, said", [
    ((), "no Targets specified"),
    ((Target("a", write=True), Target("b", write=True)),
     "you can't have more than one writeable remote"),
    ((Target("/"),), 'a mount target needs a Path like "bucket/dir"'),
    ((Target("a", cache_dir="/x"), Target("b", cache_dir="/y")),
     "can share only one CacheDir, not /x, /y"),
    ((Target("a b"), Target("c")), "can only be mounted alone"),
])
def test_configs_wr_refuses_at_mount_time_are_refused(targets: tuple[Target, ...],
                                                      said: str) -> None:
    with pytest.raises(MountConfigError) as info:
        MountConfig(targets=targets).check()
    assert said in str(info.value)


def test_retries_zero_or_less_means_ten() -> None:
    assert MountConfig(targets=(Target("a"),), retries=0).effective_retries == 10
    assert MountConfig(targets=(Target("a"),), retries=-2).effective_retries == 10


# -- where mounts go (§4.3) ----------------------------------------------------------------

UNIQUE = "/base/wr_cwd/a/b/c/defg123"


@pytest.mark.parametrize("config, cwd_matters, mount_point, cache_base, cache_dir", [
    (MountConfig(targets=(Target("b"),)), False, f"{UNIQUE}/cwd", UNIQUE, ""),
    (MountConfig(targets=(Target("b"),)), True, "/base/mnt", "/base", ""),
    (MountConfig(targets=(Target("b"),), mount="in", cache_base="cb"), False,
     f"{UNIQUE}/cwd/in", f"{UNIQUE}/cwd/cb", ""),
    (MountConfig(targets=(Target("b"),), mount="in"), True, "/base/in", "/base", ""),
    (MountConfig(targets=(Target("b", cache_dir="c"),)), False, f"{UNIQUE}/cwd", UNIQUE,
     f"{UNIQUE}/c"),
    # Our choice (§7 item 6): a relative CacheDir joins the config's own CacheBase.
    (MountConfig(targets=(Target("b", cache_dir="c"),), cache_base="/cache"), True,
     "/base/mnt", "/cache", "/cache/c"),
    (MountConfig(targets=(Target("b", cache_dir="/abs"),), mount="/m/"), False, "/m",
     UNIQUE, "/abs"),
])
def test_placement_follows_the_spec_table(config: MountConfig, cwd_matters: bool,
                                          mount_point: str, cache_base: str,
                                          cache_dir: str) -> None:
    placed = place(config, cwd="/base", actual_cwd=f"{UNIQUE}/cwd", cwd_matters=cwd_matters)
    assert (placed.mount_point, placed.cache_base, placed.cache_dir) == (
        mount_point, cache_base, cache_dir)


def test_placement_expands_the_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/me")
    placed = place(MountConfig(targets=(Target("b"),), mount="~/m"), cwd="/base",
                   actual_cwd="", cwd_matters=True)
    assert placed.mount_point == "/home/me/m"


# -- S3 profiles (§4.4) --------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_s3cfg_gives_endpoint_keys_and_plain_http_by_default(tmp_path: Path) -> None:
    _write(tmp_path / ".s3cfg", "[default]\naccess_key = K\nsecret_key = S\n"
                                "host_base = s3.example:9000\n")
    access = resolve("", {}, str(tmp_path))
    assert (access.profile, access.endpoint, access.access_key, access.secret_key) == (
        "default", "http://s3.example:9000", "K", "S")
    assert not access.https


def test_later_files_override_earlier_ones_key_by_key(tmp_path: Path) -> None:
    _write(tmp_path / ".s3cfg", "[p]\naccess_key = OLD\nhost_base = h\nuse_https = True\n")
    _write(tmp_path / ".aws" / "credentials", "[p]\naws_access_key_id = NEW\n"
                                              "aws_secret_access_key = S2\n")
    _write(tmp_path / ".aws" / "config", "[profile p]\nregion = eu-west-2\n")
    access = resolve("p", {}, str(tmp_path))
    assert (access.endpoint, access.access_key, access.secret_key, access.region) == (
        "https://h", "OLD", "S2", "eu-west-2")


def test_the_profile_comes_from_the_environment_and_env_keys_win(tmp_path: Path) -> None:
    _write(tmp_path / "creds", "[envp]\naws_access_key_id = FILE\nhost_base = h\n")
    environ = {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "creds"),
               "AWS_PROFILE": "envp", "AWS_ACCESS_KEY_ID": "ENV",
               "AWS_DEFAULT_REGION": "r1"}
    access = resolve("", environ, str(tmp_path))
    assert (access.profile, access.access_key, access.region) == ("envp", "ENV", "r1")
    environ["AWS_DEFAULT_PROFILE"] = "other"
    with pytest.raises(MountError, match="'other' was not found"):
        resolve("", environ, str(tmp_path))


def test_a_named_profile_must_exist_but_the_implicit_default_need_not(tmp_path: Path) -> None:
    with pytest.raises(MountError) as info:
        resolve("nosuch", {}, str(tmp_path))
    assert "S3 profile 'nosuch' was not found" in str(info.value)
    assert str(tmp_path / ".s3cfg") in str(info.value)
    anonymous = resolve("", {}, str(tmp_path))
    assert (anonymous.endpoint, anonymous.access_key) == ("http://s3.amazonaws.com", "")


def test_awssecret_is_the_last_resort_for_keys(tmp_path: Path) -> None:
    _write(tmp_path / ".awssecret", "KEY:SECRET\nignored\n")
    access = resolve("", {}, str(tmp_path))
    assert (access.access_key, access.secret_key) == ("KEY", "SECRET")


def test_endpoint_url_is_taken_without_host_base_and_must_have_a_scheme(
        tmp_path: Path) -> None:
    _write(tmp_path / ".aws" / "config", "[profile a]\nendpoint_url = https://minio:9000/\n"
                                         "[profile b]\nendpoint_url = minio:9000\n")
    assert resolve("a", {}, str(tmp_path)).endpoint == "https://minio:9000"
    with pytest.raises(MountError, match="needs a scheme"):
        resolve("b", {}, str(tmp_path))


def test_an_unreadable_config_file_is_named(tmp_path: Path) -> None:
    _write(tmp_path / ".s3cfg", "no section header\n")
    with pytest.raises(MountError, match=r"could not read the S3 config file .*\.s3cfg"):
        resolve("", {}, str(tmp_path))


# -- rclone's side -------------------------------------------------------------------------


def test_rclone_gets_no_aws_or_rclone_variables_and_keys_only_by_environment() -> None:
    from wr.mounts.s3access import S3Access

    environ = {"PATH": "/bin", "AWS_CA_BUNDLE": "/ca.pem", "AWS_PROFILE": "x",
               "RCLONE_VFS_CACHE_MODE": "full"}
    assert child_environment(environ, https=False) == {"PATH": "/bin"}
    assert child_environment(environ, https=True) == {"PATH": "/bin",
                                                      "AWS_CA_BUNDLE": "/ca.pem"}
    remote = s3_remote("t0", S3Access("p", "http://h:1", "r", "K", "S"))
    assert remote["RCLONE_CONFIG_T0_ENDPOINT"] == "http://h:1"
    assert remote["RCLONE_CONFIG_T0_ACCESS_KEY_ID"] == "K"
    assert remote["RCLONE_CONFIG_T0_ENV_AUTH"] == "false"


def test_server_answer_takes_the_s3_error_and_rclones_verdict() -> None:
    dumped = ("2026/01/01 10:00:00 DEBUG : HTTP/1.1 404 NOT FOUND\n<Error><Code>NoSuchBucket"
              "</Code><Message>The specified bucket does not exist</Message></Error>\n"
              "2026/01/01 10:00:00 Failed to lsjson: directory not found\n")
    assert server_answer(dumped) == ("NoSuchBucket: The specified bucket does not exist; "
                                     "Failed to lsjson: directory not found")
    refused = ("2026/01/01 10:00:00 Failed to lsjson: RequestError: send request failed\n"
               "caused by: Get \"http://127.0.0.1:1/b\": connection refused\n")
    assert "connection refused" in server_answer(refused)


def test_dirty_files_are_read_from_rclones_cache_metadata(tmp_path: Path) -> None:
    _write(tmp_path / "a.txt", json.dumps({"Dirty": True}))
    _write(tmp_path / "sub" / "b.txt", json.dumps({"Dirty": False}))
    _write(tmp_path / "sub" / "c.txt", json.dumps({"Dirty": True}))
    _write(tmp_path / "broken", "{")
    assert dirty_files(str(tmp_path)) == ["a.txt", "sub/c.txt"]
    assert dirty_files(str(tmp_path / "absent")) == []


@pytest.mark.parametrize("targets, mode", [
    ((Target("a"), Target("b", write=True)), "off"),
    ((Target("a"), Target("b", cache=True, write=True)), "writes"),
    ((Target("a", cache=True), Target("b", write=True)), "full"),
    ((Target("a", cache_dir="/c"),), "full"),
])
def test_a_mount_point_is_cached_as_far_as_its_targets_ask(targets: tuple[Target, ...],
                                                           mode: str) -> None:
    assert cache_mode(MountConfig(targets=targets)) == mode


def test_upload_patience_follows_wrs_backoff_with_a_floor() -> None:
    assert upload_patience(1) == 10.0
    assert upload_patience(10) == pytest.approx(0.1 + 0.3 + 0.9 + 2.7 + 8.1 + 6 * 10.0)


# -- local disk work -----------------------------------------------------------------------


def _tree(root: Path) -> None:
    _write(root / "cwd" / "out.txt", "x" * 1000)
    _write(root / "cwd" / "mnt" / "remote.bin", "r" * 5000)
    _write(root / "cache" / "vfs" / "f", "c" * 300)
    _write(root / "tmp" / "t", "t" * 20)


def test_local_bytes_skips_the_given_mount_points(tmp_path: Path) -> None:
    _tree(tmp_path)
    mnt = str(tmp_path / "cwd" / "mnt")
    assert local_bytes(str(tmp_path / "cwd")) == 6000
    assert local_bytes(str(tmp_path / "cwd"), {mnt}) == 1000
    assert local_bytes(mnt, {mnt}) == 0
    assert local_bytes(str(tmp_path / "absent")) == 0


def test_remove_local_keeps_what_it_is_told_to_and_their_parents(tmp_path: Path) -> None:
    _tree(tmp_path)
    keep = {str(tmp_path / "cwd" / "mnt"), str(tmp_path / "cache")}
    assert remove_local(str(tmp_path), keep) == []
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["cache", "cache/vfs", "cache/vfs/f", "cwd", "cwd/mnt",
                    "cwd/mnt/remote.bin"]
    assert remove_local(str(tmp_path / "cwd")) == []
    assert not (tmp_path / "cwd").exists()


def test_remove_local_never_crosses_into_another_file_system(tmp_path: Path) -> None:
    """/proc is another file system on every Linux: a symlink-free bind is not possible
    without privileges, so the device check is shown by the walk stopping at /dev/shm or
    /proc when the top itself is elsewhere."""
    other = next((p for p in ("/dev/shm", "/proc") if os.path.isdir(p) and
                  os.stat(p).st_dev != os.stat(tmp_path).st_dev), None)
    if other is None:
        pytest.skip("no directory on another device to compare with")
    from wr.mounts.local import _remove

    problems: list[str] = []
    assert _remove(other, os.stat(tmp_path).st_dev, set(), problems) is False
    assert problems == [] and os.path.isdir(other)


def test_remove_empty_parents_stops_at_the_base(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (tmp_path / "a" / "keep").write_text("")
    remove_empty_parents(str(deep / "gone"), str(tmp_path))
    assert not (tmp_path / "a" / "b").exists()
    assert (tmp_path / "a" / "keep").exists()
