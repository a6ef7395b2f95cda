"""``task: video``: the clip and each member's view in the spec, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge_committee.errors import SpecError
from edge_committee.spec import load_spec
from tests.video_helpers import write_tiny_video


def edit(spec_path: Path, fn) -> Path:
    d = yaml.safe_load(spec_path.read_text())
    fn(d)
    spec_path.write_text(yaml.safe_dump(d, sort_keys=False))
    return spec_path


def test_video_spec(tmp_path: Path):
    spec = load_spec(write_tiny_video(tmp_path, clips=4))
    assert spec.task == "video" and spec.video.clip_frames == 8 and spec.segmentation is None
    small, large = spec.members
    assert (small.view.frames, small.view.stride, small.view.span) == (2, 4, 5)
    assert (large.view.frames, large.view.stride) == (8, 1) and small.preprocessing.size == (4, 4)
    spec = load_spec(edit(spec.source, lambda d: d["members"][1]["view"].pop("stride")))
    assert spec.members[1].view.stride == 1  # the default


def _view(i, **kw):
    return lambda d: d["members"][i]["view"].update(**kw)


@pytest.mark.parametrize("change, match", [
    (lambda d: d.pop("video"), "video: missing; a video committee needs its clip length"),
    (lambda d: d["video"].pop("clip_frames"), "video: missing key 'clip_frames'"),
    (lambda d: d["video"].update(clip_frames=0), "video.clip_frames: 0 must be an integer >= 1"),
    (lambda d: d["video"].update(fps=25), "video: unknown key 'fps'; allowed keys: clip_frames"),
    (lambda d: d.update(video=16), "video: expected a mapping, got int"),
    (lambda d: d["members"][0].pop("view"), r"members\[0\] \(small\): missing key 'view'"),
    (_view(0, frames=3, stride=4), r"members \(small\).view: 3 frames 4 apart span 9 frames, longer than the clip "
                                   r"\(video.clip_frames 8\); lower frames or stride, or raise clip_frames to 9"),
    (_view(1, frames=9), r"span 9 frames, longer than the clip"),
    (_view(0, stride=0), r"members\[0\] \(small\).view.stride: 0 must be an integer >= 1"),
    (_view(0, frames=1.5), r"view.frames: 1.5 must be an integer >= 1"),
    (_view(0, offset=2), r"view: unknown key 'offset'; allowed keys: frames, stride"),
    (lambda d: d["members"][0].update(view=[2, 4]), r"view: expected a mapping such as"),
    (lambda d: d["members"][0]["preprocessing"].update(layout="NHWC"), "set layout: NCHW"),
    (lambda d: d.update(combiner="learned"), "a video committee averages its members"),
    (lambda d: d.update(segmentation={"tile": 4}), "segmentation: given for task 'video'"),
])
def test_bad_video_spec_is_one_line(tmp_path: Path, change, match):
    path = edit(write_tiny_video(tmp_path, clips=4), change)
    with pytest.raises(SpecError, match=match) as err:
        load_spec(path)
    assert "\n" not in str(err.value)


def test_video_keys_need_the_task(tmp_path: Path):
    path = write_tiny_video(tmp_path, clips=4)
    with pytest.raises(SpecError, match=r"view: a clip view is for 'task: video' members"):
        load_spec(edit(path, lambda d: d.update(task="classification")))
    with pytest.raises(SpecError, match="video: given for task 'classification'; add 'task: video'"):
        load_spec(edit(path, lambda d: [m.pop("view") for m in d["members"]]))
