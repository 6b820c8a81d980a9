"""The CLI as a user runs it: real subprocesses, real files, exit codes that mean something."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import cli

REPO = Path(__file__).resolve().parents[1]




def test_help_on_every_command():
    top = cli("--help", check=0).stdout
    for cmd in ("simulate", "replay", "run", "validate-config", "eval", "bench", "train", "export", "record", "watch"):
        assert cmd in top
        assert "usage" in cli(cmd, "--help", check=0).stdout.lower()


def test_validate_config_ok_and_bad(tmp_path):
    assert "OK" in cli("validate-config", REPO / "calibration" / "example-station.toml", check=0).stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[recipe]\noverhang_min_mm = 0.45\noverhang_maxx = 4\n")
    p = cli("validate-config", bad, check=2)
    assert f"{bad}:3: recipe.overhang_maxx: unknown key" in p.stderr


def test_bench_unknown_scenario_is_a_usage_error():
    # every command is built now; bench itself runs in tests/test_bench.py (a full run takes minutes)
    p = cli("bench", "--scenario", "no-such-scenario", check=2)
    assert "no scenario 'no-such-scenario'" in p.stderr and "default" in p.stderr and p.stdout == ""


def test_replay_gives_one_verdict_per_frame_even_for_bad_files(tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    tifffile.imwrite(dump / "a.tiff", np.zeros((128, 128), np.uint16))
    (dump / "b.tiff").write_bytes(b"II*\x00garbage")
    (dump / "c.png").write_bytes(b"")
    tifffile.imwrite(dump / "d.tiff", np.full((128, 128), 200, np.uint8))
    out = tmp_path / "v.jsonl"
    cli("replay", dump, "--out", out, check=0)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [v["frame_id"] for v in lines] == ["a", "b", "c", "d"]
    assert [v["seq"] for v in lines] == [1, 2, 3, 4]
    assert all(v["result"] == "ERROR" and v["schema"] == "inspectd.verdict/1" for v in lines)
    assert lines[1]["reasons"][0]["code"] == "UNREADABLE_FRAME" and "b.tiff" in lines[1]["reasons"][0]["message"]
    assert lines[2]["reasons"][0]["code"] == "UNREADABLE_FRAME" and "empty file" in lines[2]["reasons"][0]["message"]


def test_replay_missing_dir_is_usage_error(tmp_path):
    assert "not found" in cli("replay", tmp_path / "nope", check=2).stderr


def test_watch_times_out_with_exit_1_when_nothing_publishes():
    p = cli("watch", "tcp://127.0.0.1:1", "--timeout", "0.5")
    assert p.returncode == 1


def test_keys_generates_a_pair_and_refuses_to_overwrite(tmp_path):
    cli("keys", tmp_path, check=0)
    assert (tmp_path / "server.key").exists() and (tmp_path / "server.key_secret").exists()
    assert "keys:" in cli("keys", tmp_path, check=1).stderr
