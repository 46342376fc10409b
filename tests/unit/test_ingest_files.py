"""`headwater ingest` without services: readers, validation, rejects, bookkeeping, schedule, CLI."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from headwater.cli import app
from headwater.connectors.replay import BadRowError, RowValidator, iter_file_rows
from headwater.examples import EXAMPLES
from headwater.ingest import Ingestor, expand_inputs
from headwater.schedule import FileIdentity, Ledger, parse_schedule, run_schedule
from headwater.schemas.avro import AvroSchema, decode_wire
from headwater.schemas.definitions import Entity, Source
from headwater.schemas.errors import ConfigError

SCHEMA = AvroSchema.from_file(EXAMPLES / "transactions.avsc")
SOURCE = Source(name="transactions", schema=SCHEMA, timestamp="event_time")
USER = Entity(name="user", keys=("user_id",))
ROWS: list[dict[str, Any]] = [
    {
        "transaction_id": f"t{i}",
        "user_id": f"u{i % 3}",
        "merchant_id": "m1",
        "amount": 10.5 + i,
        "currency": "EUR",
        "status": "approved",
        "event_time": 1_764_000_000_000 + i * 1000,
    }
    for i in range(6)
]


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, dict[str, bytes]]] = []
        self.flushes = 0

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Any = None,
        timestamp_ms: Any = None,
    ) -> None:
        self.sent.append((topic, value, key, dict(headers or {})))

    def flush(self) -> int:
        self.flushes += 1
        return len(self.sent)

    def records(self) -> list[dict[str, Any]]:
        return [decode_wire(v, SCHEMA) for _, v, _, _ in self.sent]


def make_ingestor(
    rejects: Any = None, mapping: dict[str, str] | None = None, **kw: Any
) -> tuple[Ingestor, FakeProducer]:
    producer = FakeProducer()
    validator = RowValidator(SOURCE, 1, USER, mapping)
    return Ingestor(
        validator, producer=producer, rejects=rejects, show_progress=False, **kw
    ), producer  # type: ignore[arg-type]


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def write_all_formats(d: Path) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(ROWS), d / "a.parquet")
    with (d / "a.avro").open("wb") as fh:
        fastavro.writer(fh, SCHEMA.parsed, ROWS)
    iso = [{**r, "event_time": _iso(r["event_time"])} for r in ROWS]
    return [
        write_csv(d / "a.csv", ROWS),
        write_csv(d / "iso.csv", iso),
        write_jsonl(d / "a.jsonl", ROWS),
        write_jsonl(d / "iso.jsonl", iso),
        d / "a.parquet",
        d / "a.avro",
    ]


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def test_every_format_reads_into_the_same_records(tmp_path: Path) -> None:
    for path in write_all_formats(tmp_path):
        ingestor, producer = make_ingestor()
        result = ingestor.ingest_files([path])
        assert result.produced == len(ROWS), path
        assert producer.records() == ROWS, path
        assert [k for _, _, k, _ in producer.sent] == [r["user_id"].encode() for r in ROWS]


def test_directories_and_globs_expand_sorted(tmp_path: Path) -> None:
    files = write_all_formats(tmp_path / "in")
    (tmp_path / "in" / "notes.txt").write_text("x")
    assert expand_inputs([tmp_path / "in"]) == sorted(files)
    assert expand_inputs([str(tmp_path / "in" / "*.csv")]) == [
        tmp_path / "in" / "a.csv",
        tmp_path / "in" / "iso.csv",
    ]
    with pytest.raises(ConfigError, match="no such file"):
        expand_inputs([tmp_path / "missing.csv"])
    with pytest.raises(ConfigError, match="unsupported"):
        expand_inputs([tmp_path / "in" / "notes.txt"])
    assert expand_inputs([str(tmp_path / "none" / "*.csv")], allow_empty=True) == []


def test_column_mapping_renames_before_validation(tmp_path: Path) -> None:
    renamed = [
        {("ts" if k == "event_time" else "uid" if k == "user_id" else k): v for k, v in r.items()}
        for r in ROWS
    ]
    path = write_jsonl(tmp_path / "r.jsonl", renamed)
    ingestor, producer = make_ingestor(mapping={"ts": "event_time", "uid": "user_id"})
    ingestor.ingest_files([path])
    assert producer.records() == ROWS
    with pytest.raises(BadRowError, match="row 1, column 'user_id': missing column"):
        make_ingestor()[0].ingest_files([path])


def test_csv_text_is_coerced_to_the_schema_types(tmp_path: Path) -> None:
    schema = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "E",
            "fields": [
                {"name": "id", "type": "string"},
                {"name": "n", "type": "int"},
                {"name": "x", "type": "double"},
                {"name": "ok", "type": "boolean"},
                {"name": "note", "type": ["null", "string"]},
                {"name": "opt", "type": ["null", "long"]},
                {"name": "ts", "type": "long"},
            ],
        }
    )
    validator = RowValidator(
        Source(name="e", schema=schema, timestamp="ts"), 1, Entity(name="e", keys=("id",))
    )
    path = tmp_path / "t.csv"
    path.write_text(
        "id,n,x,ok,note,opt,ts\n7,42,2.5,TRUE,,,2026-11-26T15:04:05.123+01:00\n8,-1,3,no,hi,5,1764000000000\n"
    )
    text, rows = iter_file_rows(path)
    # Every row of this well-formed file is a dict, never a BadRow.
    decoded = [
        decode_wire(validator.encode(str(path), n, cast(dict[str, Any], r), text)[1], schema)
        for n, r in rows
    ]
    assert decoded == [
        {
            "id": "7",
            "n": 42,
            "x": 2.5,
            "ok": True,
            "note": None,
            "opt": None,
            "ts": 1_795_701_845_123,
        },
        {
            "id": "8",
            "n": -1,
            "x": 3.0,
            "ok": False,
            "note": "hi",
            "opt": 5,
            "ts": 1_764_000_000_000,
        },
    ]


BAD_CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    (
        "malformed csv row",
        lambda d: _csv_text(d, "1,2\n"),
        "bad.csv: row 3: malformed row: 2 fields, the header has 7",
    ),
    (
        "malformed json",
        lambda d: write_jsonl(d / "bad.jsonl", [ROWS[0], ROWS[1], "{oops"]),
        "bad.jsonl: row 3: malformed row: not JSON",
    ),
    (
        "json not an object",
        lambda d: write_jsonl(d / "bad.jsonl", [ROWS[0], ROWS[1], "[1]"]),
        "bad.jsonl: row 3: malformed row: a JSON list",
    ),
    (
        "missing column",
        lambda d: write_csv(d / "bad.csv", ROWS, [c for c in ROWS[0] if c != "currency"]),
        "bad.csv: row 1, column 'currency': missing column",
    ),
    (
        "wrong type csv",
        lambda d: _csv_text(d, "t9,u1,m1,ten,EUR,approved,1764000000000\n"),
        "bad.csv: row 3, column 'amount': 'ten' is not a number",
    ),
    (
        "wrong type json",
        lambda d: write_jsonl(d / "bad.jsonl", [ROWS[0], ROWS[1], {**ROWS[2], "amount": "ten"}]),
        "bad.jsonl: row 3, column 'amount': str value 'ten' is not a double",
    ),
    (
        "null value",
        lambda d: write_jsonl(d / "bad.jsonl", [ROWS[0], ROWS[1], {**ROWS[2], "user_id": None}]),
        "bad.jsonl: row 3, column 'user_id': missing value",
    ),
    (
        "bad timestamp",
        lambda d: _csv_text(d, "t9,u1,m1,1.5,EUR,approved,yesterday\n"),
        "bad.csv: row 3, column 'event_time': field 'event_time': 'yesterday' is not an ISO-8601 time",
    ),
    (
        "naive timestamp",
        lambda d: _csv_text(d, "t9,u1,m1,1.5,EUR,approved,2026-11-26T10:00:00\n"),
        "bad.csv: row 3, column 'event_time': field 'event_time': 2026-11-26T10:00:00 has no time zone",
    ),
]


def _csv_text(d: Path, bad_line: str) -> Path:
    path = write_csv(d / "bad.csv", ROWS[:2])
    with path.open("a") as fh:
        fh.write(bad_line)
    return path


@pytest.mark.parametrize(
    ("make", "message"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_input_names_file_row_and_column_and_produces_nothing_of_that_file(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    good = write_csv(tmp_path / "good.csv", ROWS)
    bad = make(tmp_path)
    ingestor, producer = make_ingestor()
    with pytest.raises(BadRowError) as info:
        ingestor.ingest_files([good, bad])
    assert str(info.value).startswith(f"{tmp_path}/{message}"), str(info.value)
    assert producer.records() == ROWS  # the good file only, none of the bad one


def test_skipped_bad_rows_go_to_the_reject_file(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [ROWS[0], {**ROWS[1], "amount": "x"}, "nope", ROWS[3], {**ROWS[4], "event_time": "soon"}],
    )
    rejects = tmp_path / "rejects.jsonl"
    with rejects.open("w") as fh:
        ingestor, producer = make_ingestor(rejects=fh)
        result = ingestor.ingest_files([path])
    assert (result.produced, result.rejected) == (2, 3)
    assert producer.records() == [ROWS[0], ROWS[3]]
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["file"], r["row"], r["column"]) for r in lines] == [
        (str(path), 2, "amount"),
        (str(path), 3, None),
        (str(path), 5, "event_time"),
    ]
    assert (
        "not a double" in lines[0]["reason"]
        and "not JSON" in lines[1]["reason"]
        and "ISO-8601" in lines[2]["reason"]
    )


def test_event_ids_are_deterministic_per_source_file_and_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", ROWS)
    (a, pa_), (b, pb) = make_ingestor(), make_ingestor()
    a.ingest_files([path])
    b.ingest_files([path])
    ids = [h["hw.event_id"] for *_, h in pa_.sent]
    assert ids == [h["hw.event_id"] for *_, h in pb.sent] and len(set(ids)) == len(ROWS)


def test_ledger_skips_unchanged_files_and_reingests_changed_ones(tmp_path: Path) -> None:
    first, second = write_csv(tmp_path / "1.csv", ROWS[:3]), write_csv(tmp_path / "2.csv", ROWS[3:])
    ledger = Ledger.for_source(tmp_path / "home", "transactions")
    ingestor, producer = make_ingestor()
    assert ingestor.ingest_files([first], ledger).produced == 3
    reloaded = Ledger.for_source(tmp_path / "home", "transactions")  # persisted
    assert reloaded.is_done(FileIdentity.of(first)) and not reloaded.is_done(
        FileIdentity.of(second)
    )
    result = ingestor.ingest_files([first, second], reloaded)
    assert (result.produced, result.skipped_files) == (3, 1)
    write_csv(first, ROWS[:4])  # changed: size, mtime and head differ
    assert ingestor.ingest_files([first, second], reloaded).produced == 4
    assert ingestor.ingest_files([first, second], reloaded, skip_done=False).produced == 7
    assert producer.records() == ROWS[:3] + ROWS[3:] + ROWS[:4] + ROWS[:4] + ROWS[3:]


def test_a_failed_file_is_not_recorded(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], "x"])
    ledger = Ledger(tmp_path / "l.json")
    with pytest.raises(BadRowError):
        make_ingestor()[0].ingest_files([bad], ledger)
    assert not Ledger(tmp_path / "l.json").files


def _sqlite(path: Path, rows: list[dict[str, Any]]) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS tx (id INTEGER PRIMARY KEY, transaction_id TEXT, user_id TEXT, "
            "merchant_id TEXT, amount REAL, currency TEXT, status TEXT, event_time INTEGER)"
        )
        conn.executemany(
            "INSERT INTO tx (transaction_id, user_id, merchant_id, amount, currency, status, event_time) "
            "VALUES (:transaction_id, :user_id, :merchant_id, :amount, :currency, :status, :event_time)",
            rows,
        )
    return f"sqlite:///{path}"


def test_sql_watermark_reads_only_new_rows(tmp_path: Path) -> None:
    url = _sqlite(tmp_path / "e.db", ROWS[:4])
    ledger = Ledger(tmp_path / "l.json")
    ingestor, producer = make_ingestor()
    query = "SELECT * FROM tx"
    assert ingestor.ingest_sql(url, query, watermark="id", ledger=ledger).produced == 4
    assert (
        ingestor.ingest_sql(url, query, watermark="id", ledger=Ledger(tmp_path / "l.json")).produced
        == 0
    )
    _sqlite(tmp_path / "e.db", ROWS[4:])
    assert (
        ingestor.ingest_sql(url, query, watermark="id", ledger=Ledger(tmp_path / "l.json")).produced
        == 2
    )
    assert producer.records() == ROWS
    with pytest.raises(ConfigError, match="query on sqlite"):
        ingestor.ingest_sql(url, "SELECT * FROM nope")


def test_schedule_parsing() -> None:
    assert parse_schedule("15m")(100.0) == 1000.0
    assert parse_schedule("1h30m")(0.0) == 5400.0
    assert parse_schedule("*/5 * * * *")(60.0) == 300.0
    for bad in ("soon", "0m", "61 * * * *"):
        with pytest.raises(ConfigError, match="--schedule"):
            parse_schedule(bad)


def test_scheduled_runs_pick_up_new_files_once_with_a_fake_clock(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_csv(inbox / "1.csv", ROWS[:3])
    now = [1000.0]
    slept: list[float] = []
    ingestor, producer = make_ingestor()
    ledger = Ledger(tmp_path / "l.json")

    def run(n: int) -> None:
        ingestor.ingest_files(expand_inputs([inbox], allow_empty=True), ledger)
        now[0] += 5

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s
        if len(slept) == 1:
            write_csv(inbox / "2.csv", ROWS[3:])

    assert run_schedule(run, "1m", max_runs=3, clock=lambda: now[0], sleep=sleep) == 3
    assert slept == [55.0, 55.0]
    assert producer.records() == ROWS


def test_cli_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path / "home"))
    producers: list[FakeProducer] = []

    def fake_for_source(
        settings: Any, name: str, *, mapping: Any = None, **options: Any
    ) -> Ingestor:
        producers.append(FakeProducer())
        return Ingestor(RowValidator(SOURCE, 1, USER, mapping), producer=producers[-1], **options)  # type: ignore[arg-type]

    monkeypatch.setattr(Ingestor, "for_source", fake_for_source)
    good = write_csv(tmp_path / "good.csv", ROWS)
    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {**ROWS[1], "amount": "x"}])
    runner = CliRunner()
    ok = runner.invoke(app, ["ingest", str(good), "--source", "transactions"])
    assert ok.exit_code == 0 and "ingested 6 events" in ok.output
    again = runner.invoke(app, ["ingest", str(good), "--source", "transactions"])
    assert again.exit_code == 0 and "skipped 1 file(s)" in again.output
    stopped = runner.invoke(app, ["ingest", str(bad), "--source", "transactions"])
    assert stopped.exit_code == 2 and "bad.jsonl: row 2, column 'amount'" in stopped.output
    partial = runner.invoke(
        app,
        [
            "ingest",
            str(bad),
            "--source",
            "transactions",
            "--skip-bad-rows",
            str(tmp_path / "r.jsonl"),
        ],
    )
    assert partial.exit_code == 3 and "rejected 1 bad row" in partial.output
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 1
    usage_cases = [
        [str(good), "--map", "nope"],
        ["--sql", "SELECT 1"],
        [str(good), "--sql", "SELECT 1", "--db", "sqlite://"],
        [str(good), "--schedule", "soon"],
        [str(tmp_path / "missing.csv")],
        ["--sql", "x", "--db", "sqlite://", "--schedule", "1m"],
        [str(good), "--rate"],
        [str(good), "--no-such-option"],
    ]
    for args in usage_cases:
        usage = runner.invoke(app, ["ingest", *args, "--source", "transactions"])
        assert usage.exit_code == 1, (args, usage.output)
    assert [len(p.sent) for p in producers] == [6, 0, 0, 1] + [0] * (len(producers) - 4)


def test_rate_throttles_with_an_injected_clock(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "many.jsonl", [{**ROWS[i % 6], "transaction_id": f"t{i}"} for i in range(30)]
    )
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    ingestor, producer = make_ingestor(rate=10, clock=lambda: now[0], sleep=sleep)
    assert ingestor.ingest_files([path]).produced == 30
    assert sum(slept) == pytest.approx(3.0) and len(producer.sent) == 30
