"""The paper's stages and the chain that runs them on one frame.

OFAST corners (`corners`), orientation, ROI (`roi`), the correction's corner
pass (`corner_select`, `line_end`) and correction (`correction`),
measurement (`measure`) and rules (`rules`); `stages` chains them into a
verdict (`Inspector`). Tips come from a `inspectd.tips.TipDetector`.
"""
