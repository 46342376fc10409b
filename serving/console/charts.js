// Inline SVG charts: a histogram, reference-vs-current bars and the lineage graph. Every bar
// carries its number (data-count / data-share) and a <title>, so what is drawn can be read
// back and checked against the API's answer.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) el.setAttribute(name, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const HEIGHT = 160;

  /** Bars of `counts` between `edges` (edges.length == counts.length + 1), heights
   * proportional to the counts (the tallest bar is HEIGHT px). */
  function histogram(histogram, column) {
    const { edges, counts } = histogram;
    const width = Math.max(360, counts.length * 22);
    const barWidth = (width - 50) / counts.length;
    const top = Math.max(...counts, 1);
    const bars = counts.map((count, i) => {
      const height = (count / top) * HEIGHT;
      return s(
        "rect",
        {
          class: "bar",
          x: 40 + i * barWidth,
          y: 10 + HEIGHT - height,
          width: Math.max(barWidth - 2, 1),
          height,
          "data-count": count,
          "data-low": edges[i],
          "data-high": edges[i + 1],
        },
        s("title", {}, `[${Console.num(edges[i])}, ${Console.num(edges[i + 1])}): ${count}`),
      );
    });
    return s(
      "svg",
      {
        class: "histogram",
        "data-column": column,
        width,
        height: HEIGHT + 40,
        viewBox: `0 0 ${width} ${HEIGHT + 40}`,
        role: "img",
        "aria-label": `histogram of ${column}`,
      },
      s("line", { x1: 38, y1: 10, x2: 38, y2: HEIGHT + 10, stroke: "#94a3b8" }),
      s("text", { x: 34, y: 18, "text-anchor": "end" }, Console.num(top)),
      s("text", { x: 34, y: HEIGHT + 10, "text-anchor": "end" }, "0"),
      bars,
      s("text", { x: 40, y: HEIGHT + 28 }, Console.num(edges[0])),
      s("text", { x: width - 10, y: HEIGHT + 28, "text-anchor": "end" },
        Console.num(edges[edges.length - 1])),
    );
  }

  /** Per bin two bars, the reference's and the current share, on one scale (the largest
   * share is HEIGHT px). */
  function shares(bins, column) {
    const group = 64;
    const width = Math.max(360, bins.length * group + 60);
    const top = Math.max(...bins.flatMap((b) => [b.reference, b.current]), 1e-9);
    const bars = bins.flatMap((bin, i) => {
      const x = 50 + i * group;
      const ref = (bin.reference / top) * HEIGHT;
      const cur = (bin.current / top) * HEIGHT;
      return [
        s("rect", { class: "bar-ref", x, y: 10 + HEIGHT - ref, width: 26, height: ref,
          "data-bin": bin.label, "data-share": bin.reference },
          s("title", {}, `${bin.label} reference ${Console.percent(bin.reference)}`)),
        s("rect", { class: "bar-cur", x: x + 28, y: 10 + HEIGHT - cur, width: 26, height: cur,
          "data-bin": bin.label, "data-share": bin.current },
          s("title", {}, `${bin.label} current ${Console.percent(bin.current)}`)),
        s("text", { x: x + 27, y: HEIGHT + 24, "text-anchor": "middle", class: "bin-label" },
          bin.label.length > 10 ? bin.label.slice(0, 9) + "…" : bin.label),
      ];
    });
    return s(
      "svg",
      { class: "shares", "data-column": column, width, height: HEIGHT + 40,
        viewBox: `0 0 ${width} ${HEIGHT + 40}`, role: "img",
        "aria-label": `reference and current shares of ${column}` },
      s("line", { x1: 46, y1: 10, x2: 46, y2: HEIGHT + 10, stroke: "#94a3b8" }),
      s("text", { x: 42, y: 18, "text-anchor": "end" }, Console.percent(top)),
      s("text", { x: 42, y: HEIGHT + 10, "text-anchor": "end" }, "0"),
      bars,
    );
  }

  /** One bar per most frequent value, heights proportional to the counts (strings and
   * booleans: no histogram, but their top values drawn the same way). */
  function frequent(top, column) {
    const group = 64;
    const width = Math.max(360, top.length * group + 60);
    const most = Math.max(...top.map((t) => t.count), 1);
    const bars = top.flatMap((t, i) => {
      const x = 50 + i * group;
      const height = (t.count / most) * HEIGHT;
      const label = String(t.value);
      return [
        s("rect", { class: "bar", x, y: 10 + HEIGHT - height, width: 48, height,
          "data-value": label, "data-count": t.count }, s("title", {}, `${label}: ${t.count}`)),
        s("text", { x: x + 24, y: HEIGHT + 24, "text-anchor": "middle" },
          label.length > 10 ? label.slice(0, 9) + "…" : label),
      ];
    });
    return s("svg", { class: "frequent", "data-column": column, width, height: HEIGHT + 40,
      viewBox: `0 0 ${width} ${HEIGHT + 40}`, role: "img", "aria-label": `most frequent values of ${column}` },
    s("line", { x1: 46, y1: 10, x2: 46, y2: HEIGHT + 10, stroke: "#94a3b8" }),
    s("text", { x: 42, y: 18, "text-anchor": "end" }, Console.num(most)),
    s("text", { x: 42, y: HEIGHT + 10, "text-anchor": "end" }, "0"),
    bars);
  }

  /** Columns of nodes left to right with edges between them. `columns`: lists of
   * {id, label, sub, kind, href}; `edges`: [fromId, toId]. */
  function graph(columns, edges) {
    const nodeW = 210, nodeH = 44, gapX = 70, gapY = 18;
    const rows = Math.max(...columns.map((c) => c.length), 1);
    const width = columns.length * (nodeW + gapX);
    const height = rows * (nodeH + gapY) + 20;
    const at = {};
    const nodes = columns.flatMap((column, c) =>
      column.map((node, r) => {
        const x = 10 + c * (nodeW + gapX);
        const y = 10 + r * (nodeH + gapY) + ((rows - column.length) * (nodeH + gapY)) / 2;
        at[node.id] = { x, y };
        const box = s("g", { class: `node kind-${node.kind}`, "data-node": node.id,
          "data-kind": node.kind },
          s("rect", { x, y, width: nodeW, height: nodeH }),
          s("text", { x: x + 8, y: y + 18, "font-weight": 600 }, node.label),
          s("text", { x: x + 8, y: y + 34, class: "sub" }, node.sub || node.kind.replace("_", " ")));
        return node.href ? s("a", { href: node.href }, box) : box;
      }),
    );
    const lines = edges
      .filter(([a, b]) => at[a] && at[b])
      .map(([a, b]) => {
        const x1 = at[a].x + nodeW, y1 = at[a].y + nodeH / 2;
        const x2 = at[b].x, y2 = at[b].y + nodeH / 2;
        const mid = (x1 + x2) / 2;
        return s("path", { class: "edge", "data-edge": `${a}->${b}`,
          d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` });
      });
    return s("svg", { class: "lineage", width, height, viewBox: `0 0 ${width} ${height}`,
      role: "img", "aria-label": "lineage graph" }, lines, nodes);
  }

  return { frequent, graph, histogram, shares };
})();
