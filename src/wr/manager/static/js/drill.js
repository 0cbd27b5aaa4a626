// Drill-down into one rep group: its jobs by state, exit code and fail reason, with details,
// output, paging, actions and charts.

import {api} from "./api.js";
import {legend, StateBar} from "./bar.js";
import {usageChart, throughputChart} from "./charts.js";
import {fill, h} from "./dom.js";
import {count, date, duration, mb, plural} from "./format.js";
import {COMPLETE, HELP, LABEL, total} from "./states.js";

const FIRST_PAGE = 5;
const RELOAD_GAP = 1500; // ms between two reloads caused by live changes
const CHART_GAP = 15000; // ms between two chart reloads caused by live changes

const VERB = {retry: "Retry", kill: "Kill", remove: "Remove", confirmdead: "Confirm dead"};
const ACTIONS = {
  buried: ["retry", "remove"],
  running: ["kill"],
  lost: ["confirmdead"],
  delayed: ["remove"],
  ready: ["remove"],
  dependent: ["remove"],
  complete: [],
};

function classId(c) {
  return `${c.state}|${c.exitcode}|${c.reason}`;
}

function describe(c) {
  const bits = [];
  if (c.state !== "complete" && c.state !== "ready" && c.state !== "dependent" &&
      (c.exitcode !== 0 || c.reason)) {
    if (c.exitcode !== -1 || c.state !== "running") bits.push(`exit code ${c.exitcode}`);
  }
  if (c.reason) bits.push(c.reason);
  return bits.join(" · ");
}

export class Drill {
  constructor(els, {confirm, toast}) {
    this.els = els;
    this.confirm = confirm;
    this.toast = toast;
    this.name = null;
    this.bar = new StateBar(els.bar);
    this.pages = new Map();
    this.sections = new Map();
    this.lastLoad = 0;
    this.lastCharts = 0;
    this.timer = null;
    this.busy = false;
    this.completeSeen = -1;
    els.tpWindow.addEventListener("change", () => this.loadThroughput());
  }

  get isOpen() {
    return this.name !== null;
  }

  async open(name, state, row) {
    const same = this.name === name;
    this.name = name;
    if (!same) {
      this.pages.clear();
      this.sections.clear();
      this.els.classes.replaceChildren(h("p.muted", null, "Loading…"));
      this.els.title.textContent = name;
      this.completeSeen = -1;
      this.bar.last = null;
      fill(this.els.memChart);
      fill(this.els.timeChart);
      fill(this.els.tpChart);
    }
    this.focusState = state;
    this.fromFeed = Boolean(row);
    if (row) this.showRow(row);
    await this.load();
    this.loadCharts();
  }

  close() {
    this.name = null;
    clearTimeout(this.timer);
    this.timer = null;
  }

  showRow(row) {
    this.row = row;
    this.bar.update(row);
    legend(this.els.legend, row);
    const t = total(row);
    this.els.summary.textContent = t
      ? `${plural(t, "job")}; ${count(row[COMPLETE])} complete`
      : "No jobs.";
  }

  /** The feed says this group changed (row null: it has no jobs left; undefined: an action
   * was taken): show the counts now, the jobs shortly. */
  changed(row) {
    if (!this.isOpen) return;
    if (row) {
      this.fromFeed = true;
      this.showRow(row);
    } else if (row === null) {
      this.fromFeed = false;
    }
    const wait = this.lastLoad + RELOAD_GAP - Date.now();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), Math.max(0, wait));
    if (row && row[COMPLETE] !== this.completeSeen && Date.now() - this.lastCharts > CHART_GAP) {
      this.loadCharts();
    }
  }

  async load() {
    const name = this.name;
    if (name === null) return;
    if (this.busy || this.confirm.open) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.load(), 500);
      return;
    }
    this.busy = true;
    this.lastLoad = Date.now();
    try {
      const data = await api.group(name, FIRST_PAGE);
      if (this.name !== name) return;
      for (const c of data.classes) {
        const page = this.pages.get(classId(c));
        if (page && (page.offset !== 0 || page.limit !== FIRST_PAGE)) {
          const more = await api.jobs(name, c, page.offset, page.limit);
          c.jobs = more.jobs;
          c.count = more.total;
        }
      }
      if (this.name !== name) return;
      if (!this.fromFeed) this.showRow(data.row);
      this.render(data.classes);
    } catch (err) {
      this.toast(`Could not load rep group "${name}": ${err.message}`, true);
    } finally {
      this.busy = false;
    }
  }

  render(classes) {
    const active = document.activeElement;
    const focusId = active && active.dataset ? active.dataset.fid : undefined;
    const seen = new Set();
    const nodes = classes.map((c) => {
      const id = classId(c);
      seen.add(id);
      if (!this.pages.has(id)) this.pages.set(id, {offset: 0, limit: FIRST_PAGE});
      const page = this.pages.get(id);
      if (page.offset >= c.count && c.count > 0) {
        page.offset = Math.max(0, Math.floor((c.count - 1) / page.limit) * page.limit);
      }
      const json = JSON.stringify([c, page]);
      const old = this.sections.get(id);
      if (old && old.json === json) return old.node;
      const node = this.section(c, page);
      this.sections.set(id, {json, node});
      return node;
    });
    for (const id of [...this.sections.keys()]) if (!seen.has(id)) this.sections.delete(id);
    if (!classes.length) nodes.push(h("p.muted", null, "This rep group has no jobs."));
    this.els.classes.replaceChildren(...nodes);
    if (focusId) {
      const again = this.els.classes.querySelector(`[data-fid="${CSS.escape(focusId)}"]`);
      if (again) again.focus();
    }
    if (this.focusState) {
      const target = this.els.classes.querySelector(`section.s-${this.focusState}`);
      this.focusState = null;
      if (target) {
        target.scrollIntoView({block: "start"});
        const heading = target.querySelector("h3");
        if (heading) heading.focus({preventScroll: true});
      }
    }
  }

  section(c, page) {
    const id = classId(c);
    const what = describe(c);
    const actions = ACTIONS[c.state] || [];
    const list = h("ol.jobs", {start: page.offset + 1});
    for (const job of c.jobs) list.append(this.jobCard(job, c));
    const last = Math.min(page.offset + c.jobs.length, c.count);
    const pager = c.count > FIRST_PAGE || page.offset > 0 ? h("nav.pager", {"aria-label": `pages of ${LABEL[c.state]} jobs`},
      h("button", {type: "button", disabled: page.offset === 0, dataset: {fid: `${id}|prev`},
        onclick: () => this.page(c, Math.max(0, page.offset - page.limit), page.limit)}, "‹ Previous"),
      h("span.range", null, `${count(c.jobs.length ? page.offset + 1 : 0)}–${count(last)} of ${count(c.count)}`),
      h("button", {type: "button", disabled: last >= c.count, dataset: {fid: `${id}|next`},
        onclick: () => this.page(c, page.offset + page.limit, page.limit)}, "Next ›"),
      h("label", null, "per page ",
        h("select", {dataset: {fid: `${id}|size`}, onchange: (ev) => this.page(c, page.offset, Number(ev.target.value))},
          ...[5, 20, 100].map((n) => h("option", {value: n, selected: n === page.limit}, String(n))))),
    ) : null;
    return h(`section.class.s-${c.state}`, {dataset: {cls: id}},
      h("h3", {tabindex: "-1"},
        h(`span.chip.s-${c.state}`, {title: HELP[c.state]}, LABEL[c.state]),
        what ? h("span.what", null, what) : null,
        h("span.badge", null, count(c.count))),
      actions.length ? h("div.class-actions", null, ...actions.map((a) => h("button", {
        type: "button", className: a === "retry" ? "primary" : "danger",
        dataset: {fid: `${id}|${a}`}, onclick: () => this.act(a, c),
      }, `${VERB[a]} all ${count(c.count)}`))) : null,
      list,
      pager);
  }

  async page(c, offset, limit) {
    const id = classId(c);
    this.pages.set(id, {offset, limit});
    try {
      const more = await api.jobs(this.name, c, offset, limit);
      const updated = {...c, jobs: more.jobs, count: more.total};
      const node = this.section(updated, this.pages.get(id));
      const old = this.sections.get(id);
      this.sections.set(id, {json: JSON.stringify([updated, this.pages.get(id)]), node});
      if (old) old.node.replaceWith(node);
      const heading = node.querySelector("h3");
      if (heading) heading.focus({preventScroll: true});
      node.scrollIntoView({block: "nearest"});
    } catch (err) {
      this.toast(`Could not load jobs: ${err.message}`, true);
    }
  }

  jobCard(job, c) {
    const started = job.Started > 0 ? job.Started : null;
    const running = c.state === "running" && started;
    const over = (used, asked) => asked > 0 && used > asked;
    const req = [
      `${mb(job.ExpectedRAM)} memory`, `${duration(job.ExpectedTime)}`,
      `${job.Cores} ${job.Cores === 1 ? "core" : "cores"}`,
    ];
    if (job.RequestedDisk) req.push(`${job.RequestedDisk} GB disk`);
    if (job.OtherRequests) req.push(...job.OtherRequests);
    const wall = h("span", running ? {dataset: {runningSince: String(job.Started)}} : null,
      duration(job.Walltime));
    const facts = [
      ["Key", h("code", null, job.Key)],
      ["Working dir", h("code", null, job.CwdBase + (job.Cwd || ""))],
      ["Asked for", req.join(" · ")],
      ["Peak memory", h("span", {className: over(job.PeakRAM, job.ExpectedRAM) ? "over" : ""},
        `${mb(job.PeakRAM)} of ${mb(job.ExpectedRAM)}`)],
      ["Wall time", h("span", {className: over(job.Walltime, job.ExpectedTime) ? "over" : ""},
        wall, ` of ${duration(job.ExpectedTime)}`)],
      ["CPU time", duration(job.CPUtime)],
      ["Host", job.Host ? `${job.Host}${job.HostIP ? ` (${job.HostIP})` : ""}` : "–"],
      ["PID", job.Pid || "–"],
      ["Started", date(job.Started)],
      ["Ended", date(job.Ended)],
      ["Attempts", String(job.Attempts)],
      ["Exit code", job.Exited ? String(job.Exitcode) : "–"],
      ["Fail reason", job.FailReason || "–"],
    ];
    if (job.WaitingFor) facts.push(["Waiting for", job.WaitingFor]);
    if (job.LimitGroups) facts.push(["Limit groups", job.LimitGroups.join(", ")]);
    if (job.DepGroups) facts.push(["Dep groups", job.DepGroups.join(", ")]);
    if (job.Dependencies) facts.push(["Depends on", job.Dependencies.join(", ")]);
    if (job.Behaviours) facts.push(["Behaviours", job.Behaviours]);
    if (job.Mounts) facts.push(["Mounts", h("code", null, job.Mounts)]);
    const stream = (label, text) => h("div.stream", null,
      h("h4", null, label),
      text ? h("pre", {tabindex: "0", "aria-label": label}, text)
        : h("p.muted", null, c.state === "complete" || c.state === "running"
          ? "none kept (output is kept for failed runs)" : "empty"));
    const actions = (ACTIONS[c.state] || []).map((a) => h("button", {
      type: "button", className: a === "retry" ? "primary" : "danger",
      dataset: {fid: `${classId(c)}|${job.Key}|${a}`},
      onclick: () => this.act(a, c, job),
    }, VERB[a]));
    return h("li.job", {dataset: {key: job.Key}},
      h("div.cmd", null, h("code", null, `$ ${job.Cmd}`)),
      h("dl.facts", null, ...facts.map(([k, v]) => [h("dt", null, k), h("dd", null, v)])),
      h("div.streams", null, stream("stdout", job.StdOut), stream("stderr", job.StdErr)),
      actions.length ? h("div.job-actions", null, ...actions) : null);
  }

  async act(action, c, job) {
    const n = job ? 1 : c.count;
    const whose = `rep group "${this.name}"`;
    const why = c.reason ? ` because "${c.reason}"` : "";
    const exit = c.state === "buried" || c.state === "delayed" ? ` that exited ${c.exitcode}${why}` : "";
    const jobs = job ? `the ${LABEL[c.state]} job "${job.Cmd}"` : `the ${plural(n, `${LABEL[c.state]} job`)} of ${whose}${exit}`;
    const text = {
      retry: `Retry ${jobs}? They get all their attempts back.`,
      kill: `Kill ${jobs}? ${job ? "It" : "They"} will be treated as failed (retried or buried).`,
      remove: `Remove ${jobs} from the queue? This cannot be undone.`,
      confirmdead: `Confirm that ${jobs} ${job ? "is" : "are"} really dead? ${job ? "It" : "They"} will be retried or buried.`,
    }[action];
    const label = job ? VERB[action] : `${VERB[action]} ${count(n)}`;
    if (!(await this.confirm.ask(text, label, action === "retry" ? "primary" : "danger"))) return;
    const spec = job ? {action, keys: [job.Key]}
      : {action, group: this.name, state: c.state, exitcode: c.exitcode, reason: c.reason};
    try {
      const result = await api.action(spec);
      const done = {retry: "Retried", kill: "Asked to kill", remove: "Removed", confirmdead: "Confirmed dead"}[action];
      this.toast(`${done} ${plural(result.Affected, "job")}.`);
    } catch (err) {
      this.toast(`${VERB[action]} failed: ${err.message}`, true);
    }
    this.changed(undefined);
  }

  async loadCharts() {
    const name = this.name;
    if (name === null) return;
    this.lastCharts = Date.now();
    this.completeSeen = this.row ? this.row[COMPLETE] : -1;
    try {
      const usage = await api.usage(name);
      if (this.name !== name) return;
      const sampled = usage.count > usage.points.length
        ? ` (a spread of ${count(usage.points.length)} of ${count(usage.count)} jobs)` : "";
      usageChart(this.els.memChart, {
        title: `Peak memory of completed jobs${sampled}`, what: "peak",
        used: usage.points.map((p) => p[0]), asked: usage.points.map((p) => p[1]),
        format: mb, floor: 1,
      });
      usageChart(this.els.timeChart, {
        title: `Wall time of completed jobs${sampled}`, what: "wall time",
        used: usage.points.map((p) => p[2]), asked: usage.points.map((p) => p[3]),
        format: duration, floor: 0.01,
      });
    } catch (err) {
      fill(this.els.memChart, h("p.muted", null, `Charts unavailable: ${err.message}`));
    }
    this.loadThroughput();
  }

  async loadThroughput() {
    const name = this.name;
    if (name === null) return;
    try {
      const data = await api.throughput(Number(this.els.tpWindow.value), name);
      if (this.name !== name) return;
      throughputChart(this.els.tpChart, data, {title: "Jobs of this rep group completed"});
    } catch (err) {
      fill(this.els.tpChart, h("p.muted", null, `Throughput unavailable: ${err.message}`));
    }
  }
}
