"""Training the tip model and exporting it: data, the training loop, ONNX export, int8 variants.

Needs torch (the `train` extra) for `train` and `export`. Nothing in the
daemon's process tree imports this package.
"""
