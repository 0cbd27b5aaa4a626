// The page: wires the live feed, the overview, the drill-down and the dialogs together.

import {api, token} from "./api.js";
import {throughputChart} from "./charts.js";
import {fill, h} from "./dom.js";
import {Drill} from "./drill.js";
import {Feed} from "./feed.js";
import {count, date, duration, plural} from "./format.js";
import {historyList, Overview} from "./overview.js";
import {COMPLETE} from "./states.js";

const $ = (id) => document.getElementById(id);

/** What the bench and the browser tests read. */
const stats = {snapshots: 0, updates: 0, handlerMs: 0, maxHandlerMs: 0, renderMs: 0,
  maxRenderMs: 0, renders: 0, state: "connecting"};
window.wrStats = stats;

class Confirm {
  constructor(dialog) {
    this.dialog = dialog;
    this.text = dialog.querySelector(".confirm-text");
    this.ok = dialog.querySelector("button[value=ok]");
  }

  get open() {
    return this.dialog.open;
  }

  ask(text, label, kind) {
    this.text.textContent = text;
    this.ok.textContent = label;
    this.ok.className = kind;
    this.dialog.returnValue = "";
    this.dialog.showModal();
    return new Promise((resolve) => {
      this.dialog.addEventListener("close", () => resolve(this.dialog.returnValue === "ok"),
        {once: true});
    });
  }
}

let toastTimer = null;
function toast(message, error = false) {
  const el = $("toast");
  el.textContent = message;
  el.className = error ? "toast error" : "toast";
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, error ? 12000 : 6000);
}

function noToken() {
  fill($("banner"), h("p", null, "This page needs the manager's token in its address (",
    h("code", null, "?token=…"), "). Use the address ", h("code", null, "wr manager start"),
    " printed; the token is also in ", h("code", null, "~/.wr_<deployment>/client.token"), "."));
  $("banner").hidden = false;
}

function main() {
  if (!token) {
    noToken();
    return;
  }
  const confirm = new Confirm($("confirm"));
  const overview = new Overview({
    list: $("group-list"), totalBar: $("total-bar"), legend: $("legend"),
    totalCount: $("total-count"), totalSummary: $("total-summary"),
    groupCount: $("group-count"), more: $("more-groups"), empty: $("no-groups"),
    filter: $("filter"), sort: $("sort"), hideFinished: $("hide-finished"),
  }, {onOpen: openGroup});
  const drill = new Drill({
    title: $("drill-title"), bar: $("drill-bar"), legend: $("drill-legend"),
    summary: $("drill-summary"), classes: $("classes"), memChart: $("mem-chart"),
    timeChart: $("time-chart"), tpChart: $("group-tp"), tpWindow: $("drill-tp-window"),
  }, {confirm, toast});

  const renderOverview = overview.render.bind(overview);
  overview.render = () => {
    const t0 = performance.now();
    renderOverview();
    const ms = performance.now() - t0;
    stats.renders += 1;
    stats.renderMs += ms;
    stats.maxRenderMs = Math.max(stats.maxRenderMs, ms);
  };

  let lastFrom = null;
  function openGroup(name, state) {
    lastFrom = name;
    const params = new URLSearchParams({group: name});
    if (state) params.set("state", state);
    location.hash = params.toString();
  }

  function route() {
    const params = new URLSearchParams(location.hash.slice(1));
    const name = params.get("group");
    if (name !== null) {
      $("overview-view").hidden = true;
      $("drill-view").hidden = false;
      document.title = `${name} · wr`;
      const known = overview.groups.get(name);
      drill.open(name, params.get("state"), known);
      $("drill-title").focus({preventScroll: true});
      window.scrollTo(0, 0);
    } else {
      drill.close();
      $("drill-view").hidden = true;
      $("overview-view").hidden = false;
      document.title = "wr status";
      if (lastFrom !== null) {
        const li = $("group-list").querySelector(`li[data-name="${CSS.escape(lastFrom)}"] .group-name`);
        if (li) li.focus();
      }
    }
  }
  window.addEventListener("hashchange", route);

  // -- warnings and the manager's header -------------------------------------------------
  function showWarnings(warnings) {
    const section = $("warnings");
    section.hidden = warnings.length === 0;
    $("warning-list").replaceChildren(...warnings.map((w) => h("li", null,
      h("p.msg", null, w.Msg),
      h("p.when", null, `${plural(w.Count, "time")}, first ${date(w.FirstDate)}, last ${date(w.LastDate)}`),
      h("button", {type: "button", "aria-label": `Dismiss: ${w.Msg}`, onclick: async () => {
        try { await api.dismiss(w.Msg); } catch (err) { toast(err.message, true); }
      }}, "Dismiss"))));
  }
  $("dismiss-all").addEventListener("click", async () => {
    try { await api.dismiss(); } catch (err) { toast(err.message, true); }
  });

  function showManager(m) {
    if (!m || !m.Host) return;
    const mode = m.Mode && m.Mode !== "started" ? m.Mode : "";
    fill($("manager"), `${m.Host}:${m.WebPort} · ${m.Deployment} · ${m.Scheduler}`,
      mode ? h("strong.mode", null, ` · ${mode}`) : null);
    $("manager").title = `wr ${m.Version}, pid ${m.PID}`;
  }

  // -- throughput ------------------------------------------------------------------------
  let lastTp = 0;
  let completeSeen = -1;
  async function loadThroughput() {
    lastTp = Date.now();
    try {
      throughputChart($("throughput"), await api.throughput(Number($("tp-window").value)));
    } catch (err) {
      fill($("throughput"), h("p.muted", null, `Throughput unavailable: ${err.message}`));
    }
  }
  $("tp-window").addEventListener("change", loadThroughput);
  function maybeThroughput() {
    const done = overview.totals()[COMPLETE];
    if (done !== completeSeen && Date.now() - lastTp > 15000) {
      completeSeen = done;
      loadThroughput();
    }
  }

  // -- the feed --------------------------------------------------------------------------
  function timed(fn) {
    return (msg) => {
      const t0 = performance.now();
      fn(msg);
      const ms = performance.now() - t0;
      stats.handlerMs += ms;
      stats.maxHandlerMs = Math.max(stats.maxHandlerMs, ms);
    };
  }
  const feed = new Feed({
    snapshot: timed((msg) => {
      stats.snapshots += 1;
      overview.setAll(msg.groups);
      showWarnings(msg.warnings || []);
      showManager(msg.manager);
      if (drill.isOpen) drill.changed(overview.groups.get(drill.name) || null);
      maybeThroughput();
    }),
    update: timed((msg) => {
      stats.updates += 1;
      overview.apply(msg.groups);
      if (msg.warnings) showWarnings(msg.warnings);
      if (msg.manager) showManager(msg.manager);
      if (drill.isOpen && Object.prototype.hasOwnProperty.call(msg.groups, drill.name)) {
        drill.changed(msg.groups[drill.name]);
      }
      maybeThroughput();
    }),
    state: (name, detail) => {
      stats.state = name;
      const conn = $("conn");
      const banner = $("banner");
      document.body.classList.toggle("stale", name !== "live");
      conn.dataset.state = name;
      if (name === "live") {
        conn.textContent = "live";
        banner.hidden = true;
      } else if (name === "connecting") {
        conn.textContent = detail.attempt ? "reconnecting…" : "connecting…";
      } else if (name === "down") {
        conn.textContent = "disconnected";
        fill(banner, h("p", null,
          `Connection to the manager lost. Trying again in ${Math.ceil(detail.retryIn / 1000)} s ` +
          `(attempt ${detail.attempt}); the counts below may be out of date. `,
          h("button", {type: "button", onclick: () => feed.now()}, "Reconnect now")));
        banner.hidden = false;
      } else if (name === "refused") {
        conn.textContent = "refused";
        fill(banner, h("p", null, "The manager refused this page's token: ", detail.reason,
          ". If the manager was started afresh after a drain it has a new token: use the " +
          "address wr manager start printed, or the token in ~/.wr_<deployment>/client.token."));
        banner.hidden = false;
      }
    },
  });
  window.wrFeed = feed;

  // -- search including history ----------------------------------------------------------
  $("search-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = $("filter").value.trim();
    const section = $("history");
    section.hidden = false;
    fill($("history-note"), "Searching…");
    try {
      const found = await api.search(q);
      const n = Object.keys(found.groups).length;
      fill($("history-note"), found.total
        ? `${plural(found.total, "rep group")} ${q ? `contain “${q}”` : "known"}, including finished ones` +
          `${found.total > n ? ` (first ${count(n)} shown)` : ""}; counts as of ${new Date().toLocaleTimeString()}.`
        : `No rep group, current or past, contains “${q}”.`);
      historyList($("history-list"), found.groups, openGroup);
      $("history-h").focus();
    } catch (err) {
      fill($("history-note"), `Search failed: ${err.message}`);
    }
  });
  $("close-history").addEventListener("click", () => {
    $("history").hidden = true;
    $("filter").focus();
  });

  // -- keyboard and clocks ---------------------------------------------------------------
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || confirm.open) return;
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
    if (ev.key === "Escape" && drill.isOpen && !typing) {
      ev.preventDefault();
      location.hash = "";
    } else if (ev.key === "/" && !typing) {
      ev.preventDefault();
      if (drill.isOpen) location.hash = "";
      $("filter").focus();
    }
  });
  $("back").addEventListener("click", (ev) => {
    ev.preventDefault();
    location.hash = "";
  });
  setInterval(() => {
    const now = Date.now() / 1000;
    for (const el of document.querySelectorAll("[data-running-since]")) {
      el.textContent = duration(now - Number(el.dataset.runningSince));
    }
  }, 1000);
  setInterval(() => overview.setAll(Object.fromEntries(overview.groups)), 60000);

  route();
  feed.connect();
  loadThroughput();
}

main();
