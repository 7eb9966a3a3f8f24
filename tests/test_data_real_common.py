"""Shared helpers of the real-data source tests (no tests here): writers of small files in the exact formats the
public distributions ship (KTH AVI, TaxiBJ HDF5, DWD RADOLAN binary / the authors' HDF5) and the CLI chain
data -> validate -> train (two steps) -> evaluate on a tiny model."""
from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mslstm.cli import main

FRAMES = ["data.input_frames=3", "data.output_frames=3", "model.input_frames=3", "model.output_frames=3"]
TINY_MODEL = ["model.name=mslstm", "model.hidden=4", "model.layers=4", "model.scales=[1, 2, 2, 1]",
              "model.mk_kernels=[1, 3]", "model.patch_size=4"]
CHAIN = [*FRAMES, *TINY_MODEL, "train.epochs=1", "train.max_steps=2", "train.batch_size=2", "train.progress=quiet",
         "tracking.enabled=false", "evaluate.batch_size=2", "evaluate.num_examples=1"]


def cli(sets: Sequence[str], *args: str) -> int:
    return main(["-q", *[f"--set={s}" for s in sets], *args])


def run_chain(work: Path, sets: Sequence[str]) -> dict:
    """``mslstm data`` -> ``validate`` -> ``train`` (2 steps) -> ``evaluate``; every door must exit 0."""
    import json

    sets = [*CHAIN, *sets]
    ds, val, tr, ev = (work / "out" / n for n in ("dataset", "validation", "train", "eval"))
    assert cli(sets, "data", "--out", str(ds)) == 0
    assert cli(sets, "validate", "--data-dir", str(ds), "--out", str(val)) == 0
    assert cli(sets, "train", "--data-dir", str(ds), "--out", str(tr)) == 0
    assert cli(sets, "evaluate", "--checkpoint", str(tr / "best.pt"), "--data-dir", str(ds), "--out", str(ev)) == 0
    return {
        "meta": json.loads((ds / "meta.json").read_text()),
        "validation": json.loads((val / "result.json").read_text()),
        "train": json.loads((tr / "metrics.json").read_text()),
        "eval": json.loads((ev / "metrics.json").read_text()),
    }


# ------------------------------------------------------------------------------------------------------- KTH
def kth_frames(n: int, seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    """A gray person-like bar walking across a textured background: (n, h, w) uint8."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(60, 120, size=(h, w), dtype=np.uint8)
    out = np.repeat(bg[None], n, axis=0)
    for t in range(n):
        x = (10 + 4 * t) % (w - 20)
        out[t, 30:100, x:x + 12] = 230
    return out


def write_avi(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """Write (L, H, W) uint8 gray frames as an MPEG-4 AVI (the KTH files are DivX/MPEG-4 in AVI), with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="avi") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.bit_rate = 2_000_000
        for img in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="gray")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def write_kth(root: Path, persons: Sequence[int], actions: Sequence[str], n_frames: int = 30,
              scenarios: Sequence[int] = (1,)) -> Path:
    """``root/<action>/personNN_<action>_dK_uncomp.avi`` for each person, action, scenario."""
    for a in actions:
        for p in persons:
            for k in scenarios:
                write_avi(root / a / f"person{p:02d}_{a}_d{k}_uncomp.avi", kth_frames(n_frames, seed=p * 10 + k))
    return root


# ---------------------------------------------------------------------------------------------------- TaxiBJ
def taxibj_slots(start: dt.date, days: int, skip: Sequence[int] = ()) -> list[bytes]:
    """``b"YYYYMMDDSS"`` labels of ``days`` days of 48 half-hour slots from ``start``; ``skip``: slot indices left
    out (a gap)."""
    out = []
    for i in range(days * 48):
        if i in skip:
            continue
        day = start + dt.timedelta(days=i // 48)
        out.append(f"{day:%Y%m%d}{i % 48 + 1:02d}".encode())
    return out


def write_taxibj(path: Path, slots: list[bytes], seed: int = 0, grid: int = 32) -> Path:
    """A ``BJxx_M32x32_T30_InOut.h5`` file: ``data`` float64 (N, 2, grid, grid) counts, ``date`` S10."""
    import h5py

    rng = np.random.default_rng(seed)
    phase = np.array([int(s[8:]) for s in slots], dtype=np.float64)
    level = 50 + 40 * np.sin(phase / 48 * 2 * np.pi)
    data = rng.poisson(level[:, None, None, None] * np.ones((1, 2, grid, grid))).astype(np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("date", data=np.array(slots, dtype="S10"))
    return path


# ------------------------------------------------------------------------------------------------------- DWD
RADOLAN_FLAG_SECONDARY, RADOLAN_FLAG_NODATA, RADOLAN_FLAG_CLUTTER = 0x1000, 0x2000, 0x8000


def radolan_header(product: str, when: dt.datetime, nrow: int, ncol: int) -> bytes:
    """The ASCII header of a RADOLAN composite as the DWD writes it (RY: PR E-02, INT 5; RW: PR E-01, INT 60)."""
    prec, interval, extra = {"RY": ("E-02", 5, "VV 000MF 00000002QN 001"), "RW": ("E-01", 60, "")}[product]
    sites = "<asb,boo,ros,hnr,umd,pro,ess,fld,drs,neu,nhb,oft,eis,tur,isn,fbg,mem>"

    def text(total: int) -> str:
        return (f"{product}{when:%d%H%M}10000{when:%m%y}BY{total:7d}VS 3SW   2.18.3PR {prec}INT{interval:4d}"
                f"GP{nrow:4d}x{ncol:4d}{extra}MS{len(sites):3d}{sites}")

    head = text(0)
    return text(len(head) + 1 + 2 * nrow * ncol).encode("ascii") + b"\x03"


def write_radolan(folder: Path, product: str, when: dt.datetime, raw: np.ndarray, compress: bool = False,
                  name: Optional[str] = None) -> Path:
    """A RADOLAN binary composite: header + ETX, then little-endian uint16 pixels (12-bit value in units of the
    PR precision, flag bits 0x1000 secondary, 0x2000 no data, 0x8000 clutter); rows from south to north."""
    raw = np.asarray(raw, dtype="<u2")
    nrow, ncol = raw.shape
    blob = radolan_header(product, when, nrow, ncol) + raw.tobytes()
    name = name or f"raa01-{product.lower()}_10000-{when:%y%m%d%H%M}-dwd---bin" + (".gz" if compress else "")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(gzip.compress(blob) if compress else blob)
    return path


def rain_field(t: int, nrow: int, ncol: int, seed: int = 0) -> np.ndarray:
    """A moving rain cell, raw 12-bit counts (0..4095) with a few no-data and clutter pixels."""
    yy, xx = np.mgrid[0:nrow, 0:ncol]
    cy, cx = nrow / 2, (ncol / 4 + 2 * t) % ncol
    cell = 300 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (nrow / 6) ** 2))
    raw = np.rint(cell).astype(np.uint16)
    raw[0, 0] = RADOLAN_FLAG_NODATA
    raw[1, 1] = RADOLAN_FLAG_CLUTTER | 5
    return raw
