"""The paper's non-CNN stages: windowing, OFAST corners, orientation, ROI, correction, measurement, rules."""
