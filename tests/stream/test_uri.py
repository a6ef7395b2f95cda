"""The URI opener, option parsing, and the pieces that need hardware tested as pure functions."""

from __future__ import annotations

import subprocess
import sys

import pytest

import edge_committee as ec
from edge_committee.stream import SourceError, open_source, parse_uri
from edge_committee.stream.sources.csi import csi_pipeline
from edge_committee.stream.sources.test import paint_counter, read_counter
from edge_committee.stream.sources.v4l2 import v4l2_options


@pytest.mark.parametrize("uri, kind, target, options", [
    ("clip.mp4", "file", "clip.mp4", {}),
    ("file:///data/clip.mkv", "file", "/data/clip.mkv", {}),
    ("file:///data/img_*.jpg", "folder", "/data/img_*.jpg", {}),
    ("frames/*.png", "folder", "frames/*.png", {}),
    ("photo.JPG", "folder", "photo.JPG", {}),
    ("rtsp://user:pw@cam:554/s?channel=1#transport=udp", "network", "rtsp://user:pw@cam:554/s?channel=1",
     {"transport": "udp"}),
    ("https://host/live.m3u8", "network", "https://host/live.m3u8", {}),
    ("v4l2:///dev/video0?size=1280x720&fps=30&format=mjpg", "v4l2", "/dev/video0",
     {"size": "1280x720", "fps": "30", "format": "mjpg"}),
    ("/dev/video2", "v4l2", "/dev/video2", {}),
    ("csi://1?flip=2", "csi", "1", {"flip": "2"}),
    ("test://counter?fps=100#count=5", "test", "counter", {"fps": "100", "count": "5"}),
])
def test_parse_uri(uri, kind, target, options):
    p = parse_uri(uri)
    assert (p.kind, p.target, p.options) == (kind, target, options)


def test_folder_path_is_a_folder(tmp_path):
    assert parse_uri(str(tmp_path)).kind == "folder"


@pytest.mark.parametrize("uri, message", [
    ("gopher://x", "unknown scheme 'gopher'"),
    ("v4l2://video0", "expected v4l2:///dev/videoN"),
    ("", "empty"),
    ("test://counter?speed=3", "unknown option 'speed'; this kind takes: count, fail_opens, fps"),
    ("v4l2:///dev/video0?size=big", "option size='big'"),
    ("rtsp://cam/s#transport=quic", "not tcp or udp"),
    ("test://counter?frames=some", "not one of auto, latest, every"),
    ("test://spiral", "unknown pattern"),
])
def test_bad_uris_say_what_and_how(uri, message):
    with pytest.raises(SourceError, match=message.replace("?", r"\?").replace("(", r"\(")):
        open_source(uri)


def test_options_from_python_are_defaults_the_uri_overrides():
    src = open_source("test://counter?fps=7", fps=50, stall_timeout=2, transport="tcp")  # transport: not a test option
    assert src.options["fps"] == 7.0 and src.common.stall_timeout == 2.0
    assert src.policy == "latest" and open_source("test://counter?live=0").policy == "every"
    assert open_source("clip.mp4").policy == "every" and open_source("clip.mp4?realtime=1").policy == "every"
    assert open_source("clip.mp4#realtime=1").policy == "latest"
    assert open_source("rtsp://cam/s", frames="every").policy == "every"


def test_v4l2_and_csi_settings():
    src = open_source("v4l2:///dev/video0?size=640x480&fps=30&format=YUYV")
    assert v4l2_options(src.options) == {"video_size": "640x480", "framerate": "30", "input_format": "yuyv422"}
    assert csi_pipeline(0, (1920, 1080), 30, 2) == (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,"
        "format=NV12 ! nvvidconv flip-method=2 ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink max-buffers=1 drop=true sync=false")


def test_csi_without_gstreamer_says_so():
    cv2 = pytest.importorskip("cv2")
    from edge_committee.stream.sources.csi import has_gstreamer

    if has_gstreamer(cv2):
        pytest.skip("this OpenCV has GStreamer")
    src = open_source("csi://0")
    with pytest.raises(SourceError, match="has no GStreamer.*JetPack's OpenCV"):
        src.open()


def test_counter_pattern_round_trips():
    for i in (0, 1, 5, 1234, 65535):
        assert read_counter(paint_counter(i, (64, 48))) == i
        assert read_counter(paint_counter(i, (30, 30))) == i


def test_import_stays_light_and_ec_stream_stays_callable(model):
    code = ("import sys, edge_committee, edge_committee.stream, edge_committee.cli.run; "
            "print(','.join(m for m in ('av', 'cv2', 'onnxruntime', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    import edge_committee.stream  # noqa: F401  (rebinds ec.stream to the module)

    batch = next(iter(ec.stream(model, "test://counter?count=1&live=0")))
    assert len(batch) == 1 and batch[0].frame_index == 0


def test_stream_loads_a_bundle_path(tiny_bundle):
    got = [r for b in ec.stream(str(tiny_bundle), ["test://counter?count=3&live=0&fps=0"], threads=1) for r in b]
    assert [r.frame_index for r in got] == [0, 1, 2]
