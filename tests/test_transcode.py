"""transcode: the training copy (layout, timing, rotation, audio), partial decodes, silence and shot detection."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from avcli.media.clip_reader import ClipReader
from avcli.media.probe import probe_media
from avcli.media.shots import colour_histogram, detect_shots
from avcli.media.transcode import TranscodeOptions, transcode

from conftest import SHARED_MEDIA, needs_shared
from media_helpers import first_onset, frame_index, write_counter_video

# ------------------------------------------------------------------------------------------ helpers


def transcode_probed(src: Path, dest: Path, **options):
    """Transcode with the streams, start and rotation probe_media finds (as ingest does)."""
    info = probe_media(src, allow_no_audio=True)
    assert info.ok, info.reject_reason
    return transcode(
        src, dest, video_stream=info.video_stream, audio_stream=info.audio_stream, rotation=info.rotation,
        start_s=info.start_s, options=TranscodeOptions(**options),
    )


def copy_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(frame.time, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def copy_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([frame.to_ndarray()[0] for frame in container.decode(stream)])
        return samples.astype(np.float32) / 32768.0, stream.codec_context.sample_rate


def write_frames(path: Path, images: list[np.ndarray], fps: int = 25, codec: str = "libx264", garbage_from=None):
    """A video of the given RGB images; packets from index `garbage_from` on are replaced by bytes no decoder
    accepts (a file that decodes part way, or not at all)."""
    height, width = images[0].shape[:2]
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "10", "preset": "ultrafast"}
        for k, image in enumerate(images + [None]):
            packets = stream.encode(None if image is None else av.VideoFrame.from_ndarray(image, format="rgb24"))
            for packet in packets:
                if garbage_from is not None and k >= garbage_from:
                    bad = av.Packet(b"\x00 not an image " * 8)
                    bad.pts, bad.dts, bad.time_base, bad.stream = packet.pts, packet.dts, packet.time_base, stream
                    packet = bad
                container.mux(packet)
    return path


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    """50 frames at 25 fps (frame k has grey level 4k), clicks at 0.5 s and 1.3 s, 48x32."""
    return write_counter_video(tmp_path_factory.mktemp("src") / "counter.mp4", clicks_s=(0.5, 1.3))


@pytest.fixture(scope="module")
def counter_copy(counter, tmp_path_factory):
    dest = tmp_path_factory.mktemp("copy") / "counter.mkv"
    result = transcode(counter, dest, video_stream=0, audio_stream=1, rotation=0, start_s=0.0,
                       options=TranscodeOptions())
    return dest, result


# ------------------------------------------------------------------------------------------ layout


def test_counter_copy_layout_fps_and_result(counter_copy):
    dest, result = counter_copy
    assert result.error is None and result.flags == [] and result.decode_error_at_s is None
    # a 48x32 source is never upscaled to the 128 px short side
    assert (result.width, result.height, result.fps, result.audio_rate) == (48, 32, 16.0, 24000)
    assert result.duration_s == pytest.approx(2.0)
    info = probe_media(dest)
    assert info.container.startswith("matroska") and (info.video_codec, info.audio_codec) == ("h264", "flac")
    assert (info.width, info.height, info.fps, info.audio_rate, info.audio_channels) == (48, 32, 16.0, 24000, 1)
    assert info.duration_s == pytest.approx(2.0, abs=1e-3)
    assert not dest.with_name(dest.name + ".partial").exists()
    with av.open(str(dest)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_short_side_aspect_and_even_dims(tmp_path):
    src = write_counter_video(tmp_path / "wide.mp4", frames=10, size=(200, 120), audio=False)
    result = transcode(src, tmp_path / "wide.mkv", video_stream=0, audio_stream=None, rotation=0, start_s=0.0,
                       options=TranscodeOptions(short_side=64))
    assert result.height == 64 and result.width % 2 == 0 and result.width == 106  # 200·64/120 = 106.7
    assert abs(result.width / result.height - 200 / 120) < 2 / result.height
    assert result.audio_rate is None
    info = probe_media(tmp_path / "wide.mkv", allow_no_audio=True)
    assert (info.width, info.height, info.audio_stream) == (106, 64, None)


def test_keyframe_at_least_every_interval(tmp_path):
    src = write_counter_video(tmp_path / "long.mp4", frames=100, gop=100)  # 4 s, a single source keyframe
    dest = tmp_path / "long.mkv"
    result = transcode(src, dest, video_stream=0, audio_stream=1, rotation=0, start_s=0.0,
                       options=TranscodeOptions(keyframe_interval_s=1.0))
    with av.open(str(dest)) as container:
        stream = container.streams.video[0]
        keys = [float(p.pts * p.time_base) for p in container.demux(stream) if p.size and p.is_keyframe]
    assert keys[0] == 0.0
    assert np.diff(keys + [result.duration_s]).max() <= 1.0 + 1e-3


# ------------------------------------------------------------------------------------------ timing


def test_output_frame_k_shows_source_frame_at_k_over_fps(counter_copy):
    dest, _ = counter_copy
    frames = copy_frames(dest)
    assert len(frames) == 32  # 2 s at 16 fps
    assert [frame_index(image) for _, image in frames] == [k * 25 // 16 for k in range(32)]
    # timestamps are whole ms rounded down: frame k never starts after k/fps (a "latest at or before" reader)
    for k, (time, _) in enumerate(frames):
        assert k / 16 - 1e-3 < time <= k / 16 + 1e-9


def test_clip_reader_reads_the_copy_on_the_same_timeline(counter_copy):
    dest, _ = counter_copy
    with ClipReader(dest) as reader:
        clip = reader.read_video(0.5, 8, 16.0).numpy()
        sound = reader.read_audio(1.0, 0.6, 24000).numpy()
    assert [frame_index(f) for f in clip] == [(8 + i) * 25 // 16 for i in range(8)]
    assert first_onset(sound, 24000) == pytest.approx(0.3, abs=1.5e-3)


def test_audio_clicks_land_at_the_same_time(counter, counter_copy):
    dest, _ = counter_copy
    audio, rate = copy_audio(dest)
    assert rate == 24000 and len(audio) == 48000  # exactly the video duration
    with av.open(str(counter)) as container:  # the source as decoded (AAC smears a click by a little)
        source = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    def onset_near(signal, signal_rate, click):
        lo = click - 0.2
        return lo + first_onset(signal[int(lo * signal_rate) : int((click + 0.2) * signal_rate)], signal_rate)

    for click in (0.5, 1.3):
        onset = onset_near(audio, rate, click)
        assert onset == pytest.approx(onset_near(source, 16000, click), abs=1e-3 + 1 / 16000)
        assert onset == pytest.approx(click, abs=1.5e-3)


def test_start_offset_shifts_video_and_audio_together(counter, tmp_path):
    dest = tmp_path / "shifted.mkv"
    result = transcode(counter, dest, video_stream=0, audio_stream=1, rotation=0, start_s=0.6,
                       options=TranscodeOptions())
    assert result.duration_s == pytest.approx(1.4, abs=1 / 16)
    frames = copy_frames(dest)
    assert [frame_index(image) for _, image in frames] == [int((k / 16 + 0.6) * 25 + 1e-9) for k in range(23)]
    audio, rate = copy_audio(dest)
    assert len(audio) == round(result.duration_s * rate)
    assert first_onset(audio, rate) == pytest.approx(0.7, abs=1.5e-3)  # the click at 1.3 s; the one at 0.5 s is cut


def test_timeline_starting_before_the_source_repeats_frame_0_and_pads_silence(counter, tmp_path):
    # start_s = -0.25: the timeline starts 0.25 s before the first source frame and the first sound
    dest = tmp_path / "padded.mkv"
    result = transcode(counter, dest, video_stream=0, audio_stream=1, rotation=0, start_s=-0.25,
                       options=TranscodeOptions())
    frames = copy_frames(dest)
    assert frame_index(frames[0][1]) == 0 and frame_index(frames[8][1]) == 6  # 0.5 s → source 0.25 s
    audio, rate = copy_audio(dest)
    assert len(audio) == round(result.duration_s * rate)
    assert first_onset(audio, rate) == pytest.approx(0.75, abs=1.5e-3)


# ------------------------------------------------------------------------------------------ rotation


def test_rotation_90_follows_the_clip_reader_convention(tmp_path):
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :16] = (255, 0, 0)  # a red band on the left edge
    src = write_frames(tmp_path / "band.mkv", [image] * 8)
    dest = tmp_path / "band_rot.mkv"
    result = transcode(src, dest, video_stream=0, audio_stream=None, rotation=90, start_s=0.0,
                       options=TranscodeOptions(short_side=16))
    assert (result.width, result.height) == (16, 32)
    copy = copy_frames(dest)[0][1].astype(float)
    small = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(width=32, height=16).to_ndarray()
    expected = np.rot90(small, k=1).astype(float)  # ClipReader: np.rot90(image, k=round(rotation / 90) % 4)
    assert np.abs(copy - expected).mean() < 8
    assert np.abs(copy - np.rot90(small, k=3)).mean() > 40


@needs_shared
def test_fire2_vfr_rotated_becomes_upright_cfr(tmp_path):
    src = SHARED_MEDIA / "fire2.mp4"
    dest = tmp_path / "fire2.mkv"
    result = transcode_probed(src, dest)
    assert result.error is None and result.flags == []
    assert (result.width, result.height) == (228, 128)  # 1280x720, rotation -180
    frames = copy_frames(dest)
    assert len(frames) == round(result.duration_s * 16) and result.duration_s == pytest.approx(2.38, abs=1 / 16)
    assert np.allclose(np.diff([t for t, _ in frames]), 1 / 16, atol=1e-3)  # constant rate
    with av.open(str(dest)) as container:
        assert not next(container.decode(video=0)).rotation  # upright pixels, no display matrix left over
    with av.open(str(src)) as container:  # the source frame on screen at 1.0 s, rotated by hand
        source = [(f.time, f) for f in container.decode(video=0)]
    on_screen = [f for t, f in source if t <= 1.0][-1]
    direct = on_screen.reformat(width=228, height=128, format="rgb24").to_ndarray().astype(float)
    copy = frames[16][1].astype(float)
    upright_error = np.abs(copy - np.rot90(direct, k=2)).mean()
    assert upright_error < 8 and upright_error < 0.5 * np.abs(copy - direct).mean()


# ------------------------------------------------------------------------------------------ real files


@needs_shared
def test_nasa_default_streams(tmp_path):
    src = SHARED_MEDIA / "nasa_13013.mp4"
    info = probe_media(src)
    assert (info.video_stream, info.audio_stream) == (3, 1)  # the default video stream is not the first
    dest = tmp_path / "nasa.mkv"
    result = transcode_probed(src, dest)
    assert result.error is None and result.flags == []
    assert (result.width, result.height) == (228, 128) and result.duration_s == pytest.approx(13.013, abs=1 / 16)
    copy = copy_frames(dest)
    assert len(copy) == round(result.duration_s * 16)
    with av.open(str(src)) as container:  # stream 3 (480x270, 29.97 fps), the frame on screen at 6 s
        frame = [f for f in container.decode(container.streams[3]) if f.time <= 6.0][-1]
    direct = frame.reformat(width=228, height=128, format="rgb24").to_ndarray().astype(float)
    assert np.abs(copy[96][1].astype(float) - direct).mean() < 8
    audio, rate = copy_audio(dest)
    assert len(audio) == round(result.duration_s * rate) and np.abs(audio).max() > 0.05


@needs_shared
def test_mov_bbb_decodes_to_the_end(tmp_path):
    """Its Theora track has zero-size packets (repeated frames) from 8.36 s on; sending those to the decoder
    fails with EINVAL, which looks like a broken file. Skipped, the whole 10 s decode."""
    dest = tmp_path / "bbb.mkv"
    result = transcode_probed(SHARED_MEDIA / "mov_bbb.ogg", dest)
    assert result.error is None and "partial_decode" not in result.flags and result.decode_error_at_s is None
    assert result.duration_s == pytest.approx(10.0, abs=1 / 16)
    frames = copy_frames(dest)
    assert len(frames) == 160
    # the picture keeps moving after 8.36 s (the last frame before the first empty packet is frame 133)
    before = frames[133][1].astype(float)
    assert np.abs(frames[159][1].astype(float) - before).mean() > 4


def test_partial_decode_keeps_the_good_part(tmp_path):
    images = [np.full((24, 32, 3), 8 * k, np.uint8) for k in range(30)]
    src = write_frames(tmp_path / "broken.mkv", images, fps=20, codec="mjpeg", garbage_from=25)
    dest = tmp_path / "broken_copy.mkv"
    result = transcode(src, dest, video_stream=0, audio_stream=None, rotation=0, start_s=0.0,
                       options=TranscodeOptions())
    assert result.error is None and "partial_decode" in result.flags
    assert result.decode_error_at_s == pytest.approx(1.25, abs=0.05)  # frame 25 at 20 fps
    assert dest.exists() and result.duration_s == pytest.approx(1.25, abs=1 / 16)
    frames = copy_frames(dest)
    assert len(frames) == 20 and probe_media(dest, allow_no_audio=True).duration_s == pytest.approx(1.25, abs=1e-3)
    assert np.allclose([image.mean() / 8 for _, image in frames], [k * 20 // 16 for k in range(20)], atol=0.5)


def test_nothing_decodable_leaves_no_file(tmp_path):
    images = [np.full((24, 32, 3), 100, np.uint8)] * 10
    src = write_frames(tmp_path / "garbage.mkv", images, codec="mjpeg", garbage_from=0)
    dest = tmp_path / "garbage_copy.mkv"
    dest.write_bytes(b"an older copy")  # replaced by nothing: no file may claim to be this source's copy
    result = transcode(src, dest, video_stream=0, audio_stream=None, rotation=0, start_s=0.0,
                       options=TranscodeOptions())
    assert result.error == "undecodable at 0.0 s"
    assert not dest.exists() and not dest.with_name(dest.name + ".partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.mkv"]


@needs_shared
@pytest.mark.parametrize("name", ["stream-of-water-audioless.webm", "no_duration.webm"])
def test_silent_audio_is_flagged(tmp_path, name):
    result = transcode_probed(SHARED_MEDIA / name, tmp_path / "copy.mkv")
    assert result.error is None and result.flags == ["silent_audio"] and result.audio_rate == 24000


@needs_shared
def test_real_sound_is_not_flagged_silent(tmp_path):
    result = transcode_probed(SHARED_MEDIA / "stream-of-water.mp4", tmp_path / "copy.mkv")
    assert result.error is None and result.flags == []


@needs_shared
def test_bad_keyframes_transcodes_fully(tmp_path):
    dest = tmp_path / "bad.mkv"
    result = transcode_probed(SHARED_MEDIA / "bad-keyframes.mp4", dest)
    assert result.error is None and result.flags == [] and result.duration_s == pytest.approx(5.0)
    assert len(copy_frames(dest)) == 80


def test_stale_partial_is_overwritten(counter, tmp_path):
    dest = tmp_path / "copy.mkv"
    stale = dest.with_name(dest.name + ".partial")
    stale.write_bytes(b"left by a killed run" * 1000)
    result = transcode(counter, dest, video_stream=0, audio_stream=1, rotation=0, start_s=0.0,
                       options=TranscodeOptions())
    assert result.error is None and not stale.exists()
    assert len(copy_frames(dest)) == 32


# ------------------------------------------------------------------------------------------ shots


def test_shots_in_flat_colour_segments(tmp_path):
    colours = [(200, 30, 30)] * 38 + [(30, 200, 30)] * 37 + [(30, 30, 200)] * 25  # cuts at 1.52 s and 3.0 s
    images = [np.full((48, 64, 3), c, np.uint8) for c in colours]
    src = write_frames(tmp_path / "shots.mkv", images)
    result = transcode(src, tmp_path / "shots_copy.mkv", video_stream=0, audio_stream=None, rotation=0,
                       start_s=0.0, options=TranscodeOptions())
    assert len(result.shots) == 2
    assert result.shots[0] == pytest.approx(1.52, abs=1 / 16) and result.shots[1] == pytest.approx(3.0, abs=1 / 16)


def test_no_shot_in_a_smoothly_changing_video(counter_copy):
    assert counter_copy[1].shots == []


def test_detect_shots_on_arrays():
    red, green = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], green[..., 1] = 220, 220
    frames = [red] * 20 + [green] * 4 + [red] * 20  # cuts at 20 and 24: the second is within min_shot_s
    assert detect_shots(frames, fps=10, threshold=0.4, min_shot_s=1.0) == [2.0]
    assert detect_shots(frames, fps=10, threshold=0.4, min_shot_s=0.2) == [2.0, 2.4]
    hists = [colour_histogram(f) for f in frames]
    assert detect_shots(hists, fps=10, threshold=0.4, min_shot_s=0.2) == [2.0, 2.4]
    ramp = [np.full((8, 8, 3), v, np.uint8) for v in range(0, 256, 8)]  # a fade: soft bins, no cut
    assert detect_shots(ramp, fps=10, threshold=0.4, min_shot_s=0.0) == []
    hist = colour_histogram(red)
    assert hist.shape == (24,) and hist.sum() == pytest.approx(1.0)
