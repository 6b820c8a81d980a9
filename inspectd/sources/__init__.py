"""Frame sources named by URI (DESIGN.md §5): replay:DIR, sim:, later genicam: and gst:.

`open_source(uri)` picks the plugin module for the URI's scheme; see `base.py`.
"""

from inspectd.sources.base import (
    EndOfStream,
    FrameSource,
    SourceConfigBase,
    SourceError,
    available_schemes,
    open_source,
    parse_source_uri,
)

__all__ = [
    "EndOfStream",
    "FrameSource",
    "SourceConfigBase",
    "SourceError",
    "available_schemes",
    "open_source",
    "parse_source_uri",
]
