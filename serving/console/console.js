// The console's core: API calls with the API key, the key prompt, hash routing and small
// DOM helpers. Vanilla JS, no dependencies: everything ships in the Python package.
"use strict";

const Console = (() => {
  const KEY = "headwater.apiKey";
  const routes = [];
  let pendingKey = null; // the promise of the open key prompt, shared by concurrent calls

  /** An element: h("a", {href: "#/"}, "text", child, ...); attributes starting with "on" are
   * listeners; strings become text nodes (never HTML), so names from the API are safe. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function storedKey() {
    return sessionStorage.getItem(KEY) || "";
  }

  function showKeyState() {
    document.getElementById("key-state").textContent = storedKey() ? "API key set (this tab)" : "";
    document.getElementById("key-forget").hidden = !storedKey();
  }

  /** Drop the kept key (a shared screen, another user's key) and load the page again. */
  function forgetKey() {
    sessionStorage.removeItem(KEY);
    showKeyState();
    render();
  }

  /** Ask for a key (the API answered 401/403) and resolve once one was entered. */
  function askKey(reason) {
    if (pendingKey) return pendingKey;
    const prompt = document.getElementById("key-prompt");
    const form = document.getElementById("key-form");
    const input = document.getElementById("api-key");
    document.getElementById("key-reason").textContent = reason;
    input.value = "";
    prompt.hidden = false;
    input.focus();
    pendingKey = new Promise((resolve) => {
      form.onsubmit = (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY, input.value.trim());
        prompt.hidden = true;
        pendingKey = null;
        showKeyState();
        resolve();
      };
    });
    return pendingKey;
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  /** GET a JSON endpoint of this server with the stored key; on 401/403 ask for a key and
   * retry (a read key is enough for every page). Other errors throw ApiError with the API's
   * own detail (it names the field and the fix). */
  async function api(path) {
    for (;;) {
      const key = storedKey();
      const response = await fetch(path, { headers: key ? { "X-API-Key": key } : {} });
      if (response.status === 401 || response.status === 403) {
        const body = await response.json().catch(() => ({}));
        await askKey(body.detail || `the API answered ${response.status}`);
        continue;
      }
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new ApiError(response.status, body.detail || `${path}: HTTP ${response.status}`);
      }
      return response.json();
    }
  }

  function route(pattern, render) {
    routes.push({ pattern, render });
  }

  /** "#/feature-sets/x?version=2" -> {path: "/feature-sets/x", params: URLSearchParams}. */
  function location() {
    const hash = window.location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?", 2);
    return { path, params: new URLSearchParams(query || "") };
  }

  function link(path, params) {
    const query = params ? new URLSearchParams(params).toString() : "";
    return "#" + path + (query ? "?" + query : "");
  }

  function setParams(params) {
    const { path } = location();
    history.replaceState(null, "", link(path, params));
  }

  function seg(value) {
    return encodeURIComponent(value);
  }

  /** Nested lists of nodes (and null for "nothing here") as one flat list of nodes. */
  function nodes(content) {
    return [content].flat(Infinity).filter((x) => x !== null && x !== undefined && x !== false);
  }

  async function render() {
    const view = document.getElementById("view");
    const { path, params } = location();
    for (const { pattern, render: page } of routes) {
      const match = path.match(pattern);
      if (!match) continue;
      view.replaceChildren(h("p", { class: "muted" }, "Loading…"));
      try {
        const args = match.slice(1).map(decodeURIComponent);
        const content = await page(args, params);
        if (location().path === path) view.replaceChildren(...nodes(content));
      } catch (error) {
        view.replaceChildren(
          h("h1", { id: "page-title" }, "Could not load this page"),
          h("p", { class: "error", id: "page-error" }, error.message),
          h("p", {}, h("a", { href: "#/" }, "Back to the catalog")),
        );
      }
      document.body.dataset.page = path;
      document.body.dataset.loaded = String(Date.now());
      return;
    }
    view.replaceChildren(
      h("h1", { id: "page-title" }, "No such page"),
      h("p", { class: "error", id: "page-error" }, `nothing at #${path}`),
      h("p", {}, h("a", { href: "#/" }, "Back to the catalog")),
    );
    document.body.dataset.loaded = String(Date.now());
  }

  /** Numbers as people read them: integers with separators, others to 4 significant
   * digits; null/undefined as an en dash. */
  function num(value, digits = 4) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    return Number(value.toPrecision(digits)).toString();
  }

  function percent(value) {
    if (value === null || value === undefined) return "–";
    return `${Number((value * 100).toPrecision(3))}%`;
  }

  function table(headers, rows, attrs) {
    return h(
      "table",
      attrs || {},
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
      h("tbody", {}, rows),
    );
  }

  function start() {
    document.getElementById("key-forget").addEventListener("click", forgetKey);
    showKeyState();
    window.addEventListener("hashchange", render);
    render();
  }

  return { api, ApiError, h, link, nodes, num, percent, render, route, seg, setParams, start, table };
})();
