// Talking to the manager: the token from the page's address, JSON over HTTPS.

export const token = new URLSearchParams(location.search).get("token") || "";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(method, path, params, body) {
  const url = new URL(`/web/api/${path}`, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null) url.searchParams.set(k, v);
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: {Authorization: `Bearer ${token}`, "Content-Type": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, "the manager cannot be reached");
  }
  if (!response.ok) {
    const text = (await response.text()).trim();
    throw new ApiError(response.status, text || `${response.status} ${response.statusText}`);
  }
  return response.json();
}

export const api = {
  info: () => call("GET", "info"),
  search: (q, limit = 200) => call("GET", "search", {q, limit}),
  group: (group, perClass) => call("GET", "group", {group, per_class: perClass}),
  jobs: (group, cls, offset, limit) => call("GET", "jobs", {
    group, state: cls.state, exitcode: cls.state === "complete" ? undefined : cls.exitcode,
    reason: cls.state === "complete" ? undefined : cls.reason, offset, limit,
  }),
  usage: (group) => call("GET", "usage", {group}),
  throughput: (window, group) => call("GET", "throughput", {window, group}),
  action: (spec) => call("POST", "action", {}, spec),
  dismiss: (msg) => call("POST", "dismiss", {}, msg === undefined ? {} : {msg}),
};

/** The live feed's address, with the token. */
export function liveURL() {
  const url = new URL("/web/live", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams({token}).toString();
  return url.toString();
}
