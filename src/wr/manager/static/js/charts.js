// Charts drawn as SVG by hand: usage against request, and throughput over time.

import {fill, h, s} from "./dom.js";
import {clock, count, plural} from "./format.js";

const H = 190;
let W = 480;

/** Charts are drawn at their box's width, so text keeps its size; redrawn on resize. */
const drawn = new Map();
let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    for (const [el, draw] of drawn) {
      if (!el.isConnected) drawn.delete(el);
      else draw();
    }
  }, 200);
});

function sized(el, draw) {
  const run = () => {
    W = Math.round(Math.max(300, Math.min(el.clientWidth || 480, 1400)));
    draw();
  };
  drawn.set(el, run);
  run();
}
const PAD = {left: 44, right: 12, top: 12, bottom: 34};

function median(values) {
  if (!values.length) return 0;
  const v = [...values].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * Distribution of what completed jobs used (filled bars) against what they asked for
 * (outlined bars), on a log scale so 12 MiB used of 1 GiB asked is plain to see.
 */
export function usageChart(el, opts) {
  sized(el, () => drawUsage(el, opts));
}

function drawUsage(el, {title, used, asked, format, floor, what}) {
  const n = used.length;
  if (!n) {
    fill(el, h("figcaption", null, title), h("p.muted", null, "No completed jobs yet."));
    return;
  }
  const clamp = (v) => Math.max(v || 0, floor);
  const u = used.map(clamp);
  const a = asked.map(clamp);
  let lo = Math.min(...u, ...a) / 1.2;
  let hi = Math.max(...u, ...a) * 1.2;
  if (hi / lo < 4) {
    const mid = Math.sqrt(hi * lo);
    lo = mid / 2;
    hi = mid * 2;
  }
  const bins = 24;
  const llo = Math.log(lo);
  const span = Math.log(hi) - llo;
  const bin = (v) => Math.min(bins - 1, Math.max(0, Math.floor((Math.log(v) - llo) / span * bins)));
  const usedBins = new Array(bins).fill(0);
  const askedBins = new Array(bins).fill(0);
  u.forEach((v) => { usedBins[bin(v)] += 1; });
  a.forEach((v) => { askedBins[bin(v)] += 1; });
  const top = Math.max(...usedBins, ...askedBins);
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const bw = iw / bins;
  const y = (c) => PAD.top + ih - (c / top) * ih;
  const over = used.filter((v, i) => v > asked[i]).length;
  const mu = median(used);
  const ma = median(asked);
  const share = ma > 0 ? Math.round((mu / ma) * 1000) / 10 : 0;
  const summary = `Median ${what} ${format(mu)}, ${share}% of the median ${format(ma)} ` +
    `asked for; ${plural(over, "job")} of ${count(n)} went over.`;
  const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}. ${summary}`,
    class: "chart-svg"});
  // Grid and axes.
  svg.append(s("line", {x1: PAD.left, x2: W - PAD.right, y1: PAD.top + ih, y2: PAD.top + ih, class: "axis"}));
  svg.append(s("text", {x: PAD.left - 6, y: PAD.top + 4, class: "tick", "text-anchor": "end"}, count(top)));
  svg.append(s("text", {x: PAD.left - 6, y: PAD.top + ih, class: "tick", "text-anchor": "end"}, "0"));
  const ticks = W < 420 ? 3 : 4;
  for (let i = 0; i <= ticks; i += 1) {
    const v = Math.exp(llo + span * (i / ticks));
    const xx = PAD.left + iw * (i / ticks);
    svg.append(s("line", {x1: xx, x2: xx, y1: PAD.top + ih, y2: PAD.top + ih + 4, class: "axis"}));
    svg.append(s("text", {x: xx, y: H - 14, class: "tick",
      "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle"}, format(v)));
  }
  for (let i = 0; i < bins; i += 1) {
    const x0 = PAD.left + i * bw;
    const from = format(Math.exp(llo + span * (i / bins)));
    const to = format(Math.exp(llo + span * ((i + 1) / bins)));
    if (usedBins[i]) {
      svg.append(s("rect", {x: x0 + 1, y: y(usedBins[i]), width: Math.max(bw - 2, 1),
        height: PAD.top + ih - y(usedBins[i]), class: "used"},
      s("title", null, `${plural(usedBins[i], "job")} used ${from} – ${to}`)));
    }
    if (askedBins[i]) {
      svg.append(s("rect", {x: x0 + 1, y: y(askedBins[i]), width: Math.max(bw - 2, 1),
        height: PAD.top + ih - y(askedBins[i]), class: "asked"},
      s("title", null, `${plural(askedBins[i], "job")} asked for ${from} – ${to}`)));
    }
  }
  svg.append(s("text", {x: W / 2, y: H - 1, class: "tick", "text-anchor": "middle"}, "log scale"));
  fill(el,
    h("figcaption", null, title),
    svg,
    h("ul.chart-legend", null,
      h("li", null, h("span.key.used"), `used (${what})`),
      h("li", null, h("span.key.asked"), "asked for"),
    ),
    h("p.chart-summary", null, summary),
  );
}

/** Jobs completed per bucket of time. */
export function throughputChart(el, data, opts = {}) {
  sized(el, () => drawThroughput(el, data, opts));
}

function drawThroughput(el, data, {title = "Jobs completed"} = {}) {
  const {since, bucket, now, points} = data;
  const nb = Math.max(1, Math.ceil((now - since) / bucket));
  const counts = new Array(nb).fill(0);
  for (const [t, c] of points) {
    const i = Math.floor((t - since) / bucket);
    if (i >= 0 && i < nb) counts[i] += c;
  }
  const total = counts.reduce((a, b) => a + b, 0);
  const top = Math.max(1, ...counts);
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const bw = iw / nb;
  const per = bucket >= 3600 ? `${bucket / 3600} h` : bucket >= 60 ? `${bucket / 60} min` : `${bucket} s`;
  const recent = counts.slice(-5);
  const rate = recent.reduce((a, b) => a + b, 0) / (recent.length * bucket) * 60;
  const summary = `${plural(total, "job")} completed in this window; ` +
    `lately ${Math.round(rate * 10) / 10} a minute.`;
  const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}. ${summary}`,
    class: "chart-svg"});
  svg.append(s("line", {x1: PAD.left, x2: W - PAD.right, y1: PAD.top + ih, y2: PAD.top + ih, class: "axis"}));
  svg.append(s("text", {x: PAD.left - 6, y: PAD.top + 4, class: "tick", "text-anchor": "end"}, count(top)));
  svg.append(s("text", {x: PAD.left - 6, y: PAD.top + ih, class: "tick", "text-anchor": "end"}, "0"));
  const ticks = W < 560 ? 2 : 4;
  for (let i = 0; i <= ticks; i += 1) {
    const t = since + (now - since) * (i / ticks);
    const xx = PAD.left + iw * (i / ticks);
    svg.append(s("line", {x1: xx, x2: xx, y1: PAD.top + ih, y2: PAD.top + ih + 4, class: "axis"}));
    svg.append(s("text", {x: xx, y: H - 14, class: "tick",
      "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle"}, clock(t)));
  }
  counts.forEach((c, i) => {
    if (!c) return;
    const hgt = (c / top) * ih;
    svg.append(s("rect", {x: PAD.left + i * bw + (bw > 3 ? 0.5 : 0), y: PAD.top + ih - hgt,
      width: Math.max(bw - (bw > 3 ? 1 : 0), 0.8), height: hgt, class: "done"},
    s("title", null, `${clock(since + i * bucket)}: ${plural(c, "job")} in ${per}`)));
  });
  svg.append(s("text", {x: W / 2, y: H - 1, class: "tick", "text-anchor": "middle"}, `jobs per ${per}`));
  fill(el, h("figcaption", null, title), svg, h("p.chart-summary", null, summary));
}
