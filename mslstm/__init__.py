"""MS-LSTM Pipeline: the core library. Each step is a plain function; the CLI, DVC and KFP are thin doors."""


def _version() -> str:
    """The project's version: ``pyproject.toml`` beside the package (a source checkout), else the installed metadata.

    The one place the version is read; the image tag (``pipeline.image`` without a tag) follows it.
    """
    import re
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        m = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.M)
        if m:
            return m.group(1)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mslstm-pipeline")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _version()
