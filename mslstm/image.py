"""Build the project image from the ``Dockerfile`` without a Docker daemon, and run commands in it.

``buildah`` (``--isolation chroot``: no daemon, no cgroups) builds the Dockerfile unchanged, so ``docker build``
and :func:`build_image` make the same image. The base is the Dockerfile's default (the CUDA one, pulled from its
registry) or :data:`DEBIAN_BASE`: a minimal Debian root filesystem made by ``mmdebstrap`` and imported as a local
image (for machines that reach a Debian mirror but no image registry). That root filesystem is cached under
``~/.cache/mslstm-image`` (``MSLSTM_IMAGE_CACHE``), keyed by its inputs, so it is made once.

Used by ``mslstm image build`` / ``make image`` and by ``tests/test_image.py``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from mslstm.errors import MSLSTMError

log = logging.getLogger(__name__)

#: ``--base`` keyword: the local Debian base made by mmdebstrap (see :func:`debian_base`).
DEBIAN_BASE = "debian"
#: What the Debian base holds: the Dockerfile's apt line then finds everything installed.
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-venv", "git", "ca-certificates")
#: Local image name of the Debian base (the tag is the cache key).
DEBIAN_BASE_NAME = "localhost/mslstm-base"
#: The host's CA bundle, mounted (read-only) for the build's RUN steps and handed to pip (``PIP_CERT``) when present.
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CA = "/run/mslstm-host-ca.crt"
ISOLATION = "chroot"


class ImageError(MSLSTMError):
    """The image could not be built or a command could not be run in it."""


@dataclass
class BuildResult:
    """What :func:`build_image` made."""

    tag: str
    base: str
    seconds: float
    size_bytes: int
    build_args: dict[str, str] = field(default_factory=dict)


def cache_dir() -> Path:
    """Where the Debian root filesystem is kept between builds (``MSLSTM_IMAGE_CACHE``, else ~/.cache/mslstm-image)."""
    return Path(os.environ.get("MSLSTM_IMAGE_CACHE") or Path.home() / ".cache" / "mslstm-image")


def require_tools(*tools: str) -> None:
    """Raise :class:`ImageError` naming the Debian packages to install when a tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise ImageError(f"{', '.join(missing)} not found: install with `apt-get install -y {' '.join(missing)}`")


def _run(cmd: Sequence[str], timeout: float | None = None, **kw) -> subprocess.CompletedProcess:
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{cmd[0]} {cmd[1]}: still running after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise ImageError(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-3000:]}")
    return proc


def image_exists(ref: str) -> bool:
    """Whether ``ref`` is in the local container storage."""
    return subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True).returncode == 0


def image_size(ref: str) -> int:
    """Uncompressed size of a local image in bytes (all layers)."""
    require_tools("podman")
    return int(_run(["podman", "image", "inspect", "--format", "{{.Size}}", ref]).stdout.strip())


def debian_base(suite: str = DEBIAN_SUITE, packages: Sequence[str] = DEBIAN_PACKAGES,
                cache: Path | None = None) -> str:
    """The local Debian base image (``localhost/mslstm-base:<key>``), made if missing.

    ``mmdebstrap --variant=minbase`` writes a root filesystem tarball (cached, keyed by the suite, the packages and
    the mmdebstrap version); ``podman import`` turns it into an image in the local storage.

    Returns:
        The image reference to pass as ``BASE_IMAGE``.
    """
    require_tools("buildah", "mmdebstrap", "podman")
    version = _run(["mmdebstrap", "--version"]).stdout.strip()
    key = hashlib.sha256("\n".join([suite, "minbase", *sorted(packages), version]).encode()).hexdigest()[:12]
    ref = f"{DEBIAN_BASE_NAME}:{suite}-{key}"
    if image_exists(ref):
        return ref
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"rootfs-{suite}-{key}.tar"
    if not tarball.is_file():
        t0 = time.monotonic()
        tmp = tarball.with_name(f".{tarball.name}.{uuid.uuid4().hex[:8]}.tmp.tar")
        try:
            _run(["mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(tmp)], timeout=1800)
            tmp.replace(tarball)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("mmdebstrap %s: %s in %.0f s", suite, tarball, time.monotonic() - t0)
    _run(["podman", "import", "--change", "CMD=/bin/bash", str(tarball), ref], timeout=600)
    return ref


def _file_url_dir(url: str) -> str | None:
    return url[len("file://"):] if url.startswith("file://") else None


def host_pip_sources() -> dict[str, list[str]]:
    """This machine's local pip sources (``pip config``'s find-links and ``file://`` indexes) that exist.

    Returns:
        ``{"find_links": [...], "extra_index_urls": [...]}``.
    """
    import sys

    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    found: dict[str, list[str]] = {"find_links": [], "extra_index_urls": []}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        for item in value.split():
            if key.endswith(".find-links") and Path(item).is_dir() and item not in found["find_links"]:
                found["find_links"].append(item)
            if key.endswith((".extra-index-url", ".index-url")):
                local = _file_url_dir(item)
                if local and Path(local).is_dir() and item not in found["extra_index_urls"]:
                    found["extra_index_urls"].append(item)
    return found


def build_args_and_mounts(find_links: Sequence[str] = (), extra_index_urls: Sequence[str] = (),
                          index_url: str | None = None) -> tuple[dict[str, str], list[str]]:
    """Build arguments for pip (``PIP_FIND_LINKS``, ``PIP_EXTRA_INDEX_URL``, ``PIP_INDEX_URL``) and the read-only
    mounts that make the local folders among them visible to the build's RUN steps (at the same paths)."""
    args: dict[str, str] = {}
    mounts: list[str] = []
    for d in find_links:
        if not Path(d).is_dir():
            raise ImageError(f"--find-links {d}: not a folder")
        mounts.append(f"{Path(d).resolve()}:{Path(d).resolve()}:ro")
    for url in [*extra_index_urls, *([index_url] if index_url else [])]:
        local = _file_url_dir(url)
        if local:
            if not Path(local).is_dir():
                raise ImageError(f"{url}: not a folder")
            # a PEP 503 index ``<root>/simple`` links its files relative to it (``../../files``): mount the root
            root = Path(local).parent if Path(local).name == "simple" else Path(local)
            mounts.append(f"{root}:{root}:ro")
    if find_links:
        args["PIP_FIND_LINKS"] = " ".join(str(Path(d).resolve()) for d in find_links)
    if extra_index_urls:
        args["PIP_EXTRA_INDEX_URL"] = " ".join(extra_index_urls)
    if index_url:
        args["PIP_INDEX_URL"] = index_url
    return args, mounts


def build_image(context: str | Path, tag: str, base: str | None = None, find_links: Sequence[str] = (),
                extra_index_urls: Sequence[str] = (), index_url: str | None = None,
                timeout: float = 3600) -> BuildResult:
    """Build the ``Dockerfile`` in ``context`` as ``tag`` with ``buildah bud --isolation chroot``.

    Args:
        context: the build context (the repository root; ``.dockerignore`` applies).
        tag: the image reference to write, e.g. ``cfg.pipeline.image``.
        base: ``BASE_IMAGE`` (None: the Dockerfile's CUDA default; :data:`DEBIAN_BASE`: the local Debian base).
        find_links: local wheel folders for pip (mounted read-only), e.g. one holding a CPU torch wheel.
        extra_index_urls: extra pip indexes; ``file://`` folders are mounted read-only.
        index_url: replaces PyPI as pip's index.
        timeout: seconds before the build is abandoned.

    Returns:
        The tag, the base, the build time and the image size.
    """
    require_tools("buildah")
    context = Path(context).resolve()
    if not (context / "Dockerfile").is_file():
        raise ImageError(f"{context / 'Dockerfile'}: not found (give the repository root as the build context)")
    if base == DEBIAN_BASE:
        base = debian_base()
    args, mounts = build_args_and_mounts(find_links, extra_index_urls, index_url)
    if base:
        args["BASE_IMAGE"] = base
    cmd = ["buildah", "bud", "--isolation", ISOLATION, "--network", "host", "-f", str(context / "Dockerfile"),
           "-t", tag]
    if HOST_CA.is_file():
        # a machine behind a TLS-inspecting proxy trusts more than the base's CA bundle; pip gets the host's
        mounts.append(f"{HOST_CA}:{BUILD_CA}:ro")
        cmd += ["--build-arg", f"PIP_CERT={BUILD_CA}"]
    for name, value in args.items():
        cmd += ["--build-arg", f"{name}={value}"]
    for m in mounts:
        cmd += ["-v", m]
    cmd.append(str(context))
    t0 = time.monotonic()
    _run(cmd, timeout=timeout)
    seconds = time.monotonic() - t0
    return BuildResult(tag=tag, base=base or "(Dockerfile default)", seconds=seconds, size_bytes=image_size(tag),
                       build_args=args)


def run_in_image(image: str, command: Sequence[str], mounts: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 workdir: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``command`` in a fresh container of ``image`` (``buildah from`` + ``buildah run --isolation chroot``),
    as the image's user, with the host's network and hostname (services on 127.0.0.1 are reachable); the container is removed.

    Args:
        image: local image reference.
        command: argv, run as is (no shell added).
        mounts: ``host:container[:options]`` bind mounts.
        env: extra environment variables (the image's own stay).
        workdir: working directory (default: the image's).
        timeout: seconds before the command is abandoned.

    Returns:
        The finished process (stdout/stderr captured); a non-zero exit is returned, not raised.
    """
    require_tools("buildah")
    name = f"mslstm-run-{uuid.uuid4().hex[:10]}"
    _run(["buildah", "from", "--pull-never", "--name", name, image], timeout=300)
    try:
        # the host's network and hostname: torchrun/gloo resolve the hostname (a random one is not in /etc/hosts)
        cmd = ["buildah", "run", "--isolation", ISOLATION, "--network", "host", "--uts", "host"]
        for m in mounts:
            cmd += ["-v", m]
        for k, v in (env or {}).items():
            cmd += ["--env", f"{k}={v}"]
        if workdir:
            cmd += ["--workingdir", workdir]
        cmd += [name, "--", *command]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ImageError(f"{' '.join(command)[:200]}: still running in {image} after {timeout:.0f} s") from exc
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True)
