// The adjuster console: queues and a claim page over payout's API, with the adjuster's
// bearer token (kept for the browser tab only). The helpers it shares with the operators' page
// (common.js, loaded first) render everything with textContent: nothing from the API is ever
// parsed as HTML.
"use strict";

const TOKEN_KEY = "cyberclaims.adjuster.token";
const PAGE_SIZE = 10;
const QUEUES = ["approval", "verification", "decided"];
const NEEDS = { verify_losses: "losses to verify", set_outage: "the outage hours",
                data_issue: "a data issue to resolve" };
const state = {
  me: null, search: "", offsets: { approval: 0, verification: 0, decided: 0 },
  // The newest load of each queue: an older answer arriving late must not overwrite it.
  loads: { approval: 0, verification: 0, decided: 0 },
};

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + sessionStorage.getItem(TOKEN_KEY),
               "Content-Type": "application/json", "Accept": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && state.me) signedOut("Your sign-in has expired: " + (data.detail || "sign in again"));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function facts(list, pairs) {
  list.replaceChildren();
  for (const [term, value] of pairs) list.append(el("dt", {}, term), el("dd", {}, value ?? "—"));
}

// --- messages and problem+json next to the field ----------------------------------------------

function clearErrors(form) {
  for (const span of form.querySelectorAll("[data-error-for]")) span.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function showProblem(form, target, error) {
  let placed = false;
  for (const { field, message } of error.errors || []) {
    const span = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    if (!span) continue;
    span.textContent = message;
    const input = form.querySelector(`[data-field="${CSS.escape(field)}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      if (!placed) input.focus();
    }
    placed = true;
  }
  say(target, placed ? "" : error.message, "error");
}

async function submit(form, target, action, success) {
  clearErrors(form);
  say(target, "", "");
  try {
    await action();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    showProblem(form, target, error);
    return;
  }
  say(target, success, "ok");
}

// --- sign-in --------------------------------------------------------------------------------------

async function signIn() {
  const form = $("sign-in");
  clearErrors(form);
  try {
    state.me = await api("GET", "/v1/me");
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    form.querySelector('[data-error-for="token"]').textContent = "Sign-in failed: " + error.message;
    $("token").setAttribute("aria-invalid", "true");
    $("token").focus();
    return;
  }
  const limit = state.me.authority_limit === null ? "no authority to decide"
    : "authority limit " + money(state.me.authority_limit);
  $("who").textContent = `Signed in as ${state.me.sub} (${state.me.role}), ${limit}`;
  $("sign-out").hidden = false;
  $("nav").hidden = false;
  route();
}

function signedOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null;
  $("who").textContent = "";
  $("sign-out").hidden = true;
  $("nav").hidden = true;
  show("sign-in-panel");
  $("sign-in").querySelector('[data-error-for="token"]').textContent = why;
}

// --- queues ---------------------------------------------------------------------------------------

async function showQueues() {
  show("queues-view");
  await Promise.all(QUEUES.map(loadQueue));
}

async function loadQueue(name) {
  const ticket = ++state.loads[name];
  const section = $("queue-" + name);
  const params = new URLSearchParams({ limit: PAGE_SIZE, offset: state.offsets[name] });
  if (state.search) params.set("q", state.search);
  let page;
  try {
    page = await api("GET", `/v1/queues/${name}?${params}`);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (ticket !== state.loads[name]) return;
    showProblem($("search"), section.querySelector(".range"), error);
    return;
  }
  if (ticket !== state.loads[name]) return;
  const table = section.querySelector("table");
  table.tBodies[0].replaceChildren();
  for (const claim of page.items) {
    const link = el("a", { href: "#/claims/" + claim.id }, claim.incident_id.slice(0, 8));
    const who = claim.holder_name || claim.org_id;
    const cells = {
      approval: [link, who, claim.policy_number, when(claim.opened_at), moneyCell(claim.payable),
                 claim.mine ? "yes, you can approve" : ""],
      verification: [link, who, claim.policy_number, when(claim.opened_at),
                     claim.needs.map((need) => NEEDS[need]).join("; ")],
      decided: [link, who, claim.policy_number, when(claim.decided_at), words(claim.status),
                moneyCell(claim.payable)],
    }[name];
    row(table, cells, { "data-claim": claim.id, className: claim.mine ? "mine" : undefined });
  }
  const first = page.total ? page.offset + 1 : 0;
  const last = page.offset + page.items.length;
  section.querySelector(".range").textContent = page.total ? `${first} to ${last} of ${page.total}` : "none";
  section.querySelector(".range").className = "range";
  section.querySelector(".prev").disabled = page.offset === 0;
  section.querySelector(".next").disabled = last >= page.total;
}

// --- the claim page ---------------------------------------------------------------------------------

async function showClaim(id) {
  show("claim-view");
  const [claim, file, assessments] = await Promise.all([
    api("GET", "/v1/claims/" + id), api("GET", `/v1/claims/${id}/file`),
    api("GET", `/v1/claims/${id}/assessments`),
  ]);
  const currency = file.policy?.currency || claim.payment?.currency || "CNY";
  renderSummary(claim, currency);
  renderPolicy(file.policy);
  renderIncident(claim, file);
  renderFindings(file);
  renderLosses(claim, currency);
  renderOutage(claim, file);
  renderQuestions(file.coverage_questions);
  renderBreakdown(claim, currency);
  renderDecision(claim, currency);
  renderHistory(assessments, currency);
  renderPayment(claim.payment);
  $("claim-view").dataset.claim = id;
}

function renderSummary(claim, currency) {
  $("claim-id").textContent = claim.id;
  $("claim-status").textContent = words(claim.status);
  $("claim-incident").textContent = claim.incident_id;
  $("claim-payable").textContent = money(claim.payable, currency);
  $("claim-approvals").textContent = claim.approvals_required
    ? `${claim.approvals.length} of ${claim.approvals_required}` : "—";
  $("claim-approved").textContent = money(claim.approved_amount, currency);
  $("claim-data-issue").hidden = !claim.data_issue;
  $("claim-data-issue").textContent = claim.data_issue ? "Data issue: " + claim.data_issue : "";
  $("claim-remediation-note").hidden = !claim.remediation_note;
  $("claim-remediation-note").textContent = claim.remediation_note || "";
  const frozen = claim.dead_letters || [];
  $("claim-dead-letters").hidden = !frozen.length;
  $("claim-dead-letters").textContent = frozen.length
    ? "Frozen: " + frozen.length + " event(s) about this claim failed and wait for an operator ("
      + frozen.map((letter) => letter.event_type + ": " + letter.error).join("; ") + ")."
    : "";
  $("claim-closed-remainder").hidden = !claim.closed_remainder;
  $("claim-closed-remainder").textContent = claim.closed_remainder
    ? `Closed remainder ${money(claim.closed_remainder, currency)}: ${claim.decision_reason}` : "";
}

function renderPolicy(policy) {
  const table = $("policy-sections");
  table.tBodies[0].replaceChildren();
  if (!policy) {
    facts($("policy"), [["Policy", "not received yet"]]);
    return;
  }
  facts($("policy"), [
    ["Policyholder", `${policy.holder_name} (${policy.org_id})`],
    ["Policy", policy.policy_number],
    ["Period", `${when(policy.period_start)} to ${when(policy.period_end)}`],
    ["Retroactive date", policy.retroactive_date ? when(policy.retroactive_date) : "none"],
    ["Aggregate limit", money(policy.aggregate_limit, policy.currency)],
    ["Retention", money(policy.retention, policy.currency)],
    ["BI waiting period", policy.bi_waiting_period_hours + " hours"],
    ["Notice period", policy.notice_period_hours + " hours"],
    ["War exclusion", policy.war_exclusion ? "yes" : "no"],
  ]);
  for (const [section, terms] of Object.entries(policy.sections)) {
    row(table, [words(section), moneyCell(terms.sublimit, policy.currency)]);
  }
}

function renderIncident(claim, file) {
  const incident = file.incident;
  if (!incident) {
    facts($("incident"), [["Incident", "the report has not arrived yet"]]);
    return;
  }
  facts($("incident"), [
    ["What", incident.title || words(incident.category)],
    ["Reported", incident.description],
    ["Category", words(incident.category)],
    ["Occurred", when(incident.occurred_at)],
    ["Discovered", when(incident.discovered_at)],
    ["Reported at", when(incident.reported_at)],
    ["Priority", incident.priority || "not triaged yet"],
    ["Regulatory grade", words(incident.regulatory_grade)],
    ["Regulatory deadline", when(incident.regulatory_deadline)],
  ]);
}

function renderFindings(file) {
  const table = $("findings");
  table.tBodies[0].replaceChildren();
  for (const f of file.findings) {
    row(table, [f.vendor_id, words(f.job_type), f.root_cause, f.attack_vector, words(f.attribution),
                when(f.contained_at)]);
  }
  const outage = file.verified_outage
    ? `verified outage ${when(file.verified_outage.started_at)} to ${when(file.verified_outage.ended_at)}`
    : "no verified outage";
  $("findings-summary").textContent = file.attribution === null
    ? "The response is not complete: no findings yet."
    : `Attribution: ${words(file.attribution)}; ${outage}` +
      (file.findings.length ? "." : "; no vendor reported findings.");
}

function renderLosses(claim, currency) {
  const table = $("losses");
  table.tBodies[0].replaceChildren();
  const open = ["open", "pending_approval"].includes(claim.status);
  for (const item of claim.losses) {
    const claimed = item.hourly_loss !== null ? money(item.hourly_loss, currency) + " an hour"
      : money(item.amount, currency);
    const actions = el("td");
    if (open && item.state === "unverified") actions.append(...lossForms(claim, item));
    row(table, [
      words(item.section), item.source === "vendor" ? "vendor " + item.vendor_id : "policyholder",
      item.description, el("td", { className: "money" }, claimed), item.state,
      moneyCell(item.verified_amount, currency),
      item.decided_by ? `${item.decided_by}, ${when(item.decided_at)}${item.note ? ": " + item.note : ""}` : "—",
      actions,
    ], { "data-loss": item.id });
  }
}

function lossForms(claim, item) {
  const field = (name, label, size) => el("span", {},
    el("input", { name, "data-field": name, "aria-label": label, placeholder: label, size }),
    el("span", { className: "field-error", "data-error-for": name }));
  const verify = el("form", { className: "inline verify", novalidate: true },
    field("amount", "amount (empty: as claimed)", 14), field("note", "note", 16),
    el("button", { type: "submit" }, "Verify"));
  const reject = el("form", { className: "inline reject", novalidate: true },
    field("reason", "reason", 20), el("button", { type: "submit", className: "danger" }, "Reject"));
  const base = `/v1/claims/${claim.id}/losses/${item.id}/`;
  verify.addEventListener("submit", (event) => {
    event.preventDefault();
    const amount = verify.elements.amount.value.trim();
    const body = { note: verify.elements.note.value.trim() };
    if (amount) body.amount = amount;
    act(verify, $("loss-message"), () => api("POST", base + "verify", body), "Loss verified.");
  });
  reject.addEventListener("submit", (event) => {
    event.preventDefault();
    act(reject, $("loss-message"), () => api("POST", base + "reject",
      { reason: reject.elements.reason.value.trim() }), "Loss rejected.");
  });
  return [verify, reject];
}

async function act(form, target, action, success) {
  let done = false;
  await submit(form, target, async () => { await action(); done = true; }, "");
  if (!done) return;
  await showClaim($("claim-view").dataset.claim);
  say(target, success, "ok");
}

function renderOutage(claim, file) {
  const outage = claim.outage;
  let text = "No outage figure yet.";
  if (outage && outage.source === "vendor" && file.verified_outage) {
    text = `${outage.hours} hours, verified by the vendors (${when(file.verified_outage.started_at)} to ${when(file.verified_outage.ended_at)}).`;
  } else if (outage) {
    text = `${outage.hours} hours, set by an adjuster${file.adjuster_outage_note ? ": " + file.adjuster_outage_note : ""}.`;
  }
  $("outage-figure").textContent = text;
  $("outage-form").hidden = (outage && outage.source === "vendor")
    || !["open", "pending_approval"].includes(claim.status);
}

function renderQuestions(questions) {
  const list = $("questions");
  list.replaceChildren();
  if (!questions.length) list.append(el("li", {}, "None raised."));
  for (const q of questions) list.append(el("li", { className: "question" }, el("code", {}, q.code), " ", q.explanation));
}

function renderBreakdown(claim, currency) {
  const table = $("breakdown");
  table.tBodies[0].replaceChildren();
  for (const line of claim.sections) {
    row(table, [words(line.section), ...["eligible", "retention_absorbed", "net", "sublimit_remaining", "payable"]
      .map((name) => moneyCell(line[name], currency))]);
  }
}

function renderDecision(claim, currency) {
  const me = state.me;
  const limit = me.authority_limit;
  const mine = "adjuster:" + me.sub;
  let why = "";
  if (claim.status !== "pending_approval") {
    why = `The claim is ${words(claim.status)}: there is no approval to give.`;
  } else if (limit === null) {
    why = "You have no authority limit: you can read this claim but not decide on it.";
  } else if (Number(claim.payable) > Number(limit)) {
    why = `You cannot approve or deny this claim: its payable ${money(claim.payable, currency)} is above your authority limit ${money(limit, currency)}. An adjuster with a higher limit must decide.`;
  } else if (claim.approvals.some((a) => a.adjuster === mine)) {
    why = "You approved this claim; a second adjuster must approve it.";
  }
  $("authority-note").hidden = !why || claim.status !== "pending_approval";
  $("authority-note").textContent = why;
  $("approve").disabled = Boolean(why);
  $("deny").disabled = Boolean(why);
  $("reassess").disabled = !["open", "pending_approval"].includes(claim.status);
  const table = $("approvals");
  table.tBodies[0].replaceChildren();
  for (const a of claim.approvals) row(table, [a.adjuster, when(a.at), moneyCell(a.amount, currency), a.reason || "—"]);
  $("decision").dataset.currency = currency;
}

async function decide(kind) {
  const form = $("decision");
  const id = $("claim-view").dataset.claim;
  const amount = $("amount").value.trim();
  const reason = $("reason").value.trim();
  const body = kind === "deny" ? { reason } : {};
  if (kind === "approve" && amount) body.amount = amount;
  if (kind === "approve" && reason) body.reason = reason;
  let claim = null;
  await submit(form, $("decision-message"), async () => {
    claim = await api("POST", `/v1/claims/${id}/${kind}`, kind === "assess" ? undefined : body);
  }, "");
  if (!claim) return;
  $("amount").value = "";
  $("reason").value = "";
  await showClaim(id);
  const currency = form.dataset.currency;
  say($("decision-message"), {
    approve: claim.status === "pending_approval" ? "Approval recorded; a second adjuster must approve."
      : "Claim approved: " + money(claim.approved_amount, currency),
    deny: "Claim denied.",
    assess: "Re-assessed: payable " + money(claim.payable, currency),
  }[kind], "ok");
}

function renderHistory(assessments, currency) {
  const table = $("history");
  table.tBodies[0].replaceChildren();
  let previous = null;
  for (const a of assessments) {
    row(table, [when(a.at), a.requested_by, moneyCell(a.payable, currency), words(a.decision),
                changes(previous, a, currency)]);
    previous = a;
  }
}

function changes(before, after, currency) {
  if (!before) return "first assessment";
  const said = [];
  if (before.payable !== after.payable) said.push(`payable ${money(before.payable, currency)} → ${money(after.payable, currency)}`);
  const was = new Map(before.inputs.losses.map((l) => [l.id, l]));
  for (const loss of after.inputs.losses) {
    const old = was.get(loss.id);
    if (!old) said.push(`new ${words(loss.section)} loss (${loss.state})`);
    else if (old.state !== loss.state || old.verified_amount !== loss.verified_amount) {
      said.push(`${words(loss.section)} loss ${old.state} → ${loss.state}` +
                (loss.verified_amount ? " at " + money(loss.verified_amount, currency) : ""));
    }
  }
  if (before.inputs.outage_minutes !== after.inputs.outage_minutes) {
    said.push(`outage ${before.inputs.outage_minutes ?? "none"} → ${after.inputs.outage_minutes ?? "none"} minutes`);
  }
  const added = after.coverage_questions.filter((q) => !before.coverage_questions.includes(q));
  const dropped = before.coverage_questions.filter((q) => !after.coverage_questions.includes(q));
  if (added.length) said.push("raised " + added.join(", "));
  if (dropped.length) said.push("cleared " + dropped.join(", "));
  if (JSON.stringify(before.inputs.policy) !== JSON.stringify(after.inputs.policy)) said.push("policy terms changed");
  if (before.inputs.paid_total !== after.inputs.paid_total) said.push("other claims drew on the policy");
  return said.join("; ") || "nothing in its inputs";
}

function renderPayment(payment) {
  if (!payment) {
    facts($("payment"), [["Payment", "none requested"]]);
    return;
  }
  facts($("payment"), [
    ["State", payment.state],
    ["Amount", money(payment.amount, payment.currency)],
    ["Attempts", payment.attempts],
    ["Last error", payment.last_error || "none"],
    ["Provider reference", payment.provider_reference || "—"],
    ["Requested", when(payment.created_at)],
    ["Completed", when(payment.completed_at)],
  ]);
}

// --- routing and wiring -------------------------------------------------------------------------------

function show(view) {
  for (const id of ["sign-in-panel", "queues-view", "claim-view"]) $(id).hidden = id !== view;
}

async function route() {
  const focused = document.activeElement;
  if (!state.me) {
    show("sign-in-panel");
    return;
  }
  const match = location.hash.match(/^#\/claims\/([0-9a-f-]{36})$/);
  try {
    if (match) await showClaim(match[1]); else await showQueues();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (!state.me) return;  // signed out (an expired token): the sign-in form says why
    show("queues-view");
    say($("queue-approval").querySelector(".range"), error.message, "error");
  }
  // Move the focus to the new view's heading, unless the user has moved it while the view loaded
  // (a keyboard user already typing in the search box keeps their place).
  const heading = document.querySelector("main:not([hidden]) h2");
  const moved = document.activeElement !== focused && document.activeElement !== document.body
    && document.activeElement?.offsetParent !== null;
  if (heading && !moved) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

function wire() {
  $("tz").value = zone();
  $("tz").addEventListener("change", () => { localStorage.setItem(ZONE_KEY, $("tz").value); route(); });
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    signIn();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "";
    location.reload();
  });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors($("search"));
    state.search = $("search-text").value.trim();
    for (const name of QUEUES) state.offsets[name] = 0;
    showQueues();
  });
  $("search-clear").addEventListener("click", () => {
    $("search-text").value = "";
    $("search").requestSubmit();
  });
  for (const name of QUEUES) {
    const section = $("queue-" + name);
    section.querySelector(".prev").addEventListener("click", () => {
      state.offsets[name] = Math.max(0, state.offsets[name] - PAGE_SIZE);
      loadQueue(name);
    });
    section.querySelector(".next").addEventListener("click", () => {
      state.offsets[name] += PAGE_SIZE;
      loadQueue(name);
    });
  }
  $("outage-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("claim-view").dataset.claim;
    act($("outage-form"), $("outage-message"), () => api("PUT", `/v1/claims/${id}/outage`, {
      outage_hours: $("outage-hours").value.trim(), note: $("outage-note").value.trim(),
    }), "Outage set.");
  });
  $("approve").addEventListener("click", () => decide("approve"));
  $("deny").addEventListener("click", () => decide("deny"));
  $("reassess").addEventListener("click", () => decide("assess"));
  window.addEventListener("hashchange", route);
  if (sessionStorage.getItem(TOKEN_KEY)) signIn(); else show("sign-in-panel");
}

wire();
