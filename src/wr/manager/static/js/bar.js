// A stacked progress bar of job states, updated in place.

import {h} from "./dom.js";
import {count, plural} from "./format.js";
import {BAR_ORDER, HELP, LABEL, STATES, total} from "./states.js";

export class StateBar {
  /** onSegment(state) makes segments clickable (by mouse; keyboard users use the name). */
  constructor(el, {onSegment, label} = {}) {
    this.el = el;
    this.label = label || "jobs";
    el.classList.add("bar");
    el.setAttribute("role", "img");
    this.segments = {};
    for (const state of BAR_ORDER) {
      const seg = h(onSegment ? "button.seg" : "span.seg", {
        className: `seg s-${state}`, type: onSegment ? "button" : undefined,
        tabindex: onSegment ? "-1" : undefined,
        dataset: {state},
        onclick: onSegment ? (ev) => { ev.stopPropagation(); onSegment(state); } : undefined,
      });
      seg.hidden = true;
      this.segments[state] = seg;
      el.append(seg);
    }
    this.last = null;
  }

  update(row) {
    const key = row.slice(0, STATES.length).join(",");
    if (key === this.last) return;
    this.last = key;
    const t = total(row);
    const parts = [];
    STATES.forEach((state, i) => {
      const seg = this.segments[state];
      const n = row[i];
      seg.hidden = n === 0;
      if (n) {
        seg.style.flexGrow = String(n);
        const pct = Math.round((n / t) * 1000) / 10;
        seg.title = `${count(n)} ${LABEL[state]} (${pct}%): ${HELP[state]}`;
        parts.push(`${count(n)} ${LABEL[state]}`);
      }
    });
    this.el.setAttribute("aria-label", t ? `${plural(t, "job")}: ${parts.join(", ")}` : "no jobs");
  }
}

/** A legend with each state's count. */
export function legend(el, row) {
  el.replaceChildren(...STATES.map((state, i) => h("li", {
    className: row[i] ? "" : "zero", title: HELP[state],
  }, h(`span.key.s-${state}`), `${LABEL[state]} `, h("strong", null, count(row[i])))));
}
