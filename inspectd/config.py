"""Station configuration: one TOML file validated by pydantic.

Every model forbids unknown keys, so a typo in a station file is an error at
start-up instead of a silently ignored setting. Every field has a default, so
every command also runs with no file at all (the embedded defaults).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspectd.backends import BACKENDS, EngineConfig, OnnxRuntimeConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StationConfig(_Strict):
    """Who this station is and how big its pixels are."""

    name: str = Field("L1-S1", min_length=1, description="station id, used in ZeroMQ topics")
    mm_per_px: float = Field(0.05, gt=0, le=10, description="pixel pitch at the electrode plane")
    deadline_ms: float = Field(300.0, gt=0, description="acquisition -> verdict deadline")
    polarity: Literal["dark_layers", "bright_layers", "auto"] = Field(
        "dark_layers",
        description="dark_layers: raw X-ray transmission (layers dark on a bright beam); bright_layers: the detector "
        "inverts; auto: dark_layers, and a frame that finds no stack or no tips is tried inverted",
    )


class RecipeConfig(_Strict):
    """The cell's acceptance rules (docs/contracts.md §1)."""

    overhang_min_mm: float = Field(0.45, ge=0)
    overhang_max_mm: float = Field(4.0, gt=0)
    # n_anode = n_cathode + anode_excess for a healthy stack.
    anode_excess: int = Field(1, ge=-1, le=2)
    layers_min: int | None = Field(None, ge=1, description="minimum cathode count, optional")
    layers_max: int | None = Field(None, ge=1, description="maximum cathode count, optional")
    # STACK_GAP (inspection/rules.py): an anode gap and a cathode gap at the same
    # place both wider than this times their median spacing. An extra layer the
    # model merges with its neighbour leaves such a gap: 1.14-1.77x on the
    # held-out sim frames that escaped without it, healthy sim stacks <= 1.08x.
    # Real stacks are less regular (hand labels reach 1.35x): calibrate per
    # cell design on known-good cells (docs/accuracy.md). None = off.
    max_gap_ratio: float | None = Field(1.12, gt=1.0, description="co-located anode+cathode gap / median; None = off")

    @model_validator(mode="after")
    def _ranges(self) -> RecipeConfig:
        if self.overhang_min_mm >= self.overhang_max_mm:
            raise ValueError("overhang_min_mm must be below overhang_max_mm")
        if self.layers_min is not None and self.layers_max is not None and self.layers_min > self.layers_max:
            raise ValueError("layers_min must not exceed layers_max")
        return self


class CornerConfig(_Strict):
    """OFAST corner detection (paper §2.1)."""

    n: int = Field(512, ge=16, le=8192, description="top-N corners by Harris response (128/256/512)")
    fast_threshold: int = Field(10, ge=1, le=255)
    # Work image for the detector: the long side is scaled to this many pixels
    # (0 = full resolution). Corners are mapped back to full-frame pixels.
    work_size: int = Field(0, ge=0)
    backend: Literal["opencv", "cuda"] = Field("opencv", description="cuda: numba-cuda kernels (the gpu extra)")
    on_unavailable: Literal["error", "opencv"] = Field(
        "error", description="backend cuda without a usable GPU: refuse to start, or use OpenCV (warning + metric)"
    )


class RoiConfig(_Strict):
    """ROI from corners and row-wise grey accumulation (paper §2.1, eq. 2-4)."""

    step_top: int = Field(2, ge=1, description="Δb: upper pointer step, px")
    step_bottom: int = Field(2, ge=1, description="Δa: lower pointer step, px")
    tau: float = Field(0.15, gt=0, lt=1, description="threshold on the normalised row-profile change")
    # λ tuned on the 52 real frames (docs/roi.md): 0.6 gave boxes ~2x the masks' width.
    lam: float = Field(0.26, gt=0, le=5, description="λ: half-width of the ROI as a fraction of its height")
    margin_px: int = Field(8, ge=0, description="padding added around the ROI")
    margin_frac: float = Field(0.03, ge=0, le=0.5, description="extra half-width, fraction of the frame's long side")
    pad_y: float = Field(0.09, ge=0, le=1, description="padding along the stack, fraction of its height")
    min_corners: int = Field(16, ge=3, description="fewer corners than this: no stack")
    min_layers: int = Field(6, ge=1, description="fewer layer lines than this: no stack")
    # The row-profile search costs ~21 ms on a 2048² frame, ~8 ms at half size
    # (bench/README.md); the box it finds is mapped back and rounded outwards.
    work_size: int = Field(1024, ge=0, description="search on a copy downscaled to this long side; 0 = full size")


class CorrectionConfig(_Strict):
    """Corner-guided post-correction with local-pattern confidence (paper §2.3)."""

    # Off by default, by measurement: with the shipped HRNet (DARK decoding) it raises the NME on
    # 1000 held-out sim frames from 0.082 to 0.206 % at N = 512: the corners scatter ~2 px around
    # the tips, the model's median error is 0.32 px (docs/accuracy.md, docs/vision.md).
    enabled: bool = False
    delta_px: float = Field(5.0, gt=0, description="δ: search radius for the reference corner (px; scale with resolution)")
    patch_px: int = Field(9, ge=3, description="side of the square patch for local patterns (odd)")
    bins: int = Field(16, ge=2, le=256, description="histogram bins of a local pattern")
    # Correction corners are detected again inside the ROI, more sensitively and
    # more of them than the full-frame pass that finds the ROI (which keeps the
    # paper's N and threshold 10: the ROI was tuned with them). Harris ranking
    # spends a top-512 budget on cathode-block and clutter corners in big ROIs;
    # 2048 gives a corner to 96-100 % of simulated tips (docs/vision.md).
    n: int = Field(2048, ge=16, le=8192, description="N of the in-ROI corner pass")
    fast_threshold: int = Field(4, ge=1, le=255, description="FAST threshold of the in-ROI corner pass")
    # Before the top-N cut (inspection/corner_select.py): candidates ranked by line-end contrast (bright
    # ahead, dark behind along the layer axis, inspection/line_end.py), non-maximum suppression, then
    # optionally corners whose OFAST angle is near the layer axis first. Harris order spends the budget
    # on grain in blurred bands; at N = 512 end-contrast order raised the share of tips with a corner
    # within δ from 0.94 to 0.97 (sim 1000²), 0.96 to 0.99 (sim 2048²) and 0.988 to 0.994 (real), and
    # made the angle priority a loss (docs/vision.md).
    rank: Literal["end_contrast", "harris"] = Field("end_contrast", description="order of the candidates before NMS and the top-N cut")
    max_angle_deg: float = Field(180.0, gt=0, le=180, description="on-axis corners (within this) first; 180 = off")
    nms_frac: float = Field(0.004, ge=0, le=0.05, description="NMS radius as a fraction of max(H, W); 0 = off")
    # Refinement of the selected corners. snap_to_line_end moves each onto the end of the line it sits
    # on (inspection/line_end.py): FAST pixels sit 2-5 px behind blurred tips; snapped, 0.988 of sim 1000²
    # tips have a corner within δ at N = 512 (0.97 unsnapped). cv2.cornerSubPix (subpix_win) pulls
    # FAST pixels onto *sharp* line ends (the synthetic comb) but not onto blurred ones.
    snap_to_line_end: bool = Field(True, description="move the selected corners onto the line end along the layer axis")
    snap_frac: float = Field(0.35, gt=0, lt=1, description="the line end: where its darkness falls to this fraction of its contrast")
    subpix_win: int = Field(0, ge=0, le=10, description="half-window (px) of cv2.cornerSubPix before the snap; 0 = off")


class SourceConfig(_Strict):
    """Where frames come from, as a URI (replay:DIR, sim:, genicam:, gst:)."""

    uri: str = "sim:?seed=1&fps=10"


class TriggerConfig(_Strict):
    """Part identity from the PLC (docs/daemon.md "Part identity").

    With `address` set, the daemon binds a ZeroMQ PULL socket there; the PLC
    gateway PUSHes `{"part_id": "..."}` before each exposure and frames take
    triggers in order. Without it, a frame's part id is what the source
    delivers (sidecar, chunk data) or, with `generate_part_id`, `<station>-<seq>`.
    """

    address: str | None = Field(None, description="e.g. tcp://127.0.0.1:5558; None: no PLC trigger")
    match_window_ms: float = Field(1000.0, gt=0, le=60000, description="a trigger at most this long before its frame")
    late_ms: float = Field(50.0, ge=0, le=10000, description="... or at most this long after it")
    no_frame_ms: float = Field(2000.0, gt=0, le=600000, description="a trigger with no frame this long: ERROR NO_FRAME")
    generate_part_id: bool = Field(True, description="no trigger socket and no part id from the source: <station>-<seq>")


class PublishConfig(_Strict):
    """Verdict transport, journal and NG archive (docs/contracts.md §4)."""

    pub: str = "tcp://127.0.0.1:5556"
    query: str = "tcp://127.0.0.1:5557"
    journal: Path = Path("var/journal.sqlite")
    heartbeat_s: float = Field(1.0, gt=0, le=60)
    # FULL: a power cut cannot lose a committed verdict, so seq is never reused
    # after a restart (~4 ms per verdict here; NORMAL ~0.5 ms). docs/publish.md.
    journal_sync: Literal["FULL", "NORMAL"] = "FULL"
    journal_keep_days: float | None = Field(90.0, gt=0, description="delete journal rows older than this; seq keeps counting")
    journal_min_free_mb: float = Field(
        64.0, ge=0, description="take no frames while the journal's filesystem has less free (0: no check)"
    )
    sndhwm: int = Field(10000, ge=1, description="PUB high-water mark: a slow subscriber loses messages, never blocks us")
    # CURVE (optional; for anything bound beyond loopback): the server's secret key
    # file (zmq.auth format) and a directory of authorised client public keys.
    curve_secret_key: Path | None = None
    curve_clients_dir: Path | None = None
    allow_plaintext_beyond_loopback: bool = Field(
        False, description="bind pub/query/trigger beyond loopback without CURVE (refused otherwise; logged at every start)"
    )
    archive_dir: Path | None = Field(Path("var/ng"), description="NG frames + overlays + verdicts (None: no archive)")
    archive_max_mb: float = Field(2048.0, gt=0, description="the oldest entries go when the archive outgrows this")
    archive_compression: Literal["zlib", "none"] = Field("zlib", description="lossless TIFF compression of NG frames")


class PreviewConfig(_Strict):
    """Live preview: annotated frames as H.264 over RTP/UDP, optionally recorded (docs/acquisition.md)."""

    enabled: bool = False
    host: str = Field("127.0.0.1", min_length=1, description="RTP/UDP destination (the operator's monitor)")
    port: int = Field(5600, ge=1, le=65535)
    fps: float = Field(5.0, gt=0, le=60, description="preview frames per second at most; extra frames are skipped")
    width: int = Field(960, ge=160, le=3840, description="output width, px; height is 9/16 of it")
    bitrate_kbps: int = Field(1500, ge=100, le=50000)
    record_dir: Path | None = Field(None, description="also record the preview here (None: no recording)")
    segment_s: float = Field(600.0, ge=1, description="length of one recording file")
    record_format: Literal["mkv", "mp4"] = "mkv"


class PipelineConfig(_Strict):
    """How the daemon runs the stages (docs/architecture.md)."""

    workers: int = Field(2, ge=1, le=64, description="inspection worker processes")
    ring_slots: int = Field(16, ge=2, le=1024, description="shared-memory frame slots")
    # When every slot is taken: "timeout" gives the new frame a TIMEOUT verdict at
    # once (the line keeps its pace, nothing is silently lost); "block" makes the
    # source wait (only sensible for replay).
    overload: Literal["timeout", "block"] = "timeout"
    max_restarts_per_min: int = Field(5, ge=0)


class ObservabilityConfig(_Strict):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    metrics_port: int | None = Field(9108, ge=0, le=65535, description="Prometheus port; None disables, 0 picks one")
    metrics_addr: str = "127.0.0.1"
    verdict_log: Literal["problems", "all"] = Field(
        "problems",
        description="one `verdict` log line per ERROR/TIMEOUT (\"problems\") or per frame (\"all\"); the others at debug",
    )


class GateConfig(_Strict):
    """The confidence gate (inspection/confidence.py): ERROR LOW_CONFIDENCE instead of an OK or NG the
    evidence cannot back. Limits left unset come from the model card (calibrated per model)."""

    enabled: bool = True
    tip_score_min: float | None = Field(None, ge=0.0, le=1.0, description="weakest tip's score below this: ERROR")
    gap_ratio_min: float | None = Field(None, ge=0.0, le=1.0, description="tightest gap / median gap below this: ERROR")
    doubt_max: float | None = Field(None, ge=0.0, le=1.0, description="a rejected tip peak above this: ERROR")
    alternation_max: float | None = Field(
        None, ge=0.0, le=1.0, description="share of same-class neighbours along the stack above this: ERROR"
    )
    squeeze_min: float | None = Field(
        None, ge=0.0, le=1.0, description="anode pair around a cathode closer than this x the usual spacing: ERROR"
    )


class Config(_Strict):
    station: StationConfig = StationConfig()
    recipe: RecipeConfig = RecipeConfig()
    corners: CornerConfig = CornerConfig()
    roi: RoiConfig = RoiConfig()
    correction: CorrectionConfig = CorrectionConfig()
    gate: GateConfig = GateConfig()
    engine: EngineConfig = Field(default_factory=OnnxRuntimeConfig)  # one of backends.BACKENDS, by `type`

    @field_validator("engine", mode="before")
    @classmethod
    def _default_engine_type(cls, v: Any) -> Any:
        if isinstance(v, dict) and "type" not in v:
            return {"type": "onnxruntime", **v}  # `[engine]` without a type: the default backend
        return v
    source: SourceConfig = SourceConfig()
    trigger: TriggerConfig = TriggerConfig()
    publish: PublishConfig = PublishConfig()
    preview: PreviewConfig = PreviewConfig()
    pipeline: PipelineConfig = PipelineConfig()
    observability: ObservabilityConfig = ObservabilityConfig()


class ConfigError(Exception):
    """A station file that cannot be used; the message names the file, line and key."""

    def __init__(self, path: Path | None, problems: list[str]):
        self.path = path
        self.problems = problems
        where = str(path) if path else "<config>"
        super().__init__("\n".join(f"{where}:{p}" for p in problems))


def _key_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort 1-based line of the key at `loc` (table path + key) in TOML text."""
    if not loc:
        return None
    table, key = [str(p) for p in loc[:-1]], str(loc[-1])
    current: list[str] = []
    header = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")
    assign = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")
    table_line = None
    for no, line in enumerate(text.splitlines(), start=1):
        m = header.match(line)
        if m:
            current = [s.strip().strip("\"'") for s in m.group(1).split(".")]
            if current == [str(p) for p in loc]:
                table_line = no
            continue
        m = assign.match(line)
        if m and current == table and m.group(1).strip("\"'") == key:
            return no
    return table_line


def load_config(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a station file (or none: embedded defaults) and apply flag overrides.

    `overrides` maps dotted keys ("station.mm_per_px") to values, as the CLI flags do.
    Raises ConfigError with one line per problem, each naming file:line and key.
    """
    data: dict[str, Any] = {}
    text = ""
    p = Path(path) if path is not None else None
    if p is not None:
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(p, [f" cannot read: {e.strerror or e}"]) from e
        except UnicodeDecodeError as e:  # a SIGHUP reload must keep the old recipe, not crash
            raise ConfigError(p, [f" not UTF-8 text (byte {e.start}: {e.reason})"]) from e
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(p, [f" not valid TOML: {e}"]) from e
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(err["loc"])
            if len(loc) > 1 and loc[0] == "engine" and loc[1] in BACKENDS:
                loc = loc[:1] + loc[2:]  # the union's tag (the backend) is not a key in the file
            line = _key_line(text, loc) if text else None
            key = ".".join(str(x) for x in loc) or "<root>"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (not part of the station config)"
                if loc[:1] == ("engine",):
                    msg = f"unknown key for engine type {(data.get('engine') or {}).get('type', 'onnxruntime')!r}"
            elif err["type"] == "union_tag_invalid":
                msg = f"type must be one of {sorted(BACKENDS)}, not {err['input'].get('type')!r}"
            problems.append(f"{line if line else ''}: {key}: {msg}")
        raise ConfigError(p, problems) from e
