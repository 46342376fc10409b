// The catalog pages: search, one feature set (definition, source schema, versions and their
// diff, health), lineage as a graph, and a source's dead letters.
"use strict";

(() => {
  const { api, h, link, num, percent, route, seg, table } = Console;
  const PAGE = 25;

  function tags(list) {
    return (list || []).map((t) => h("span", { class: "tag" }, t));
  }

  function labels(map) {
    return Object.entries(map || {}).map(([k, v]) => h("span", { class: "tag" }, `${k}: ${v}`));
  }

  // A feature's window as the catalog gives it, with its offset and its own tile length.
  function windowText(f, resolution) {
    const parts = [f.window];
    if (f.offset) parts.push(`offset ${f.offset}`);
    if (f.tile && f.tile !== resolution) parts.push(`${f.tile} tiles`);
    return parts.join(", ");
  }

  // A feature's function parameters (percentiles, k, where, ...), "–" when it has none.
  const NOT_PARAMETERS = new Set(["name", "function", "field", "window", "offset", "tile"]);
  function parameters(f) {
    const shown = Object.entries(f).filter(([k]) => !NOT_PARAMETERS.has(k))
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`);
    return shown.length ? shown.join("; ") : "–";
  }

  // 1. Catalog search: one page at a time from /v1/catalog/search.
  route(/^\/$/, async (_, params) => {
    const query = params.get("q") || "";
    const offset = Math.max(0, Number(params.get("offset")) || 0);
    const results = h("div", { id: "catalog-results" });
    const search = h("input", { id: "search", type: "search", value: query,
      placeholder: "Search feature sets and features: name, description, tags, labels, owner" });
    let timer = null;

    async function load(q, from) {
      const page = await api(`/v1/catalog/search?${new URLSearchParams({ q, offset: from, limit: PAGE })}`);
      Console.setParams(q || from ? { q, offset: from } : null);
      const last = Math.min(page.offset + page.items.length, page.total);
      const rows = page.items.map((fs) =>
        h("tr", { "data-name": fs.name },
          h("td", {}, h("a", { class: "fs-link", href: link(`/feature-sets/${seg(fs.name)}`) }, fs.name)),
          h("td", { class: "num" }, fs.active_versions.map((v) => `v${v}`).join(", ")),
          h("td", {}, fs.description),
          h("td", {}, fs.owner),
          h("td", {}, fs.entity),
          h("td", {}, h("a", { href: link(`/dead-letters/${seg(fs.source)}`) }, fs.source)),
          h("td", {}, tags(fs.tags), labels(fs.labels)),
          h("td", { class: "num" }, fs.features),
          h("td", { class: "small" }, fs.matched_features.join(", ")),
        ));
      const prev = h("button", { id: "prev", disabled: page.offset === 0,
        onclick: () => load(q, Math.max(0, page.offset - PAGE)) }, "← Previous");
      const next = h("button", { id: "next", disabled: last >= page.total,
        onclick: () => load(q, page.offset + PAGE) }, "Next →");
      results.replaceChildren(
        h("div", { class: "toolbar" }, prev, next,
          h("span", { id: "page-info", "data-total": page.total, "data-offset": page.offset },
            page.total ? `${page.offset + 1}–${last} of ${page.total} feature sets` : "no feature set matches")),
        table(["Feature set", "Active versions", "Description", "Owner", "Entity", "Source", "Tags and labels",
          "Features", "Matching features"], rows, { id: "catalog-table" }),
      );
      document.body.dataset.loaded = String(Date.now());
    }

    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => load(search.value.trim(), 0), 250);
    });
    await load(query, offset);
    return [h("h1", { id: "page-title" }, "Catalog"), h("div", { class: "toolbar" }, search), results];
  });

  /** Seconds as "12.5 s", "2 h 2 min" (how old the newest event is). */
  function ago(seconds) {
    if (seconds < 120) return `${num(seconds)} s`;
    const minutes = Math.round(seconds / 60);
    if (minutes < 120) return `${minutes} min`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  function healthPanel(monitor) {
    if (monitor instanceof Error) {
      return h("div", { class: "card", id: "health" }, h("h2", {}, "Health"),
        h("p", { class: "muted", id: "health-unavailable" }, `not available: ${monitor.message}`));
    }
    const newest = monitor.newest_event_time_ms === null ? "–"
      : new Date(monitor.newest_event_time_ms).toISOString();
    const lag = monitor.lag;
    const letters = Object.entries(monitor.dead_letters || {});
    const problems = monitor.problems || [];
    return h("div", { class: "card", id: "health" },
      h("h2", {}, "Health"),
      table(["Measure", "Value"], [
        h("tr", {}, h("td", {}, "Freshness"), h("td", { id: "health-freshness", class: "num" },
          monitor.freshness_seconds === null ? "–" : ago(monitor.freshness_seconds))),
        h("tr", {}, h("td", {}, "Newest event"), h("td", { id: "health-newest" }, newest)),
        h("tr", {}, h("td", {}, "Consumer lag"), h("td", { id: "health-lag", class: "num" },
          lag === null ? "–" : num(lag.total))),
        ...(lag ? Object.entries(lag.partitions).map(([p, n]) => h("tr", { class: "lag-partition" },
          h("td", {}, `  partition ${p}`), h("td", { class: "num" }, num(n)))) : []),
        ...letters.map(([reason, n]) => h("tr", { class: "health-dlq", "data-reason": reason },
          h("td", {}, `Dead letters: ${reason}`), h("td", { class: "num" }, num(n)))),
        h("tr", {}, h("td", {}, "Online/offline mismatch rate"), h("td", { id: "health-consistency",
          class: "num" }, monitor.consistency === null ? "–" : percent(monitor.consistency.mismatch_rate))),
      ]),
      problems.length
        ? h("ul", { id: "health-problems" }, problems.map((p) => h("li", { class: "problem" }, p)))
        : h("p", { id: "health-problems", class: "stable" }, "No problems"),
    );
  }

  function diffPanel(name, versions) {
    const options = (selected) => versions.map((v) =>
      h("option", { value: v.version, selected: v.version === selected }, `v${v.version} (${v.status})`));
    const from = h("select", { id: "diff-from" }, options(versions[0].version));
    const to = h("select", { id: "diff-to" }, options(versions[versions.length - 1].version));
    const out = h("div", { id: "diff-result" });
    async function show() {
      const diff = await api(`/v1/feature-sets/${seg(name)}/diff?from=${from.value}&to=${to.value}`);
      const list = (id, items) => h("ul", { id }, items.map((x) => h("li", {}, x)));
      out.replaceChildren(
        !diff.breaking.length && !diff.compatible.length
          ? h("p", { id: "diff-none", class: "muted" }, "No differences")
          : h("div", {},
            h("h3", {}, `Breaking (v${diff.from.version} → v${diff.to.version})`),
            list("diff-breaking", diff.breaking),
            h("h3", {}, "Compatible"), list("diff-compatible", diff.compatible)),
      );
    }
    return h("div", { class: "card", id: "versions" },
      h("h2", {}, "Versions"),
      table(["Version", "Status"], versions.map((v) =>
        h("tr", {}, h("td", {}, `v${v.version}`), h("td", {}, v.status)))),
      h("div", { class: "toolbar" }, "Diff from", from, "to", to,
        h("button", { id: "diff-show", onclick: show }, "Show changes")),
      out);
  }

  // 2. One feature set.
  route(/^\/feature-sets\/([^/]+)$/, async ([name]) => {
    const fs = await api(`/v1/feature-sets/${seg(name)}`);
    const [source, monitor] = await Promise.all([
      api(`/v1/sources/${seg(fs.source)}`).catch((e) => e),
      api(`/v1/monitor/${seg(name)}`).catch((e) => e),
    ]);
    const def = [
      ["Entity", fs.entity], ["Source", h("a", { href: link(`/dead-letters/${seg(fs.source)}`) }, fs.source)],
      ["Owner", fs.owner], ["Tags", tags(fs.tags)], ["Labels", labels(fs.labels)],
      ["TTL", fs.ttl || "none"], ["Resolution", fs.resolution], ["Filter", fs.filter || "none"],
    ];
    const features = table(["Feature", "Function", "Field", "Window", "Parameters"],
      fs.features.map((f) =>
        h("tr", { "data-feature": f.name }, h("td", {}, f.name), h("td", {}, f.function),
          h("td", {}, f.field || "–"), h("td", {}, windowText(f, fs.resolution)), h("td", {}, parameters(f)))),
      { id: "features" });
    const requestFeatures = Object.entries(fs.request_features || {});
    const transforms = Object.entries(fs.transforms);
    const schema = source instanceof Error
      ? h("p", { class: "error" }, source.message)
      : h("div", {},
        h("p", { class: "muted" }, `topic ${source.topic}, event time ${source.timestamp}, ` +
          `dead letters ${source.dead_letter_topic}`),
        table(["Field", "Type", "Nullable", "Doc"], source.fields.map((f) =>
          h("tr", { "data-field": f.name }, h("td", {}, f.name), h("td", {}, f.type),
            h("td", {}, f.nullable ? "yes" : "no"), h("td", {}, f.doc))), { id: "source-schema" }));
    return [
      h("h1", { id: "page-title" }, `${fs.name} `, h("span", { class: "muted" }, `v${fs.version}`)),
      h("p", {}, fs.description),
      h("div", { class: "links", id: "fs-links" },
        h("a", { href: link(`/feature-sets/${seg(name)}/stats`) }, "Statistics"),
        h("a", { href: link(`/feature-sets/${seg(name)}/drift`) }, "Drift"),
        h("a", { href: link(`/lineage/${seg(name)}`) }, "Lineage"),
        h("a", { href: link(`/dead-letters/${seg(fs.source)}`) }, `Dead letters of ${fs.source}`)),
      h("div", { class: "grid" },
        h("div", { class: "card" }, h("h2", {}, "Definition"),
          h("table", { id: "definition" }, h("tbody", {},
            def.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))))),
        healthPanel(monitor)),
      h("h2", {}, "Features"), features,
      requestFeatures.length ? [h("h2", {}, "Request features"),
        h("p", { class: "muted" }, "Request fields: " + (Object.entries(fs.request_schema || {})
          .map(([k, v]) => `${k} (${v})`).join(", ") || "none")),
        table(["Feature", "Expression"], requestFeatures.map(([k, v]) =>
          h("tr", { "data-request-feature": k }, h("td", {}, k), h("td", {}, h("code", {}, v)))),
        { id: "request-features" })] : null,
      transforms.length ? [h("h2", {}, "Transforms"), table(["Column", "Expression"],
        transforms.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, h("code", {}, v)))),
        { id: "transforms" })] : null,
      h("h2", {}, `Source ${fs.source}`), schema,
      diffPanel(name, fs.versions),
    ];
  });

  // 3. Lineage: source -> feature set versions -> services -> training sets.
  route(/^\/lineage\/([^/]+)$/, async ([name]) => {
    const data = await api(`/v1/lineage/${seg(name)}`);
    const bare = (ref) => ref.replace(/@v\d+:/, ":");
    const src = { id: `source:${data.source.name}`, label: data.source.name, kind: "source",
      sub: `topic ${data.source.topic}`, href: link(`/dead-letters/${seg(data.source.name)}`) };
    const sets = data.versions.map((v) => ({ id: `set:v${v.version}`, label: `${name}@v${v.version}`,
      kind: "feature_set", sub: v.status, href: link(`/feature-sets/${seg(name)}`), version: v.version }));
    const latest = Math.max(...data.versions.filter((v) => v.status === "active").map((v) => v.version));
    const services = data.feature_services.map((s) => ({ id: `service:${s.name}`, label: s.name,
      kind: "feature_service", sub: `${s.features.length} feature(s)`, features: s.features }));
    const trainings = data.training_sets.map((t) => ({ id: `training:${t.name}`, label: t.name,
      kind: "training_set", sub: `${num(t.rows)} rows`, features: t.features }));
    const versionOf = (ref) => {
      const m = ref.match(/@v(\d+):/);
      return m ? Number(m[1]) : latest;
    };
    const edges = sets.map((s) => [src.id, s.id]);
    for (const svc of services) {
      for (const v of new Set(svc.features.map(versionOf))) edges.push([`set:v${v}`, svc.id]);
    }
    // A training set hangs off a service when it holds exactly the versions the service
    // serves now (its features pinned as set@vN:f); otherwise off the versions it read.
    const pinned = (ref) => `${bare(ref)}@${versionOf(ref)}`;
    for (const t of trainings) {
      const via = services.filter((svc) => t.features.every((f) => svc.features.map(pinned).includes(pinned(f))));
      if (via.length) via.forEach((svc) => edges.push([svc.id, t.id]));
      else new Set(t.features.map(versionOf)).forEach((v) => edges.push([`set:v${v}`, t.id]));
    }
    return [
      h("h1", { id: "page-title" }, `Lineage of ${name}`),
      h("p", { class: "links" }, h("a", { href: link(`/feature-sets/${seg(name)}`) }, `Back to ${name}`)),
      Charts.graph([[src], sets, services, trainings], edges),
      h("h2", {}, "Versions"),
      table(["Version", "Status", "Online keys", "Offline table", "Delta version"], data.versions.map((v) =>
        h("tr", {}, h("td", {}, `v${v.version}`), h("td", {}, v.status), h("td", {}, h("code", {}, v.online_keyspace)),
          h("td", {}, h("code", {}, v.offline_table)), h("td", { class: "num" }, num(v.offline_table_version))))),
      h("h2", {}, "Training sets"),
      data.training_sets.length
        ? table(["Name", "Features", "Rows"], data.training_sets.map((t) => h("tr", {},
          h("td", {}, t.name), h("td", {}, t.features.join(", ")), h("td", { class: "num" }, num(t.rows)))),
        { id: "training-sets" })
        : h("p", { class: "muted" }, "No saved training set uses this feature set."),
    ];
  });

  // 4. Dead letters of a source.
  route(/^\/dead-letters\/([^/]+)$/, async ([source], params) => {
    const reason = params.get("reason");
    const query = new URLSearchParams({ limit: 50, ...(reason ? { reason } : {}) });
    const [data, about] = await Promise.all([
      api(`/v1/dead-letters/${seg(source)}?${query}`),
      api(`/v1/sources/${seg(source)}`),
    ]);
    const counts = table(["Reason", "Letters", "Replayed", "Pending"], data.counts.map((c) =>
      h("tr", { "data-reason": c.reason },
        h("td", {}, h("a", { href: link(`/dead-letters/${seg(source)}`, { reason: c.reason }) }, c.reason)),
        h("td", { class: "num" }, num(c.letters)), h("td", { class: "num" }, num(c.replayed)),
        h("td", { class: "num" }, num(c.pending)))), { id: "dlq-counts" });
    const letters = table(["Partition", "Offset", "Reason", "Field", "Error", "Event time", "Source position",
      "Replayed"], data.letters.map((l) => h("tr", { class: "letter" },
      h("td", { class: "num" }, l.partition), h("td", { class: "num" }, l.offset), h("td", {}, l.reason),
      h("td", {}, l.field), h("td", {}, l.error), h("td", {}, l.event_time || "–"),
      h("td", {}, l.source_position), h("td", {}, l.replayed ? "yes" : "no"))), { id: "dlq-letters" });
    return [
      h("h1", { id: "page-title" }, `Dead letters of ${source}`),
      h("p", { class: "links", id: "dlq-readers" }, "Read by: ", about.feature_sets.map((n) =>
        h("a", { href: link(`/feature-sets/${seg(n)}`) }, n))),
      h("p", { class: "muted", id: "dlq-summary" }, `${num(data.total)} letter(s) on ${data.topic}` +
        (reason ? `; ${num(data.matching)} with reason ${reason} ` : "")),
      reason ? h("p", {}, h("a", { href: link(`/dead-letters/${seg(source)}`) }, "All reasons")) : null,
      h("h2", {}, "By reason"), data.counts.length ? counts : h("p", { id: "dlq-none" }, "No dead letters."),
      h("h2", {}, `Sample (first ${data.letters.length} of ${num(data.matching)})`), letters,
    ];
  });
})();
