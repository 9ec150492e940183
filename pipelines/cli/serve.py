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
    config: ConfigOpt = None,
) -> None:
    """Serve the champion models over HTTP (BentoML): /score, /score_batch, /explain, /model."""
    from dataclasses import replace

    from features.identity import require_real_secret
    from serving.model import registry

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
    typer.echo(f"serving on http://{host}:{port} (API description at /, keys: claimscore keys create)", err=True)
    os.execv(bentoml, [bentoml, "serve", "serving.service:ClaimScore", "--host", host, "--port", str(port)])
