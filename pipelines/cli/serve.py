"""``claimscore serve``: the scoring service (BentoML) over the champion models."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import ConfigOpt, area, settings

app = area("The scoring service.")


@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless told otherwise).")] = "127.0.0.1",
    workers: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Worker processes (each scores its own requests; one per core is a good start)."
        ),
    ] = 2,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="A demo: allow the public built-in identity secret (otherwise the service refuses it; "
            "set CLAIMSCORE_IDENTITY_SECRET).",
        ),
    ] = False,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM): needed to bind beyond the loopback address.")
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM) of --ssl-certfile.")] = None,
    plain_http: Annotated[
        bool,
        typer.Option(
            "--plain-http",
            help="Bind beyond the loopback address without TLS (behind a proxy that terminates TLS); logged.",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Serve the champion models over HTTP (BentoML): /score, /score_batch, /explain, /model."""
    from dataclasses import replace

    from features.identity import require_real_secret
    from serving.model import registry

    tls = _tls(host, ssl_certfile, ssl_keyfile, plain_http)
    state = settings(config)
    if demo:
        state = replace(state, demo=True)
        os.environ["CLAIMSCORE_DEMO"] = "1"
    require_real_secret(state)
    registry.configure(state)
    if not any(registry.version_for(t, registry.CHAMPION) for t in registry.MODEL_NAMES):
        raise registry.RegistryError("no champion model to serve: run claimscore train and claimscore promote first")
    bentoml = shutil.which("bentoml") or str(Path(sys.executable).with_name("bentoml"))
    os.environ.setdefault("BENTOML_HOME", str(state.home / "bentoml"))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ["CLAIMSCORE_HOME"] = str(state.home)
    os.environ["CLAIMSCORE_WORKERS"] = str(workers)
    if config:
        os.environ["CLAIMSCORE_CONFIG"] = str(Path(config).resolve())
    scheme = "https" if tls else "http"
    typer.echo(f"serving on {scheme}://{host}:{port} (API description at /, keys: claimscore keys create)", err=True)
    os.execv(bentoml, [bentoml, "serve", "serving.service:ClaimScore", "--host", host, "--port", str(port), *tls])


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _tls(host: str, certfile: Path | None, keyfile: Path | None, plain_http: bool) -> list[str]:
    """BentoML's TLS options; refuses (exit 2, naming the option) to serve bearer keys over plain
    HTTP beyond the loopback address unless ``--plain-http`` says so (a warning is logged)."""
    if (certfile is None) != (keyfile is None):
        raise typer.BadParameter("give both --ssl-certfile and --ssl-keyfile", param_hint="--ssl-keyfile")
    for option, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path} is not a file", param_hint=option)
    if certfile is not None:
        return ["--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)]
    if host not in LOOPBACK:
        if not plain_http:
            raise typer.BadParameter(
                f"{host} is beyond the loopback address: API keys would cross the network in clear; give "
                "--ssl-certfile and --ssl-keyfile, or --plain-http behind a proxy that terminates TLS",
                param_hint="--host",
            )
        typer.echo(f"warning: serving plain HTTP on {host} (--plain-http): terminate TLS in front of it", err=True)
    return []
