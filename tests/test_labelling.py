"""`inspectd label`: proposals on real frames, review sheets, COCO keypoints round trip, comparing two labellings."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from helpers import cli
from inspectd.config import Config
from inspectd.evaluation.matching import default_gate, match_tips
from inspectd.frames import iter_dump
from inspectd.imaging.window import to_8bit
from inspectd.labelling.coco import from_coco, to_coco
from inspectd.labelling.profile import profile_tips
from inspectd.labelling.propose import locate_detail

CLEAR = "10-20-10__NULL_1_1_duofuduo_sangdun-clear"
TRAY = "10-16-34__NULL_1_2_sangdun-the_pole_piece_is_too_close_to_the_tray"


def _labelled(real_dir, stems):
    return [f for f in iter_dump(real_dir) if f.frame_id in stems]


def test_profile_finder_lands_on_the_hand_labels(real_dir):
    """The second opinion is only worth having if it is right where it answers (hand labels: ~1-2 px)."""
    errs, missed, false, n = [], 0, 0, 0
    for fr in _labelled(real_dir, {CLEAR, TRAY}):
        img8 = to_8bit(fr.image, fr.bit_depth)
        pt = profile_tips(img8, locate_detail(img8, Config()))
        ga, gc = fr.meta.labels.arrays()
        gate = default_gate(ga, gc)
        for p, g in ((pt.anode, ga), (pt.cathode, gc)):
            pairs, up, ug = match_tips(p, g, gate)
            errs += [float(np.hypot(*(p[i] - g[j]))) for i, j in pairs]
            missed, false, n = missed + len(ug), false + len(up), n + len(g)
    assert np.median(errs) < 1.2 and np.percentile(errs, 95) < 3.0
    assert missed <= 0.15 * n and false <= 0.15 * n  # the tray frame's lowest cathodes are the hard ones


def test_coco_round_trip_keeps_every_tip_and_its_order():
    rng = np.random.default_rng(3)
    a = np.column_stack([rng.uniform(640, 660, 5), 400 + 20.0 * np.arange(5) + rng.uniform(-2, 2, 5)])
    c = np.column_stack([rng.uniform(590, 610, 4), 410 + 20.0 * np.arange(4) + rng.uniform(-2, 2, 4)])
    doc = to_coco([{"file_name": "images/x.png", "width": 1000, "height": 1000, "anode": a, "cathode": c}])
    assert {k["name"] for k in doc["categories"]} == {"anode_tip", "cathode_tip"}
    assert all(len(an["keypoints"]) == 3 and an["num_keypoints"] == 1 for an in doc["annotations"])
    # a tool may renumber categories, shuffle annotations and add an unrelated category
    doc["categories"] = [{"id": 7, "name": "cathode_tip"}, {"id": 9, "name": "anode_tip"}, {"id": 3, "name": "tray"}]
    for an in doc["annotations"]:
        an["category_id"] = 9 if an["category_id"] == 1 else 7
    doc["annotations"].reverse()
    doc["annotations"].append({"id": 99, "image_id": 1, "category_id": 3, "keypoints": [1, 1, 2]})
    back = from_coco(json.loads(json.dumps(doc)))
    np.testing.assert_allclose(back["x"][0], a, atol=0.006)
    np.testing.assert_allclose(back["x"][1], c, atol=0.006)
    with pytest.raises(ValueError, match="anode_tip and cathode_tip"):
        from_coco({"images": [], "annotations": [], "categories": [{"id": 1, "name": "tip"}]})


def test_label_cli_propose_sheets_coco_and_compare(real_dir, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for stem in (CLEAR, TRAY):
        shutil.copy(real_dir / "images" / f"{stem}.JPG", frames)
    lab = tmp_path / "lab"
    r = cli("label", "propose", frames, "--out", lab, check=0)
    assert "2 frames proposed" in r.stdout
    side = json.loads((lab / "labels" / f"{CLEAR}.json").read_text())
    assert side["label_quality"] == "proposed" and len(side["labels"]["anode_tips"]) == 22
    assert (lab / "sheets" / f"{CLEAR}.png").stat().st_size > 10_000
    assert all({"class", "index", "why"} <= set(x) <= {"class", "index", "why", "alt"} for x in side["review"])
    # proposals against the hand labels of the same frames
    hand = json.loads(cli("label", "compare", lab, real_dir, "--json", check=0).stdout)
    assert hand["frames"] == 2 and hand["median_px"] < 1.2
    # a second run keeps a corrected label
    side["labels"]["anode_tips"] = side["labels"]["anode_tips"][:-1]
    (lab / "labels" / f"{CLEAR}.json").write_text(json.dumps(side))
    assert "(2 already labelled kept)" in cli("label", "propose", frames, "--out", lab, check=0).stdout
    assert len(json.loads((lab / "labels" / f"{CLEAR}.json").read_text())["labels"]["anode_tips"]) == 21
    # COCO out and back in: the same labels
    cli("label", "export-coco", lab, tmp_path / "tips.json", check=0)
    cli("label", "import-coco", tmp_path / "tips.json", "--images", frames, "--out", tmp_path / "back", check=0)
    same = json.loads(cli("label", "compare", lab, tmp_path / "back", "--json", check=0).stdout)
    assert same["frames"] == 2 and same["mean_px"] < 0.01 and same["only_in_a"] == same["only_in_b"] == 0
    cli("label", "sheets", tmp_path / "back", check=0)
    assert (tmp_path / "back" / "sheets" / f"{TRAY}.png").exists()
    bad = cli("label", "import-coco", tmp_path / "missing.json", "--images", frames, "--out", tmp_path / "x")
    assert bad.returncode != 0


def test_label_propose_on_an_empty_folder_names_it(tmp_path):
    r = cli("label", "propose", tmp_path, "--out", tmp_path / "out")
    assert r.returncode == 2 and "no frames" in r.stderr


def test_label_check_crop_profile_edits_and_the_check_log(real_dir, tmp_path):
    """Checking tip by tip, as the 44 proposed real labels were: crops, a profile readout that points back
    to the convention's position, logged edits, the time per frame and what the check changed."""
    lab = tmp_path / "lab"
    cli("label", "assemble", "--images", real_dir / "images", "--labels", real_dir / "labels", "--out", lab, check=0)
    hand = json.loads((lab / "labels" / f"{CLEAR}.json").read_text())["labels"]
    x5, y5 = hand["anode_tips"][5]
    crop = cli("label", "crop", lab, CLEAR, "--class", "anode", "--tips", "3:8", "--zoom", "7", check=0)
    png = lab / "crops" / f"{CLEAR}-anode3-8.png"
    assert crop.stdout.strip().endswith(png.name) and png.stat().st_size > 5_000
    cli("label", "move", lab, CLEAR, "anode", 5, x5 - 6, y5, check=0)  # a proposal 6 px short of the foot
    readout = cli("label", "profile", lab, CLEAR, "anode", 5, check=0).stdout
    crossing = float(readout.split("at x = ")[1].split()[0])
    assert abs(crossing - x5) < 2.0, readout  # the readout points back to the hand label
    cli("label", "move", lab, CLEAR, "anode", 5, round(crossing, 1), y5, check=0)
    cli("label", "add", lab, CLEAR, "cathode", 500, 400, check=0)
    after = json.loads((lab / "labels" / f"{CLEAR}.json").read_text())["labels"]["cathode_tips"]
    assert [500.0, 400.0] == after[0]  # renumbered along the stack: it is the top one now
    cli("label", "remove", lab, CLEAR, "cathode", 0, check=0)
    bad = cli("label", "remove", lab, CLEAR, "cathode", 99)
    assert bad.returncode != 0 and "has 21 cathodes" in bad.stderr
    cli("label", "done", lab, CLEAR, "--note", "a5 moved onto the foot", check=0)
    side = json.loads((lab / "labels" / f"{CLEAR}.json").read_text())
    assert side["label_quality"] == "checked" and side["notes"] == "a5 moved onto the foot"
    s = json.loads(cli("label", "check-summary", lab, "--json", check=0).stdout)
    f = s["frames"][CLEAR]
    assert f == {"minutes": f["minutes"], "moved_over_1px": 2, "added": 1, "removed": 1, "checked": True}
    assert s["checked"] == 1 and f["minutes"] < 5
