"""inspectd: finds electrode tips in X-ray frames of stacked cells and tells the line OK/NG."""

__version__ = "0.1.0"
