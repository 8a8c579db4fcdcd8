"""`goalledger secrets`: make a key, see which keys the ledger's secrets need, rotate.

Plugin-config secrets are sealed in the ledger under `GOALLEDGER_SECRET_KEY`
(core/secrets.py); docs/secrets.md tells the whole story.
"""

from __future__ import annotations

import json

import click
import msgspec

from goalledger.api.clikit import EXIT_FAILED, Cli, CommandFailed
from goalledger.core.secrets import KEY_VARIABLE, PREVIOUS_VARIABLE, new_key
from goalledger.plugins.rekey import Held, inventory, rotate


@click.group()
def secrets() -> None:
    """Keys for the plugin-config secrets the ledger holds encrypted."""


@secrets.command("new-key")
def make_key() -> None:
    """Print a new random key for GOALLEDGER_SECRET_KEY, alone on the last line."""
    click.echo(new_key())


@secrets.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.pass_obj
def status(cli: Cli, as_json: bool) -> None:
    """Show the keys set, and which keys the secrets in use are sealed under.

    Exits 1 when a key that some secret in use needs is not set.
    """
    from goalledger.api.bootstrap import bootstrap

    with bootstrap(cli.settings()) as system:
        keyring = system.plugins.keyring
        found = inventory(system.ledger, system.plugins)
    missing = sorted(found.key_ids() - keyring.ids)
    stale = found.stale(keyring.current_id)
    if as_json:
        record = {
            "current_key": keyring.current_id,
            "keys": sorted(keyring.ids),
            "missing_keys": missing,
            "bindings": msgspec.to_builtins(found.held),
            "to_rotate": len(stale),
        }
        click.echo(json.dumps(record))
    else:
        click.echo(f"{KEY_VARIABLE}: {keyring.current_id or 'not set'}")
        previous = sorted(keyring.ids - {keyring.current_id})
        click.echo(f"{PREVIOUS_VARIABLE}: {', '.join(previous) or 'none'}")
        for held in found.held:
            click.echo(_describe(held))
        click.echo(
            f"{len(found.held)} binding(s) in use hold secrets; {len(stale)} to rotate"
            + (f"; MISSING key(s): {', '.join(missing)}" if missing else "")
        )
    if missing:
        raise click.exceptions.Exit(EXIT_FAILED)


@secrets.command("rotate")
@click.option(
    "--reason",
    default="secrets re-sealed under the current key",
    show_default=True,
    help="Why (kept in the audit trail with each re-recorded binding).",
)
@click.pass_obj
def rotate_keys(cli: Cli, reason: str) -> None:
    """Re-record every binding in use whose secrets are not sealed under the current
    key (or are plain text from before encryption), so previous keys can be retired."""
    from goalledger.api.bootstrap import bootstrap

    with bootstrap(cli.settings()) as system:
        done = rotate(system.ledger, system.plugins, actor=cli.actor, reason=reason)
    for held in done.rotated:
        click.echo(f"re-sealed {_describe(held)}")
    for held, why in done.failed:
        click.echo(f"FAILED {_describe(held)}: {why}", err=True)
    at = f" up to ledger position {done.position}" if done.position is not None else ""
    click.echo(
        f"Re-sealed {len(done.rotated)} binding(s) under key {done.key_id}{at}. "
        + (
            "Previous keys can be retired once every process runs with this key."
            if not done.failed
            else ""
        )
    )
    if done.failed:
        raise CommandFailed(
            f"{len(done.failed)} binding(s) could not be re-sealed (listed above); "
            "keep the previous keys until they are",
            EXIT_FAILED,
        )


def _describe(held: Held) -> str:
    sealed = f"sealed under {', '.join(held.key_ids)}" if held.key_ids else ""
    plain = f"plain text: {', '.join(held.plain)}" if held.plain else ""
    return f"{held.owner} {held.id} ({held.plugin}): {'; '.join(p for p in (sealed, plain) if p)}"
