"""The HRNet tip network as torch modules, and loading a training checkpoint.

Needs torch (the `train` extra). Imported by training, export and the torch
engine only; the daemon with the ONNX Runtime engine never loads it.
"""
