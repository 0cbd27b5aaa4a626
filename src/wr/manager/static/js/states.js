// The states the page counts, in the order of the feed's rows, with how they are shown.

export const STATES = ["delayed", "dependent", "ready", "running", "lost", "buried", "complete"];
export const COMPLETE = 6;

export const LABEL = {
  delayed: "delayed",
  dependent: "dependent",
  ready: "pending",
  running: "running",
  lost: "lost contact",
  buried: "buried",
  complete: "complete",
};

export const HELP = {
  delayed: "failed, waiting to be retried",
  dependent: "waiting for the jobs they depend on",
  ready: "ready to run, waiting for a runner",
  running: "running (or about to start)",
  lost: "the manager lost contact with their runner",
  buried: "failed too often; retry or remove them",
  complete: "finished successfully",
};

/** The order a bar shows them: done on the left, then work in hand, then trouble. */
export const BAR_ORDER = ["complete", "running", "ready", "delayed", "dependent", "lost", "buried"];

export function total(row) {
  let t = 0;
  for (let i = 0; i < STATES.length; i += 1) t += row[i];
  return t;
}

export function incomplete(row) {
  return total(row) - row[COMPLETE];
}
