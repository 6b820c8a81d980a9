"""Hypothesis-driven fuzz of what the outside world hands the daemon (issue #18 item 6): trigger messages,
query requests, station files and dump files. Each must end in its own clear error type or a verdict,
never in another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspectd.config import Config, ConfigError, load_config
from inspectd.frames import Frame, FrameReadError, iter_dump
from inspectd.frames.model import FrameError
from inspectd.inspection.stages import Inspector
from inspectd.pipeline.triggers import Trigger, TriggerError, parse_trigger
from inspectd.publish import query as q
from inspectd.publish.journal import Journal
from inspectd.tips.detector import NoDetector
from inspectd.verdict import Result

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@FAST
@given(st.one_of(st.binary(max_size=600), json_values.map(lambda v: json.dumps(v).encode())))
def test_trigger_messages_parse_or_name_the_fault(raw):
    try:
        t = parse_trigger(raw, 1)
    except TriggerError as e:
        assert str(e)
    else:
        assert isinstance(t, Trigger) and t.part_id.strip()


@FAST
@given(
    st.one_of(
        st.lists(st.binary(max_size=200), max_size=3),
        st.dictionaries(st.sampled_from(["op", "id", "since", "limit", "x"]), json_values, max_size=4).map(
            lambda d: [json.dumps(d).encode()]
        ),
    )
)
def test_query_requests_always_get_a_json_reply(body):
    with tempfile.TemporaryDirectory() as d, Journal(Path(d) / "j.sqlite") as j:
        op, ok, reply = q.handle(body, journal=j, station="S", info=lambda: {"state": "serving"})
        assert isinstance(ok, bool) and isinstance(op, str)
        assert isinstance(json.loads(reply), dict)


toml_values = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=20).map(json.dumps),
    st.text(max_size=15),  # not TOML at all, often
)
sections = st.sampled_from(["station", "recipe", "corners", "roi", "gate", "engine", "publish", "pipeline", "nope"])
keys = st.sampled_from(["name", "mm_per_px", "polarity", "overhang_min_mm", "n", "tau", "enabled", "model", "x"])


@FAST
@given(st.lists(st.tuples(sections, keys, toml_values), max_size=6), st.binary(max_size=40))
def test_station_files_load_or_say_what_is_wrong(entries, junk):
    text = "".join(f"[{s}]\n{k} = {v}\n" for s, k, v in entries)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "station.toml"
        p.write_bytes(text.encode("utf-8", "replace") + (junk if len(entries) % 2 else b""))
        try:
            cfg = load_config(p)
        except ConfigError as e:
            assert str(p) in str(e)
        else:
            assert isinstance(cfg, Config)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([".tiff", ".png", ".jpg"]),
    st.binary(min_size=0, max_size=3000),
    st.one_of(st.none(), json_values.map(json.dumps), st.text(max_size=80)),
)
def test_dump_files_read_as_frames_or_errors_and_every_frame_gets_a_verdict(ext, data, sidecar):
    ins = Inspector(Config(), NoDetector())
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / f"f0{ext}").write_bytes(data)
        if sidecar is not None:
            (Path(d) / "f0.json").write_text(sidecar, encoding="utf-8")
        items = list(iter_dump(d))
        assert len(items) == 1
        item = items[0]
        assert isinstance(item, (Frame, FrameReadError))
        v = ins.inspect(item, 1).verdict
        assert v.result is Result.ERROR and v.reasons and v.reasons[0].message


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([np.uint8, np.uint16, np.float32, np.int32, bool]),
    st.tuples(st.integers(0, 40), st.integers(0, 40)),
)
def test_any_array_gets_one_verdict(dtype, shape):
    img = np.random.default_rng(0).integers(0, 255, size=shape).astype(dtype)
    try:
        frame = Frame(frame_id="x", image=img)
    except FrameError as e:  # the frame model refuses it, naming why; the reader turns that into FrameReadError
        assert str(e)
        return
    v = Inspector(Config(), NoDetector()).inspect(frame, 1).verdict
    assert v.result is Result.ERROR
