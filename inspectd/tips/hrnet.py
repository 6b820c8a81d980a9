"""`HrnetDetector`: the HRNet tip model as a `TipDetector` (tips/detector.py).

ROI -> canonical, pitch-normalised tiles (tips/crop.py) -> engine
(backends/) -> peak decoding with the card's threshold and decoder
(tips/codec.py) -> full-frame tips. `name` is the model id from the card,
e.g. "hrnet_w12s-1a2b3c4d", and lands in every verdict's `model` field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from inspectd.backends import load_engine
from inspectd.backends.base import EngineError
from inspectd.tips.card import ModelCard, card_path, load_card
from inspectd.tips.crop import InputSpec
from inspectd.tips.detector import DetectionUnavailable, Tips
from inspectd.tips.infer import detect_tips
from inspectd.imaging.region import Roi

__all__ = ["HrnetDetector", "load_detector"]


class HrnetDetector:
    """TipDetector on an `Engine` and its model card.

    engine: any `inspectd.backends.Engine` (loaded lazily on first use).
    card: a `ModelCard`, or a path to the card JSON (or to the .onnx beside it).
    threshold / decoder: override the card's calibrated threshold / sub-pixel
    decoder ("dark" | "quarter" | "argmax").
    back_pitches: override how far behind the front the tiles reach (`[engine] back_pitches`).
    fill_breaks: override the card's `decode.fill_breaks` (tips/comb.py; `[engine] fill_breaks`).
    """

    def __init__(
        self,
        engine,
        card,
        *,
        threshold: float | None = None,
        decoder: str | None = None,
        back_pitches: float | None = None,
        fill_breaks: bool | None = None,
    ):
        self.engine = engine
        self.card = card if isinstance(card, ModelCard) else load_card(card)
        self.spec = self.card.input_spec()
        if back_pitches is not None:
            self.spec = dataclasses.replace(self.spec, back_pitches=float(back_pitches))
        self.codec = self.card.codec()
        self.threshold = float(threshold if threshold is not None else self.codec.threshold)
        self.decoder = decoder or self.codec.decoder
        self.fill_breaks = bool(self.card.decode.get("fill_breaks", False) if fill_breaks is None else fill_breaks)
        self.name = self.card.model_id
        self.last = None  # FrameTips of the last frame (scores, plan), for overlays/debugging
        self._loaded = False

    def detect(self, frame, img8: np.ndarray, roi: Roi) -> Tips:
        if roi is None:
            raise DetectionUnavailable(f"{getattr(frame, 'frame_id', '?')}: no ROI to search for tips")

        try:
            if not self._loaded:
                self.engine.load()
                self._loaded = True
            ft = detect_tips(
                self.engine.infer, img8, roi, self.spec, self.codec, self.threshold, self.decoder,
                fill_breaks=self.fill_breaks,
            )  # fmt: skip
        except EngineError as e:
            raise DetectionUnavailable(str(e)) from e
        self.last = ft
        return Tips(
            anode=ft.anode[:, :2].copy(),
            cathode=ft.cathode[:, :2].copy(),
            anode_score=ft.anode[:, 2].copy(),
            cathode_score=ft.cathode[:, 2].copy(),
            doubt=ft.doubt,
        )

    @property
    def gate(self) -> dict:
        """The card's calibrated confidence-gate limits (inspection/confidence.py `limits`), {} if none."""
        return dict(self.card.gate)


def load_detector(engine_cfg, *, warmup: bool = True) -> HrnetDetector:
    """HrnetDetector from a backend config (`[engine]`: type, model, the backend's options); the card sits beside the model.

    For the torch backend the card is the .json next to the checkpoint if one
    exists, else it is built from the checkpoint itself.
    """

    eng = load_engine(engine_cfg, load=True, warmup=warmup)
    cp = card_path(engine_cfg.model)
    if cp.is_file():
        card = cp
    elif getattr(eng, "checkpoint", None) is not None:
        ck = eng.checkpoint
        card = ModelCard(
            name=ck["model_config"]["name"], input=InputSpec.for_inference(ck["input_spec"]).to_dict(), decode=ck["codec"],
            model=ck["model_config"], sha256=None,
        )
        if "val" in ck:
            card.decode["threshold"] = ck["val"]["threshold"]
    else:
        raise DetectionUnavailable(f"no model card beside {Path(engine_cfg.model)} (expected {cp})")
    return HrnetDetector(eng, card, back_pitches=engine_cfg.back_pitches, fill_breaks=engine_cfg.fill_breaks)
