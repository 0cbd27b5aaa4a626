"""Every route the manager serves, in one table (issue 14: one door for every change).

Each entry says which paths it serves, with which methods, behind which guard, by which
handler, and what it promises: its OpenAPI operations, which refer to the shared
components of ``static/openapi/components.yaml`` by name. `wr.manager.routing` turns the
table into the application's routes, applying the guard, and into the document's paths.

* The guard is the token unless an entry says ``guard=OPEN``. Open on purpose: the
  version (the seed REST contract's one endpoint without the token), the OpenAPI document
  and its page, and the web page's static files. The page itself is guarded but answers a
  refusal with its own 401 page (``refused``).
* A handler is named by where it lives in the handler objects the application is built
  with (`wr.manager.app`): ``"rest.jobs"`` is `RestAPI.jobs`.
* An entry's first path is its main one; aliases follow (without the trailing slash, and
  the seed endpoints' ``{rest:path}``, which takes every path below them). Order matters
  where paths overlap: ``/rest/v1/limits/`` comes before ``/rest/v1/limits/{name:names}``,
  which would also match it with an empty name.
* Websockets have no OpenAPI operations (OpenAPI 3.1 cannot describe them); the document's
  description names them (a test checks it).
"""

from __future__ import annotations

from wr.manager.routing import (
    ANY,
    OPEN,
    Endpoint,
    Kind,
    answer,
    array_of,
    header,
    html_answer,
    json_answer,
    json_body,
    op,
    path_param,
    query,
    text_answer,
)

ADD_DEFAULTS = (
    "DefRepGrp", "DefCwd", "DefCwdMatters", "DefChangeHome", "DefReqGrp", "DefMemory",
    "DefTime", "DefCpus", "DefDisk", "DefOverride", "DefPriority", "DefRetries",
    "DefNoRetryOverWalltime", "DefDepGrps", "DefDeps", "DefLimitGrps", "DefEnv",
    "DefOnFailure", "DefOnSuccess", "DefOnExit", "DefMounts", "DefMonitorDocker",
    "DefWithDocker", "DefWithSingularity", "DefContainerMounts", "DefCloudOs",
    "DefCloudUsername", "DefCloudScript", "DefCloudFlavor", "DefCloudConfigFiles",
    "DefCloudRam", "DefCloudShared", "DefBsubMode", "DefEnvKey", "Rerun",
)
"""What a POST of jobs takes in its query: defaults for every job of the body."""
LISTING = ("State", "Limit", "Std", "Env")
"""How a listing of status objects is chosen and filled."""
EVENT_ID = {"type": "string", "pattern": "^([0-9a-f]{1,32}-)?[0-9]{1,18}$"}
PAGE = html_answer("The page.")
NO_TOKEN_PAGE = html_answer("A page saying how to open the page with the token.")
ACTION_ANSWERS = {200: "ActionDone", 400: "BadRequest", 413: "PayloadTooLarge"}


def _seed(path: str) -> tuple[str, ...]:
    """A seed endpoint's paths: every path below it reaches it, and so does it without
    its slash (``/rest/v1/info/x`` is info, DESIGN.md)."""
    return (f"{path}/{{rest:path}}", path)


ROUTES: tuple[Endpoint, ...] = (
    # -- the seed REST API (spec/seed-rest-api.txt) ---------------------------------------------
    Endpoint(_seed("/rest/version"), "rest.version", ANY, guard=OPEN, ops=(
        op("GET /rest/version/", "getVersion", "Manager", "The manager's version",
           "The only REST endpoint that needs no token.",
           responses={200: json_answer("The versions of wr and of the REST API.", "Version",
                                       example={"Version": "0.1.0", "API": "1"})}),
    )),
    Endpoint(("/rest/v1/jobs/{ids:names}", "/rest/v1/jobs"), "rest.jobs", ANY, ops=(
        op("POST /rest/v1/jobs/", "addJobs", "Jobs", "Add jobs",
           """Adds the jobs of the body to the queue, with the query parameters as defaults for
           every job: a job's own non-empty values win. A job already queued (the same key)
           is not added again, and one already complete is left out unless `rerun=true`.
           Conversion is all or nothing: a bad job is a 400 and nothing of the request is
           stored. So is an add that would make jobs wait for each other in a cycle (the
           400 names them).""",
           params=ADD_DEFAULTS, body="Jobs",
           responses={201: json_answer(
               """The status of each job of the body that is now in the queue, in the body's
               order (a job that was already queued shows as it is).""", array_of("JobStatus")),
               400: "BadRequest", 413: "PayloadTooLarge", 503: "StorageUnavailable"}),
        op("GET /rest/v1/jobs/", "listJobs", "Jobs", "Status of every incomplete job",
           params=LISTING, responses={200: "JobStatuses", 400: "BadRequest"}),
        op("DELETE /rest/v1/jobs/", "cancelAllJobs", "Jobs",
           "Kill, confirm dead or remove jobs of every rep group",
           "As `DELETE /rest/v1/jobs/{ids}`, for every incomplete job.",
           params=["CancelState"],
           responses={200: "Removed", 202: "Killed", 400: "BadRequest"}),
        op("GET /rest/v1/jobs/{ids}", "getJobs", "Jobs", "Status of jobs by key or rep group",
           """Each id is a job key (32 hex digits; completed jobs are found in the history) or a
           rep group (its queued jobs, then its completed ones), or with `search=true` a
           substring of rep group names.""",
           params=["Ids", *LISTING, "Search"],
           responses={200: "JobStatuses", 400: "BadRequest"}),
        op("DELETE /rest/v1/jobs/{ids}", "cancelJobs", "Jobs", "Kill, confirm dead or remove jobs",
           """Selects jobs as GET does, then by `state`:

           - `running`: kills running jobs (and their child processes): **202** with the jobs
             as they were; they then become buried with FailReason `killed by user request`.
           - `lost`: confirms lost jobs dead, so they are retried or buried: **202**.
           - `deletable`: removes delayed, ready, buried and dependent jobs: **200** with the
             removed jobs, their State `deleted`. A job that other queued jobs depend on is
             kept unless they are removed in the same request.""",
           params=["Ids", "CancelState", "Search"],
           responses={200: "Removed", 202: "Killed", 400: "BadRequest"}),
    )),
    Endpoint(_seed("/rest/v1/info"), "rest.info", ANY, ops=(
        op("GET /rest/v1/info/", "getInfo", "Manager", "About the manager",
           responses={200: json_answer("Where and how the manager runs.", "Info")}),
    )),
    Endpoint(_seed("/rest/v1/warnings"), "rest.warnings", ANY, ops=(
        op("GET /rest/v1/warnings/", "takeWarnings", "Manager",
           "The scheduler's warnings (reading them clears them)",
           responses={200: json_answer(
               "Each distinct warning since the last read, with how often it came.",
               array_of("Warning"))}),
    )),
    Endpoint(_seed("/rest/v1/servers"), "rest.servers", ANY, ops=(
        op("GET /rest/v1/servers/", "listBadServers", "Manager",
           "Bad cloud servers (always none here)",
           "No scheduler of this manager spawns servers, so the list is always empty.",
           responses={200: json_answer("An empty list.", array_of({}, maxItems=0))}),
        op("DELETE /rest/v1/servers/", "confirmBadServer", "Manager",
           "Confirm a bad server dead (never known here)",
           params=[query("id", {"type": "string", "minLength": 1}, "The server's id.",
                         required=True)],
           responses={400: "BadRequest",
                      404: text_answer("`Server was not known to be bad` (always, here).")}),
    )),
    Endpoint(_seed("/rest/v1/upload"), "rest.upload", ANY, ops=(
        op("PUT /rest/v1/upload/", "uploadFile", "Manager",
           "Store a file on the manager's machine",
           """Without `path` the file goes to
           `<manageruploaddir>/<a>/<b>/<c>/<the rest of the md5 of its content>`, so the same
           content is stored once.""",
           params=[query("path", {"type": "string"},
                         """Where to put the file: an absolute path, or `~/...` in the manager
                         user's home. Missing directories are made. A path the manager cannot
                         write, or one in its own directory (`~/.wr_<deployment>`, its uploads
                         aside), is a 400.""")],
           body={"required": True, "description": "The file's content, as it is.",
                 "content": {"application/octet-stream": {"schema": {
                     "type": "string", "contentMediaType": "application/octet-stream"}}}},
           responses={200: json_answer("Where the file now is.", "Upload"),
                      400: "BadRequest", 413: "PayloadTooLarge", 503: "StorageUnavailable",
                      500: text_answer("`file upload failed`: the manager could not write the "
                                       "file there.")}),
    )),

    # -- management (wr.manager.actions) --------------------------------------------------------
    Endpoint(("/rest/v1/actions/{action}",), "actions.action", ("POST",), ops=(
        op("POST /rest/v1/actions/kill", "killJobs", "Management", "Kill running jobs",
           """Of the selected jobs, kills those running (or reserved by a runner) and, with
           `age`, running for at least that many seconds. The kill reaches the job's runner
           at once; the job then ends buried with FailReason `killed by user request`.""",
           body=json_body("AgedSelection", example={"ids": ["myjobs"], "age": 3600}),
           responses=ACTION_ANSWERS),
        op("POST /rest/v1/actions/confirmdead", "confirmDead", "Management",
           "Confirm lost jobs dead",
           """Of the selected jobs, those lost (their runner fell silent) and, with `age`, lost
           for at least that many seconds, are taken as dead: retried or buried as their
           retries allow.""",
           body=json_body("AgedSelection"), responses=ACTION_ANSWERS),
        op("POST /rest/v1/actions/retry", "retryJobs", "Management", "Retry buried jobs",
           "The selected buried jobs get all their attempts back and are ready again.",
           body=json_body("Selection", example={"ids": ["myjobs"]}),
           responses=ACTION_ANSWERS),
        op("POST /rest/v1/actions/remove", "removeJobs", "Management",
           "Remove jobs that are neither running nor complete",
           """Removes the selected jobs that are delayed, ready, buried or dependent (with
           `buried_only`, only buried ones). A job other queued jobs depend on is kept unless
           they are removed too.""",
           body=json_body("RemoveSelection"), responses=ACTION_ANSWERS),
        op("POST /rest/v1/actions/modify", "modifyJobs", "Management", "Change queued jobs",
           """Applies `changes` to the selected jobs that are delayed, ready, buried or
           dependent. The result is checked as a new job would be. Changing `cmd`, `cwd`
           (with `cwd_matters`) or `mounts` changes the job's key; a job whose new key belongs
           to another queued or completed job is left as it was. `cmd` can only be changed
           for one job at a time.""",
           body=json_body("ModifySelection",
                          example={"ids": ["myjobs"], "changes": {"priority": 5,
                                                                  "memory": "2G"}}),
           responses={**ACTION_ANSWERS, 503: "StorageUnavailable"}),
    )),
    Endpoint(("/rest/v1/limits/", "/rest/v1/limits"), "actions.limits", ops=(
        op("GET /rest/v1/limits/", "listLimits", "Management", "Every limit group's limit",
           responses={200: json_answer(
               "`{name: limit}` of each limit in place.",
               {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
               example={"mygroup": 2})}),
    )),
    # Any name reaches the handler, "/" and line breaks included (names.py).
    Endpoint(("/rest/v1/limits/{name:names}",), "actions.limit", ("GET", "PUT", "DELETE"), ops=(
        op("GET /rest/v1/limits/{name}", "getLimit", "Management", "A limit group's limit",
           params=["LimitName"], responses={200: "Limit", 400: "BadRequest", 404: "NotFound"}),
        op("PUT /rest/v1/limits/{name}", "setLimit", "Management",
           "Set a limit group's limit",
           """At most `limit` jobs of the group run at once (`0`: none start; `-1` removes the
           limit). Jobs waiting for the group start at once if the new limit allows.""",
           params=["LimitName", query(
               "limit", {"type": "integer", "minimum": -1, "maximum": 9223372036854775807},
               "The most of the group's jobs that may run at once; -1 removes the limit.",
               required=True)],
           responses={200: "Limit", 400: "BadRequest", 404: "NotFound",
                      503: "StorageUnavailable"}),
        op("DELETE /rest/v1/limits/{name}", "removeLimit", "Management",
           "Remove a limit group's limit", params=["LimitName"],
           responses={200: "Limit", 400: "BadRequest", 404: "NotFound",
                      503: "StorageUnavailable"}),
    )),
    Endpoint(("/rest/v1/manager/{op}",), "actions.control", ("POST",), ops=(
        op("POST /rest/v1/manager/pause", "pauseManager", "Management",
           "Hand out no more jobs",
           "Running jobs carry on; `resume` undoes it. Refused while draining.",
           responses={200: "RunStats", 400: "BadRequest"}),
        op("POST /rest/v1/manager/resume", "resumeManager", "Management",
           "Hand out jobs again after a pause", "Refused while draining.",
           responses={200: "RunStats", 400: "BadRequest"}),
        op("POST /rest/v1/manager/drain", "drainManager", "Management",
           "Stop once the running jobs are done",
           """Hands out no more jobs, and stops the manager (deleting its token file) once the
           running jobs have finished.""",
           responses={200: "RunStats"}),
    )),
    Endpoint(("/rest/v1/manager/backup",), "actions.backup", ops=(
        op("GET /rest/v1/manager/backup", "backupDatabase", "Management",
           "A consistent copy of the manager's database",
           """An SQLite database file, taken without stopping writers. To restore it, stop the
           manager, put it in place of `~/.wr_<deployment>/db` (deleting `db-wal` and `db-shm`
           beside it) and start the manager.""",
           responses={200: answer(
               "The database file.", "application/octet-stream",
               {"type": "string", "contentMediaType": "application/vnd.sqlite3"},
               headers={"Content-Disposition": {
                   "description": '`attachment; filename="wr_db_backup"`',
                   "schema": {"type": "string"}}}),
               503: "StorageUnavailable"}),
    )),

    # -- summaries (wr.manager.summary) ---------------------------------------------------------
    Endpoint(("/rest/v1/counts/{ids:names}", "/rest/v1/counts"), "summary.counts", ops=(
        op("GET /rest/v1/counts/", "countAllJobs", "Summaries",
           "How many incomplete jobs are in each state",
           params=["State"], responses={200: "Counts", 400: "BadRequest"}),
        op("GET /rest/v1/counts/{ids}", "countJobs", "Summaries",
           "How many of the selected jobs are in each state (history included)",
           params=["Ids", "State", "Search"], responses={200: "Counts", 400: "BadRequest"}),
    )),
    Endpoint(("/rest/v1/summary/{ids:names}", "/rest/v1/summary"), "summary.summary", ops=(
        op("GET /rest/v1/summary/", "summariseAllJobs", "Summaries",
           "One summary per rep group of the incomplete jobs",
           params=["State"], responses={200: "Summary", 400: "BadRequest"}),
        op("GET /rest/v1/summary/{ids}", "summariseJobs", "Summaries",
           "One summary per rep group of the selected jobs (what `wr status -o summary` prints)",
           params=["Ids", "State", "Search"], responses={200: "Summary", 400: "BadRequest"}),
    )),
    Endpoint(("/rest/v1/details/{ids:names}", "/rest/v1/details"), "summary.details", ops=(
        op("GET /rest/v1/details/", "detailAllJobs", "Summaries",
           "Status objects of every incomplete job, with what `wr status` details add",
           params=LISTING, responses={200: "JobDetails", 400: "BadRequest"}),
        op("GET /rest/v1/details/{ids}", "detailJobs", "Summaries",
           "Status objects of the selected jobs, with what `wr status` details add",
           params=["Ids", *LISTING, "Search"],
           responses={200: "JobDetails", 400: "BadRequest"}),
    )),
    Endpoint(_seed("/rest/v1/add"), "summary.add", ("POST",), ops=(
        op("POST /rest/v1/add/", "addJobsCounted", "Summaries", "Add jobs, answering with counts",
           """Takes what `POST /rest/v1/jobs/` takes, and answers how many jobs were added and
           how many existed instead of a status object per job: adding 100,000 jobs needs two
           numbers, not megabytes of JSON.""",
           params=[*ADD_DEFAULTS, query(
               "keys", {"type": "boolean"},
               "`true`: also answer the keys of the body's jobs now queued.")],
           body="Jobs",
           responses={201: json_answer(
               "How many jobs were new to the queue, and how many were not.", "AddCounts"),
               400: "BadRequest", 413: "PayloadTooLarge", 503: "StorageUnavailable"}),
    )),
    Endpoint(("/rest/v1/environments/", "/rest/v1/environments"), "environments.put",
             ("PUT",), ops=(
        op("PUT /rest/v1/environments/", "putEnvironment", "Jobs",
           "Keep an environment for jobs to run with",
           """The body is an environment: a JSON object of names to values, or an array of
           `NAME=VALUE` strings. It is stored once by content and the answer is its key;
           name it with `env_key` (in the URL query of `POST /rest/v1/jobs/` or
           `/rest/v1/add/`, for every job of the request, or in a job object) and those
           jobs run with it, their `env` overrides on top. Without one, jobs run with the
           runner's environment (the manager's). Sending the same environment again answers
           the same key. No endpoint ever answers an environment back.""",
           body=json_body("Environment", example={"PATH": "/home/me/venv/bin:/usr/bin",
                                                  "LANG": "C.UTF-8"}),
           responses={200: json_answer("The environment's key.", "EnvironmentKey"),
                      400: "BadRequest", 413: "PayloadTooLarge",
                      503: "StorageUnavailable"}),
    )),
    Endpoint(("/rest/v1/lsf/jobs/", "/rest/v1/lsf/jobs"), "lsf.jobs", ops=(
        op("GET /rest/v1/lsf/jobs/", "listLsfJobs", "LSF emulation",
           "The queued jobs that have LSF job ids",
           """Jobs in bsub mode (added with `bsub_mode`, `wr add --bsub` or the emulation's
           `bsub`) get an LSF job id when added; ids are never given twice, even across
           restarts. This lists those still queued, by id, with what `bjobs` shows, and the
           last id given (ids up to it that are not listed have left the queue).""",
           responses={200: json_answer(
               "The manager's host, the last id given, and the queued jobs with ids.",
               "LsfJobs", example={"Host": "localhost", "LastID": 2, "Jobs": [{
                   "JobID": 2, "Key": "0a1b2c3d4e5f60718293a4b5c6d7e8f9", "State": "running",
                   "Name": "align", "Host": "node1", "Submitted": 1795888443.1,
                   "Started": 1795888444.2}]})}),
    )),

    # -- events, metrics, documentation ---------------------------------------------------------
    Endpoint(("/rest/v1/events/", "/rest/v1/events"), "stream.events", ops=(
        op("GET /rest/v1/events/", "streamEvents", "Events",
           "Every job state change, live (server-sent events)",
           """A `text/event-stream` that never ends by itself. Each job state change is one
           event, sent once the change is stored:

           ```
           id: 5f3a9c1e-42
           data: {"id":42,"Key":"…","RepGroup":"…","From":"reserved","To":"running","Exitcode":0,"FailReason":"","Time":1718000000.25}
           ```

           The `data` is a [JobEvent](#schema-JobEvent). To resume after a disconnect without
           missing or repeating a change, reconnect with the last `id` seen as the
           `Last-Event-ID` header (browsers do this by themselves) or as `after`. When the
           changes after it are no longer kept (the manager keeps the last 100,000) or the id
           is from before a manager restart, the stream starts with `event: resync` (data: a
           [Resync](#schema-Resync)): fetch the state afresh, then carry on with the events
           that follow. An idle stream gets a `: keep-alive` comment every `keepalive`
           seconds; a filtered stream's keep-alive also carries an `id:` line (no data, so no
           event) that moves the resume point past the changes it left out. See
           docs/events.md.""",  # noqa: E501 (an event as it is sent, on one line)
           params=[
               header("Last-Event-ID", EVENT_ID,
                      "Resume after this event id (wins over `after`)."),
               query("after", EVENT_ID,
                     """Resume after this event id (`<epoch>-<n>`, or just `n`); `0` replays
                     every change still kept. Without it (and without `Last-Event-ID`) the
                     stream starts now."""),
               query("rep_grp", {"type": "string"},
                     "Only changes of jobs in this rep group (a substring with `search=true`)."),
               query("search", {"type": "boolean"},
                     "`true`: `rep_grp` is a substring of the rep group's name."),
               query("state", {"type": "string", "example": "complete,buried"},
                     """Only changes to these states (comma-separated): delayed, ready,
                     reserved, running, lost, buried, dependent, complete, deleted."""),
               query("keepalive", {"type": "number", "minimum": 0.1, "maximum": 3600},
                     "Seconds between keep-alive comments on an idle stream (default 15)."),
           ],
           responses={200: answer(
               """The stream. Its schema describes each event (as OpenAPI 3.2's `itemSchema`
               would): a job change, or a resync.""", "text/event-stream", "StreamEvent"),
               400: "BadRequest"}),
    )),
    Endpoint(("/metrics",), "metrics.metrics", ops=(
        op("GET /metrics", "getMetrics", "Metrics",
           "The manager's figures in Prometheus text format",
           """Jobs by state, jobs added, started, completed, buried and retried since the
           manager started, histograms of the wait from ready to started and of run times,
           runners by scheduler, and database commit times. See docs/metrics.md.""",
           responses={200: text_answer("Prometheus text exposition format 0.0.4.")}),
    )),
    Endpoint(("/rest/openapi.json",), "openapi.serve_document", guard=OPEN, ops=(
        op("GET /rest/openapi.json", "getOpenAPI", "Documentation", "This document, as JSON",
           responses={200: json_answer("The OpenAPI 3.1 document.", {"type": "object"})}),
    )),
    Endpoint(("/rest/docs",), "openapi.serve_page", guard=OPEN, ops=(
        op("GET /rest/docs", "getReference", "Documentation",
           "This document as a reference page (HTML, nothing loaded from elsewhere)",
           responses={200: html_answer("The reference page.")}),
    )),

    # -- the web page (wr.manager.web) ----------------------------------------------------------
    Endpoint(("/", "/status", "/status.html"), "web.page", ("GET", "HEAD"),
             refused="web.refused", ops=(
        op("GET /", "getStatusPage", "Web page", "The live status page",
           """Open it with the token in the address (`/?token=<token>`, as `wr manager start`
           prints it). The page's scripts and styles come from `/web/static/`, its figures
           from `/web/api/...` and the `/web/live` websocket; nothing from elsewhere.""",
           responses={200: PAGE, 401: NO_TOKEN_PAGE}),
        op("GET /status", "getStatusPageStatus", "Web page",
           "The live status page (wr's other address for it)",
           responses={200: PAGE, 401: NO_TOKEN_PAGE}),
        op("GET /status.html", "getStatusPageHtml", "Web page",
           "The live status page (wr's other address for it)",
           responses={200: PAGE, 401: NO_TOKEN_PAGE}),
    )),
    Endpoint(("/web/static",), "static", kind=Kind.MOUNT, guard=OPEN, ops=(
        op("GET /web/static/{file}", "getPageFile", "Web page",
           "One of the page's files (HTML, CSS, JavaScript modules, images)",
           params=[path_param("file", {"type": "string", "minLength": 1},
                              "The file's path below the page's directory, e.g. `wr.css`, "
                              "`js/main.js`.")],
           responses={200: {"description": "The file.", "content": {
               media: {"schema": {"type": "string"}} for media in (
                   "text/html", "text/css", "text/javascript", "image/svg+xml", "text/plain")}},
               404: "NotFound"}),
    )),
    Endpoint(("/web/live",), "web.feed", kind=Kind.WEBSOCKET),
    Endpoint(("/web/api/info",), "web.info", ops=(
        op("GET /web/api/info", "webInfo", "Web page",
           "The page's header: the manager, and the states it counts",
           responses={200: json_answer(
               "The manager's summary and the state names of the counts' rows.", "WebInfo")}),
    )),
    Endpoint(("/web/api/search",), "web.search", ops=(
        op("GET /web/api/search", "webSearch", "Web page",
           "Rep groups whose name contains a text, with their counts",
           "Finished rep groups (all jobs complete) are found too.",
           params=[query("q", {"type": "string"},
                         "The text (empty or missing matches every rep group)."),
                   query("limit", {"type": "integer", "minimum": 1, "maximum": 5000},
                         "At most this many rep groups (default 200).")],
           responses={200: json_answer(
               "How many rep groups match, and the first `limit` of them, by name.",
               "WebSearch"), 400: "BadRequest"}),
    )),
    Endpoint(("/web/api/group",), "web.group", ops=(
        op("GET /web/api/group", "webGroup", "Web page",
           "A rep group's jobs, in classes of the same state, exit code and fail reason",
           params=[query("group", {"type": "string", "minLength": 1},
                         "The rep group (`name` is also accepted).", required=True),
                   query("per_class", {"type": "integer", "minimum": 0, "maximum": 500},
                         "Status objects shown per class, at most (default 5).")],
           responses={200: json_answer("The group's counts and its classes, problems first.",
                                       "WebGroup"), 400: "BadRequest"}),
    )),
    Endpoint(("/web/api/jobs",), "web.jobs", ops=(
        op("GET /web/api/jobs", "webJobs", "Web page", "A page of one class of a rep group's jobs",
           params=[query("group", {"type": "string", "minLength": 1}, required=True),
                   query("state", "WebState", required=True),
                   query("exitcode", {"type": "integer"}, "Only jobs with this exit code."),
                   query("reason", {"type": "string"}, "Only jobs with this fail reason."),
                   query("offset", {"type": "integer", "minimum": 0, "maximum": 1 << 40}),
                   query("limit", {"type": "integer", "minimum": 1, "maximum": 500},
                         "At most this many jobs (default 20).")],
           responses={200: json_answer("How many jobs the class has, and the page asked for.",
                                       "WebJobPage"), 400: "BadRequest"}),
    )),
    Endpoint(("/web/api/usage",), "web.usage", ops=(
        op("GET /web/api/usage", "webUsage", "Web page",
           "What a rep group's completed jobs used against what they asked for",
           params=[query("group", {"type": "string", "minLength": 1}, required=True)],
           responses={200: json_answer(
               """One point per job (at most 2,000, spread over their start times), its values
               named by `columns`.""", "WebUsage"), 400: "BadRequest"}),
    )),
    Endpoint(("/web/api/throughput",), "web.throughput", ops=(
        op("GET /web/api/throughput", "webThroughput", "Web page",
           "Jobs completed per interval of time",
           params=[query("group", {"type": "string"}, "Only this rep group's jobs."),
                   query("window", {"type": "integer", "minimum": 60, "maximum": 7776000},
                         "Seconds back from now (default 3600)."),
                   query("bucket", {"type": "integer", "minimum": 1, "maximum": 7776000},
                         "Seconds per interval (default window / 60; at most window).")],
           responses={200: json_answer(
               "`[interval start, jobs completed]` of each interval with any.",
               "WebThroughput"), 400: "BadRequest"}),
    )),
    Endpoint(("/web/api/action",), "web.action", ("POST",), ops=(
        op("POST /web/api/action", "webAction", "Web page",
           "Retry, kill, remove or confirm dead some jobs, or a class of a rep group's",
           body=json_body("WebAction"), responses={200: "ActionDone", 400: "BadRequest"}),
    )),
    Endpoint(("/web/api/dismiss",), "web.dismiss", ("POST",), ops=(
        op("POST /web/api/dismiss", "webDismiss", "Web page",
           "Forget a scheduler warning shown on the page (or all of them)",
           body=json_body("WebDismiss"),
           responses={200: json_answer("How many warnings the page still shows.",
                                       "WebDismissed"), 400: "BadRequest"}),
    )),

    # -- runners (wr.manager.runner_ws) ---------------------------------------------------------
    Endpoint(("/runner_ws",), "runners", kind=Kind.WEBSOCKET),
)
"""The manager's routes, in the order they are matched."""
