"""The streaming reader: every format, and a one-line error naming file and line for bad input."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tribute.core.errors import InputError
from tribute.core.readers import detect_format, read_records


def _ids(path, **kw):
    return [(r.id, r.text) for r in read_records(path, **kw)]


def test_jsonl_csv_parquet_txtdir_give_the_same_records(tmp_path):
    rows = [{"id": "a", "text": "first text", "holder": "H"}, {"id": "b", "text": "second, \"quoted\"\nline"}]
    (tmp_path / "x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "x.csv").write_text(
        'id,text,holder\na,first text,H\nb,"second, ""quoted""\nline",\n', encoding="utf-8"
    )
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet")
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.txt").write_text("first text", encoding="utf-8")
    (d / "b.txt").write_text('second, "quoted"\nline', encoding="utf-8")
    (d / "ignored.md").write_text("not a text file", encoding="utf-8")
    with gzip.open(tmp_path / "x.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    expected = [("a", "first text"), ("b", 'second, "quoted"\nline')]
    for p in ["x.jsonl", "x.csv", "x.parquet", "docs", "x.jsonl.gz"]:
        assert _ids(tmp_path / p) == expected, p
    recs = list(read_records(tmp_path / "x.jsonl"))
    assert recs[0].fields == {"holder": "H"} and recs[0].where.endswith("x.jsonl:1")


def test_integer_ids_become_strings_and_blank_lines_are_skipped(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": 7, "text": "seven"}\n\n   \n{"id": "8", "text": "eight"}\n', encoding="utf-8")
    assert _ids(p) == [("7", "seven"), ("8", "eight")]


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"id": "a", "text": "ok"}\n{"id": "b", "text": oops}\n', r"x\.jsonl:2: invalid JSON"),
        (b'{"id": "a", "text": "ok"}\n{"text": "no id"}\n', r"x\.jsonl:2: missing 'id'"),
        (b'{"id": "a"}\n', r"x\.jsonl:1: missing 'text'"),
        (b'{"id": "a", "text": "ok"}\n{"id": "a", "text": "again"}\n', r"x\.jsonl:2: duplicate id 'a' \(first at .*x\.jsonl:1\)"),
        (b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n', r"x\.jsonl:2: not valid UTF-8 \(byte 0xe9"),
        (b'{"id": "a", "text": "   \\n "}\n', r"x\.jsonl:1: empty text for id 'a'"),
        (b'["a", "b"]\n', r"x\.jsonl:1: expected a JSON object"),
        (b'{"id": {"x": 1}, "text": "t"}\n', r"x\.jsonl:1: 'id' must be a string or an integer"),
        (b'{"id": "a", "text": 5}\n', r"x\.jsonl:1: 'text' must be a string"),
        (b'{"id": " a", "text": "t"}\n', r"x\.jsonl:1: id ' a' has surrounding"),
    ],
)
def test_malformed_jsonl(tmp_path, content, message):
    p = tmp_path / "x.jsonl"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message) as e:
        list(read_records(p))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"id,text\na,ok\nb,\xff\xfe\n", r"x\.csv:3: not valid UTF-8"),
        (b"name,body\na,ok\n", r"x\.csv:2: missing 'id'"),
        (b"id,text\na,ok\n,no id\n", r"x\.csv:3: missing 'id'"),
        (b"id,text\na,ok\nb,   \n", r"x\.csv:3: empty text for id 'b'"),
        (b"id,text\na,ok\na,dup\n", r"x\.csv:3: duplicate id 'a'"),
        (b"id,text\na,ok,extra\n", r"x\.csv:2: more fields than the header"),
        (b"", r"x\.csv: empty CSV file"),
    ],
)
def test_malformed_csv(tmp_path, content, message):
    p = tmp_path / "x.csv"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        list(read_records(p))


def test_malformed_parquet_and_folders(tmp_path):
    p = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": ["a", None], "text": ["ok", "t"]}), p)
    with pytest.raises(InputError, match=r"x\.parquet: row 2: missing 'id'"):
        list(read_records(p))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: not a readable Parquet file"):
        list(read_records(bad))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty: folder has no \.txt files"):
        list(read_records(empty))
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_bytes(b"line one\nline \xff two")
    with pytest.raises(InputError, match=r"a\.txt:2: not valid UTF-8"):
        list(read_records(d))
    (d / "a.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a\.txt: empty text for id 'a'"):
        list(read_records(d))


def test_missing_path_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file"):
        list(read_records(tmp_path / "nope.jsonl"))
    (tmp_path / "x.xlsx").write_bytes(b"")
    with pytest.raises(InputError, match=r"unknown input format"):
        detect_format(tmp_path / "x.xlsx")


def test_reader_streams(tmp_path):
    """An error on a late line surfaces only when reached: earlier records were already yielded."""
    p = tmp_path / "x.jsonl"
    p.write_text("".join(json.dumps({"id": str(i), "text": "t"}) + "\n" for i in range(100)) + "{broken\n")
    it = read_records(p)
    assert next(it).id == "0"
    with pytest.raises(InputError, match=r"x\.jsonl:101"):
        list(it)
