"""Real-data source benchmark: the processed-dataset build (``prepare_data``, source ``kth``) for 1,000 KTH-sized
sequences (20 frames of 160x120 gray MPEG-4 AVI, resized to 88x88 as the authors do); target < 60 s.

A synthetic KTH folder is written first (25 persons x 2 actions x 4 scenarios = 200 videos of 100 frames, untimed);
the timed part is exactly what ``mslstm data`` does: hash the raw folder, decode every video once, resize, cut 5
back-to-back sequences per video, stream them into train/val/test .npy files, rename into place.

    .venv/bin/python bench/bench_data_sources.py [--video-frames 100] [--size 88]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def write_avi(path: Path, frames: np.ndarray) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="avi") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for img in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="gray")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def write_kth(root: Path, n_frames: int) -> int:
    rng = np.random.default_rng(0)
    n = 0
    for action in ("running", "walking"):
        for person in range(1, 26):
            for k in (1, 2, 3, 4):
                bg = rng.integers(60, 120, size=(120, 160), dtype=np.uint8)
                frames = np.repeat(bg[None], n_frames, axis=0)
                for t in range(n_frames):
                    x = (5 + 3 * t) % 140
                    frames[t, 30:100, x:x + 12] = 230
                write_avi(root / action / f"person{person:02d}_{action}_d{k}_uncomp.avi", frames)
                n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video-frames", type=int, default=100)
    p.add_argument("--size", type=int, default=88)
    a = p.parse_args()
    from mslstm.config import load_config
    from mslstm.data.prepare import prepare_data

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        videos = write_kth(tmp / "kth", a.video_frames)
        t_write = time.perf_counter() - t0
        cfg = load_config(None, [
            "data.source=kth", f"data.path={tmp / 'kth'}", f"data.frame_size=[{a.size}, {a.size}]",
            "data.input_frames=10", "data.output_frames=10", f"model.frame_size=[{a.size}, {a.size}]",
        ])
        t0 = time.perf_counter()
        s = prepare_data(cfg, tmp / "dataset")
        took = time.perf_counter() - t0
        n = sum(v[0] for v in s["splits"].values())
        frames = videos * a.video_frames
        print(f"kth source: {n} sequences of 20x{a.size}x{a.size} from {videos} AVIs ({frames} frames of 160x120) "
              f"in {took:.1f} s = {n / took:,.0f} sequences/s, {frames / took:,.0f} frames decoded/s "
              f"(target 1,000 in < 60 s; writing the AVIs took {t_write:.1f} s, untimed) splits {s['splits']}")


if __name__ == "__main__":
    main()
