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

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

// A photo drawn on a canvas, with the face the service found drawn over it.
const LANDMARK_COLOURS = ["#00b3ff", "#00b3ff", "#ffd400", "#ff4f9a", "#ff4f9a"];

function drawPhoto(canvas, img, face) {
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  delete canvas.dataset.face;
  if (!face) return;
  const unit = Math.max(2, Math.max(canvas.width, canvas.height) / 160);
  const [x1, y1, x2, y2] = face.box;
  ctx.lineWidth = unit;
  ctx.strokeStyle = "#37e05a";
  ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  (face.landmarks || []).forEach(([x, y], i) => {
    ctx.beginPath();
    ctx.arc(x, y, unit * 1.4, 0, 2 * Math.PI);
    ctx.fillStyle = LANDMARK_COLOURS[i % LANDMARK_COLOURS.length];
    ctx.fill();
    ctx.lineWidth = unit / 2;
    ctx.strokeStyle = "#000";
    ctx.stroke();
  });
  canvas.dataset.face = "drawn";
}

// Shows the chosen file on ``canvas``; returns ``mark(face)``, which draws a face over it.
function photoPreview(input, canvas) {
  const state = { img: null, url: null, face: null };
  input.addEventListener("change", () => {
    if (state.url) URL.revokeObjectURL(state.url);
    state.img = state.url = state.face = null;
    canvas.hidden = true;
    if (!input.files.length) return;
    const img = new Image();
    img.addEventListener("load", () => {
      state.img = img;
      drawPhoto(canvas, img, state.face);
      canvas.hidden = false;
    });
    state.url = img.src = URL.createObjectURL(input.files[0]);
  });
  canvas.hidden = true;
  return (face) => {
    state.face = face;
    if (state.img) drawPhoto(canvas, state.img, face);
  };
}

function faceCaption(face) {
  if (!face) return "";
  const score = face.score === undefined || face.score === null ? "" : `, detector score ${face.score.toFixed(2)}`;
  const [x1, y1, x2, y2] = face.box.map(Math.round);
  return `face at ${x1},${y1} to ${x2},${y2}${score}`;
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
      `${plural(info.persons, "person")}, ${plural(info.faces, "face")}`;
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
    loadPersons();
  });
  const markA = photoPreview($("verify-a"), $("verify-a-canvas"));
  const markB = photoPreview($("verify-b"), $("verify-b-canvas"));
  const markIdentify = photoPreview($("identify-image"), $("identify-canvas"));
  for (const side of ["a", "b"]) {
    $(`verify-${side}`).addEventListener("change", () => {
      $(`verify-${side}-caption`).textContent = "";
      $("verify-crops").hidden = true;
    });
  }

  const verifyResult = $("verify-result");
  submit($("verify-form"), verifyResult, async () => {
    const body = new FormData();
    body.append("image_a", $("verify-a").files[0]);
    body.append("image_b", $("verify-b").files[0]);
    body.append("crops", "true");
    const r = await call("POST", "/v1/verify", body);
    markA(r.faces.image_a);
    markB(r.faces.image_b);
    $("verify-a-caption").textContent = faceCaption(r.faces.image_a);
    $("verify-b-caption").textContent = faceCaption(r.faces.image_b);
    if (r.crops) {
      $("verify-a-crop").src = r.crops.image_a;
      $("verify-b-crop").src = r.crops.image_b;
      $("verify-crops").hidden = false;
    }
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
        ` with ${plural(p.faces.length, "face")}.`,
      ),
    );
    loadInfo();
    loadPersons();
  });

  const identifyResult = $("identify-result");
  submit($("identify-form"), identifyResult, async () => {
    const body = new FormData();
    body.append("image", $("identify-image").files[0]);
    body.append("top_k", $("identify-top-k").value || "5");
    const r = await call("POST", "/v1/identify", body);
    markIdentify(r.face);
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
        ...(r.threshold === null ? [] : [el("td", { class: "decision" }, m.same ? "\u2713 match" : "\u2013")]),
      ),
    );
    const headings = ["#", "name", "id", "score", ...(r.threshold === null ? [] : ["decision"])];
    const best = r.matches[0];
    let verdict = null;
    if (r.threshold !== null) {
      verdict = best.same
        ? el("p", { id: "identify-verdict", class: "same" }, `${best.name} (#${best.person_id}), score ${best.score.toFixed(3)}`)
        : el("p", { id: "identify-verdict", class: "different" }, `No match above ${r.threshold.toFixed(3)}.`);
    }
    show(
      identifyResult,
      ...(verdict ? [verdict] : []),
      el(
        "table",
        { id: "identify-table" },
        el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", {}, h)))),
        el("tbody", {}, ...rows),
      ),
    );
  });

  $("persons-refresh").addEventListener("click", loadPersons);
  loadInfo();
  loadPersons();
}

async function loadPersons() {
  const target = $("persons-list");
  try {
    const r = await call("GET", "/v1/persons?limit=200");
    if (!r.persons.length) {
      show(target, el("p", { class: "muted" }, "Nobody is enrolled yet: enrol someone above."));
    } else {
      const rows = r.persons.map((p) =>
        el(
          "tr",
          { class: "person" },
          el("td", { class: "num" }, `#${p.id}`),
          el("td", { class: "name" }, p.name),
          el("td", { class: "num" }, String(p.faces.length)),
          el("td", {}, p.created_at.slice(0, 16).replace("T", " ")),
        ),
      );
      const shown = r.persons.length < r.total ? `${r.persons.length} of ${r.total}` : plural(r.total, "person");
      show(
        target,
        el("p", { class: "muted" }, shown),
        el(
          "table",
          { id: "persons-table" },
          el("thead", {}, el("tr", {}, ...["id", "name", "faces", "enrolled (UTC)"].map((h) => el("th", {}, h)))),
          el("tbody", {}, ...rows),
        ),
      );
    }
    target.dataset.state = "done";
  } catch (err) {
    showError(target, err);
  }
}

document.addEventListener("DOMContentLoaded", init);
