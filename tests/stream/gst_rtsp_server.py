"""A pull-mode RTSP server on 127.0.0.1 (GStreamer's gst-rtsp-server), for the tests.

    /usr/bin/python3 gst_rtsp_server.py PORT SECONDS

Serves ``rtsp://127.0.0.1:PORT/test``: a live 25 fps 64x48 test pattern as H.264, for at most
SECONDS, then exits. Runs under Debian's system Python, because PyGObject on PyPI is source-only;
needs python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,ugly}. The tests
skip when these are missing and stop the server by its pid.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=64,height=48,framerate=25/1 ! "
          "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! rtph264pay name=pay0 pt=96 )")


def main(port: int, seconds: float) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    loop = GLib.MainLoop()
    GLib.timeout_add(int(seconds * 1000), loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
