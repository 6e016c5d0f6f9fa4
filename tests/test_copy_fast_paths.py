"""Fast paths for avcli's own training copies. Augmenting on the device, clips travel as YUV planes and are
converted there: the pixels match the CPU conversion within FFmpeg's rounding, the augmentation parameters are
the same, training runs. Decoding stops at the frame on screen at the end of a window (exact frame durations):
the same frames as decoding one more."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avcli.cli import run
from avcli.data.catalog import Catalog
from avcli.data.clip_dataset import ClipDataset, collate_samples
from avcli.data.sample_spec import SampleSpec, Window
from avcli.media.clip_reader import ClipReader, ClipReadError
from avcli.media.frame_arrays import i420_clip, is_plain_i420
from avcli.data.video_transforms import augment_video_batch, split_i420, yuv420_to_rgb
from avcli.recipe import load_recipe
from avcli.recipe.schema import Augment, Clip
from avcli.train.loop import pretrain

from conftest import tiny_recipe_dict
from media_helpers import frame_index, write_counter_video, write_tone_video

COLOURS = [(200, 40, 40), (40, 180, 60), (30, 60, 220), (230, 200, 30), (120, 30, 160), (20, 200, 200),
           (250, 250, 250), (10, 10, 10)]


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """Eight coloured videos ingested with default options: copies 48×36 (wide) and 36×48 (tall)."""
    root = tmp_path_factory.mktemp("yuv")
    folder = root / "in"
    folder.mkdir()
    for k, colour in enumerate(COLOURS):
        size = (48, 36) if k % 2 == 0 else (36, 48)
        write_tone_video(folder / f"v{k}.mp4", colour, 300 + 50 * k, seconds=2.0, fps=16, size=size)
    assert run(["ingest", str(folder), "--out", str(root / "c"), "--workers", "1"]) == 0
    return root / "c"


def _items(catalog):
    with Catalog(catalog) as c:
        return c.items()


def test_i420_planes_convert_like_ffmpeg(copies):
    clip = Clip(frames=4, fps=8, size=32, resize=36, audio_seconds=1.0, sample_rate=16000)
    items = _items(copies)
    yuv = ClipDataset(items, clip, Augment(on_device=True, color_jitter=[0.4, 0.4, 0.4, 0.1]), train=True)
    rgb = ClipDataset(items, clip, Augment(on_device=True, color_jitter=[0.4, 0.4, 0.4, 0.1]), train=True)
    rgb.yuv = False  # the same clips through the CPU colour conversion
    assert yuv.yuv, "training copies at the recipe's short side should travel as YUV"
    specs = [SampleSpec((Window(i, 0.3 + 0.1 * i, 0.2),), seed=i) for i in range(len(items))]
    a = collate_samples([yuv[s] for s in specs])
    b = collate_samples([rgb[s] for s in specs])
    assert "video_raw" not in a and a["video_luma"].shape == (8, 4, 48, 48, 1)
    assert a["video_chroma"].shape == (8, 4, 24, 24, 2) and b["video_raw"].shape == (8, 4, 48, 48, 3)
    for key in ("crop", "flip", "jitter", "order"):  # the same parameters: drawn for the same frame size
        assert torch.equal(a["video_params"][key], b["video_params"][key])
    converted = yuv420_to_rgb(a["video_luma"], a["video_chroma"])
    for k in range(len(items)):  # compare inside each clip's own frame (the rest is padding)
        h, w = (36, 48) if k % 2 == 0 else (48, 36)
        diff = (converted[k, :, :h, :w].int() - b["video_raw"][k, :, :h, :w].int()).abs()
        assert diff.max() <= 3 and diff.float().mean() < 1.5
    out_a = augment_video_batch(converted, a["video_params"], 32)
    out_b = augment_video_batch(b["video_raw"], b["video_params"], 32)
    assert (out_a - out_b).abs().mean() < 0.05  # ImageNet-normalised units: about 1 code level


def test_conversion_of_known_colours():
    # pure colours through BT.601 limited range: (Y, U, V) of red, green, blue, white, black (rounded values)
    yuv = torch.tensor([[81, 90, 240], [145, 54, 34], [41, 240, 110], [235, 128, 128], [16, 128, 128]])
    expected = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]])
    luma = yuv[:, 0].view(5, 1, 1, 1).expand(5, 2, 2, 1).to(torch.uint8)
    chroma = yuv[:, 1:].view(5, 1, 1, 2).to(torch.uint8)
    rgb = yuv420_to_rgb(luma, chroma)
    assert rgb.shape == (5, 2, 2, 3)
    assert (rgb[:, 0, 0].int() - expected).abs().max() <= 2


def test_split_i420_layout():
    T, H, W = 2, 4, 6
    planes = torch.arange(T * H * 3 // 2 * W, dtype=torch.int64).view(T, H * 3 // 2, W) % 256
    luma, chroma = split_i420(planes.to(torch.uint8))
    assert luma.shape == (T, H, W, 1) and chroma.shape == (T, H // 2, W // 2, 2)
    flat = planes[1].reshape(-1)
    assert torch.equal(luma[1, :, :, 0].reshape(-1), flat[: H * W].to(torch.uint8))
    assert torch.equal(chroma[1, :, :, 0].reshape(-1), flat[H * W : H * W + H * W // 4].to(torch.uint8))  # U
    assert torch.equal(chroma[1, :, :, 1].reshape(-1), flat[H * W + H * W // 4 :].to(torch.uint8))  # V


def test_pretraining_on_copies_with_device_augmentation(copies, tmp_path, write_recipe, monkeypatch):
    import avcli.train.loop as loop

    converted = []
    monkeypatch.setattr(loop, "yuv420_to_rgb", lambda *a: converted.append(a[0].shape) or yuv420_to_rgb(*a))
    recipe = tiny_recipe_dict(copies, tmp_path / "run")
    recipe["data"]["augment"]["on_device"] = True
    summary = pretrain(load_recipe(write_recipe(recipe)))
    assert summary["steps"] == 6 and np.isfinite(summary["final_loss"])
    assert len(converted) >= 6 and converted[0][1:] == (4, 48, 48, 1)  # every step's clips came as YUV


def test_stopping_on_exact_durations_reads_the_same_frames(copies):
    decoded = {}
    for exact in (False, True):
        out = []
        for item in _items(copies):
            with ClipReader(item.source, item.video_stream, exact_durations=exact) as reader:
                rng = np.random.default_rng(0)
                for start in rng.uniform(-0.1, item.duration_s, 25).tolist() + [0.0, 0.0625, 0.5, 1.0]:
                    windows = [(start, 4, 1 / 8), (start + 0.3, 3, 1 / 16), (start, 5, 1 / 16)]
                    out.extend(reader.read_video_windows(windows))
        decoded[exact] = out
    assert len(decoded[True]) == 8 * 29 * 3
    for a, b in zip(decoded[False], decoded[True]):
        assert torch.equal(a, b)


def test_yuv_planes_are_those_of_pyav(copies):
    import av

    item = _items(copies)[1]  # 36×48: chroma rows narrower than their line size
    with av.open(item.source) as container, ClipReader(item.source) as reader:
        frames = [frame for _, frame in zip(range(6), container.decode(video=0))]
        picks = [0, 1, 2, 2, 3, 4, 5, 5]  # a frame shown twice is copied once and reused
        assert all(is_plain_i420(f, 36) for f in frames) and not is_plain_i420(frames[0], 24)
        planes = i420_clip([frames[p] for p in picks], picks, {})
        assert planes.shape == (8, 72, 36)
        for k, p in enumerate(picks):
            assert np.array_equal(planes[k], frames[p].to_ndarray())
        with pytest.raises(ClipReadError, match="short side 24"):
            reader.read_video_windows([(0.0, 2, 1 / 16)], 24, yuv=True)


class _CountingPacket:
    def __init__(self, packet, owner):
        self.packet, self.owner = packet, owner

    def __getattr__(self, name):
        return getattr(self.packet, name)

    def decode(self):
        self.owner.decoded.append(self.packet.pts)
        return self.packet.decode()


class _CountingContainer:
    """The reader's container, counting the packets handed to the decoder."""

    def __init__(self, container):
        self.container, self.decoded = container, []

    def __getattr__(self, name):
        return getattr(self.container, name)

    def demux(self, *args, **kwargs):
        for packet in self.container.demux(*args, **kwargs):
            yield _CountingPacket(packet, self)


@pytest.fixture(scope="module")
def counter_copy(tmp_path_factory):
    """A 60-frame 16 fps counter video (frame k grey 4·k) ingested with default options: keyframes every 8 frames."""
    root = tmp_path_factory.mktemp("sparse")
    (root / "in").mkdir()
    write_counter_video(root / "in" / "c.mp4", frames=60, fps=16, size=(48, 32))
    assert run(["ingest", str(root / "in"), "--out", str(root / "c"), "--workers", "1"]) == 0
    return _items(root / "c")[0]


def test_sparse_reads_of_copies_equal_dense_reads_and_decode_only_what_they_need(counter_copy):
    import av

    with av.open(counter_copy.source) as container:  # frame index of each keyframe
        pts = [p.pts for p in container.demux(video=0) if p.size]
    with av.open(counter_copy.source) as container:
        keyframes = [k for k, p in enumerate(p for p in container.demux(video=0) if p.size) if p.is_keyframe]
    assert keyframes[:4] == [0, 8, 16, 24]
    cases = [
        [(0.0, 4, 8 / 16)],  # 8×: frames 0, 8, 16, 24, all keyframes
        [(0.1, 8, 4 / 16)],  # 4×
        [(0.3, 8, 2 / 16), (2.0, 4, 1 / 16)],  # 2× and a clip 1 s later
        [(0.2, 4, 1 / 16), (0.3, 4, 1 / 16), (3.5, 4, 1 / 16)],  # overlapping, and one past the end
    ]
    for windows in cases:
        with ClipReader(counter_copy.source, exact_durations=True) as sparse, ClipReader(counter_copy.source) as dense:
            sparse.container = _CountingContainer(sparse.container)
            dense.container = _CountingContainer(dense.container)
            a, b = sparse.read_video_windows(windows), dense.read_video_windows(windows)
        needed = set()
        for (start, frames, step), clip_a, clip_b in zip(windows, a, b):
            assert torch.equal(clip_a, clip_b)
            indices = [min(int((start + k * step) * 16 + 1e-6), 59) for k in range(frames)]
            assert [frame_index(f.numpy()) for f in clip_a] == indices
            needed.update(indices)
        # each needed frame costs the frames from its keyframe up to it, shared where those ranges overlap
        expected = set()
        for f in needed:
            expected.update(range(max(k for k in keyframes if k <= f), f + 1))
        assert sorted(pts.index(p) for p in sparse.container.decoded) == sorted(expected)
        assert len(sparse.container.decoded) <= len(dense.container.decoded)  # 8×: 4 packets against 26


def test_sparse_reading_falls_back_to_dense_on_a_stream_with_b_frames(tmp_path):
    import av

    path = tmp_path / "b.mp4"  # frame k grey 4·k, with B-frames: decode order is not display order
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=16)
        video.width, video.height, video.pix_fmt = 48, 32, "yuv420p"
        video.options = {"crf": "10", "preset": "medium", "x264-params": "bframes=3:b-adapt=0:keyint=16"}
        for k in range(48):
            image = np.full((32, 48, 3), 4 * k, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        assert any(p.pts != p.dts for p in container.demux(video=0) if p.size)  # B-frames are there
    windows = [(0.3, 4, 4 / 16), (0.4, 3, 1 / 16)]
    with ClipReader(path, exact_durations=True) as sparse, ClipReader(path) as dense:
        sparse.container = _CountingContainer(sparse.container)
        a, b = sparse.read_video_windows(windows), dense.read_video_windows(windows)
    for (start, frames, step), clip_a, clip_b in zip(windows, a, b):
        assert torch.equal(clip_a, clip_b)
        assert [frame_index(f.numpy()) for f in clip_a] == [int((start + k * step) * 16 + 1e-6) for k in range(frames)]
