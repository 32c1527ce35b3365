"""Synthetic Kinetics- and UCF-101-layout datasets whose classes are motions.

Each video shows one textured shape moving over a noisy background. The class is the motion
(rising, falling, growing, shrinking, spinning, bouncing fast/slow, ...); the appearance
(shape, colour, size, position, background, texture) is drawn per video independently of the
class, so one frame carries no class information and only a model that sees time can solve
the task. Several pairs are time reverses of each other (rising/falling, growing/shrinking).
All classes are invariant under horizontal flips, so the usual flip augmentation keeps labels
right. UCF-layout classes reuse the same motion primitives with other shapes, palettes and
backgrounds, so pretraining on the Kinetics layout transfers.

Files and annotations follow the real downloads exactly (see ``annotations``):
Kinetics: H.264 mp4 named ``<youtube_id>_<start:06d>_<end:06d>.mp4`` under ``train/``,
``val/``, ``test/`` (train mostly per-class folders, some flat; val/test flat, as CVDF
extracts them), ``annotations/{train,val,test}.csv``, some listed videos missing.
UCF-101: MPEG-4 Part 2 (XVID fourcc) avi 320x240 25 fps ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi``
and ``ucfTrainTestlist/{classInd,trainlist0F,testlist0F}.txt`` with the real group folds.

Everything is a pure function of the seed (per-video generators), and the H.264 / MPEG-4
encoders run single-threaded, so the same seed gives the same bytes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import string
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .annotations import kinetics_video_stem


@dataclass(frozen=True)
class MotionClass:
    kinetics: str  # Kinetics-style label (lowercase, spaces)
    ucf: str  # UCF-style class name (CamelCase)
    kind: str  # primitive
    params: tuple = ()


# Order matters: ``--classes N`` takes the first N; the first four are two time-reversal pairs.
MOTIONS: tuple[MotionClass, ...] = (
    MotionClass("rising", "BalloonRise", "translate", ((0.0, -1.0),)),
    MotionClass("falling", "StoneDrop", "translate", ((0.0, 1.0),)),
    MotionClass("growing", "BalloonInflate", "zoom", (1.0,)),
    MotionClass("shrinking", "BalloonDeflate", "zoom", (-1.0,)),
    MotionClass("spinning", "WheelSpin", "rotate", ()),
    MotionClass("sliding sideways", "CarPass", "translate", ((1.0, 0.0),)),
    MotionClass("bouncing fast", "BallBounceFast", "oscillate", ((0.0, 1.0), 1.6)),
    MotionClass("bouncing slowly", "BallBounceSlow", "oscillate", ((0.0, 1.0), 0.5)),
    MotionClass("swaying fast", "PendulumFast", "oscillate", ((1.0, 0.0), 1.6)),
    MotionClass("swaying slowly", "PendulumSlow", "oscillate", ((1.0, 0.0), 0.5)),
    MotionClass("circling", "PlanetOrbit", "orbit", ()),
    MotionClass("pulsing", "HeartBeat", "pulse", (1.2,)),
    MotionClass("blinking", "LampBlink", "blink", (1.2,)),
    MotionClass("rising diagonally", "KiteClimb", "translate", ((0.7, -0.7),)),
    MotionClass("falling diagonally", "LeafFall", "translate", ((0.7, 0.7),)),
    MotionClass("holding still", "StatueStill", "still", ()),
)
MAX_CLASSES = len(MOTIONS)
MANIFEST = "synth_manifest.json"

KINETICS_SHAPES = ("circle", "square", "triangle", "diamond")
UCF_SHAPES = ("ring", "cross", "star", "ellipse")
KINETICS_SIZES = ((340, 256), (320, 240), (256, 340), (400, 224), (288, 288), (480, 270))
# Download-like encoding (``encoding="web"``): the frame sizes of resized Kinetics downloads.
WEB_SIZES = ((340, 256), (456, 256), (340, 256), (256, 340))
ENCODINGS = ("fast", "web")
BROKEN_KINDS = ("zero-byte", "text", "truncated", "truncated-moov", "audio-only")
QUIRK_KINDS = ("short", "single-frame", "odd-size", "grayscale", "vp9", "rotated", "vfr")
UCF_QUIRK_KINDS = ("short", "single-frame", "odd-size", "grayscale")


# ----------------------------------------------------------------------------- rendering
def _shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A "radius" that is 1 on the shape's outline, < 1 inside (object coordinates)."""
    if shape == "circle":
        return np.sqrt(u * u + v * v)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) * 1.15
    if shape == "diamond":
        return np.abs(u) + np.abs(v)
    if shape == "triangle":
        return np.maximum(np.maximum(-v * 1.6, v * 0.8 + np.abs(u) * 1.4), 0.0) * 1.2
    if shape == "ring":
        r = np.sqrt(u * u + v * v)
        return np.where(r < 0.45, 2.0, r)
    if shape == "cross":
        a, b = np.abs(u), np.abs(v)
        return np.minimum(np.maximum(a, b / 0.4), np.maximum(a / 0.4, b))
    if shape == "star":
        r = np.sqrt(u * u + v * v)
        phi = np.arctan2(v, u)
        return r / (0.65 + 0.35 * np.cos(5 * phi))
    if shape == "ellipse":
        return np.sqrt(u * u + (v / 0.6) ** 2)
    raise ValueError(shape)


def _state(motion: MotionClass, t: float, duration: float, look: dict) -> tuple:
    """(cx, cy, angle, scale, brightness) at time t; positions in units of the short side."""
    cx, cy = look["cx"], look["cy"]
    angle, scale, bright = look["angle0"], 1.0, 1.0
    phase = t / duration - 0.5  # in [-0.5, 0.5]
    speed = look["speed"]
    if motion.kind == "translate":
        (dx, dy) = motion.params[0]
        dx *= look["hsign"]
        cx, cy = cx + dx * 0.55 * speed * phase, cy + dy * 0.55 * speed * phase
    elif motion.kind == "zoom":
        scale = math.exp(motion.params[0] * 1.1 * speed * phase)
    elif motion.kind == "rotate":
        angle += look["hsign"] * math.pi * speed * t
    elif motion.kind == "oscillate":
        (dx, dy), freq = motion.params
        s = 0.2 * math.sin(2 * math.pi * freq * speed * t + look["phi"])
        cx, cy = cx + dx * s, cy + dy * s
    elif motion.kind == "orbit":
        a = look["phi"] + look["hsign"] * math.pi * speed * t
        cx, cy = cx + 0.18 * math.cos(a), cy + 0.18 * math.sin(a)
    elif motion.kind == "pulse":
        scale = 1.0 + 0.35 * math.sin(2 * math.pi * motion.params[0] * speed * t + look["phi"])
    elif motion.kind == "blink":
        bright = 0.55 + 0.45 * math.sin(2 * math.pi * motion.params[0] * speed * t + look["phi"])
    return cx, cy, angle, scale, bright


def _appearance(rng: np.random.Generator, width: int, height: int, style: str) -> dict:
    shapes = KINETICS_SHAPES if style == "kinetics" else UCF_SHAPES
    hue = rng.random()
    return {
        "shape": shapes[int(rng.integers(len(shapes)))],
        "color": _hsv(hue, 0.55 + 0.45 * rng.random(), 0.75 + 0.25 * rng.random()),
        "stripe": _hsv((hue + 0.5) % 1.0, 0.6, 0.35 + 0.3 * rng.random()),
        "size": 0.16 + 0.08 * rng.random(),  # radius, in units of the short side
        "cx": (0.35 + 0.3 * rng.random()) * width / min(width, height),
        "cy": (0.35 + 0.3 * rng.random()) * height / min(width, height),
        "angle0": 2 * math.pi * rng.random(),
        "speed": 0.8 + 0.4 * rng.random(),
        "hsign": 1.0 if rng.random() < 0.5 else -1.0,
        "phi": 2 * math.pi * rng.random(),
        "stripes": 2.5 + 2.0 * rng.random(),
        "noise": 4.0 + 6.0 * rng.random(),
    }


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32) * 255.0


def _background(rng: np.random.Generator, width: int, height: int, style: str) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = _hsv(rng.random(), 0.3, 0.35), _hsv(rng.random(), 0.3, 0.55)
    a = rng.random() * 2 * math.pi
    g = (np.cos(a) * xx / width + np.sin(a) * yy / height + 1.0) / 2.0
    bg = c0 * (1 - g[..., None]) + c1 * g[..., None]
    if style == "kinetics":  # soft blobs
        for _ in range(4):
            bx, by = rng.random() * width, rng.random() * height
            r = (0.1 + 0.15 * rng.random()) * min(width, height)
            blob = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * r * r))
            bg += blob[..., None] * _hsv(rng.random(), 0.4, 0.3)
    else:  # low-contrast stripes, a floor line
        period = 8 + 10 * rng.random()
        bg += (np.sin(2 * math.pi * yy / period) * 10.0)[..., None]
        floor = int(height * (0.75 + 0.15 * rng.random()))
        bg[floor:] *= 0.7
    return np.clip(bg, 0, 255).astype(np.float32)


def render_video(
    motion: MotionClass,
    rng: np.random.Generator,
    width: int,
    height: int,
    num_frames: int,
    fps: float,
    style: str = "kinetics",
    temporal_noise: float = 1.0,
) -> np.ndarray:
    """uint8 (num_frames, height, width, 3): one object doing ``motion``.

    ``temporal_noise`` is the share of the per-video noise that is new in every frame; the rest
    is a fixed texture (camera footage: mostly static detail, little sensor noise per frame).
    """
    look = _appearance(rng, width, height, style)
    bg = _background(rng, width, height, style)
    short = float(min(width, height))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    duration = num_frames / fps
    radius_px = look["size"] * short
    out = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    noise_rng = np.random.default_rng(rng.integers(1 << 62))
    if temporal_noise < 1.0:
        static = noise_rng.normal(0.0, look["noise"], size=(height, width, 1))
        bg = bg + (1.0 - temporal_noise) * static.astype(np.float32)
    for k in range(num_frames):
        cx, cy, angle, scale, bright = _state(motion, k / fps, duration, look)
        r = radius_px * scale
        # only the object's bounding box is rendered (no shape reaches beyond 1.6 radii)
        half = math.ceil(1.6 * r) + 2
        x0, x1 = max(0, int(cx * short) - half), min(width, int(cx * short) + half + 1)
        y0, y1 = max(0, int(cy * short) - half), min(height, int(cy * short) + half + 1)
        frame = bg.copy()
        if x1 > x0 and y1 > y0:
            ca, sa = math.cos(angle), math.sin(angle)
            dx = (xx[y0:y1, x0:x1] - cx * short) / r
            dy = (yy[y0:y1, x0:x1] - cy * short) / r
            u, v = ca * dx + sa * dy, -sa * dx + ca * dy  # object coordinates
            d = _shape_distance(look["shape"], u, v)
            mask = np.clip((1.0 - d) * r / 1.5, 0.0, 1.0)[..., None]
            stripes = (np.sin(u * math.pi * look["stripes"]) > 0.0)[..., None]
            dot = ((u - 0.45) ** 2 + v**2 < 0.04)[..., None]  # breaks rotational symmetry
            fill = np.where(stripes, look["color"], look["stripe"]) * bright
            fill = np.where(dot, 255.0, fill)
            frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1 - mask) + fill * mask
        sigma = look["noise"] * temporal_noise
        frame += noise_rng.normal(0.0, sigma, size=(height, width, 1)).astype(np.float32)
        out[k] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------- encoding
def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    gop: int | None = None,
    faststart: bool = False,
    rotate: int = 0,
    pts: list[int] | None = None,
    encoding: str = "fast",
) -> None:
    """Encode (T, H, W, 3) uint8 with PyAV (single-threaded, so deterministic).

    ``encoding`` (H.264 only): "fast" is x264 ``veryfast`` crf 20 with a keyframe every second
    (quick to write and to seek; the test datasets); "web" is what YouTube-derived datasets
    hold: x264 ``medium``, crf 23, keyint 250 (about one keyframe per 8 s at 30 fps), B-frames.
    """
    import av

    path = str(path)
    ext = os.path.splitext(path)[1].lower()
    container_opts = {"movflags": "+faststart"} if faststart and ext == ".mp4" else {}
    if ext in (".webm", ".mkv"):
        container_opts["fflags"] = "+bitexact"  # no random Matroska segment UID
    container = av.open(path, "w", options=container_opts)
    rate = Fraction(fps).limit_denominator(1001)
    options = {}
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if codec == "libx264":
        # mbtree=0: x264's macroblock-tree rate control made the output vary run to run
        options = {"preset": "veryfast", "crf": "20", "threads": "1", "x264-params": "mbtree=0"}
        if encoding == "web":
            options.update(preset="medium", crf="23")
            gop = gop or 250
    elif codec == "libvpx-vp9":
        options = {"deadline": "realtime", "cpu-used": "8", "threads": "1", "row-mt": "0"}
    stream = container.add_stream(codec, rate=rate, options=options)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = pix_fmt
    stream.codec_context.thread_count = 1
    stream.codec_context.gop_size = gop or max(1, round(fps))
    if codec == "mpeg4":
        stream.codec_context.codec_tag = "XVID"
        stream.codec_context.bit_rate = 1_200_000
    if pts is not None:
        stream.codec_context.time_base = Fraction(1, 1000)
    if rotate:
        stream.set_display_rotation(rotate)  # counter-clockwise degrees, as phones write it
    for k, arr in enumerate(frames):
        # RGB -> YUV in numpy: FFmpeg's cached swscale context made the bytes depend on what
        # the process encoded before; this keeps "same seed, same bytes".
        frame = av.VideoFrame.from_ndarray(_rgb_to_yuv(arr, pix_fmt), format=pix_fmt)
        if pts is not None:
            frame.pts, frame.time_base = pts[k], Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def _rgb_to_yuv(rgb: np.ndarray, pix_fmt: str) -> np.ndarray:
    """BT.601 limited-range planes in PyAV's ``from_ndarray`` layout for ``pix_fmt``."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b
    if pix_fmt == "gray":
        return np.clip(np.round((y - 16.0) * 255.0 / 219.0), 0, 255).astype(np.uint8)
    u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b
    if pix_fmt == "yuv444p":
        planes = np.stack([y, u, v])  # (3, H, W)
        return np.clip(np.round(planes), 0, 255).astype(np.uint8)
    if pix_fmt != "yuv420p":
        raise ValueError(f"unsupported pix_fmt {pix_fmt!r}")
    h, w = y.shape
    u = u.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    v = v.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    out = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def write_audio_only(path: str | os.PathLike, seconds: float = 1.0) -> None:
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=16000)
    n = int(16000 * seconds)
    t = np.arange(n, dtype=np.float32) / 16000
    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    for start in range(0, n, 1024):
        chunk = samples[:, start : start + 1024]
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(chunk), format="fltp", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def write_special(
    path: str | os.PathLike,
    kind: str,
    rng: np.random.Generator,
    motion: MotionClass | None = None,
    size: tuple[int, int] = (64, 48),
    fps: float = 25.0,
    num_frames: int = 30,
) -> str:
    """Write a bad or unusual file of ``kind`` at ``path``; returns the path written.

    Unusable kinds: zero-byte, text, truncated (faststart mp4 cut mid-stream),
    truncated-moov (cut before its index), audio-only. Usable ones: short (fewer frames than
    a clip), single-frame, odd-size (97x61), grayscale, vp9 (webm; the extension changes),
    rotated (rotate=90 metadata), vfr (variable frame rate).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    motion = motion or MOTIONS[0]
    w, h = size
    codec = "mpeg4" if path.suffix == ".avi" else "libx264"
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("<html><body>404 Not Found: this video is unavailable</body></html>\n")
    elif kind in ("truncated", "truncated-moov"):
        frames = render_video(motion, rng, w, h, max(num_frames, 40), fps)
        write_video(path, frames, fps, codec, faststart=kind == "truncated" and codec != "mpeg4")
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.45)])
    elif kind == "audio-only":
        if path.suffix == ".avi":
            path.write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST")
        else:
            write_audio_only(path)
    elif kind == "short":
        write_video(path, render_video(motion, rng, w, h, 5, fps), fps, codec)
    elif kind == "single-frame":
        write_video(path, render_video(motion, rng, w, h, 1, fps), fps, codec)
    elif kind == "odd-size":
        # 4:2:0 (the only choice for MPEG-4 in avi) needs even sides: 98x62 there
        ow, oh = (97, 61) if codec == "libx264" else (98, 62)
        frames = render_video(motion, rng, ow, oh, num_frames, fps)
        write_video(
            path, frames, fps, codec, pix_fmt="yuv444p" if codec == "libx264" else "yuv420p"
        )
    elif kind == "grayscale":
        frames = render_video(motion, rng, w, h, num_frames, fps)
        gray = frames.mean(axis=-1, keepdims=True).astype(np.uint8).repeat(3, axis=-1)
        write_video(path, gray, fps, codec, pix_fmt="gray" if codec == "libx264" else "yuv420p")
    elif kind == "vp9":
        path = path.with_suffix(".webm")
        write_video(path, render_video(motion, rng, w, h, num_frames, fps), fps, "libvpx-vp9")
    elif kind == "rotated":
        write_video(path, render_video(motion, rng, w, h, num_frames, fps), fps, codec, rotate=90)
    elif kind == "vfr":
        steps = rng.choice([20, 40, 80], size=num_frames)
        pts = np.concatenate([[0], np.cumsum(steps[:-1])]).astype(int).tolist()
        write_video(path, render_video(motion, rng, w, h, num_frames, fps), fps, codec, pts=pts)
    else:
        raise ValueError(f"unknown special kind {kind!r}")
    return str(path)


# ----------------------------------------------------------------------------- datasets
_YT_ALPHABET = string.ascii_letters + string.digits + "-_"


def _youtube_id(rng: np.random.Generator) -> str:
    return "".join(_YT_ALPHABET[i] for i in rng.integers(0, len(_YT_ALPHABET), size=11))


def _scaled(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    w, h = size
    if max_side and max(w, h) > max_side:
        f = max_side / max(w, h)
        w, h = round(w * f / 2) * 2, round(h * f / 2) * 2
    return max(w, 16), max(h, 16)


def _plan_special(n_videos: int, broken: float, quirks: bool, kinds_quirk, rng) -> dict[int, str]:
    """Which video slots become bad/unusual files (slot -> kind)."""
    slots = rng.permutation(n_videos).tolist()
    plan: dict[int, str] = {}
    n_broken = round(broken * n_videos)
    for k in range(n_broken):
        plan[slots.pop()] = BROKEN_KINDS[k % len(BROKEN_KINDS)]
    if quirks:
        for kind in kinds_quirk:
            if slots:
                plan[slots.pop()] = kind
    return plan


def _check_kinetics_only(layout: str, **options: object) -> None:
    """Refuse, in one ``ValueError`` line, Kinetics-only options given with the ucf101 layout
    (they were ignored: ``--missing 0.2`` wrote every video, as if never typed)."""
    given = [f"--{name.replace('_', '-')}" for name, value in options.items() if value is not None]
    if layout == "ucf101" and given:
        raise ValueError(
            f"{', '.join(given)}: Kinetics-layout only; --layout ucf101 writes every video of "
            "UCF-101/CLASS/ and the three official train/test folds (no val split, no missing "
            "videos); it takes --classes, --videos-per-class, --seed, --duration, --size, "
            "--max-side, --broken, --quirks and --encoding"
        )


def _check_counts(
    videos_per_class: int,
    val_per_class: int | None,
    size: tuple[int, int] | None,
    broken: float,
    missing: float | None,
) -> None:
    """Refuse, in one ``ValueError`` line naming the option, values :func:`synthesize` cannot
    honour (they ended in a traceback, or in a dataset without a train video)."""
    if videos_per_class < 1:
        raise ValueError(f"--videos-per-class {videos_per_class}: it must be >= 1")
    if val_per_class is not None and val_per_class < 0:
        raise ValueError(f"--val-per-class {val_per_class}: it must be >= 0")
    if size is not None and (min(size) < 16 or size[0] % 2 or size[1] % 2):
        raise ValueError(f"--size {size[0]} {size[1]}: width and height must be even and >= 16")
    for flag, share in (("--broken", broken), ("--missing", missing)):
        if share is not None and not 0.0 <= share <= 1.0:
            raise ValueError(f"{flag} {share}: a share of the videos, 0..1")


def synthesize(
    root: str | os.PathLike,
    layout: str = "kinetics",
    classes: int = 8,
    videos_per_class: int = 6,
    val_per_class: int | None = None,
    seed: int = 0,
    duration: tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    max_side: int | None = None,
    structure: str | None = None,
    missing: float | None = None,
    broken: float = 0.0,
    quirks: bool = False,
    progress: bool = True,
    encoding: str = "fast",
) -> dict:
    """Write a synthetic dataset in the real layout; returns the manifest (also saved as JSON).

    The manifest lists the classes, the videos written, the listed-but-missing videos and the
    special files (path relative to ``root`` -> kind).

    Args:
        root: output folder (the dataset root users point ``data_root`` at).
        layout: "kinetics" or "ucf101".
        classes: number of motion classes (1..16).
        videos_per_class: Kinetics: train videos per class; UCF-101: videos per class in all.
        val_per_class: Kinetics val and test videos per class (default max(1, M // 3)).
        seed: everything is a function of it.
        duration: (min, max) seconds per video (default 2-4 s; 10 s with ``encoding="web"``).
        size: fixed (width, height); default varied Kinetics sizes (``WEB_SIZES``, short side
            256, with ``encoding="web"``), 320x240 for UCF-101.
        max_side: scale the sizes down so the long side is at most this (fast tests).
        structure: Kinetics: "flat", "per-class" or "mixed" (the default: train mostly
            per-class).
        missing: Kinetics: share of train/val/test rows whose video is not written (0.05).
            ``val_per_class``, ``structure`` and ``missing`` are Kinetics' alone: given with
            ``layout="ucf101"``, they are refused (``ValueError``), not ignored.
        broken: share of videos replaced by unusable files (zero-byte, text, truncated, ...).
        quirks: also write one video of each unusual-but-usable kind (short, odd size, ...).
        progress: tqdm progress bar.
        encoding: "fast" (1-s keyframe interval, quick tests) or "web" (download-like Kinetics:
            x264 medium, crf 23, keyint 250, 30 fps; see :func:`write_video`). UCF-101 stays
            MPEG-4 avi at 25 fps, as the real download is.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    web = encoding == "web"
    if duration is None:
        duration = (10.0, 10.0) if web else (2.0, 4.0)
    if layout not in ("kinetics", "ucf101"):
        raise ValueError(f"layout must be kinetics or ucf101, got {layout!r}")
    if not 1 <= classes <= MAX_CLASSES:
        raise ValueError(f"classes must be in 1..{MAX_CLASSES}, got {classes}")
    _check_kinetics_only(layout, val_per_class=val_per_class, structure=structure, missing=missing)
    structure = structure or "mixed"
    if structure not in ("flat", "per-class", "mixed"):
        raise ValueError(f"structure must be flat, per-class or mixed, got {structure!r}")
    _check_counts(videos_per_class, val_per_class, size, broken, missing)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # the layout first: an interrupted run's root is known as synth's (check_synth_root)
    (root / MANIFEST).write_text(json.dumps({"layout": layout, "incomplete": True}))
    jobs = _kinetics_jobs if layout == "kinetics" else _ucf_jobs
    job_list, finish = jobs(
        root, classes, videos_per_class, val_per_class, seed, structure, missing
    )
    master = np.random.default_rng([seed, 7919])
    special_kinds = QUIRK_KINDS if layout == "kinetics" else UCF_QUIRK_KINDS
    plan = _plan_special(len(job_list), broken, quirks, special_kinds, master)
    manifest = {
        "layout": layout,
        "seed": seed,
        "encoding": encoding,
        "classes": [],
        "special": {},
        "missing": [],
        "videos": [],
    }
    try:
        from tqdm import tqdm

        iterator = tqdm(job_list, desc=f"synth {layout}", unit="video", disable=not progress)
    except ImportError:  # pragma: no cover
        iterator = job_list
    for slot, job in enumerate(iterator):
        rng = np.random.default_rng(job["seed"])
        if job.get("missing"):
            manifest["missing"].append(os.path.relpath(job["path"], root))
            continue
        fps = 30.0 if web and layout == "kinetics" else job["fps"]
        dur = duration[0] + (duration[1] - duration[0]) * rng.random()
        sizes = WEB_SIZES if web else KINETICS_SIZES
        if size is None and layout == "kinetics":
            size_of_video = sizes[int(rng.integers(len(sizes)))]
        else:
            size_of_video = size or (320, 240)
        w, h = _scaled(size_of_video, max_side)  # a given size too
        motion = job["motion"]
        if slot in plan:
            written = write_special(
                job["path"], plan[slot], rng, motion, (w, h), fps, max(2, int(dur * fps))
            )
            manifest["special"][os.path.relpath(written, root)] = plan[slot]
            continue
        frames = render_video(
            motion, rng, w, h, max(2, round(dur * fps)), fps, job["style"], 0.6 if web else 1.0
        )
        job["path"].parent.mkdir(parents=True, exist_ok=True)
        write_video(job["path"], frames, fps, job["codec"], encoding=encoding)
        manifest["videos"].append(os.path.relpath(job["path"], root))
    finish(job_list)
    manifest["classes"] = [m.kinetics if layout == "kinetics" else m.ucf for m in MOTIONS[:classes]]
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def check_synth_root(root: str | os.PathLike, layout: str) -> None:
    """Refuse (``ValueError``, one line) a ``root`` that holds files an earlier ``synthesize``
    of ``layout`` did not write: synthesizing there would overwrite the annotation files and
    videos of the same names and mix its videos with the others."""
    root = Path(root)
    if not root.is_dir() or not any(root.iterdir()):
        return
    try:
        made = json.loads((root / MANIFEST).read_text()).get("layout")
    except (OSError, ValueError, AttributeError):
        made = None
    if made == layout:
        return  # an earlier synth's (perhaps interrupted): written again
    what = f"a {made} synthetic dataset" if made else "files a2video synth did not write"
    raise ValueError(
        f"{root} holds {what} (its annotation files and videos would be overwritten); "
        "choose a new or empty ROOT"
    )


def manifest_gaps(root: str | os.PathLike) -> list[str]:
    """The files of a synthesized dataset that are gone (relative paths; the manifest itself
    when it is missing or predates the list of written videos)."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return ["synth_manifest.json"]
    if "videos" not in manifest:
        return ["synth_manifest.json"]
    listed = [*manifest["videos"], *manifest.get("special", {})]
    return [rel for rel in listed if not (root / rel).is_file()]


def _kinetics_jobs(root, classes, per_class, val_per_class, seed, structure, missing):
    val_per_class = max(1, per_class // 3) if val_per_class is None else val_per_class
    missing = 0.05 if missing is None else missing
    jobs = []
    counts = {"train": per_class, "val": val_per_class, "test": val_per_class}
    for split_id, (split, n) in enumerate(counts.items()):
        split_jobs = []
        for c, motion in enumerate(MOTIONS[:classes]):
            for j in range(n):
                rng = np.random.default_rng([seed, split_id, c, j])
                yt = _youtube_id(rng)
                start = int(rng.integers(0, 300))
                stem = kinetics_video_stem(yt, start, start + 10)
                per_class_dir = structure == "per-class" or (
                    structure == "mixed" and split == "train" and rng.random() < 0.75
                )
                folder = root / split / motion.kinetics if per_class_dir else root / split
                split_jobs.append(
                    {
                        "seed": [seed, split_id, c, j, 1],
                        "split": split,
                        "motion": motion,
                        "path": folder / f"{stem}.mp4",
                        "youtube_id": yt,
                        "start": start,
                        "fps": float(rng.choice([25.0, 30.0])),
                        "codec": "libx264",
                        "style": "kinetics",
                    }
                )
        # a few listed-but-missing videos, as in every real Kinetics download
        n_missing = round(missing * len(split_jobs))
        if split == "train" and missing > 0:
            n_missing = max(1, n_missing)
        miss_rng = np.random.default_rng([seed, split_id, 104729])
        for k in miss_rng.permutation(len(split_jobs))[:n_missing]:
            split_jobs[int(k)]["missing"] = True
        jobs.extend(split_jobs)

    def finish(job_list):
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        for split in counts:
            rows = [j for j in job_list if j["split"] == split]
            with open(root / "annotations" / f"{split}.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
                for j in rows:
                    writer.writerow(
                        [
                            j["motion"].kinetics,
                            j["youtube_id"],
                            j["start"],
                            j["start"] + 10,
                            split,
                            0,
                        ]
                    )

    return jobs, finish


# The real UCF-101 folds: groups 1-7 are the test set of fold 1, 8-14 of fold 2, 15-21 of fold 3.
UCF_TEST_GROUPS = {1: range(1, 8), 2: range(8, 15), 3: range(15, 22)}
# Video j of a class goes to group _GROUP_ORDER[j % 25]: a few videos already cover every fold.
_GROUP_ORDER = [g for k in range(7) for g in (1 + k, 8 + k, 15 + k)] + [22, 23, 24, 25]


def _ucf_jobs(root, classes, per_class, _val, seed, _structure, _missing):
    jobs = []
    for c, motion in enumerate(MOTIONS[:classes]):
        for j in range(per_class):
            group = _GROUP_ORDER[j % 25]
            clip = j // 25 + 1
            name = f"v_{motion.ucf}_g{group:02d}_c{clip:02d}.avi"
            jobs.append(
                {
                    "seed": [seed, 9, c, j],
                    "motion": motion,
                    "group": group,
                    "class": c,
                    "rel": f"{motion.ucf}/{name}",
                    "path": root / "UCF-101" / motion.ucf / name,
                    "fps": 25.0,
                    "codec": "mpeg4",
                    "style": "ucf",
                }
            )

    def finish(job_list):
        out = root / "ucfTrainTestlist"
        out.mkdir(parents=True, exist_ok=True)
        (out / "classInd.txt").write_text(
            "".join(f"{i + 1} {m.ucf}\r\n" for i, m in enumerate(MOTIONS[:classes]))
        )
        for fold, test_groups in UCF_TEST_GROUPS.items():
            train = [j for j in job_list if j["group"] not in test_groups]
            test = [j for j in job_list if j["group"] in test_groups]
            (out / f"trainlist{fold:02d}.txt").write_text(
                "".join(f"{j['rel']} {j['class'] + 1}\r\n" for j in train)
            )
            (out / f"testlist{fold:02d}.txt").write_text("".join(f"{j['rel']}\r\n" for j in test))

    return jobs, finish
