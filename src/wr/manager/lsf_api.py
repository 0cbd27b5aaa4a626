"""``GET /rest/v1/lsf/jobs/``: the queued jobs that have LSF job ids, for the emulation's
``bjobs``, ``bkill`` and ``bsub -w`` (wr.lsf, issue 15).

Answers ``{"Host": the manager's host, "LastID": the last id given, "Jobs": [{"JobID",
"Key", "State", "Name", "Host", "Submitted", "Started"}, ...]}``, jobs by id. Only these few
fields of only these jobs: wr's bjobs fetches every incomplete job's whole status, which on
a manager holding a million jobs is a gigabyte for each poll of a pipeline.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wr.manager.core import Manager
from wr.manager.rest import json_response


class LsfAPI:
    """The emulation's endpoint for one manager."""

    def __init__(self, manager: Manager, token: str) -> None:
        self.manager = manager
        self.token = token

    async def jobs(self, request: Request) -> Response:
        queue = self.manager.queue
        found = [job for job in queue.jobs.values() if job.bsub_id]
        found.sort(key=lambda job: job.bsub_id)
        listed: list[dict[str, Any]] = [
            {"JobID": job.bsub_id, "Key": job.key, "State": job.state.value,
             "Name": job.rep_grp, "Host": job.host, "Submitted": job.added,
             "Started": job.started}
            for job in found]
        return json_response({"Host": self.manager.host, "LastID": queue.bsub_ids,
                              "Jobs": listed})
