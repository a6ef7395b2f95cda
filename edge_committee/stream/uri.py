"""Open a source by URI: one parser, one module per kind (jetson-utils ``videoSource`` style).

========================  ======================================================  ==========
URI                       kind                                                    default
========================  ======================================================  ==========
``clip.mp4``              video file (bare path or ``file://``), PyAV              every frame
``frames/``, ``'a/*.png'`` image folder, glob or one image, Pillow                 every frame
``rtsp://host/path``      RTSP (also ``rtsps``, ``http``, ``https``), PyAV         latest
``udp://@:5000``          MPEG-TS over UDP or RTP (``rtp://@:5000``), PyAV         latest
``v4l2:///dev/video0``    V4L2 camera (also a bare ``/dev/videoN``), PyAV          latest
``csi://0``               Jetson CSI camera, GStreamer ``nvarguscamerasrc`` (cv2)  latest
``test://counter``        synthetic (``counter``, ``array``, ``fashion-mnist``)    latest
========================  ======================================================  ==========

Options are ``key=value`` pairs joined by ``&``, after ``?`` for local kinds
(``v4l2:///dev/video0?size=1280x720&fps=30&format=mjpeg``) or after ``#`` for any kind; network
URLs keep their ``?query`` for the server, so their options go after ``#``
(``rtsp://cam/stream?channel=1#transport=udp``). Every kind takes the options of
:class:`~edge_committee.stream.sources.base.SourceOptions`; keyword options given in Python or as
CLI flags are defaults that the URI's own options override.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from typing import Any
from urllib.parse import parse_qsl, unquote

from edge_committee.stream.sources.base import COMMON_OPTIONS, Source, SourceOptions, convert_options
from edge_committee.stream.sources.folder import GLOB_CHARS
from edge_committee.stream.types import SourceError, redact

#: kind -> "module:class" (imported when a source of that kind is opened)
KINDS = {
    "file": "edge_committee.stream.sources.file:FileSource",
    "folder": "edge_committee.stream.sources.folder:FolderSource",
    "network": "edge_committee.stream.sources.rtsp:NetworkSource",
    "v4l2": "edge_committee.stream.sources.v4l2:V4l2Source",
    "csi": "edge_committee.stream.sources.csi:CsiSource",
    "test": "edge_committee.stream.sources.test:TestSource",
}

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtp", "udp")
SCHEMES = ("file", "v4l2", "csi", "test") + NETWORK_SCHEMES
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)


@dataclasses.dataclass
class ParsedURI:
    """A source URI taken apart: which kind reads it, what it reads, and the options given."""

    uri: str
    kind: str
    target: str  #: a path, a URL (without our ``#options``), a device, a sensor number, a pattern
    options: dict[str, str]


def _split_options(rest: str, allow_query: bool) -> tuple[str, dict[str, str]]:
    rest, _, fragment = rest.partition("#")
    query = ""
    if allow_query:
        rest, _, query = rest.partition("?")
    opts: dict[str, str] = {}
    for part in (query, fragment):
        opts.update(parse_qsl(part, keep_blank_values=True))
    return rest, opts


def _path_kind(path: str) -> str:
    """``file`` or ``folder`` for a local path (``v4l2`` for ``/dev/video*``)."""
    from edge_committee.data.readers import IMAGE_SUFFIXES

    if path.startswith("/dev/video"):
        return "v4l2"
    if any(c in path for c in GLOB_CHARS) or os.path.isdir(path) or path.lower().endswith(IMAGE_SUFFIXES):
        return "folder"
    return "file"


def parse_uri(uri: str) -> ParsedURI:
    """Take a source URI apart (no file or device is touched except to tell a folder from a file)."""
    if not isinstance(uri, str) or not uri.strip():
        raise SourceError(f"source {uri!r}: empty; give a path, rtsp://..., v4l2:///dev/video0, csi://0 or test://")
    m = _SCHEME.match(uri)
    if m is None:  # a bare path
        target, opts = _split_options(uri, allow_query=False)
        return ParsedURI(uri, _path_kind(target), target, opts)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme not in SCHEMES:
        raise SourceError(f"source {redact(uri)}: unknown scheme {scheme!r}; use one of {', '.join(s + '://' for s in SCHEMES)} "
                          "or a plain path")
    if scheme in NETWORK_SCHEMES:
        url, opts = _split_options(uri, allow_query=False)
        return ParsedURI(uri, "network", url, opts)
    target, opts = _split_options(rest, allow_query=True)
    target = unquote(target)
    if scheme == "file":
        return ParsedURI(uri, _path_kind(target) if target != "" else "file", target, opts)
    if scheme == "v4l2":
        if not target.startswith("/dev/"):
            raise SourceError(f"source {uri}: expected v4l2:///dev/videoN (three slashes, then the device path)")
        return ParsedURI(uri, "v4l2", target, opts)
    return ParsedURI(uri, scheme, target.strip("/"), opts)


def source_class(kind: str) -> type[Source]:
    module, _, attr = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), attr)


def open_source(uri: str | Source, **options: Any) -> Source:
    """The :class:`~edge_committee.stream.sources.base.Source` for ``uri`` (not opened yet: the
    grabber opens it, with timeouts). ``options`` are defaults the URI's own options override;
    common ones (``name``, ``frames``, timeouts, reconnects) go to every kind, the others only to
    kinds that take them. A :class:`Source` is returned as it is."""
    if isinstance(uri, Source):
        return uri
    parsed = parse_uri(uri)
    cls = source_class(parsed.kind)
    given = {k: v for k, v in options.items() if v is not None and (k in COMMON_OPTIONS or k in cls.OPTIONS)}
    given.update(parsed.options)
    common = convert_options(uri, {k: v for k, v in given.items() if k in COMMON_OPTIONS}, COMMON_OPTIONS)
    kind_opts = convert_options(uri, {k: v for k, v in given.items() if k not in COMMON_OPTIONS}, cls.OPTIONS)
    return cls(uri, parsed.target, kind_opts, SourceOptions(**common))
