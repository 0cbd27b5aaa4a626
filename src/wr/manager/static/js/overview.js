// The overview: totals and one row per rep group, patched in place as the feed reports.

import {legend, StateBar} from "./bar.js";
import {h} from "./dom.js";
import {ago, count} from "./format.js";
import {COMPLETE, incomplete, LABEL, STATES, total} from "./states.js";

const PAGE = 100;

export class Overview {
  constructor(els, {onOpen}) {
    this.els = els;
    this.onOpen = onOpen;
    this.groups = new Map();
    this.rows = new Map();
    this.dirty = new Set();
    this.limit = PAGE;
    this.frame = 0;
    this.orderKey = "";
    this.totalBar = new StateBar(els.totalBar);
    els.filter.addEventListener("input", () => { this.limit = PAGE; this.schedule(); });
    els.sort.addEventListener("change", () => this.schedule());
    els.hideFinished.addEventListener("change", () => this.schedule());
    els.more.addEventListener("click", () => { this.limit = Infinity; this.schedule(); });
  }

  /** A snapshot: every group, replacing what was known. */
  setAll(groups) {
    this.groups = new Map(Object.entries(groups));
    for (const name of this.rows.keys()) this.dirty.add(name);
    for (const name of this.groups.keys()) this.dirty.add(name);
    this.schedule();
  }

  /** An update: changed groups (null: gone). */
  apply(changes) {
    for (const [name, row] of Object.entries(changes)) {
      if (row === null) this.groups.delete(name);
      else this.groups.set(name, row);
      this.dirty.add(name);
    }
    this.schedule();
  }

  totals() {
    const sum = new Array(STATES.length).fill(0);
    for (const row of this.groups.values()) {
      for (let i = 0; i < STATES.length; i += 1) sum[i] += row[i];
    }
    return sum;
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  visible() {
    const needle = this.els.filter.value.trim().toLowerCase();
    const hide = this.els.hideFinished.checked;
    const names = [];
    for (const [name, row] of this.groups) {
      if (needle && !name.toLowerCase().includes(needle)) continue;
      if (hide && incomplete(row) === 0) continue;
      names.push(name);
    }
    const groups = this.groups;
    const by = this.els.sort.value;
    const cmpName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
    const sorters = {
      active: (a, b) => {
        const ra = groups.get(a);
        const rb = groups.get(b);
        const fa = incomplete(ra) === 0;
        const fb = incomplete(rb) === 0;
        if (fa !== fb) return fa ? 1 : -1;
        if (fa) return rb[STATES.length] - ra[STATES.length] || cmpName(a, b);
        return cmpName(a, b);
      },
      name: cmpName,
      recent: (a, b) => groups.get(b)[STATES.length] - groups.get(a)[STATES.length] || cmpName(a, b),
      trouble: (a, b) => {
        const ra = groups.get(a);
        const rb = groups.get(b);
        return (rb[5] + rb[4]) - (ra[5] + ra[4]) || incomplete(rb) - incomplete(ra) || cmpName(a, b);
      },
      size: (a, b) => total(groups.get(b)) - total(groups.get(a)) || cmpName(a, b),
    };
    names.sort(sorters[by] || sorters.active);
    return names;
  }

  render() {
    const sum = this.totals();
    this.totalBar.update(sum);
    legend(this.els.legend, sum);
    const t = total(sum);
    this.els.totalCount.textContent = count(t);
    this.els.totalSummary.textContent = t
      ? `${count(sum[COMPLETE])} of ${count(t)} complete (${Math.floor((sum[COMPLETE] / t) * 1000) / 10}%)`
      : "No jobs yet. Add some with wr add or POST /rest/v1/jobs/.";
    const names = this.visible();
    const shown = names.slice(0, this.limit);
    this.els.groupCount.textContent = names.length === this.groups.size
      ? `(${count(this.groups.size)})`
      : `(${count(names.length)} of ${count(this.groups.size)})`;
    for (const name of this.dirty) {
      const row = this.groups.get(name);
      const view = this.rows.get(name);
      if (!row) {
        if (view) {
          view.li.remove();
          this.rows.delete(name);
        }
      } else if (view) {
        this.updateRow(view, row);
      }
    }
    this.dirty.clear();
    const lis = shown.map((name) => {
      let view = this.rows.get(name);
      if (!view) {
        view = this.makeRow(name);
        this.rows.set(name, view);
        this.updateRow(view, this.groups.get(name));
      }
      return view.li;
    });
    const key = shown.join("\u0000");
    if (key !== this.orderKey) {
      this.orderKey = key;
      this.els.list.replaceChildren(...lis);
    }
    const rest = names.length - shown.length;
    this.els.more.hidden = rest <= 0;
    this.els.more.textContent = `Show all ${count(names.length)} rep groups`;
    this.els.empty.hidden = names.length > 0;
  }

  makeRow(name) {
    const open = (state) => this.onOpen(name, state);
    const button = h("button.group-name", {type: "button", onclick: () => open(null)}, name);
    const badge = h("span.badge");
    const summary = h("span.summary");
    const when = h("span.when");
    const barEl = h("div");
    const bar = new StateBar(barEl, {onSegment: open});
    const li = h("li.group", {dataset: {name}},
      h("div.group-head", null, button, badge, summary, when), barEl);
    return {li, bar, badge, summary, when};
  }

  updateRow(view, row) {
    view.bar.update(row);
    const t = total(row);
    view.badge.textContent = count(t);
    view.badge.title = `${count(t)} jobs in all`;
    const parts = [];
    for (const i of [3, 4, 5, 2, 0, 1]) {
      if (row[i]) parts.push(`${count(row[i])} ${LABEL[STATES[i]]}`);
    }
    const pct = t ? Math.floor((row[COMPLETE] / t) * 1000) / 10 : 0;
    parts.push(`${pct}% complete`);
    view.summary.textContent = parts.join(" · ");
    view.li.classList.toggle("finished", incomplete(row) === 0);
    view.li.classList.toggle("trouble", row[4] + row[5] > 0);
    const changed = row[STATES.length];
    view.when.textContent = changed ? ago(changed) : "";
    view.when.title = changed ? new Date(changed * 1000).toLocaleString() : "";
  }
}

/** Results of a history search: a list like the overview's, not live. */
export function historyList(el, groups, onOpen) {
  el.replaceChildren(...Object.entries(groups).map(([name, row]) => {
    const barEl = h("div");
    new StateBar(barEl, {onSegment: (state) => onOpen(name, state)}).update(row);
    const t = total(row);
    const pct = t ? Math.floor((row[COMPLETE] / t) * 1000) / 10 : 0;
    return h("li.group", {dataset: {name}},
      h("div.group-head", null,
        h("button.group-name", {type: "button", onclick: () => onOpen(name, null)}, name),
        h("span.badge", null, count(t)),
        h("span.summary", null, t ? `${pct}% complete` : "no jobs")),
      barEl);
  }));
}
