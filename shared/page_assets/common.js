// What the browser pages (the adjuster console, the operators' page) share: problem+json
// errors, money as money, dates in the chosen time zone, and building nodes with textContent
// only (nothing from the API is ever parsed as HTML). Loaded before each page's own script.
"use strict";

const ZONE_KEY = "cyberclaims.zone";
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || "HTTP " + status);
    this.status = status;
    this.errors = problem.errors || [];
  }
}

function money(value, currency) {
  if (value === null || value === undefined) return "—";
  const [whole, fraction = ""] = String(value).split(".");
  const negative = whole.startsWith("-");
  const digits = (negative ? whole.slice(1) : whole).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (currency || "CNY") + " " + (negative ? "-" : "") + digits + "." + fraction.padEnd(2, "0");
}

function zone() { return localStorage.getItem(ZONE_KEY) || "Asia/Shanghai"; }

function when(iso) {
  if (!iso) return "—";
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {
    timeZone: zone(), year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
}

function words(code) { return code ? String(code).replaceAll("_", " ") : "—"; }

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value; else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? "—"));
  return node;
}

function row(table, cells, attributes) {
  const tr = el("tr", attributes);
  for (const cell of cells) tr.append(cell instanceof Node && cell.tagName === "TD" ? cell : el("td", {}, cell));
  table.tBodies[0].append(tr);
  return tr;
}

function moneyCell(value, currency) { return el("td", { className: "money" }, money(value, currency)); }

function say(target, text, kind) {
  target.textContent = text;
  target.className = text ? "message " + kind : "";
}
