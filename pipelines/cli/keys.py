"""``claimscore keys``: API keys for the scoring service (shown once; only hashes are kept)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli.common import ConfigOpt, area, settings

app = area("API keys for the scoring service (shown once; only hashes are kept).")


def _store(config):
    from serving.keys import KeyStore

    return KeyStore(settings(config).home / "keys.json")


@app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", help="scorer (claim systems), investigator or admin.")],
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Create a key and print it once."""
    key, record = _store(config).create(role, name)
    typer.echo(key)
    typer.echo(f"key {record.key_id} for role {record.role} created; it is not shown again", err=True)


@app.command("list")
def list_keys(config: ConfigOpt = None) -> None:
    """List keys (ids, roles, names; never the keys)."""
    for r in _store(config).list():
        typer.echo(f"{r.key_id}  {r.role:<12}  {r.created_at}  {'revoked' if r.revoked else 'active '}  {r.name}")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by 'claimscore keys list'.")], config: ConfigOpt = None
) -> None:
    """Revoke a key."""
    record = _store(config).revoke(key_id)
    typer.echo(f"key {record.key_id} revoked")
