"""ClipReader: frames and audio on one timeline, on generated media with known timing and on real files."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from avcli.media.clip_reader import ClipReadError, ClipReader
from avcli.media.probe import probe_media

from conftest import SHARED_MEDIA, needs_shared
from media_helpers import first_onset, frame_index, write_counter_video


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    return write_counter_video(tmp_path_factory.mktemp("m") / "counter.mp4", clicks_s=(0.5, 1.25))


def test_frames_are_the_ones_on_screen_at_each_instant(counter):
    with ClipReader(counter) as reader:
        clip = reader.read_video(0.4, 4, 5.0).numpy()  # instants 0.4, 0.6, 0.8, 1.0 s at 25 fps source
    assert clip.shape == (4, 32, 48, 3) and clip.dtype == np.uint8
    assert [frame_index(f) for f in clip] == [10, 15, 20, 25]


def test_same_rate_reads_consecutive_frames_and_pads_past_the_end(counter):
    with ClipReader(counter) as reader:
        assert [frame_index(f) for f in reader.read_video(1.0, 3, 25.0).numpy()] == [25, 26, 27]
        tail = reader.read_video(1.9, 5, 25.0).numpy()  # the file has frames 0..49 (ends at 2.0 s)
    assert [frame_index(f) for f in tail] == [47, 48, 49, 49, 49]


def test_short_side_resize_keeps_aspect(counter):
    with ClipReader(counter) as reader:
        clip = reader.read_video(0.0, 2, 25.0, short_side=16)
    assert tuple(clip.shape) == (2, 16, 24, 3)


def test_audio_window_is_on_the_video_timeline(counter):
    with ClipReader(counter) as reader:
        audio = reader.read_audio(0.25, 1.5, 16000).numpy()
        resampled = reader.read_audio(1.0, 0.5, 24000).numpy()
    assert audio.shape == (24000,) and audio.dtype == np.float32
    assert first_onset(audio, 16000) == pytest.approx(0.25, abs=0.002)  # click at 0.5 s, window from 0.25 s
    assert first_onset(resampled, 24000) == pytest.approx(0.25, abs=0.002)  # click at 1.25 s


def test_audio_past_the_end_is_zero_padded(counter):
    with ClipReader(counter) as reader:
        audio = reader.read_audio(1.5, 2.0, 16000).numpy()
    assert audio.shape == (32000,)
    assert np.abs(audio[int(0.6 * 16000) :]).max() == 0.0


def test_video_without_audio_stream_reads_silence(tmp_path):
    path = write_counter_video(tmp_path / "mute.mp4", audio=False)
    with ClipReader(path) as reader:
        assert reader.read_audio(0.0, 1.0, 8000).abs().sum() == 0
        assert reader.read_video(0.0, 2, 25.0).shape[0] == 2


def _direct_frame(path, stream_index, t):
    """The frame on screen at `t` by decoding from the start (the reference)."""
    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        chosen = None
        for frame in container.decode(stream):
            if frame.time - origin <= t + 1e-6:
                chosen = frame
            else:
                break
        return chosen


REAL = ["bigbuckbunny.mp4", "bad-keyframes.mp4", "hevc.ts", "nasa_13013.mp4", "stream-of-water.mp4",
        "no_duration.webm", "archery_ucf101.avi", "bbb_480p_vp9_opus_1second.webm", "fire2.mp4"]


@pytest.mark.parametrize("name", REAL)
def test_real_files_read_clips_matching_a_direct_decode(name):
    path = SHARED_MEDIA / name
    if not path.exists():
        pytest.skip("../shared/data/media is not beside the repository")
    info = probe_media(path)
    t = min(0.6, info.duration_s / 2)
    with ClipReader(path) as reader:
        clip = reader.read_video(t, 4, 8.0, short_side=64).numpy()
        audio = reader.read_audio(0.0, 1.0, 16000).numpy()
    assert clip.shape[0] == 4 and min(clip.shape[1:3]) == 64 and clip.shape[3] == 3
    assert audio.shape == (16000,) and np.isfinite(audio).all()
    reference = _direct_frame(path, info.video_stream, t)
    w, h = (reference.width, reference.height)
    scale = 64 / min(w, h)
    ref = reference.reformat(width=round(w * scale), height=round(h * scale), format="rgb24").to_ndarray()
    turns = round((reference.rotation or 0) / 90) % 4
    ref = np.rot90(ref, k=turns)
    assert np.abs(clip[0].astype(int) - ref.astype(int)).mean() < 2.0


def test_rotated_phone_clip_is_returned_upright():
    path = SHARED_MEDIA / "fire2.mp4"
    if not path.exists():
        pytest.skip("../shared/data/media is not beside the repository")
    with av.open(str(path)) as container:
        raw = next(container.decode(video=0))
        stored = raw.reformat(width=64, height=36, format="rgb24").to_ndarray()
    with ClipReader(path) as reader:
        clip = reader.read_video(0.0, 1, 10.0, short_side=36).numpy()[0]
    assert raw.rotation in (180, -180)
    assert np.abs(clip.astype(int) - stored[::-1, ::-1].astype(int)).mean() < 2.0


def test_real_audio_is_decoded_and_silent_track_reads_zeros():
    if not SHARED_MEDIA.exists():
        pytest.skip("../shared/data/media is not beside the repository")
    with ClipReader(SHARED_MEDIA / "bigbuckbunny.mp4") as reader:
        assert reader.read_audio(1.0, 2.0, 24000).abs().max() > 0.01
    with ClipReader(SHARED_MEDIA / "stream-of-water-audioless.webm") as reader:
        assert reader.read_audio(1.0, 2.0, 24000).abs().max() < 1e-4


def test_a_read_does_not_depend_on_earlier_reads(tmp_path):
    """Decoders are flushed and pre-rolled at every seek: the same window gives the same samples and frames
    whatever was read before (this is what makes resumed training bit-identical)."""
    path = write_counter_video(tmp_path / "c.mp4", frames=75, clicks_s=(1.0, 1.7))
    with ClipReader(path) as reader:
        audio, video = reader.read_audio(1.3, 1.0, 16000), reader.read_video(1.3, 3, 10.0)
    for earlier in (0.2, 2.5):
        with ClipReader(path) as reader:
            reader.read_audio(earlier, 1.0, 16000)
            reader.read_video(earlier, 3, 10.0)
            assert torch.equal(reader.read_audio(1.3, 1.0, 16000), audio)
            assert torch.equal(reader.read_video(1.3, 3, 10.0), video)


@needs_shared
def test_ogg_theora_empty_packets_are_repeated_frames_not_the_end(tmp_path):
    # mov_bbb.ogg has zero-byte video packets from 8.36 s ("repeat the previous frame"); decoding them fails in
    # FFmpeg, so a reader that does not skip them stops there and repeats the 8.36 s frame to the end.
    with ClipReader(SHARED_MEDIA / "mov_bbb.ogg") as reader:
        early = reader.read_video(8.3, 1, 8.0).float()
        late = reader.read_video(9.6, 1, 8.0).float()
    assert (early - late).abs().mean() > 5


def test_several_windows_read_in_one_pass_equal_separate_reads(counter):
    # overlapping windows, frame skipping, and one past the end of the 2 s file (repeats the last frame)
    windows = [(1.2, 4, 2 / 25), (0.2, 4, 1 / 25), (0.36, 3, 4 / 25), (3.0, 2, 1 / 25)]
    with ClipReader(counter) as reader:
        together = reader.read_video_windows(windows)
    for (start, frames, step), clip in zip(windows, together):
        with ClipReader(counter) as reader:
            alone = reader.read_video(start, frames, 1 / step)
        assert torch.equal(clip, alone)
        expected = [min(int((start + k * step) * 25 + 1e-6), 49) for k in range(frames)]
        assert [frame_index(f.numpy()) for f in clip] == expected


def test_sound_files_open_audio_only(tmp_path):
    from media_helpers import write_tone_audio

    path = write_tone_audio(tmp_path / "tone.wav", 500.0, seconds=1.5)
    with pytest.raises(ClipReadError, match="no video stream"):
        ClipReader(path)
    with ClipReader(path, audio_only=True) as reader:
        assert reader.video is None and reader.duration_s == pytest.approx(1.5)
        samples = reader.read_audio(0.5, 0.5, 16000)
        expected = 0.5 * torch.sin(2 * torch.pi * 500 * torch.arange(8000, 16000) / 16000)
        assert torch.allclose(samples, expected, atol=2e-3)
        with pytest.raises(ClipReadError, match="opened as a sound file"):
            reader.read_video(0.0, 2, 8.0)


def test_a_single_frame_flac_that_ffmpeg_cannot_seek_reads_the_same_every_time(tmp_path):
    from media_helpers import write_tone_audio

    path = write_tone_audio(tmp_path / "click.flac", 1000.0, seconds=0.02, sample_rate=44100)
    with av.open(str(path)) as container, pytest.raises(av.error.FFmpegError):
        container.seek(0, stream=container.streams.audio[0], backward=True)  # why ClipReader reopens instead
    with ClipReader(path, audio_only=True) as reader:
        first, again = reader.read_audio(0.0, 0.02, 16000), reader.read_audio(0.0, 0.02, 16000)
        assert torch.equal(first, again) and first.abs().max() > 0.4 and first.shape == (320,)
