"""The processed-dataset contract: writers, meta.json, memory-mapped reads, VideoDataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mslstm.data.dataset import VideoDataset, open_split, read_meta, write_dataset
from mslstm.errors import DataError


def test_tiny_dataset_roundtrip(tiny_dataset):
    meta = read_meta(tiny_dataset)
    assert meta["dtype"] == "uint8"
    assert meta["frame_size"] == [16, 16] and meta["channels"] == 1
    assert meta["splits"]["train"]["shape"] == [8, 6, 1, 16, 16]
    arr = open_split(tiny_dataset, "val")
    assert isinstance(arr, np.memmap) and arr.shape == (4, 6, 1, 16, 16)
    ds = VideoDataset(tiny_dataset, "train")
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == 8
    x = ds[2]
    assert x.dtype == torch.float32 and x.shape == (6, 1, 16, 16)
    assert torch.allclose(x, torch.from_numpy(ds.array[2].astype(np.float32) / 255.0))
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    batch = ds.get_batch([5, 0, 5])
    assert batch.shape == (3, 6, 1, 16, 16)
    assert torch.equal(batch[0], ds[5]) and torch.equal(batch[1], ds[0])


def test_float_dataset_with_declared_range(tmp_path):
    a = np.linspace(-1, 1, 2 * 4 * 8 * 8, dtype=np.float32).reshape(2, 4, 8, 8)  # (N, T, H, W): C added
    meta = write_dataset(tmp_path, {"train": a}, input_frames=2, output_frames=2, value_range=(-1, 1))
    assert meta["scale"] == pytest.approx(0.5) and meta["offset"] == pytest.approx(0.5)
    x = VideoDataset(tmp_path, "train").get_batch([0, 1])
    assert x.shape == (2, 4, 1, 8, 8)
    assert float(x.min()) == pytest.approx(0.0) and float(x.max()) == pytest.approx(1.0)


def test_read_meta_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"meta\.json.*not found"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match=r"meta\.json: not valid JSON"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "uint8"}))
    with pytest.raises(DataError, match=r"meta\.json: missing keys"):
        read_meta(tmp_path)


def test_open_split_unknown_split_and_shape_mismatch(tiny_dataset):
    with pytest.raises(DataError, match="no split 'holdout'"):
        open_split(tiny_dataset, "holdout")
    meta = read_meta(tiny_dataset)
    meta["splits"]["test"]["shape"] = [5, 6, 1, 16, 16]
    (tiny_dataset / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"test\.npy: shape .* differs from meta\.json"):
        open_split(tiny_dataset, "test")


def test_writer_rejects_bad_arrays(tmp_path):
    with pytest.raises(DataError, match="expected an array of shape"):
        write_dataset(tmp_path, {"train": np.zeros((2, 3, 4), np.uint8)}, input_frames=1, output_frames=1)
    with pytest.raises(DataError, match="dtype int64 not supported"):
        write_dataset(tmp_path, {"train": np.zeros((1, 2, 1, 4, 4), np.int64)}, input_frames=1, output_frames=1)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_pickles_without_the_array_bytes(tiny_dataset):
    import pickle

    ds = VideoDataset(tiny_dataset, "test")
    blob = pickle.dumps(ds)
    assert len(blob) < ds.array.nbytes  # the mapped data is reopened, not copied
    ds2 = pickle.loads(blob)
    assert torch.equal(ds2[3], ds[3]) and isinstance(ds2.array, np.memmap)
