"""S3 buckets mounted for jobs and for ``wr mount`` (issue 18), through rclone and FUSE.

* `config`: the simple and JSON forms of mount configs, and where each mount goes;
* `s3access`: which server, region and keys a target uses (~/.s3cfg, ~/.aws, AWS_*);
* `rclone`: running ``rclone mount`` and asking it what is left to upload;
* `session`: `JobMounts`, mounted before a command and unmounted, uploading, after it;
* `local`: disk accounting and cleanup that never reach through a mount.
"""

from wr.mounts.config import (
    MountConfig,
    MountConfigError,
    MountError,
    Target,
    from_json,
    parse_simple,
)
from wr.mounts.session import JobMounts, UnmountReport

__all__ = ["JobMounts", "MountConfig", "MountConfigError", "MountError", "Target",
           "UnmountReport", "from_json", "parse_simple"]
