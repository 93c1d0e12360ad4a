"""JSONL files survive interrupted writes: one write per record, torn tails repaired and skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from sage_gym.transcripts import append_jsonl, encode_record, read_jsonl, repair_jsonl


def test_a_torn_last_line_is_skipped_then_cut_by_the_next_append(tmp_path, caplog):
    path = tmp_path / "t.jsonl"
    append_jsonl(path, {"i": 0})
    with path.open("ab") as handle:
        handle.write(b'{"i": 1, "turns": [{"a"')  # a writer killed mid-line
    assert [r["i"] for r in read_jsonl(path)] == [0]
    append_jsonl(path, {"i": 2})
    assert path.read_bytes() == b'{"i": 0}\n{"i": 2}\n'
    assert "torn last line" in caplog.text


def test_a_record_glued_to_a_torn_one_is_recovered_and_garbage_is_skipped(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"i": 0}\n{"i": 1, "m": {"x"' + b'{"i": 2, "m": {"x": [1, {"y": 2}]}}\n' + b"\xff\xfe not json\n" + b'[1, 2]\n{"i": 3}\n')
    assert [r["i"] for r in read_jsonl(path)] == [0, 2, 3]


def test_repair_reports_what_it_dropped(tmp_path):
    path = tmp_path / "t.jsonl"
    assert repair_jsonl(path) == 0  # no file: nothing to do
    path.write_bytes(b'{"i": 0}\n{"i": 1')
    assert repair_jsonl(path) == len(b'{"i": 1') and path.read_bytes() == b'{"i": 0}\n'
    assert repair_jsonl(path) == 0
    path.write_bytes(b'{"torn": tr')
    assert repair_jsonl(path) == 11 and path.read_bytes() == b""


def test_text_utf8_cannot_hold_is_escaped_not_fatal(tmp_path):
    path = tmp_path / "t.jsonl"
    append_jsonl(path, {"reply": "caf\u00e9 \ud800"})
    assert list(read_jsonl(path)) == [{"reply": "caf\u00e9 \ud800"}]
    assert encode_record({"reply": "caf\u00e9"}) == '{"reply": "caf\u00e9"}\n'.encode()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_9_while_appending_leaves_a_readable_file(tmp_path):
    path = tmp_path / "t.jsonl"
    writer = textwrap.dedent(
        f"""
        import sys
        from sage_gym.transcripts import append_jsonl
        i = 0
        while True:
            append_jsonl({str(path)!r}, {{"i": i, "pad": "x" * 50000}})
            i += 1
            if i == 3:
                print("ready", flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert process.stdout.readline().strip() == b"ready"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with path.open("ab") as handle:  # and, as if the kill had torn it, a partial line on top
        handle.write(json.dumps({"i": -1, "pad": "y" * 100})[:60].encode())
    records = list(read_jsonl(path))
    assert [r["i"] for r in records] == list(range(len(records))) and len(records) >= 3
    append_jsonl(path, {"i": "after"})
    assert [r["i"] for r in read_jsonl(path)][-1] == "after" and path.read_bytes().endswith(b'"after"}\n')
