// Statistics and drift of a feature set, from /v1/stats and /v1/drift: tables of the numbers,
// a histogram per column, reference-vs-current bars per column, and choosers for the data.
"use strict";

(() => {
  const { api, h, link, nodes, num, percent, route, seg, table } = Console;

  function day(offsetDays) {
    const d = new Date(Date.now() + offsetDays * 86400000);
    return d.toISOString().slice(0, 10);
  }

  /** The versions and saved training sets of a feature set, for the choosers. */
  async function choices(name) {
    const [fs, lineage] = await Promise.all([
      api(`/v1/feature-sets/${seg(name)}`),
      api(`/v1/lineage/${seg(name)}`),
    ]);
    return { fs, trainingSets: lineage.training_sets.map((t) => t.name) };
  }

  function select(id, values, selected, label) {
    return h("select", { id }, values.map((v) =>
      h("option", { value: v, selected: String(v) === String(selected) }, label ? label(v) : v)));
  }

  function header(name, what) {
    return [
      h("h1", { id: "page-title" }, `${what} of ${name}`),
      h("p", { class: "links" },
        h("a", { href: link(`/feature-sets/${seg(name)}`) }, `Back to ${name}`),
        h("a", { href: link(`/feature-sets/${seg(name)}/${what === "Statistics" ? "drift" : "stats"}`) },
          what === "Statistics" ? "Drift" : "Statistics"),
        h("a", { href: link(`/lineage/${seg(name)}`) }, "Lineage")),
    ];
  }

  function statsTable(columns) {
    return table(["Column", "Type", "Count", "Nulls", "Null rate", "Min", "Max", "Mean", "Stddev",
      "Distinct", "Most frequent"], columns.map((c) => h("tr", { "data-column": c.name },
      h("td", {}, c.name), h("td", {}, c.type),
      h("td", { class: "num", "data-stat": "count" }, num(c.count)),
      h("td", { class: "num", "data-stat": "nulls" }, num(c.nulls)),
      h("td", { class: "num", "data-stat": "null_rate" }, percent(c.null_rate)),
      h("td", { class: "num", "data-stat": "min" }, num(c.min)),
      h("td", { class: "num", "data-stat": "max" }, num(c.max)),
      h("td", { class: "num", "data-stat": "mean" }, num(c.mean)),
      h("td", { class: "num", "data-stat": "stddev" }, num(c.stddev)),
      h("td", { class: "num", "data-stat": "distinct",
        title: c.distinct_bounds ? `between ${num(c.distinct_bounds[0])} and ${num(c.distinct_bounds[1])}` : "" },
      num(c.distinct) + (c.distinct_bounds && c.distinct_bounds[0] !== c.distinct_bounds[1]
        ? ` (${num(c.distinct_bounds[0])}–${num(c.distinct_bounds[1])})` : "")),
      h("td", { "data-stat": "top" }, (c.top || []).map((t) => `${t.value} (${num(t.count)})`).join(", ")),
    )), { id: "stats-table" });
  }

  function columnCard(c) {
    const quantiles = c.quantiles && c.quantiles.length
      ? table(["Quantile", "Value"], c.quantiles.map((q) => h("tr", { "data-q": q.q },
        h("td", {}, `p${Number((q.q * 100).toPrecision(3))}`), h("td", { class: "num" }, num(q.value)))),
      { class: "quantiles", "data-column": c.name })
      : h("p", { class: "muted" }, "No quantiles (not a number).");
    return h("div", { class: "card column", "data-column": c.name },
      h("h3", {}, `${c.name} `, h("span", { class: "muted" }, c.type)),
      h("div", { class: "grid" },
        h("div", {}, c.histogram ? Charts.histogram(c.histogram, c.name)
          : c.top && c.top.length ? [h("p", { class: "muted small" }, "Most frequent values"),
            Charts.frequent(c.top, c.name)]
            : h("p", { class: "muted" }, "No histogram.")),
        h("div", {}, quantiles)));
  }

  // 5. Statistics.
  route(/^\/feature-sets\/([^/]+)\/stats$/, async ([name], params) => {
    const { fs, trainingSets } = await choices(name);
    const version = select("stats-version", fs.versions.map((v) => v.version),
      params.get("version") || fs.version, (v) => `v${v}`);
    const of = select("stats-of", ["history", "training_set", "served"], params.get("of") || "history");
    const start = h("input", { id: "stats-start", type: "date", value: params.get("start") || day(-30) });
    const end = h("input", { id: "stats-end", type: "date", value: params.get("end") || day(0) });
    const training = select("stats-training-set", trainingSets, params.get("training_set"));
    const out = h("div", { id: "stats-result" });

    async function load() {
      const query = { version: version.value };
      if (of.value === "history") Object.assign(query, { start: start.value, end: end.value });
      else if (of.value === "training_set") query.training_set = training.value;
      else query.served = "true";
      Console.setParams({ ...query, of: of.value });
      out.replaceChildren(h("p", { class: "muted" }, "Loading…"));
      try {
        const stats = await api(`/v1/stats/${seg(name)}?${new URLSearchParams(query)}`);
        const range = stats.of === "history" ? ` from ${stats.start || "the start"} to ${stats.end || "now"}` : "";
        out.replaceChildren(...nodes([
          h("p", { id: "stats-summary" }, `${num(stats.rows)} rows of ${stats.of}${range} (v${stats.version}); ` +
            `quantile rank error ±${percent(stats.accuracy.quantile_rank_error)}, ` +
            `distinct count error ±${percent(stats.accuracy.distinct_relative_error)}`),
          statsTable(stats.columns),
          h("h2", {}, "Per column"),
          stats.columns.map(columnCard)]));
      } catch (error) {
        out.replaceChildren(h("p", { class: "error", id: "stats-error" }, error.message));
      }
      document.body.dataset.loaded = String(Date.now());
    }

    await load();
    return [
      ...header(name, "Statistics"),
      h("div", { class: "toolbar" }, "Version", version, "of", of, "from", start, "to", end,
        trainingSets.length ? ["training set", training] : null,
        h("button", { id: "stats-load", onclick: load }, "Show")),
      out,
    ];
  });

  function driftTable(columns) {
    const limit = (t) => [t.psi !== null ? `PSI ≤ ${num(t.psi)}` : null,
      t.js !== null ? `JS ≤ ${num(t.js)}` : null].filter(Boolean).join(", ") || "–";
    return table(["Column", "Type", "PSI", "JS", "Threshold", "Drifted"], columns.map((c) =>
      h("tr", { "data-column": c.name, class: c.drifted ? "drifted-row" : "" },
        h("td", {}, c.name), h("td", {}, c.type),
        h("td", { class: "num", "data-stat": "psi" }, num(c.psi)),
        h("td", { class: "num", "data-stat": "js" }, num(c.js)),
        h("td", { "data-stat": "threshold" }, limit(c.threshold)),
        h("td", { "data-stat": "drifted", class: c.drifted ? "drifted" : "stable" },
          c.drifted ? "DRIFTED" : "no"))), { id: "drift-table" });
  }

  // 6. Drift.
  route(/^\/feature-sets\/([^/]+)\/drift$/, async ([name], params) => {
    const { fs, trainingSets } = await choices(name);
    const version = select("drift-version", fs.versions.map((v) => v.version),
      params.get("version") || fs.version, (v) => `v${v}`);
    const given = params.get("reference") || "";
    const refKind = select("ref-kind", ["training_set", "history"],
      given.startsWith("training_set:") || (!params.has("reference_start") && trainingSets.length)
        ? "training_set" : "history", (v) => v === "history" ? "a date range" : "a training set");
    const refSet = select("ref-training-set", trainingSets, given.replace(/^training_set:/, ""));
    const refStart = h("input", { id: "ref-start", type: "date", value: params.get("reference_start") || day(-37) });
    const refEnd = h("input", { id: "ref-end", type: "date", value: params.get("reference_end") || day(-8) });
    // A training set holds feature values, as the served values do; history holds fields.
    const servedFirst = params.get("current") === "served"
      || (!params.has("current_start") && refKind.value === "training_set");
    const curKind = select("cur-kind", ["history", "served"], servedFirst ? "served" : "history",
      (v) => v === "history" ? "history" : "served values");
    const curStart = h("input", { id: "cur-start", type: "date", value: params.get("current_start") || day(-7) });
    const curEnd = h("input", { id: "cur-end", type: "date", value: params.get("current_end") || day(0) });
    const out = h("div", { id: "drift-result" });

    async function load() {
      const query = { version: version.value };
      if (refKind.value === "training_set") query.reference = `training_set:${refSet.value}`;
      else Object.assign(query, { reference_start: refStart.value, reference_end: refEnd.value });
      if (curKind.value === "served") query.current = "served";
      else Object.assign(query, { current_start: curStart.value, current_end: curEnd.value });
      Console.setParams(query);
      out.replaceChildren(h("p", { class: "muted" }, "Loading…"));
      try {
        const drift = await api(`/v1/drift/${seg(name)}?${new URLSearchParams(query)}`);
        const ref = drift.reference.of === "training_set" ? `training set ${drift.reference.name}`
          : `history ${drift.reference.start} to ${drift.reference.end}`;
        const cur = drift.current.of === "served" ? "served values"
          : `history ${drift.current.start} to ${drift.current.end}`;
        const drifted = drift.columns.filter((c) => c.drifted).map((c) => c.name);
        out.replaceChildren(...nodes([
          h("p", { id: "drift-summary" }, `v${drift.version}: ${ref} against ${cur}; ` +
            (drifted.length ? `drifted: ${drifted.join(", ")}` : "no column drifted")),
          drift.note ? h("p", { id: "drift-note", class: "muted" }, drift.note) : null,
          driftTable(drift.columns),
          (drift.skipped || []).length ? h("p", { id: "drift-skipped", class: "muted small" },
            "Not compared: " + drift.skipped.map((x) => `${x.name} (${x.reason})`).join("; ")) : null,
          h("p", { class: "legend" }, h("span", {}, h("span", { class: "swatch swatch-ref" }),
            "reference share"), h("span", {}, h("span", { class: "swatch swatch-cur" }),
            "current share")),
          drift.columns.map((c) => h("div", { class: "card column", "data-column": c.name },
            h("h3", {}, `${c.name} `, h("span", { class: c.drifted ? "drifted" : "muted" },
              `PSI ${num(c.psi)}, JS ${num(c.js)}`)),
            Charts.shares(c.bins, c.name)))]));
      } catch (error) {
        out.replaceChildren(h("p", { class: "error", id: "drift-error" }, error.message));
      }
      document.body.dataset.loaded = String(Date.now());
    }

    await load();
    return [
      ...header(name, "Drift"),
      h("div", { class: "toolbar" }, "Version", version, "Reference:", refKind,
        trainingSets.length ? refSet : null, refStart, refEnd),
      h("div", { class: "toolbar" }, "Current:", curKind, curStart, curEnd,
        h("button", { id: "drift-load", onclick: load }, "Compare")),
      out,
    ];
  });
})();
