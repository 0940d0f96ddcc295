// The operators' page: this service's dead letters (and payout's failed payments, notify's
// failed deliveries) with their replay / retry / redeliver actions, over the service's API with
// the operator's bearer token (kept for the browser tab only). The helpers it shares with the
// adjuster console (common.js, loaded first) render everything with textContent.
"use strict";

const TOKEN_KEY = "cyberclaims.operator.token";
const PAGE_SIZE = 10;
const state = { me: null, offsets: {}, loads: {} };

async function api(method, path) {
  const response = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + sessionStorage.getItem(TOKEN_KEY),
               "Accept": "application/json" },
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && state.me) signedOut("Your sign-in has expired: " + (data.detail || "sign in again"));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// --- the lists ------------------------------------------------------------------------------------

// Each list: where it is read, its cells, and its action (a button per row).
const LISTS = {
  "dead-letters": {
    path: "/v1/dead-letters",
    cells: (item) => [when(item.at), item.event_type, item.consumer,
                      item.marked.length ? item.marked.join(", ") : "incident " + item.incident_id,
                      el("td", { className: "error" }, item.error)],
    action: { label: "Replay", name: (item) => "Replay " + item.event_type + " " + item.event_id,
              path: (item) => `/v1/dead-letters/${item.event_id}/replay`,
              done: (item) => `Replayed ${item.event_type} ${item.event_id}: it is back on its topic; ` +
                              "its line goes once the service has applied it." },
  },
  payments: {
    path: "/v1/payments?state=failed",
    cells: (item) => [when(item.completed_at), el("td", { className: "id" }, item.claim_id),
                      el("td", { className: "id" }, item.incident_id), item.org_id,
                      moneyCell(item.amount, item.currency),
                      item.attempts, el("td", { className: "error" }, item.last_error)],
    action: { label: "Retry", name: (item) => "Retry the payment of claim " + item.claim_id,
              path: (item) => `/v1/claims/${item.claim_id}/payment/retry`,
              done: (item, claim) => `Payment of claim ${item.claim_id} (${money(item.amount, item.currency)}) ` +
                                     `sent again under the same idempotency key: the claim is ${claim.status} again.` },
  },
  deliveries: {
    path: "/v1/deliveries?state=dead",
    cells: (item) => [when(item.created_at), item.event_type,
                      el("td", { className: "id" }, item.incident_id), item.recipient, item.channel,
                      item.target, item.attempts, el("td", { className: "error" }, item.last_error)],
    action: { label: "Redeliver", name: (item) => `Redeliver ${item.event_type} to ${item.recipient} (${item.channel})`,
              path: (item) => `/v1/deliveries/${item.id}/redeliver`,
              done: (item, delivery) => `Delivery of ${item.event_type} to ${item.recipient} scheduled ` +
                                        `again (${delivery.state}), from ${when(delivery.next_attempt_at)}.` },
  },
};

function section(name) { return $("list-" + name); }

async function load(name) {
  const list = LISTS[name];
  const box = section(name);
  const offset = state.offsets[name] || 0;
  const ticket = state.loads[name] = (state.loads[name] || 0) + 1;
  const separator = list.path.includes("?") ? "&" : "?";
  let page;
  try {
    page = await api("GET", `${list.path}${separator}limit=${PAGE_SIZE}&offset=${offset}`);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    say($("result-" + name), "Could not load the list: " + error.message, "error");
    return;
  }
  if (ticket !== state.loads[name]) return;  // a newer load of this list answers instead
  const table = box.querySelector("table");
  table.tBodies[0].replaceChildren();
  for (const item of page.items) {
    const button = el("button", { type: "button", "aria-label": list.action.name(item) }, list.action.label);
    button.addEventListener("click", () => act(name, item, button));
    row(table, [...list.cells(item), el("td", {}, button)]);
  }
  if (!page.items.length) row(table, [el("td", { colspan: "9", className: "muted" }, "Nothing here.")]);
  box.querySelector(".range").textContent = page.total
    ? `${offset + 1}–${offset + page.items.length} of ${page.total}` : "none";
  box.querySelector(".prev").disabled = offset === 0;
  box.querySelector(".next").disabled = offset + page.items.length >= page.total;
  const replayAll = name === "dead-letters" ? $("replay-all") : null;
  if (replayAll) replayAll.disabled = page.total === 0;
}

async function act(name, item, button) {
  const list = LISTS[name];
  const result = $("result-" + name);
  button.disabled = true;
  say(result, "", "");
  try {
    const answer = await api("POST", list.action.path(item));
    say(result, list.action.done(item, answer), "ok");
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    button.disabled = false;
    say(result, list.action.label + " failed: " + error.message, "error");
    return;
  }
  await load(name);
  result.focus();
}

async function replayAll() {
  const result = $("result-dead-letters");
  say(result, "", "");
  try {
    const answer = await api("POST", "/v1/dead-letters/replay");
    say(result, `Replayed ${answer.replayed.length} event(s)` +
                (answer.gone.length ? `; ${answer.gone.length} no longer on their topic (kept 30 days): ${answer.gone.join(", ")}` : "") +
                ". Their lines go once the service has applied them.", answer.gone.length ? "warn" : "ok");
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    say(result, "Replay failed: " + error.message, "error");
    return;
  }
  await load("dead-letters");
}

// --- sign-in --------------------------------------------------------------------------------------

async function signIn() {
  const form = $("sign-in");
  const fieldError = form.querySelector('[data-error-for="token"]');
  fieldError.textContent = "";
  $("token").removeAttribute("aria-invalid");
  try {
    state.me = await api("GET", "/v1/operations");
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    sessionStorage.removeItem(TOKEN_KEY);
    fieldError.textContent = "Sign-in failed: " + error.message;
    $("token").setAttribute("aria-invalid", "true");
    $("token").focus();
    return;
  }
  $("service").textContent = "· " + state.me.service;
  $("who").textContent = `Signed in as ${state.me.sub} (${state.me.role})`;
  $("sign-out").hidden = false;
  $("sign-in-panel").hidden = true;
  $("lists-view").hidden = false;
  $("none").hidden = state.me.lists.length > 0;
  for (const name of Object.keys(LISTS)) section(name).hidden = !state.me.lists.includes(name);
  await Promise.all(state.me.lists.map(load));
  const first = state.me.lists.length ? section(state.me.lists[0]).querySelector("h2") : null;
  if (first && (document.activeElement === document.body || document.activeElement === $("sign-in-button"))) first.focus();
}

function signedOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null;
  $("who").textContent = message || "";
  $("service").textContent = "";
  $("sign-out").hidden = true;
  $("lists-view").hidden = true;
  $("sign-in-panel").hidden = false;
  $("token").value = "";
  $("token").focus();
}

function start() {
  $("tz").value = zone();
  $("tz").addEventListener("change", () => {
    localStorage.setItem(ZONE_KEY, $("tz").value);
    if (state.me) state.me.lists.forEach(load);
  });
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    signIn();
  });
  $("sign-out").addEventListener("click", () => signedOut("Signed out."));
  $("replay-all").addEventListener("click", replayAll);
  for (const name of Object.keys(LISTS)) {
    const box = section(name);
    box.querySelector(".prev").addEventListener("click", () => {
      state.offsets[name] = Math.max(0, (state.offsets[name] || 0) - PAGE_SIZE);
      load(name);
    });
    box.querySelector(".next").addEventListener("click", () => {
      state.offsets[name] = (state.offsets[name] || 0) + PAGE_SIZE;
      load(name);
    });
  }
  if (sessionStorage.getItem(TOKEN_KEY)) signIn(); else $("token").focus();
}

start();
