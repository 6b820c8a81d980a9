"""The CLI as a user runs it: real subprocesses, real files, exit codes that mean something."""

import json
from pathlib import Path

import numpy as np
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
    # it says what it waited for and why it gave up (stderr: stdout stays verdicts only)
    assert "watching tcp://127.0.0.1:1, for 0.5 s: waiting for the daemon's heartbeat" in p.stderr
    assert "gave up after 0.5 s: no heartbeat or verdict from tcp://127.0.0.1:1" in p.stderr
    assert p.stdout == ""


def test_watch_hints_when_nothing_arrives_for_a_while():
    p = cli("watch", "tcp://127.0.0.1:1", "--timeout", "6")
    assert p.returncode == 1
    assert "nothing from tcp://127.0.0.1:1 in 5 s: is a daemon running with this --pub address" in p.stderr


def test_replay_of_a_folder_without_frames_is_a_usage_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no frames here\n")
    p = cli("replay", tmp_path, check=2)
    assert f"no frames in {tmp_path}" in p.stderr and "docs/contracts.md" in p.stderr


def test_a_missing_tip_model_is_refused_by_validate_config_replay_and_run(tmp_path):
    station = tmp_path / "station.toml"
    station.write_text('[engine]\nmodel = "nope.onnx"\n')
    p = cli("validate-config", station, check=2)
    assert "[engine] model: no HRNet tip model at nope.onnx" in p.stderr and "--tips labels" in p.stderr
    assert "not checked" in cli("validate-config", station, "--tips", "labels", check=0).stdout
    dump = tmp_path / "dump"
    cli("simulate", dump, "--count", "1", "--size", "512", "--bit-depth", "8", check=0)
    assert "replay: no HRNet tip model at nope.onnx" in cli("replay", dump, "-c", station, check=2).stderr
    cli("replay", dump, "-c", station, "--tips", "labels", check=0)  # the oracle needs no model
    run = cli(
        "run", "-c", station, "--source", f"replay:{dump}", "--pub", "tcp://127.0.0.1:*", "--query",
        "tcp://127.0.0.1:*", "--stop-after", "1", check=2,
    )  # fmt: skip
    refused = [json.loads(line) for line in run.stderr.splitlines() if '"daemon_refused"' in line]
    assert refused and refused[0]["reason"] == "no_tip_model" and "nope.onnx" in refused[0]["error"]


def test_a_broken_model_file_is_refused_too(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    (tmp_path / "broken.json").write_text((REPO / "engines" / "hrnet_tips.json").read_text())
    station = tmp_path / "station.toml"
    station.write_text(f'[engine]\nmodel = "{bad}"\n')
    p = cli("validate-config", station, check=2)
    assert "failed to load" in p.stderr and str(bad) in p.stderr


def test_train_and_export_document_every_option():
    from dataclasses import fields

    from inspectd.training.options import TrainOptions

    text = cli("train", "--help", check=0).stdout
    for f in fields(TrainOptions):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "optimiser steps" in text and "fine-tune from" in text  # options carry their help
    exp = cli("export", "--help", check=0).stdout
    for opt in ("--calib", "--test", "--calib-frames", "--test-frames", "--opset", "--name", "--timing"):
        assert opt in exp, opt


def test_keys_generates_a_pair_and_refuses_to_overwrite(tmp_path):
    cli("keys", tmp_path, check=0)
    assert (tmp_path / "server.key").exists() and (tmp_path / "server.key_secret").exists()
    assert "keys:" in cli("keys", tmp_path, check=1).stderr


def test_eval_calibrates_the_gate_into_a_copy_of_the_model_card(tmp_path):
    """`inspectd eval --calibrate-gate MODEL`: the gate-off verdicts of a labelled dump set the card's limits."""
    import shutil

    for f in ("hrnet_tips.onnx", "hrnet_tips.json"):
        shutil.copy(REPO / "engines" / f, tmp_path / f)
    dump, out = tmp_path / "dump", tmp_path / "v.jsonl"
    cli("simulate", dump, "--count", "12", "--seed", "5", "--size", "600", check=0)
    cfg = tmp_path / "off.toml"
    cfg.write_text(f'[engine]\nmodel = "{tmp_path / "hrnet_tips.onnx"}"\n[gate]\nenabled = false\n')
    cli("replay", dump, "-c", cfg, "--out", out, check=0)
    p = cli("eval", dump, out, "--calibrate-gate", tmp_path / "hrnet_tips.onnx", check=0)
    gate = json.loads((tmp_path / "hrnet_tips.json").read_text())["gate"]
    assert gate["frames"] >= 1 and gate["calibrated_on"] == [str(dump)]
    assert gate["squeeze_min"] is not None or "squeeze_min" not in gate  # on wherever a frame would pass
    assert f"{gate['fire_rate_bound']:.2%}" in p.stdout and "written to" in p.stdout
    assert json.loads((REPO / "engines" / "hrnet_tips.json").read_text())["gate"] != gate  # the shipped card untouched
