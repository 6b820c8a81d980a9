"""Scoring and measurement tools: tip metrics (`inspectd eval`), corner recall, ROI coverage, the ablation.

Above inspection and the tip runtime; nothing in the daemon imports it.
"""
