"""The HRNet tip model: input definition (crop), heatmap codec, network, training and export.

Inference needs only numpy/OpenCV (crop, codec) and an engine backend
(`inspectd.backends`); torch is needed for `hrnet`, `train` and `export` only
(the `train` extra), so nothing here imports torch at package import.
"""
