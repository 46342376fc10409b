"""The web console at /ui in a real browser (Debian's chromium through chromedriver), served by
the real API on a real catalog, Kafka broker, Redis and Delta tables.

Each test starts the API as a child process (``tests.integration.console_server``: the app
``headwater serve`` builds, on uvicorn) and chromium (``tests.integration.browser``), and stops
both by pid. Pages are checked by their values: the names listed, search and paging, every
link of a page resolving to a page with its heading, and the numbers drawn (bar heights
proportional to the API's counts and shares). Screenshots of every page go to the test's
tmp dir.

The statistics, drift and health pages are checked against what the real endpoints answer
for the same query (``/v1/stats``, ``/v1/drift``, ``/v1/monitor``), on the deployment's own
events; those endpoints' numbers are checked against exact computations in
``test_monitoring``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from headwater.apply import apply_definitions
from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import EventProducer
from headwater.schemas.avro import AvroSchema, encode_wire
from tests.integration.browser import ConsoleServer, page_errors, wait
from tests.integration.pipeline import Deployment
from tests.integration.test_access_control import make_key

pytestmark = [pytest.mark.integration, pytest.mark.browser]

Start = Callable[[Deployment], ConsoleServer]
MINUTE = 60_000


def js_num(value: Any, digits: int = 4) -> str:
    """A number as the console shows it (``num`` in console.js)."""
    if value is None:
        return "–"
    if float(value).is_integer():
        return f"{int(value):,}"
    rounded = float(f"{float(value):.{digits}g}")  # Number(value.toPrecision(4)).toString()
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


def js_percent(value: float) -> str:
    """A share as the console shows it (``percent`` in console.js)."""
    return f"{js_num(float(f'{value * 100:.3g}'), 3)}%"


def open_page(driver: WebDriver, url: str, shots: Path | None = None, shot: str = "") -> str:
    """Go to ``url`` and wait until the console rendered it; the page's heading."""
    driver.execute_script("if (document.body) document.body.dataset.loaded = '';")
    if driver.current_url == url:
        driver.refresh()  # the same hash again changes nothing: load the page afresh
    else:
        driver.get(url)
    wait(
        driver,
        f"{url} to render",
        lambda d: d.execute_script(
            "return !!(document.body.dataset.loaded && document.getElementById('page-title'))"
        ),
    )
    heading = str(driver.find_element(By.ID, "page-title").text)
    if shots is not None:
        screenshot(driver, shots / f"{shot}.png")
    return heading


def screenshot(driver: WebDriver, path: Path) -> None:
    """The whole page (up to 2,400 px tall), from its top."""
    size = driver.get_window_size()
    tall = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_script("window.scrollTo(0, 0)")
    driver.set_window_size(size["width"], min(max(int(tall) + 120, 600), 2400))
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])


def cells(driver: WebDriver, selector: str) -> list[list[str]]:
    """The text of each cell of the rows ``selector`` finds."""
    return [
        [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, selector)
    ]


def stat(driver: WebDriver, column: str, name: str) -> str:
    css = f"#stats-table tr[data-column='{column}'] td[data-stat='{name}']"
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def bars(driver: WebDriver, css: str, attribute: str) -> list[tuple[float, float]]:
    """(number the bar carries, its drawn height) of each bar ``css`` finds."""
    return [
        (float(r.get_attribute(attribute) or "nan"), float(r.get_attribute("height") or "nan"))
        for r in driver.find_elements(By.CSS_SELECTOR, css)
    ]


def assert_proportional(drawn: list[tuple[float, float]], numbers: list[float]) -> None:
    assert [n for n, _ in drawn] == pytest.approx(numbers)
    top = max(numbers)
    tallest = max(height for _, height in drawn)
    for number, height in drawn:
        assert height / tallest == pytest.approx(number / top, abs=1e-6), (number, height)


def links_resolve(driver: WebDriver, page: str) -> list[str]:
    """Open every link of the page at ``page``; each must render a heading, no error."""
    open_page(driver, page)
    # HTML and SVG links alike (an SVG <a>'s href property is not a string), made absolute.
    found = driver.execute_script(
        "return [...document.querySelectorAll('a[href]')]"
        ".map(a => new URL(a.getAttribute('href'), location.href).href)"
    )
    hrefs = sorted({str(h) for h in found})
    for href in hrefs:
        heading = open_page(driver, href)
        assert heading not in ("Could not load this page", "No such page"), (
            href,
            driver.find_element(By.ID, "page-error").text,
        )
    return hrefs


def _produce_events(deployment: Deployment) -> None:
    """Good events of three users, two dated 30 min ahead (dead letters "future") and three
    written with a schema id nobody registered ("unknown_schema")."""
    settings = deployment.settings
    source = deployment.definitions().source(deployment.source)
    catalog = Catalog(settings.catalog_url)
    v1_id = catalog.register_schema(source.subject, source.schema)
    unknown_id = max(v.id for v in catalog.schema_versions()) + 1
    v2 = json.loads((deployment.defs_dir / "transactions.avsc").read_text())
    v2["fields"].append({"name": "channel", "type": "string", "default": "web"})
    later = AvroSchema.from_dict(v2)
    now = time.time_ns() // 1_000_000
    producer = EventProducer(settings.kafka)

    def row(i: int, user: str, at: int) -> dict[str, Any]:
        return {
            "transaction_id": f"c{i}",
            "user_id": user,
            "merchant_id": f"m{i % 4}",
            "amount": 5.0 + i,
            "currency": "EUR",
            "status": "approved",
            "event_time": at,
        }

    for i in range(12):
        r = row(i, f"u{i % 3}", now - (30 - i) * MINUTE)
        producer.produce(
            deployment.topic, encode_wire(source.schema, v1_id, r), r["user_id"].encode()
        )
    for i in range(2):
        r = row(100 + i, "u9", now + 30 * MINUTE + i)
        producer.produce(deployment.topic, encode_wire(source.schema, v1_id, r), b"u9")
    for i in range(3):
        r = {**row(200 + i, "u8", now - MINUTE), "channel": "app"}
        producer.produce(deployment.topic, encode_wire(later, unknown_id, r), b"u8")
    producer.flush()
    catalog.close()


def _wait_letters(url: str, source: str, expected: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = httpx.get(f"{url}/v1/dead-letters/{source}", timeout=30).json()
        if body["total"] >= expected or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def _save_training_set(deployment: Deployment, tmp_path: Path) -> None:
    now = time.time_ns() // 1_000_000
    labels = pa.table({"user_id": ["u0", "u1", "u2"], "event_timestamp": [now, now, now]})
    pq.write_table(labels, tmp_path / "labels.parquet")
    name = deployment.feature_set
    refs = [f"{name}:{f}" for f in ("spend_1h", "txn_count_1d", "avg_amount_7d", "last_merchant")]
    saved = deployment.cli(
        "retrieve",
        "--entities",
        str(tmp_path / "labels.parquet"),
        "--features",
        ",".join(refs),
        "--out",
        str(tmp_path / "train.parquet"),
        "--save",
        "console_train",
    )
    assert saved.returncode == 0, saved.stderr


def _serve_lookups(url: str, name: str) -> None:
    """Lookups of the three users, logged (sample rate 1) until the log holds them."""
    refs = [f"{name}:{f}" for f in ("spend_1h", "txn_count_1d", "avg_amount_7d", "last_merchant")]
    body = {"features": refs, "entities": {"user_id": ["u0", "u1", "u2"]}}
    assert httpx.post(f"{url}/v1/online-features", json=body, timeout=30).status_code == 200
    deadline = time.monotonic() + 30
    params = {"version": 2, "served": "true"}
    while httpx.get(f"{url}/v1/stats/{name}", params=params, timeout=30).json()["rows"] < 3:
        assert time.monotonic() < deadline, "the response log did not get the lookups"
        time.sleep(0.3)


def _apply_version_2(deployment: Deployment) -> None:
    path = deployment.defs_dir / "features.yaml"
    text = path.read_text()
    changed = text.replace(
        "{name: txn_count_1d, function: count, window: 1d}",
        "{name: txn_count_1d, function: count, window: 2d}",
    ).replace("owner: risk-team", "owner: fraud-ml")
    assert changed != text
    path.write_text(changed)
    done = deployment.cli("apply", str(deployment.defs_dir))
    assert done.returncode == 0, done.stderr


def test_console_pages_render_the_apis_numbers(
    deployment: Deployment, start_console_server: Start, chromium: WebDriver, tmp_path: Path
) -> None:
    name, source = deployment.feature_set, deployment.source
    worker = deployment.start_worker()
    _produce_events(deployment)
    deployment.wait_caught_up(worker)
    _save_training_set(deployment, tmp_path)
    worker.stop()
    _apply_version_2(deployment)
    worker = deployment.start_worker()  # v2 computes from the start of the topic
    deployment.wait_caught_up(worker)
    deployment.env["HEADWATER_SERVING__LOG_SAMPLE_RATE"] = "1"
    deployment.env["HEADWATER_SERVING__LOG_FLUSH_SECONDS"] = "0.2"
    server = start_console_server(deployment)
    url, shots = server.url, tmp_path / "screenshots"
    shots.mkdir()
    _serve_lookups(url, name)

    # The JSON endpoints the console added, checked as a client sees them.
    letters = _wait_letters(url, source, 5)
    assert {c["reason"]: c["letters"] for c in letters["counts"]} == {
        "future": 2,
        "unknown_schema": 3,
    }
    assert letters["total"] == 5 and len(letters["letters"]) == 5
    future = httpx.get(f"{url}/v1/dead-letters/{source}?reason=future&limit=1", timeout=30).json()
    assert future["matching"] == 2 and [x["reason"] for x in future["letters"]] == ["future"]
    unknown = httpx.get(f"{url}/v1/dead-letters/nosuch", timeout=30)
    assert unknown.status_code == 404
    assert f"unknown source 'nosuch'; known: ['{source}']" in unknown.json()["detail"]
    diff = httpx.get(f"{url}/v1/feature-sets/{name}/diff?from=1&to=2", timeout=10).json()
    assert diff["breaking"] == ["feature 'txn_count_1d': count() over 1d -> count() over 2d"]
    assert diff["compatible"] == ["owner: 'risk-team' -> 'fraud-ml'"]
    missing = httpx.get(f"{url}/v1/feature-sets/{name}/diff?from=1&to=9", timeout=10)
    assert missing.status_code == 404 and "has no version 9; it has [1, 2]" in missing.text

    # 1. Catalog: the set is listed; search narrows; every link resolves.
    assert open_page(chromium, f"{url}/ui", shots, "catalog") == "Catalog"
    assert [r[0] for r in cells(chromium, "#catalog-table tbody tr")] == [name]
    box = chromium.find_element(By.ID, "search")
    box.send_keys("fraud-ml large_txn")
    wait(chromium, "search hits", lambda d: "large_txn_count_1d" in d.page_source)
    assert cells(chromium, "#catalog-table tbody tr")[0][8] == "large_txn_count_1d"
    box.clear()
    box.send_keys("nothing-like-this")
    wait(chromium, "no hits", lambda d: "no feature set matches" in d.page_source)
    assert cells(chromium, "#catalog-table tbody tr") == []
    links_resolve(chromium, f"{url}/ui/#/")

    # 2. The feature set: definition, source schema, versions and their diff, health.
    page = f"{url}/ui/#/feature-sets/{name}"
    assert open_page(chromium, page) == f"{name} v2"
    definition = {
        r.find_element(By.TAG_NAME, "th").text: r.find_element(By.TAG_NAME, "td").text
        for r in chromium.find_elements(By.CSS_SELECTOR, "#definition tbody tr")
    }
    assert definition["Owner"] == "fraud-ml" and definition["TTL"] == "7d"
    assert definition["Filter"] == "status == 'approved'" and definition["Entity"] == "user"
    features = cells(chromium, "#features tbody tr")
    assert len(features) == 10 and ["txn_count_1d", "count", "–", "2d", "–"] in features
    assert ["spend_1h", "sum", "amount", "1h", "–"] in features
    schema = {r[0]: r[1] for r in cells(chromium, "#source-schema tbody tr")}
    assert schema == {
        "transaction_id": "string",
        "user_id": "string",
        "merchant_id": "string",
        "amount": "double",
        "currency": "string",
        "status": "string",
        "event_time": "long",
    }
    health = httpx.get(f"{url}/v1/monitor/{name}", timeout=30).json()
    assert health["dead_letters"] == {"future": 2, "unknown_schema": 3}
    newest = datetime.fromtimestamp(health["newest_event_time_ms"] / 1000, UTC)
    assert chromium.find_element(By.ID, "health-newest").text == (
        newest.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    minutes = {round((health["freshness_seconds"] + d) / 60) for d in (-10, 0, 10)}
    assert chromium.find_element(By.ID, "health-freshness").text in {f"{m} min" for m in minutes}
    assert chromium.find_element(By.ID, "health-lag").text == js_num(health["lag"]["total"])
    assert cells(chromium, "#health tr.lag-partition") == [
        [f"partition {p}", js_num(n)] for p, n in health["lag"]["partitions"].items()
    ]
    assert cells(chromium, "#health tr.health-dlq") == [
        ["Dead letters: future", "2"],
        ["Dead letters: unknown_schema", "3"],
    ]
    assert chromium.find_element(By.ID, "health-consistency").text == "–"  # never measured
    assert chromium.find_element(By.ID, "health-problems").text == "No problems"
    Select(chromium.find_element(By.ID, "diff-from")).select_by_value("1")
    Select(chromium.find_element(By.ID, "diff-to")).select_by_value("2")
    chromium.find_element(By.ID, "diff-show").click()
    wait(chromium, "the diff", lambda d: d.find_elements(By.CSS_SELECTOR, "#diff-breaking li"))
    assert [li.text for li in chromium.find_elements(By.CSS_SELECTOR, "#diff-breaking li")] == [
        "feature 'txn_count_1d': count() over 1d -> count() over 2d"
    ]
    screenshot(chromium, shots / "feature-set.png")
    resolved = links_resolve(chromium, page)
    for target in ("/stats", "/drift", f"#/lineage/{name}", f"#/dead-letters/{source}"):
        assert any(h.endswith(target) for h in resolved), target

    # 3. Lineage: source -> versions -> service -> saved training set, drawn.
    assert (
        open_page(chromium, f"{url}/ui/#/lineage/{name}", shots, "lineage") == f"Lineage of {name}"
    )
    nodes = {
        n.get_attribute("data-node") for n in chromium.find_elements(By.CSS_SELECTOR, "g.node")
    }
    assert nodes == {
        f"source:{source}",
        "set:v1",
        "set:v2",
        "service:fraud_model",
        "training:console_train",
    }
    edges = {
        e.get_attribute("data-edge") for e in chromium.find_elements(By.CSS_SELECTOR, "path.edge")
    }
    assert edges == {
        f"source:{source}->set:v1",
        f"source:{source}->set:v2",
        "set:v2->service:fraud_model",
        # Saved from v1: it hangs off the version it read, not the service (now on v2).
        "set:v1->training:console_train",
    }
    resolved = links_resolve(chromium, f"{url}/ui/#/lineage/{name}")
    assert f"{url}/ui/#/dead-letters/{source}" in resolved  # the source node's link

    # 4. Dead letters: counts by reason, the sample, a reason's own list.
    assert open_page(chromium, f"{url}/ui/#/dead-letters/{source}", shots, "dead-letters") == (
        f"Dead letters of {source}"
    )
    assert cells(chromium, "#dlq-counts tbody tr") == [
        ["future", "2", "0", "2"],
        ["unknown_schema", "3", "0", "3"],
    ]
    assert sorted(r[2] for r in cells(chromium, "#dlq-letters tbody tr")) == (
        ["future"] * 2 + ["unknown_schema"] * 3
    )
    chromium.find_element(By.LINK_TEXT, "future").click()
    wait(chromium, "the reason's letters", lambda d: "with reason future" in d.page_source)
    assert [r[2] for r in cells(chromium, "#dlq-letters tbody tr")] == ["future", "future"]
    resolved = links_resolve(chromium, f"{url}/ui/#/dead-letters/{source}")
    assert f"{url}/ui/#/feature-sets/{name}" in resolved  # the sets reading the source

    # 5. Statistics: the table and the histogram hold the numbers the API answers.
    title = open_page(chromium, f"{url}/ui/#/feature-sets/{name}/stats", shots, "statistics")
    assert title == f"Statistics of {name}"
    stats = httpx.get(f"{url}/v1/stats/{name}", params={"version": 2}, timeout=60).json()
    assert stats["rows"] == 12  # the good events, all approved
    amount = next(c for c in stats["columns"] if c["name"] == "amount")
    assert [stat(chromium, "amount", s) for s in ("count", "nulls", "null_rate", "min", "max")] == [
        js_num(amount["count"]),
        js_num(amount["nulls"]),
        js_percent(amount["null_rate"]),
        js_num(amount["min"]),
        js_num(amount["max"]),
    ]
    assert (amount["min"], amount["max"], amount["mean"]) == (5.0, 16.0, 10.5)
    low, high = amount["distinct_bounds"]
    assert [stat(chromium, "amount", s) for s in ("mean", "stddev", "distinct")] == [
        js_num(amount["mean"]),
        js_num(amount["stddev"]),
        f"{js_num(amount['distinct'])} ({js_num(low)}–{js_num(high)})",
    ]
    currency = next(c for c in stats["columns"] if c["name"] == "currency")
    assert currency["top"] == [{"value": "EUR", "count": 12}]
    assert stat(chromium, "currency", "top") == "EUR (12)"
    assert stat(chromium, "currency", "mean") == "–"
    quantiles = cells(chromium, "table.quantiles[data-column='amount'] tbody tr")
    assert quantiles == [
        [f"p{js_num(q['q'] * 100)}", js_num(q["value"])] for q in amount["quantiles"]
    ]
    drawn = bars(chromium, "svg.histogram[data-column='amount'] rect.bar", "data-count")
    assert_proportional(drawn, [float(c) for c in amount["histogram"]["counts"]])
    merchants = next(c for c in stats["columns"] if c["name"] == "merchant_id")
    top = bars(chromium, "svg.frequent[data-column='merchant_id'] rect.bar", "data-count")
    assert_proportional(top, [float(t["count"]) for t in merchants["top"]])
    Select(chromium.find_element(By.ID, "stats-of")).select_by_value("training_set")
    chromium.find_element(By.ID, "stats-load").click()
    wait(chromium, "stats of the training set", lambda d: "of training_set" in d.page_source)
    seen = httpx.get(
        f"{url}/v1/stats/{name}", params={"version": 2, "training_set": "console_train"}, timeout=60
    ).json()
    assert seen["rows"] == 3
    spend = next(c for c in seen["columns"] if c["name"] == "spend_1h")
    assert stat(chromium, "spend_1h", "mean") == js_num(spend["mean"])
    links_resolve(chromium, f"{url}/ui/#/feature-sets/{name}/stats")

    # 6. Drift: PSI/JS, thresholds, the flag, and reference vs current shares drawn; the
    # training set against the served values by default.
    title = open_page(chromium, f"{url}/ui/#/feature-sets/{name}/drift", shots, "drift")
    assert title == f"Drift of {name}"
    drift = httpx.get(
        f"{url}/v1/drift/{name}",
        params={"version": 2, "reference": "training_set:console_train", "current": "served"},
        timeout=60,
    ).json()
    assert drift["columns"], drift
    assert cells(chromium, "#drift-table tbody tr") == [
        [
            c["name"],
            c["type"],
            js_num(c["psi"]),
            js_num(c["js"]),
            f"PSI ≤ {js_num(c['threshold']['psi'])}",
            "DRIFTED" if c["drifted"] else "no",
        ]
        for c in drift["columns"]
    ]
    first = drift["columns"][0]
    for kind, key in (("ref", "reference"), ("cur", "current")):
        css = f"svg.shares[data-column='{first['name']}'] rect.bar-{kind}"
        drawn = bars(chromium, css, "data-share")
        assert [n for n, _ in drawn] == pytest.approx([b[key] for b in first["bins"]])
    every = bars(chromium, f"svg.shares[data-column='{first['name']}'] rect", "data-share")
    assert_proportional(every, [n for n, _ in every])  # one scale for both series
    Select(chromium.find_element(By.ID, "ref-kind")).select_by_value("history")
    today = datetime.now(UTC).date()
    chromium.execute_script(
        f"document.getElementById('ref-start').value = '{today - timedelta(days=1)}';"
        f"document.getElementById('ref-end').value = '{today}';"
    )
    Select(chromium.find_element(By.ID, "cur-kind")).select_by_value("history")
    chromium.find_element(By.ID, "drift-load").click()
    expected = f"history {today - timedelta(days=1)} to {today} against history"
    wait(chromium, "drift of history days", lambda d: expected in d.page_source)
    skipped = chromium.find_element(By.ID, "drift-skipped").text
    assert "event_time (the event time: it moves by definition)" in skipped
    links_resolve(chromium, f"{url}/ui/#/feature-sets/{name}/drift")
    assert page_errors(chromium) == []


def test_console_asks_for_a_key_when_the_api_needs_one(
    deployment: Deployment, start_console_server: Start, chromium: WebDriver, tmp_path: Path
) -> None:
    name = deployment.feature_set
    _save_training_set(deployment, tmp_path)  # on v1, which the service serves: via the service
    key = make_key(deployment, "--name", "console-reader", "--scope", "read")
    server = start_console_server(deployment)
    url = server.url
    # The files carry no data and load without a key; the data does not.
    for asset in ("/ui/", "/ui/console.js", "/ui/pages.js", "/ui/console.css"):
        assert httpx.get(f"{url}{asset}", timeout=10).status_code == 200, asset
    assert httpx.get(f"{url}/ui", timeout=10, follow_redirects=False).headers["location"] == "/ui/"
    assert httpx.get(f"{url}/ui/nosuch.js", timeout=10).status_code == 404
    assert httpx.get(f"{url}/ui/..%2Fapp.py", timeout=10).status_code == 404
    assert httpx.get(f"{url}/v1/catalog/search", timeout=10).status_code == 401

    chromium.get(f"{url}/ui/")
    prompt = chromium.find_element(By.ID, "key-prompt")
    wait(chromium, "the key prompt", lambda d: prompt.is_displayed())
    assert "needs an API key" in chromium.find_element(By.ID, "key-reason").text
    screenshot(chromium, tmp_path / "key-prompt.png")
    field = chromium.find_element(By.ID, "api-key")
    field.send_keys("hw_000000000000_not-a-key")
    chromium.find_element(By.ID, "key-submit").click()
    wait(chromium, "the refusal", lambda d: "refused" in d.find_element(By.ID, "key-reason").text)
    assert prompt.is_displayed()
    field.send_keys(key)
    chromium.find_element(By.ID, "key-submit").click()
    wait(chromium, "the catalog", lambda d: d.find_elements(By.CSS_SELECTOR, "#catalog-table"))
    assert not prompt.is_displayed()
    assert [r[0] for r in cells(chromium, "#catalog-table tbody tr")] == [name]
    assert chromium.execute_script("return sessionStorage.getItem('headwater.apiKey')") == key
    # Other pages use the kept key: no second prompt.
    heading = open_page(chromium, f"{url}/ui/#/feature-sets/{name}")
    assert heading == f"{name} v1" and not prompt.is_displayed()
    assert len(cells(chromium, "#features tbody tr")) == 10
    assert open_page(chromium, f"{url}/ui/#/lineage/{name}") == f"Lineage of {name}"
    edges = {
        e.get_attribute("data-edge") for e in chromium.find_elements(By.CSS_SELECTOR, "path.edge")
    }
    assert edges == {
        f"source:{deployment.source}->set:v1",
        "set:v1->service:fraud_model",
        "service:fraud_model->training:console_train",
    }
    assert not prompt.is_displayed()
    # Forgetting the key drops it from the tab: the next data call asks again.
    chromium.find_element(By.ID, "key-forget").click()
    wait(chromium, "the prompt again", lambda d: prompt.is_displayed())
    assert chromium.execute_script("return sessionStorage.getItem('headwater.apiKey')") is None
    assert page_errors(chromium) == []


def _write_many(directory: Path, suffix: str, count: int) -> dict[str, str]:
    """``count`` feature sets over one source; their owners by name."""
    directory.mkdir(parents=True)
    avsc = (Path(__file__).resolve().parents[2] / "examples" / "transactions.avsc").read_text()
    (directory / "clicks.avsc").write_text(avsc)
    owners = {f"fs{i:03d}_{suffix}": f"team-{i % 7}" for i in range(count)}
    lines = [
        "entities:",
        f"  - {{name: shopper_{suffix}, keys: [user_id]}}",
        "sources:",
        f"  - {{name: clicks_{suffix}, schema: clicks.avsc, timestamp: event_time}}",
        "feature_sets:",
    ]
    for i, (set_name, owner) in enumerate(owners.items()):
        lines += [
            f"  - name: {set_name}",
            f"    entity: shopper_{suffix}",
            f"    source: clicks_{suffix}",
            f"    owner: {owner}",
            f"    description: Generated set number {i}",
            f"    tags: [domain{i % 5}]",
            "    features:",
            f"      - {{name: amount_sum_{i}, function: sum, field: amount, window: 1h}}",
        ]
    (directory / "many.yaml").write_text("\n".join(lines) + "\n")
    return owners


def test_a_catalog_of_500_feature_sets_pages_fast_and_searches(
    deployment: Deployment, start_console_server: Start, chromium: WebDriver, tmp_path: Path
) -> None:
    owners = _write_many(tmp_path / "many", deployment.suffix, 500)
    apply_definitions(deployment.settings, tmp_path / "many")
    server = start_console_server(deployment)
    url, every = server.url, sorted([*owners, deployment.feature_set])

    began = time.monotonic()
    page = httpx.get(f"{url}/v1/catalog/search", params={"limit": 25}, timeout=10).json()
    assert time.monotonic() - began < 2
    assert page["total"] == 501 and [i["name"] for i in page["items"]] == every[:25]
    too_many = httpx.get(f"{url}/v1/catalog/search", params={"limit": 1000}, timeout=10)
    assert too_many.status_code == 422 and "limit" in too_many.text

    began = time.monotonic()
    chromium.get(f"{url}/ui/")
    wait(
        chromium,
        "the first page",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#catalog-table tbody tr")) == 25,
    )
    assert time.monotonic() - began < 5
    screenshot(chromium, tmp_path / "catalog-500.png")
    assert [r[0] for r in cells(chromium, "#catalog-table tbody tr")] == every[:25]
    assert chromium.find_element(By.ID, "page-info").text == "1–25 of 501 feature sets"
    chromium.find_element(By.ID, "next").click()
    wait(chromium, "page 2", lambda d: d.find_element(By.ID, "page-info").text.startswith("26–50"))
    assert [r[0] for r in cells(chromium, "#catalog-table tbody tr")] == every[25:50]
    chromium.find_element(By.ID, "prev").click()
    wait(chromium, "page 1", lambda d: d.find_element(By.ID, "page-info").text.startswith("1–25"))

    team = sorted(n for n, o in owners.items() if o == "team-3")
    chromium.find_element(By.ID, "search").send_keys("team-3 domain")
    wait(
        chromium,
        "search hits",
        lambda d: f"of {len(team)} feature sets" in d.find_element(By.ID, "page-info").text,
    )
    assert [r[0] for r in cells(chromium, "#catalog-table tbody tr")] == team[:25]
    assert all(r[3] == "team-3" for r in cells(chromium, "#catalog-table tbody tr"))
    # A set found on a later page of the search opens.
    chromium.find_element(By.ID, "next").click()
    wait(
        chromium,
        "search page 2",
        lambda d: d.find_element(By.ID, "page-info").text.startswith("26–"),
    )
    target = team[25]
    chromium.find_element(By.LINK_TEXT, target).click()
    wait(
        chromium,
        "the set's page",
        lambda d: d.find_element(By.ID, "page-title").text.startswith(target),
    )
    assert cells(chromium, "#features tbody tr")[0][0] == f"amount_sum_{int(target[2:5])}"
    assert page_errors(chromium) == []
