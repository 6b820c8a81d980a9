"""The torch-free tip-model runtime: from a located ROI to anode and cathode tips.

`detector` holds the `TipDetector` protocol and the label oracle; `hrnet` the
HRNet detector on an engine (`inspectd.backends`); `crop` the model's input
definition (canonical, pitch-normalised tiles), `codec` the heatmap codec,
`infer` one frame through it, `card` the model card. Needs numpy, OpenCV
and an engine backend; never torch or the training code.
"""
