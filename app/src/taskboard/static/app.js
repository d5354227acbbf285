// taskboard's page: list, add, complete and delete tasks through /api.
"use strict";

const PAGE = 50;
const state = { done: "", offset: 0, total: 0 };
const $ = (sel) => document.querySelector(sel);

async function call(method, path, body) {
  const opts = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) {
    const msg = data && data.error ? data.error.message : `HTTP ${res.status}`;
    throw new Error(msg);
  }
  return data;
}

function say(text, isError) {
  const el = $("#status");
  el.textContent = text || "";
  el.className = isError ? "error" : "";
}

function render(page) {
  const list = $("#tasks");
  list.replaceChildren();
  for (const task of page.items) {
    const li = document.createElement("li");
    li.className = task.done ? "done" : "";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = task.done;
    box.setAttribute("aria-label", `mark "${task.title}" done`);
    box.addEventListener("change", () => update(task.id, { done: box.checked }));
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = task.title;
    const del = document.createElement("button");
    del.type = "button";
    del.className = "delete";
    del.textContent = "Delete";
    del.addEventListener("click", () => remove(task.id));
    li.append(box, title, del);
    list.append(li);
  }
  if (page.items.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "Nothing here.";
    list.append(li);
  }
  state.total = page.total;
  const last = Math.min(state.offset + page.items.length, page.total);
  $("#page-info").textContent = page.total ? `${state.offset + 1}-${last} of ${page.total}` : "";
  $("#prev").disabled = state.offset === 0;
  $("#next").disabled = last >= page.total;
}

async function load() {
  // newest first: a task just added is on the first page
  const params = new URLSearchParams({ limit: PAGE, offset: state.offset, order: "desc" });
  if (state.done) params.set("done", state.done);
  try {
    render(await call("GET", `/api/tasks?${params}`));
  } catch (e) {
    say(`Could not load tasks: ${e.message}`, true);
  }
}

async function update(id, fields) {
  try { await call("PATCH", `/api/tasks/${id}`, fields); say(""); } catch (e) { say(e.message, true); }
  load();
}

async function remove(id) {
  try { await call("DELETE", `/api/tasks/${id}`); say("Deleted."); } catch (e) { say(e.message, true); }
  load();
}

$("#add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("#title");
  try {
    await call("POST", "/api/tasks", { title: input.value });
    input.value = "";
    say("Added.");
  } catch (e) {
    say(e.message, true);
  }
  load();
});

for (const btn of document.querySelectorAll(".filters button")) {
  btn.addEventListener("click", () => {
    document.querySelectorAll(".filters button").forEach((b) => b.classList.remove("active"));
    btn.classList.add("active");
    state.done = btn.dataset.filter;
    state.offset = 0;
    load();
  });
}
$("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); load(); });
$("#next").addEventListener("click", () => { state.offset += PAGE; load(); });

call("GET", "/version")
  .then((v) => { $("#version").textContent = `taskboard ${v.version} on ${v.hostname}`; })
  .catch(() => {});
load();
