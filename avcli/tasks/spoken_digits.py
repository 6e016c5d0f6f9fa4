"""Spoken digits generated with espeak-ng: a short-sound test set that needs no download.

"zero" … "nine", each spoken by several voices (an espeak-ng accent + a voice variant) at several speaking rates
and pitches, trimmed to the spoken sound (0.25–0.9 s, half a second typically, like the Free Spoken Digit
Dataset or one-shot samples), with a little white noise (a random SNR per file) and a random gain, as 16 kHz
WAV. The split is by voice: the test voices share neither their accent nor their variant with any training
voice. The result is a `csv` task:

    python -m avcli.tasks.spoken_digits OUT              # OUT/spoken_digits.csv + OUT/<voice>/*.wav
    avcli probe --task csv --data-root OUT/spoken_digits.csv --checkpoint random --recipe recipes/xid.yaml

espeak-ng is a Debian/Ubuntu package (`apt-get install espeak-ng`); generated audio is never committed.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torchaudio.functional import resample

from avcli.errors import UsageError

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# accent+variant; the test voices share no accent and no variant with the training voices
TRAIN_VOICES = ("en-us+m1", "en-us+f2", "en-gb+m3", "en-gb+f1", "en-gb-scotland+m4", "en-gb-scotland+f3",
                "en-029+m5", "en-029+f5", "en-gb-x-gbclan+m2", "en-gb-x-gbclan+m8")
TEST_VOICES = ("en-gb-x-rp+m6", "en-gb-x-rp+f4", "en-us-nyc+m7", "en-gb-x-gbcwmd+f4")
RATES = (130, 165, 200)  # words per minute (espeak-ng -s)
PITCHES = (30, 50, 70)  # 0-99 (espeak-ng -p)
SMALL = {"rates": (150,), "pitches": (35, 65)}  # the test suite's set: every voice, 2 variants (200 train, 80 test)
CSV_NAME = "spoken_digits.csv"
SAMPLE_RATE = 16000  # espeak-ng speaks at 22.05 kHz; written at 16 kHz (speech needs no more, resampling is cheap)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _speak(text: str, voice: str, rate: int, pitch: int, path: Path) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(path), text],
                   check=True, capture_output=True)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as fh:
        rate, raw = fh.getframerate(), fh.readframes(fh.getnframes())
    return np.frombuffer(raw, np.int16).astype(np.float32) / 32768, rate


def _write_wav(path: Path, signal: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes((np.clip(signal, -1, 1) * 32767).round().astype(np.int16).tobytes())


def trim_and_noise(signal: np.ndarray, rate: int, rng: random.Random, snr_db: tuple[float, float] = (20, 35),
                   threshold: float = 0.01) -> np.ndarray:
    """The spoken sound (samples above `threshold`·peak) with 10 ms before and 30 ms after it, a random gain
    (-12..0 dB of full scale) and white noise at a random SNR in `snr_db`."""
    loud = np.nonzero(np.abs(signal) > threshold * np.abs(signal).max())[0]
    start, stop = max(loud[0] - int(0.01 * rate), 0), min(loud[-1] + int(0.03 * rate), len(signal))
    sound = signal[start:stop] / np.abs(signal).max() * 10 ** (rng.uniform(-12, 0) / 20) * 0.9
    power = float(np.mean(sound ** 2))
    noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(len(sound)).astype(np.float32)
    return sound + noise * np.sqrt(power / 10 ** (rng.uniform(*snr_db) / 10))


def generate_spoken_digits(out: Path, train_voices=TRAIN_VOICES, test_voices=TEST_VOICES, rates=RATES,
                           pitches=PITCHES, seed: int = 0, workers: int = 4) -> Path:
    """Write the recordings under `out` and the `csv` task's table `out/spoken_digits.csv` (path,label,split);
    returns the table's path. The same arguments give the same files."""
    if not espeak_available():
        raise UsageError("espeak-ng is not installed; install it (apt-get install espeak-ng) to generate digits")
    if set(train_voices) & set(test_voices):
        raise UsageError(f"voices both in train and test: {sorted(set(train_voices) & set(test_voices))}")
    out = Path(out)
    jobs = [(voice, split, digit, rate, pitch) for split, voices in (("train", train_voices), ("test", test_voices))
            for voice in voices for digit in DIGITS for rate in rates for pitch in pitches]

    def make(job) -> str:
        voice, split, digit, rate, pitch = job
        name = f"{voice.replace('+', '_')}/{digit}_{rate}_{pitch}.wav"
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _speak(digit, voice, rate, pitch, path)
        signal, native = _read_wav(path)
        signal = trim_and_noise(signal, native, random.Random(f"{seed}:{name}"))
        _write_wav(path, resample(torch.from_numpy(signal), native, SAMPLE_RATE).numpy(), SAMPLE_RATE)
        return name

    with ThreadPoolExecutor(workers) as pool:
        names = list(pool.map(make, jobs))
    table = out / CSV_NAME
    with open(table, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        writer.writerows((name, job[2], job[1]) for name, job in zip(names, jobs))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the recordings and spoken_digits.csv")
    parser.add_argument("--small", action="store_true", help="the test suite's set (one rate, two pitches)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = generate_spoken_digits(args.out, seed=args.seed, **(SMALL if args.small else {}))
    print(table)


if __name__ == "__main__":
    main()
