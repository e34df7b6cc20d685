#!/usr/bin/env bash
# Installs what execgate needs on a Debian 12 machine, as root: the tools to
# build the patched zsh, bubblewrap for the sandbox, and what the tests drive.
# Installs only what is missing; safe to run again.
set -euo pipefail

packages=(
    # Building zsh from Debian's source package.
    gcc make patch dpkg-dev xz-utils autoconf libncurses-dev
    # The Linux sandbox.
    bubblewrap
    # Used by the end-to-end suites as ordinary programs to run; setsid (from
    # util-linux) starts the interactive shell the fidelity suite drives.
    coreutils procps util-linux git python3 libc6-dev
    # The venv for the MCP client tests (scripts/setup-python.sh).
    python3-venv
    # Debian's own zsh: the baseline of the benchmarks (scripts/bench, case a0).
    zsh
    # Ordinary network clients the limited-network suite sends through the
    # proxy to origins it starts on loopback.
    curl python3-pip
    # The proxy's test of this machine's own addresses gives loopback one in
    # a network namespace of its own.
    iproute2
    # execgate shell's tests drive a real terminal; the package check reads
    # the installed man page.
    tmux man-db
)

bash "$(dirname "$0")/install-packages" setup-debian "${packages[@]}"

# The sandbox suite also runs as this unprivileged user.
if [[ $(id -u) -eq 0 ]] && ! id execgate-ci >/dev/null 2>&1; then
    echo "setup-debian: creating the unprivileged test user execgate-ci"
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin execgate-ci
fi

if ! command -v cargo >/dev/null; then
    echo "setup-debian: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
fi
echo "setup-debian: ready"
