"""Which S3 server, region and keys a mount target uses, found as wr finds them.

Everything is read from the environment and home directory of the process doing the mount
(the runner, or ``wr mount``), never from the job's own captured environment
(spec/containers-mounts-lsf-env.md §4.4):

1. the profile: the target's, else $AWS_DEFAULT_PROFILE, else $AWS_PROFILE, else ``default``;
2. the files ``~/.s3cfg``, $AWS_SHARED_CREDENTIALS_FILE, ``~/.aws/credentials``,
   $AWS_CONFIG_FILE and ``~/.aws/config`` are read as one INI set, a later file overriding an
   earlier one key by key; the section is named like the profile (in the two AWS config files
   ``[profile NAME]`` is found too, where wr finds only ``[NAME]``);
3. from it ``use_https`` (default false: plain http, as wr), ``host_base`` (default
   ``s3.amazonaws.com``; the AWS-style ``endpoint_url`` is taken when there is no host_base),
   ``region``, ``access_key``/``aws_access_key_id`` and ``secret_key``/
   ``aws_secret_access_key``;
4. an explicitly named profile that no file has is an error; the implicit ``default`` is not
   (public buckets can be read anonymously);
5. with neither key nor secret, the first line of ``~/.awssecret`` as ``key:secret``;
6. non-empty $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY and $AWS_DEFAULT_REGION win.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass

from wr.mounts.config import MountError

DEFAULT_HOST = "s3.amazonaws.com"
"""The endpoint host when a profile names none."""


@dataclass(frozen=True, slots=True)
class S3Access:
    """How to reach one target's bucket."""

    profile: str
    endpoint: str
    """``http[s]://host[:port]``."""
    region: str = ""
    access_key: str = ""
    secret_key: str = ""

    @property
    def https(self) -> bool:
        return self.endpoint.startswith("https://")


def _files(environ: Mapping[str, str], home: str) -> list[tuple[str, bool]]:
    """(path, is an AWS config file) in wr's order of reading."""
    out = [(os.path.join(home, ".s3cfg"), False)]
    if environ.get("AWS_SHARED_CREDENTIALS_FILE"):
        out.append((environ["AWS_SHARED_CREDENTIALS_FILE"], False))
    out.append((os.path.join(home, ".aws", "credentials"), False))
    if environ.get("AWS_CONFIG_FILE"):
        out.append((environ["AWS_CONFIG_FILE"], True))
    out.append((os.path.join(home, ".aws", "config"), True))
    return out


def _profile_values(profile: str, environ: Mapping[str, str], home: str
                    ) -> tuple[dict[str, str], bool, list[str]]:
    """(merged keys of the profile's sections, whether any file had one, files read)."""
    values: dict[str, str] = {}
    found = False
    read: list[str] = []
    for path, aws_config in _files(environ, home):
        parser = configparser.ConfigParser(interpolation=None, strict=False,
                                           default_section="\0none")
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f)
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise MountError(f"could not read the S3 config file {path}: {exc}") from None
        read.append(path)
        names = [profile] + ([f"profile {profile}"] if aws_config else [])
        for name in names:
            if parser.has_section(name):
                found = True
                values.update({k.lower(): v.strip() for k, v in parser.items(name)})
    return values, found, read


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on", "t")


def resolve(profile: str, environ: Mapping[str, str] | None = None, home: str | None = None
            ) -> S3Access:
    """The S3 endpoint and credentials for `profile` ("" = the default chain); raises
    MountError naming the profile and the files looked in when a named profile is missing."""
    environ = os.environ if environ is None else environ
    home = os.path.expanduser("~") if home is None else home
    explicit = bool(profile or environ.get("AWS_DEFAULT_PROFILE") or environ.get("AWS_PROFILE"))
    profile = (profile or environ.get("AWS_DEFAULT_PROFILE") or environ.get("AWS_PROFILE")
               or "default")
    values, found, read = _profile_values(profile, environ, home)
    if not found and explicit:
        looked = ", ".join(p for p, _ in _files(environ, home))
        raise MountError(f"S3 profile {profile!r} was not found in any S3 config file "
                         f"(looked in {looked}; found {', '.join(read) or 'none of them'})")
    host = values.get("host_base", "")
    if host:
        scheme = "https" if _truthy(values.get("use_https", "false")) else "http"
        endpoint = f"{scheme}://{host}"
    elif values.get("endpoint_url"):
        endpoint = values["endpoint_url"].rstrip("/")
        if "://" not in endpoint:
            raise MountError(f"endpoint_url {endpoint!r} of S3 profile {profile!r} needs a "
                             f"scheme, like https://{endpoint}")
    else:
        scheme = "https" if _truthy(values.get("use_https", "false")) else "http"
        endpoint = f"{scheme}://{DEFAULT_HOST}"
    key = values.get("access_key") or values.get("aws_access_key_id") or ""
    secret = values.get("secret_key") or values.get("aws_secret_access_key") or ""
    key = key or environ.get("AWS_ACCESS_KEY_ID", "")
    secret = secret or environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not key and not secret:
        key, secret = _awssecret(home)
    return S3Access(
        profile=profile,
        endpoint=endpoint,
        region=environ.get("AWS_DEFAULT_REGION") or values.get("region", ""),
        access_key=environ.get("AWS_ACCESS_KEY_ID") or key,
        secret_key=environ.get("AWS_SECRET_ACCESS_KEY") or secret,
    )


def _awssecret(home: str) -> tuple[str, str]:
    """``key:secret`` from the first line of ~/.awssecret, or ("", "")."""
    try:
        with open(os.path.join(home, ".awssecret"), encoding="utf-8") as f:
            line = f.readline().strip()
    except OSError:
        return "", ""
    key, sep, secret = line.partition(":")
    return (key, secret) if sep else ("", "")
