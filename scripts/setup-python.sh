#!/usr/bin/env bash
# The official MCP Python SDK in a venv under target/, for the MCP client
# tests (tests/mcp/). Prints the venv's python. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/venv-mcp
# Pinned: the client tests speak this SDK's API.
sdk=mcp==2.3.0
if ! "$venv/bin/python" -c 'import mcp' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$sdk" >&2
fi
echo "$PWD/$venv/bin/python"
