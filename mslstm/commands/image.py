"""Build the project image from the Dockerfile without a Docker daemon (buildah, chroot isolation).

  mslstm image build                                 # the CUDA default base, tag = pipeline.image (version tag)
  mslstm image build --base debian --host-wheels     # local Debian base (mmdebstrap) and this machine's wheels
  mslstm image build --base debian --extra-index-url https://download.pytorch.org/whl/cpu --tag my/mslstm:cpu

The tag defaults to ``pipeline.image`` (without a tag there: the project's version), so the compiled pipeline
names the image just built. With Docker, ``docker build -t <tag> .`` builds the same Dockerfile.
"""
from __future__ import annotations

import argparse
from typing import Any

HELP = "build the project image from the Dockerfile with buildah (no Docker daemon needed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build the image (buildah bud --isolation chroot)")
    b.add_argument("--base", default=None,
                   help="BASE_IMAGE: an image reference, or 'debian' for a local Debian bookworm base made with "
                        "mmdebstrap (default: the Dockerfile's CUDA base)")
    b.add_argument("--tag", default=None, help="image reference to write (default: pipeline.image)")
    b.add_argument("--context", default=".", help="build context holding the Dockerfile (default: .)")
    b.add_argument("--find-links", action="append", default=[], metavar="DIR",
                   help="local folder of wheels for pip, mounted read-only (repeatable)")
    b.add_argument("--extra-index-url", action="append", default=[], metavar="URL",
                   help="extra pip index; file:// folders are mounted read-only (repeatable)")
    b.add_argument("--index-url", default=None, help="pip index instead of PyPI")
    b.add_argument("--host-wheels", action="store_true",
                   help="also use this machine's local pip sources (pip config: find-links, file:// indexes)")


def run(args: argparse.Namespace, cfg: Any) -> int:
    from mslstm.image import build_image, host_pip_sources

    find_links, extra = list(args.find_links), list(args.extra_index_url)
    if args.host_wheels:
        host = host_pip_sources()
        find_links += [d for d in host["find_links"] if d not in find_links]
        extra += [u for u in host["extra_index_urls"] if u not in extra]
    tag = args.tag or cfg.pipeline.image
    result = build_image(args.context, tag, base=args.base, find_links=find_links, extra_index_urls=extra,
                         index_url=args.index_url)
    print(f"built {result.tag} from {result.base} in {result.seconds:.0f} s: {result.size_bytes / 1e9:.2f} GB")
    return 0
