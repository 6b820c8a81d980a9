"""Frame sources named by URI (docs/acquisition.md): replay:DIR, sim:, genicam:, gst:.

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
