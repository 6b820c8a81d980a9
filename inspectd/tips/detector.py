"""Tip detectors: what turns a located stack into anode and cathode tip lists.

The HRNet engine is one implementation; the label oracle (ground truth from
the sidecar) is another, used to test measurement and rules end to end and
always reported as `model: "oracle:labels"` so it cannot pass for a detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from inspectd.frames.model import Frame
from inspectd.imaging.region import Roi


@dataclass(frozen=True)
class Tips:
    anode: np.ndarray  # (N, 2) float64 [x, y], full-frame px
    cathode: np.ndarray  # (M, 2)
    anode_score: np.ndarray | None = None  # (N,) detector confidence per tip (heatmap peak), when it has one
    cathode_score: np.ndarray | None = None  # (M,)
    doubt: np.ndarray | None = None  # (K, 3) [x, y, score] sub-threshold peaks (tips/infer.py DOUBT_FLOOR)


class DetectionUnavailable(Exception):
    """The detector cannot run on this frame (no model loaded, no labels for the oracle)."""


class TipDetector(Protocol):
    name: str

    def detect(self, frame: Frame, img8: np.ndarray, roi: Roi) -> Tips:
        """Tips of `frame` inside `roi` (full-frame px). Raises DetectionUnavailable."""
        ...


class NoDetector:
    """The honest placeholder until a model is installed: every frame gets ERROR."""

    name = "none"

    def __init__(self, why: str = "no tip model is installed (engines/ holds none yet)"):
        self.why = why

    def detect(self, frame: Frame, img8: np.ndarray, roi: Roi) -> Tips:
        raise DetectionUnavailable(self.why)


class LabelOracle:
    """Ground-truth tips from the frame's sidecar: tests measurement and rules, detects nothing."""

    name = "oracle:labels"

    def detect(self, frame: Frame, img8: np.ndarray, roi: Roi) -> Tips:
        if frame.meta.labels is None:
            raise DetectionUnavailable(f"{frame.frame_id}: no labels in the sidecar for the label oracle")
        anode, cathode = frame.meta.labels.arrays()
        return Tips(anode=anode, cathode=cathode)
