// Formatting of sizes, durations and dates, as people read them.

const IEC = ["MiB", "GiB", "TiB", "PiB"];

/** Megabytes (wr's unit: 1 MB = 1 MiB) as "512 MiB", "1.5 GiB". */
export function mb(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value < 1 && value > 0) return `${Math.round(value * 1024)} KiB`;
  let v = value;
  let i = 0;
  while (v >= 1024 && i < IEC.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${trim(v)} ${IEC[i]}`;
}

/** Seconds as "1h 2m 3s", "4.2s" or "350 ms". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 0) seconds = 0;
  if (seconds < 1) return seconds === 0 ? "0s" : `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${trim(seconds)}s`;
  let s = Math.round(seconds);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const parts = [];
  if (d) parts.push(`${d}d`);
  if (h) parts.push(`${h}h`);
  if (m) parts.push(`${m}m`);
  if (s && !d) parts.push(`${s}s`);
  return parts.join(" ");
}

const UNSET = -62135596800;

/** Unix seconds as a local "2024-05-01 13:02:03" (or "–" when unset). */
export function date(unix) {
  if (!unix || unix === UNSET) return "–";
  const t = new Date(unix * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ` +
    `${p(t.getHours())}:${p(t.getMinutes())}:${p(t.getSeconds())}`;
}

/** A short local time "13:02" (with the date when not today). */
export function clock(unix) {
  const t = new Date(unix * 1000);
  const p = (n) => String(n).padStart(2, "0");
  const now = new Date();
  const hm = `${p(t.getHours())}:${p(t.getMinutes())}`;
  if (t.toDateString() === now.toDateString()) return hm;
  return `${p(t.getMonth() + 1)}-${p(t.getDate())} ${hm}`;
}

/** How long ago, roughly: "just now", "5 min ago", "3 h ago". */
export function ago(unix) {
  const s = Date.now() / 1000 - unix;
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** 1234567 as "1,234,567". */
export function count(n) {
  return Number(n).toLocaleString("en-GB");
}

/** "1 job", "2 jobs". */
export function plural(n, word, words = `${word}s`) {
  return `${count(n)} ${n === 1 ? word : words}`;
}

function trim(v) {
  if (v >= 100) return String(Math.round(v));
  if (v >= 10) return String(Math.round(v * 10) / 10);
  return String(Math.round(v * 100) / 100);
}
