// The mobileface web page: sends the forms to the /v1 API and shows the answers.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "mobileface-api-key";

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function call(method, path, body) {
  const response = await fetch(path, { method, body, headers: headers() });
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = { detail: `${response.status} ${response.statusText}` };
  }
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

function show(target, ...nodes) {
  target.replaceChildren(...nodes);
}

function showError(target, err) {
  show(target, el("p", { class: "error" }, `Error: ${err.message}`));
  target.dataset.state = "error";
}

function busy(form, on) {
  for (const button of form.querySelectorAll("button")) button.disabled = on;
}

function preview(input, img) {
  input.addEventListener("change", () => {
    if (img.src) URL.revokeObjectURL(img.src);
    if (input.files.length) img.src = URL.createObjectURL(input.files[0]);
    else img.removeAttribute("src");
  });
}

function submit(form, target, run) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    busy(form, true);
    target.dataset.state = "busy";
    show(target, el("p", { class: "muted" }, "working\u2026"));
    try {
      await run();
      target.dataset.state = "done";
    } catch (err) {
      showError(target, err);
    } finally {
      busy(form, false);
    }
  });
}

async function loadInfo() {
  try {
    const info = await call("GET", "/v1/info");
    const threshold = info.threshold === null ? "no threshold" : `threshold ${info.threshold.toFixed(3)}`;
    $("info").textContent =
      `${info.model} (${info.index} search, ${threshold}) \u00b7 ` +
      `${info.persons} persons, ${info.faces} faces`;
  } catch (err) {
    $("info").textContent = `service: ${err.message}`;
  }
}

function init() {
  const stored = sessionStorage.getItem(KEY_STORE);
  if (stored) $("api-key").value = stored;
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
    loadInfo();
  });
  preview($("verify-a"), $("verify-a-preview"));
  preview($("verify-b"), $("verify-b-preview"));
  preview($("identify-image"), $("identify-image-preview"));

  const verifyResult = $("verify-result");
  submit($("verify-form"), verifyResult, async () => {
    const body = new FormData();
    body.append("image_a", $("verify-a").files[0]);
    body.append("image_b", $("verify-b").files[0]);
    const r = await call("POST", "/v1/verify", body);
    const verdict =
      r.same === null
        ? el("span", { id: "verify-decision" }, "no threshold known")
        : el(
            "span",
            { id: "verify-decision", class: r.same ? "same" : "different" },
            r.same ? "same person" : "different people",
          );
    show(
      verifyResult,
      el("p", {}, el("span", { id: "verify-score", class: "score" }, r.score.toFixed(3)), " ", verdict),
      el("p", { class: "muted" }, r.threshold === null ? "" : `threshold ${r.threshold.toFixed(3)}`),
    );
  });

  const enrolResult = $("enrol-result");
  submit($("enrol-form"), enrolResult, async () => {
    const body = new FormData();
    body.append("name", $("enrol-name").value);
    for (const file of $("enrol-images").files) body.append("images", file);
    if ($("enrol-keep").checked) body.append("keep_photos", "true");
    const p = await call("POST", "/v1/persons", body);
    $("enrol-form").reset(); // ready for the next person
    show(
      enrolResult,
      el(
        "p",
        {},
        "Enrolled ",
        el("strong", { id: "enrol-person-name" }, p.name),
        ` as person #`,
        el("span", { id: "enrol-person-id" }, String(p.id)),
        ` with ${p.faces.length} face${p.faces.length === 1 ? "" : "s"}.`,
      ),
    );
    loadInfo();
  });

  const identifyResult = $("identify-result");
  submit($("identify-form"), identifyResult, async () => {
    const body = new FormData();
    body.append("image", $("identify-image").files[0]);
    body.append("top_k", $("identify-top-k").value || "5");
    const r = await call("POST", "/v1/identify", body);
    if (!r.matches.length) {
      show(identifyResult, el("p", { id: "identify-empty" }, "Nobody is enrolled yet."));
      return;
    }
    const rows = r.matches.map((m, i) =>
      el(
        "tr",
        { class: "match" },
        el("td", { class: "num" }, String(i + 1)),
        el("td", { class: "name" }, m.name),
        el("td", { class: "num" }, `#${m.person_id}`),
        el("td", { class: "num score" }, m.score.toFixed(3)),
        el("td", {}, m.same === null ? "" : m.same ? "\u2713 match" : ""),
      ),
    );
    show(
      identifyResult,
      el(
        "table",
        { id: "identify-table" },
        el("thead", {}, el("tr", {}, ...["", "name", "id", "score", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...rows),
      ),
    );
  });
  loadInfo();
}

document.addEventListener("DOMContentLoaded", init);
