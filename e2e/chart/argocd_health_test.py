#!/usr/bin/env python3
"""Runs the Argo CD health check (examples/gitops/argocd/health.lua) against the example
statuses of health_test.yaml with lua5.4, the way Argo CD does: the object as the global `obj`,
the script's return value as the health. Also checks that argocd-cm.yaml embeds the same script
for both kinds. Fails loudly when lua5.4 is missing (hack/tools.sh installs it).

The script keeps to Lua 5.1 (Argo CD runs gopher-lua), so lua5.4 runs it unchanged.
"""
import datetime
import os
import shutil
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ARGOCD = os.path.join(HERE, "..", "..", "examples", "gitops", "argocd")
KINDS = ("Agent", "AgentPromotion", "PolicyBundle")


def lua_literal(value):
    """A Lua expression for a YAML value (strings escaped byte by byte)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        value = value.isoformat()
    if isinstance(value, str):
        out = []
        for byte in value.encode():
            ch = chr(byte)
            out.append(ch if ch.isalnum() or ch in " :.,-_/()[]{}=+*'<>!?@#$%^&|~;`" else f"\\{byte:03d}")
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot express {type(value)} in Lua")


def health(lua, script, obj):
    program = f"obj = {lua_literal(obj)}\nlocal hs = (function()\n{script}\nend)()\nio.write(tostring(hs.status), '\\n', tostring(hs.message))\n"
    run = subprocess.run([lua, "-"], input=program, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"lua failed: {run.stderr.strip()}")
    status, _, message = run.stdout.partition("\n")
    return status, message


def main():
    lua = shutil.which("lua5.4")
    if lua is None:
        sys.exit("lua5.4 is not installed: run hack/tools.sh (it installs the Debian package lua5.4)")
    with open(os.path.join(ARGOCD, "health.lua")) as f:
        script = f.read()
    with open(os.path.join(ARGOCD, "health_test.yaml")) as f:
        tests = yaml.safe_load(f)["tests"]
    failures = 0
    kinds_seen = set()
    for test in tests:
        with open(os.path.join(ARGOCD, test["inputPath"])) as f:
            obj = yaml.safe_load(f)
        kinds_seen.add(obj["kind"])
        want = (test["healthStatus"]["status"], test["healthStatus"].get("message", ""))
        got = health(lua, script, obj)
        ok = got == want
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {test['inputPath']}: {got[0]}: {got[1]}")
        if not ok:
            print(f"     want {want[0]}: {want[1]}")
    if kinds_seen != set(KINDS):
        print(f"FAIL health_test.yaml covers {sorted(kinds_seen)}, not {KINDS}")
        failures += 1
    # The argocd-cm example must carry this very script for both kinds.
    with open(os.path.join(ARGOCD, "argocd-cm.yaml")) as f:
        data = yaml.safe_load(f)["data"]
    for kind in KINDS:
        key = f"resource.customizations.health.agentgov.dev_{kind}"
        same = data.get(key, "").strip() == script.strip()
        failures += not same
        print(f"{'ok  ' if same else 'FAIL'} argocd-cm.yaml {key} {'is' if same else 'is not'} health.lua")
    print(f"{len(tests) + len(KINDS) + 1 - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
