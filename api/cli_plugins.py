"""`goalledger plugins`: what is installed, which hooks each plugin implements, and how
loading went."""

from __future__ import annotations

import click
import msgspec

from goalledger.api.clikit import EXIT_FAILED, CommandFailed
from goalledger.plugins.manager import HOOK_KINDS, PluginInfo, enabled_from_env, load_plugins


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the plugins as a JSON array.")
def plugins(as_json: bool) -> None:
    """List plugins: name, version, hooks, status (loaded, or failed with the reason).

    GOALLEDGER_PLUGINS (comma-separated names) limits which installed plugins load;
    built-in plugins always load. Exits 1 when any plugin failed to load.
    """
    listed = load_plugins(enabled_from_env()).plugins
    if as_json:
        click.echo(msgspec.json.encode(listed).decode())
    else:
        for line in render_plugins(listed):
            click.echo(line)
    failed = [info.name for info in listed if info.status == "failed"]
    if failed:  # listed above with reasons; the exit status lets scripts notice
        raise CommandFailed(
            f"{len(failed)} plugin(s) failed to load: {', '.join(failed)}", EXIT_FAILED
        )


def render_plugins(listed: list[PluginInfo]) -> list[str]:
    """Aligned lines: one per plugin, what each hook registered, a failed one's reason."""
    width = max([len(info.name) for info in listed] + [6])
    version_width = max([len(info.version or "-") for info in listed] + [7])
    lines = [f"{'PLUGIN':<{width}}  {'VERSION':<{version_width}}  STATUS  HOOKS"]
    for info in listed:
        hooks = []
        for hook in info.hooks:
            names = info.provides.get(HOOK_KINDS.get(hook, ""), [])
            hooks.append(f"{hook} ({', '.join(names)})" if names else hook)
        lines.append(
            f"{info.name:<{width}}  {info.version or '-':<{version_width}}  "
            f"{info.status:<6}  {'; '.join(hooks) or '-'}".rstrip()
        )
        if info.reason:
            lines.append(f"    reason: {info.reason}")
    failed = sum(info.status == "failed" for info in listed)
    lines.append(
        f"{len(listed)} plugins ({sum(i.builtin for i in listed)} built-in), {failed} failed"
    )
    return lines
