"""Compile, validate, run locally and submit the Kubeflow pipelines (the logic behind ``mslstm pipeline``).

    from pipelines.runner import compile_pipeline, run_local, submit, validate_package
    compile_pipeline(cfg, "artifacts/pipeline.yaml")               # written atomically, then validated
    run_local(cfg, "artifacts/kfp_local", {"epochs": 1})           # kfp.local.SubprocessRunner
    url = submit(cfg, "https://kfp.example.com/pipeline", "mslstm", {"nodes": 2, "gpus": 4})

Runs on the machine that builds or launches pipelines (never inside a task); the pipelines themselves are
:mod:`pipelines.training`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mslstm.config import Config
from mslstm.errors import ConfigError
from mslstm.io import atomic_path
from pipelines.training import build_pipeline


def check_arguments(pipeline_func: Any, arguments: dict[str, Any]) -> None:
    """Refuse pipeline arguments the pipeline does not declare (names them and lists the known ones)."""
    known = set(pipeline_func.component_spec.inputs or {})
    for name in arguments:
        if name not in known:
            raise ConfigError(f"--arg {name}: not a parameter of the pipeline (known: {', '.join(sorted(known))})")


def compile_pipeline(cfg: Config, out: str | Path, ablation: bool | None = None) -> Path:
    """Compile the pipeline for ``cfg`` to ``out`` (atomically) and validate the result."""
    from kfp import compiler

    out = Path(out)
    with atomic_path(out) as tmp:
        compiled = tmp.with_suffix(".yaml")
        compiler.Compiler().compile(build_pipeline(cfg, ablation), str(compiled))
        compiled.replace(tmp)
    validate_package(out)
    return out


def validate_package(path: str | Path) -> Any:
    """Load a compiled pipeline back: the PipelineSpec (and PlatformSpec) protos and kfp's YAML loader.

    Returns:
        The ``PipelineSpec`` message.
    """
    import yaml
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    docs = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d]
    if not docs:
        raise ConfigError(f"{path}: empty pipeline file")
    try:
        spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
        for extra in docs[1:]:
            json_format.ParseDict(extra, pipeline_spec_pb2.PlatformSpec())
        components.load_component_from_file(str(path))
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid KFP pipeline: {exc}") from exc
    if not spec.root.dag.tasks:
        raise ConfigError(f"{path}: the pipeline has no tasks")
    return spec


def run_local(cfg: Config, root: str | Path, arguments: dict[str, Any], ablation: bool | None = None) -> Path:
    """Run the pipeline for real with ``kfp.local.SubprocessRunner(use_venv=False)``; returns the outputs folder."""
    import kfp.local

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri
    if uri.startswith("sqlite:") and cfg.pipeline.ablation_parallelism != 1:
        # SQLite takes one writer at a time: parallel ablation tasks would race on it.
        cfg = cfg.replace({"pipeline.ablation_parallelism": 1})
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    pipeline_func = build_pipeline(cfg, ablation)
    check_arguments(pipeline_func, arguments)
    pipeline_func(**arguments)
    return root


#: How submit reaches the KFP endpoint: one TCP connection attempt with ``pipeline.submit_timeout_s`` (default
#: this) before any API call, then one try per API call, each with that connect and read timeout (kfp's own health
#: check would retry 5 times, sleeping 5 s, with 3 urllib3 retries each, and its calls have no time limit).
CONNECT_TIMEOUT_S = 10.0
_HTTP_HINTS = {
    401: "the endpoint wants credentials (kfp.Client's: a token in KF_PIPELINES_SA_TOKEN_PATH, or the "
         "authentication cookie of `kfp` CLI's context)",
    403: "the credentials are not allowed here (check the namespace / profile and its access)",
    404: "no KFP API at this address: give the API endpoint, e.g. https://kfp.example.com/pipeline",
}


def check_reachable(host: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an unreachable ``host`` in one line: one TCP connection attempt (DNS + connect) with ``timeout_s``.

    Raises:
        ConfigError: ``--host <url>: cannot be reached (<why>; tried once, timeout <s> s)``.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(host if "://" in host else f"http://{host}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--host {host}: not an http(s) URL, e.g. https://kfp.example.com/pipeline")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ConfigError(f"--host {host}: {exc}") from None
    how = f"tried once, timeout {timeout_s:g} s"
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: cannot be reached (name {parts.hostname!r} does not resolve: "
                          f"{exc.strerror}; {how})") from None
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise ConfigError(f"--host {host}: cannot be reached ({why} at {parts.hostname}:{port}; {how})") from None


def _api_error(host: str, exc: BaseException, timeout_s: float = CONNECT_TIMEOUT_S) -> ConfigError:
    """One line for a failed KFP API call: the HTTP status and what to do, or why the host was not reached."""
    status = getattr(exc, "status", None)
    if status:
        reason = getattr(exc, "reason", "") or ""
        hint = _HTTP_HINTS.get(int(status), "the endpoint refused the request")
        return ConfigError(f"--host {host}: HTTP {status} {reason}".rstrip() + f": {hint} (tried once)")
    import urllib3

    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError) or isinstance(reason, urllib3.exceptions.ReadTimeoutError):
        return ConfigError(f"--host {host}: connected, but no answer within {timeout_s:g} s (read timeout; tried "
                           "once; pipeline.submit_timeout_s)")
    text = str(reason or exc).splitlines()[0][:200]
    return ConfigError(f"--host {host}: cannot be reached ({type(exc).__name__}: {text}; tried once)")


def _bound_api_calls(api_client: Any, timeout_s: float) -> None:
    """Give every call of a ``kfp_server_api.ApiClient`` a (connect, read) timeout and no urllib3 retry: the
    generated client passes ``timeout=None`` (wait for ever) unless a call names ``_request_timeout``."""
    import urllib3

    rest = api_client.rest_client
    if getattr(rest, "_mslstm_bounded", False):
        return
    # no retry of a failed connect / read / status; redirects (an auth proxy's) are still followed
    rest.pool_manager.connection_pool_kw["retries"] = urllib3.Retry(total=None, connect=0, read=0, other=0,
                                                                    status=0, redirect=5)
    request = rest.request

    def bounded(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return request(*args, _request_timeout=_request_timeout or (timeout_s, timeout_s), **kwargs)

    rest.request = bounded
    rest._mslstm_bounded = True


def submit(cfg: Config, host: str, experiment: str, arguments: dict[str, Any], run_name: str | None = None,
           namespace: str | None = None, package: str | Path | None = None, ablation: bool | None = None) -> str:
    """Submit a run to ``host`` (``kfp.Client.create_run_from_pipeline_package``); returns the run's URL.

    An unreachable host, or an HTTP error (401, 403, 404, ...) from it, raises one :class:`ConfigError` line that
    says so and how it was tried (:func:`check_reachable`, one try per API call)."""
    import logging
    import tempfile
    import time
    import warnings

    import kfp
    import kfp_server_api
    import urllib3

    timeout_s = float(cfg.pipeline.submit_timeout_s)

    class _OneTryClient(kfp.Client):
        def get_kfp_healthz(self, sleep_duration: int = 5) -> Any:  # one try; the caller says what failed
            _bound_api_calls(self._healthz_api.api_client, timeout_s)  # the first call is made in __init__
            return self._healthz_api.healthz_service_get_healthz()

    check_arguments(build_pipeline(cfg, ablation), arguments)
    run_name = run_name or f"{cfg.pipeline.name}{'-ablation' if ablation else ''} {time.strftime('%Y-%m-%d %H-%M-%S')}"
    with tempfile.TemporaryDirectory(prefix="mslstm-submit-") as tmp:
        pkg = Path(package) if package else compile_pipeline(cfg, Path(tmp) / "pipeline.yaml", ablation)
        validate_package(pkg)
        check_reachable(host, timeout_s)
        quiet = logging.getLogger("urllib3")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # no "Retrying (Retry(total=2...))" lines: the error below says it once
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # kfp's "only works with KFP 2.0.0-beta.2" notice
                client = _OneTryClient(host=host, namespace=namespace) if namespace else _OneTryClient(host=host)
                _bound_api_calls(client._run_api.api_client, timeout_s)
                result = client.create_run_from_pipeline_package(
                    str(pkg), arguments=arguments, run_name=run_name, experiment_name=experiment,
                    namespace=namespace,
                )
        except (kfp_server_api.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _api_error(host, exc, timeout_s) from None
        finally:
            quiet.setLevel(level)
    return f"{host.rstrip('/')}/#/runs/details/{result.run_id}"
