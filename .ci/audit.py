"""Audit constraints.txt with pip-audit and decide what CI does with the answer.

Usage: python .ci/audit.py PIP_AUDIT [CONSTRAINTS]

Every pin is exact, so pip-audit checks exactly those versions (`--no-deps`, nothing
resolved or installed) against PyPI's vulnerability data. Exit 1 with the report when
any pinned version has a known vulnerability. When the data cannot be reached — the
service is down or offline, or the index answering for PyPI (a mirror) does not serve
per-version data — say so and exit 0: the audit is skipped, not passed.
"""

from __future__ import annotations

import json
import subprocess
import sys

UNREACHABLE = ("connection", "resolve", "timed out", "timeout", "network", "unreachable", "ssl")


def main() -> int:
    tool, constraints = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "constraints.txt"
    command = [
        tool,
        "--requirement", constraints,
        "--no-deps", "--disable-pip",
        "--vulnerability-service", "pypi",
        "--format", "json",
        "--progress-spinner", "off",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return skipped("pip-audit did not finish within 600 s (vulnerability service too slow)")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if any(word in done.stderr.lower() for word in UNREACHABLE):
            return skipped(f"the vulnerability service cannot be reached: {error}")
        print(f"audit: pip-audit failed (exit {done.returncode}): {error}", file=sys.stderr)
        return 1
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    unaudited = [d for d in dependencies if "skip_reason" in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
            print(
                f"audit: {dependency['name']}=={dependency['version']} {vuln['id']}"
                f" ({', '.join(vuln.get('aliases') or [])}) fixed in {fixes}:"
                f" {' '.join((vuln.get('description') or '').split())[:300]}",
                file=sys.stderr,
            )
    if vulnerable:
        print(f"audit: {len(vulnerable)} pinned dependencies have known vulnerabilities;"
              " bump them in constraints.txt (`make constraints`)", file=sys.stderr)  # fmt: skip
        return 1
    if unaudited:
        reason = unaudited[0]["skip_reason"]
        names = ", ".join(d["name"] for d in unaudited[:5])
        more = f" and {len(unaudited) - 5} more" if len(unaudited) > 5 else ""
        print(f"audit: {len(unaudited)} of {len(dependencies)} pins could not be audited"
              f" ({names}{more}): {reason}")  # fmt: skip
        if not audited:
            return skipped("no vulnerability data could be fetched for any pinned version")
    print(f"audit: no known vulnerabilities in {len(audited)} audited pins")
    return 0


def skipped(reason: str) -> int:
    print(f"audit: SKIPPED, {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
