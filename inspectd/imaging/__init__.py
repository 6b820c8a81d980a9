"""Pixel and geometry helpers shared by inspection, the tip runtime, training and the preview.

Windowing to 8 bit, the exact canonical-frame mappings, overlay drawing. It
imports nothing of inspectd but the verdict, so every layer above may use it.
"""
