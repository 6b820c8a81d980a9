import json

import cv2
import numpy as np
import pytest
import tifffile

from inspectd.frames import Frame, FrameError, FrameReadError, Sidecar, TipLabels, iter_dump, read_frame, write_frame


def _img(dtype=np.uint8, shape=(64, 80), seed=0):
    rng = np.random.default_rng(seed)
    hi = 255 if dtype == np.uint8 else 4095
    return rng.integers(0, hi, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_round_trip(tmp_path, dtype):
    meta = Sidecar(
        part_id="C-000123",
        station="L1-S2",
        mm_per_px=0.05,
        bit_depth=8 if dtype == np.uint8 else 12,
        t_acquired_ns=1764000000000000000,
        labels=TipLabels(anode_tips=[(10.5, 3.25), (11.0, 13.0)], cathode_tips=[(5.0, 8.0)]),
        expected="NG",
        defects=["overhang_short"],
    )
    f = Frame("c1", _img(dtype), meta)
    path = write_frame(tmp_path, f)
    assert path.name == "c1.tiff" and (tmp_path / "c1.json").exists()
    side = json.loads((tmp_path / "c1.json").read_text())
    assert side["schema"] == "inspectd.frame/1" and side["labels"]["anode_tips"][0] == [10.5, 3.25]
    g = read_frame(path)
    assert g.frame_id == "c1" and g.image.dtype == dtype
    np.testing.assert_array_equal(g.image, f.image)
    assert g.meta == meta
    a, c = g.meta.labels.arrays()
    assert a.shape == (2, 2) and c.shape == (1, 2)


def test_reads_png_jpg_bmp_and_16bit_png(tmp_path):
    img = _img()
    for ext in ("png", "bmp"):
        cv2.imwrite(str(tmp_path / f"a_{ext}.{ext}"), img)
        np.testing.assert_array_equal(read_frame(tmp_path / f"a_{ext}.{ext}").image, img)
    cv2.imwrite(str(tmp_path / "j.jpg"), img)
    assert read_frame(tmp_path / "j.jpg").image.shape == img.shape
    img16 = _img(np.uint16)
    cv2.imwrite(str(tmp_path / "w.png"), img16)
    g = read_frame(tmp_path / "w.png")
    assert g.image.dtype == np.uint16 and np.array_equal(g.image, img16)


def test_grey_in_three_channels_is_accepted_colour_is_not(tmp_path):
    img = _img()
    cv2.imwrite(str(tmp_path / "grey.png"), cv2.merge([img, img, img]))
    np.testing.assert_array_equal(read_frame(tmp_path / "grey.png").image, img)
    colour = cv2.merge([img, img, 255 - img])
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    with pytest.raises(FrameError, match="colour.png: 3-channel colour image"):
        read_frame(tmp_path / "colour.png")


def test_pbd_layout(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "neg_location").mkdir()
    (tmp_path / "pos_location").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "s1.png"), _img())
    np.save(tmp_path / "neg_location" / "s1.npy", np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    np.save(tmp_path / "pos_location" / "s1.npy", np.array([[7.0, 8.0], [9.0, 10.0]]))
    cv2.imwrite(str(tmp_path / "img" / "s2.png"), _img(seed=2))
    np.save(tmp_path / "neg_location" / "s2.npy", np.zeros((3, 3)))  # wrong shape
    items = list(iter_dump(tmp_path))
    assert [i.frame_id for i in items] == ["s1", "s2"]
    a, c = items[0].meta.labels.arrays()
    assert a.tolist() == [[1, 2], [3, 4], [5, 6]] and c.tolist() == [[7, 8], [9, 10]]
    assert isinstance(items[1], FrameReadError) and "s2.npy" in items[1].message


def test_real_layout_reads_labels(real_dir):
    labelled = [f for f in iter_dump(real_dir) if not isinstance(f, FrameReadError) and f.meta.labels]
    assert len(labelled) == 8
    a, c = labelled[0].meta.labels.arrays()
    assert len(a) >= 18 and len(c) >= 18


def _write_corrupt(tmp_path):
    good = _img()
    tifffile.imwrite(tmp_path / "00_good.tiff", good)
    (tmp_path / "01_empty.tiff").write_bytes(b"")
    data = (tmp_path / "00_good.tiff").read_bytes()
    (tmp_path / "02_truncated.tiff").write_bytes(data[: len(data) // 2])
    (tmp_path / "03_garbage.png").write_bytes(b"\x89PNG not really a png at all")
    tifffile.imwrite(tmp_path / "04_float.tiff", good.astype(np.float32))
    ok, jpg = cv2.imencode(".jpg", good)
    (tmp_path / "05_truncated.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 2])
    tifffile.imwrite(tmp_path / "06_rgb.tiff", np.dstack([good, good // 2, good // 3]))
    tifffile.imwrite(tmp_path / "07_multipage.tiff", np.stack([good, good]))
    tifffile.imwrite(tmp_path / "08_badjson.tiff", good)
    (tmp_path / "08_badjson.json").write_text("{not json")
    tifffile.imwrite(tmp_path / "09_badkey.tiff", good)
    (tmp_path / "09_badkey.json").write_text('{"mm_per_px": -1}')
    tifffile.imwrite(tmp_path / "10_tiny.tiff", good[:4, :4])
    tifffile.imwrite(tmp_path / "11_int32.tiff", good.astype(np.int32))
    tifffile.imwrite(tmp_path / "12_good.tiff", good)


def test_corrupt_inputs_give_per_frame_errors(tmp_path):
    _write_corrupt(tmp_path)
    items = list(iter_dump(tmp_path))
    assert len(items) == 13
    by_id = {i.frame_id: i for i in items}
    assert isinstance(by_id["00_good"], Frame) and isinstance(by_id["12_good"], Frame)
    expect = {
        "01_empty": "empty file",
        "02_truncated": "cannot decode",
        "03_garbage": "not a decodable PNG",
        "04_float": "unsupported pixel type float32",
        "05_truncated": "truncated JPEG",
        "06_rgb": "3-channel colour",
        "07_multipage": "2 pages",
        "08_badjson": "unreadable sidecar",
        "09_badkey": "sidecar key mm_per_px",
        "10_tiny": "too small",
        "11_int32": "unsupported pixel type int32",
    }
    for fid, text in expect.items():
        item = by_id[fid]
        assert isinstance(item, FrameReadError), fid
        assert text in item.message, (fid, item.message)
        assert fid in item.message  # names the file


def test_missing_dump_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="dump directory not found"):
        list(iter_dump(tmp_path / "nope"))
