#!/usr/bin/env bash
# Builds the patched zsh into target/zsh/ (binary at target/zsh/bin/zsh).
#
# The source is zsh 5.9 from Debian's source package, fetched through a private
# deb-src list and a private lists directory under target/, so the machine's own
# apt configuration is never touched. The deb-src entries are derived from the
# machine's configured `deb` entries (same mirrors, suites and keys).
#
# The build is skipped when target/zsh/.stamp matches the hash of the patch and
# of this script and the build tree (target/zsh-build/patched, where zsh's own
# test suite runs) is still there. Set EXECGATE_ZSH_FORCE=1 to rebuild anyway.
#
# Also builds an unpatched zsh into target/zsh-stock/ when called with --stock
# from the same source, with its build tree in target/zsh-build/stock (used by
# the shell fidelity tests and scripts/zsh-parity.sh); it is cached the same
# way, by the hash of this script.
#
# With --package, builds the patched zsh for the Debian package: configured
# for /usr/libexec/execgate/zsh (zsh compiles its module and function
# directories in) and installed under target/zsh-package/root, from where
# scripts/package takes it. Its build tree is target/zsh-build/package.
#
# Every variant installs zsh's function library (Functions/, Completion/:
# compinit, promptinit, colors, vcs_info) into PREFIX/share/zsh/5.9/functions,
# the fpath compiled into the binary, so the interactive shell finds it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target="$repo/target"
work="$target/zsh-build"
patch="$repo/zsh-patch/execgate-exec-hook.patch"
variant=patched
prefix="$target/zsh"
# Where `make install` writes: the prefix itself, except for the package.
destdir=""
if [[ "${1:-}" == "--stock" ]]; then
    variant=stock
    prefix="$target/zsh-stock"
elif [[ "${1:-}" == "--package" ]]; then
    variant=package
    prefix=/usr/libexec/execgate/zsh
    destdir="$target/zsh-package/root"
fi

# The patched zsh (and the package's) links the exec wrapper's client (zsh-client/, a Rust static
# library with a C interface): built first, release (panic = "abort", so no
# unwinding can reach zsh's C). Its hash is kept in .client-stamp beside
# .stamp (which `execgate doctor` compares with the source), so that a change
# to the client relinks zsh.
client_lib="$target/release/libexecgate_zsh_client.a"
if [[ $variant != stock ]]; then
    (cd "$repo" && cargo build -q --locked --release -p execgate-zsh-client)
fi

stamp_value() {
    if [[ $variant != stock ]]; then
        cat "$patch" "$0"
    else
        cat "$0"
    fi | sha256sum | cut -d' ' -f1
}

client_stamp_value() {
    if [[ $variant != stock ]]; then
        sha256sum "$client_lib" | cut -d' ' -f1
    fi
}

tree="$work/$variant"
want=$(stamp_value)
want_client=$(client_stamp_value)
installed="$destdir$prefix"
if [[ -z "${EXECGATE_ZSH_FORCE:-}" && -x "$installed/bin/zsh" && -f "$installed/.stamp" \
      && "$(cat "$installed/.stamp")" == "$want" && -x "$tree/Src/zsh" \
      && "$(cat "$installed/.client-stamp" 2>/dev/null)" == "$want_client" ]]; then
    echo "build-zsh: $installed is current ($variant)"
    exit 0
fi

need=()
for tool in gcc make dpkg-source xz autoconf; do
    command -v "$tool" >/dev/null || need+=("$tool")
done
if ((${#need[@]})) || [[ ! -e /usr/include/ncurses.h ]]; then
    echo "build-zsh: missing build tools (${need[*]:-ncurses headers}); run scripts/setup-debian.sh first" >&2
    exit 1
fi

fetch_source() {
    local apt_dir="$work/apt"
    mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$work/src"
    # Turn every configured `deb` entry into a `deb-src` entry in our private list.
    local src_list="$apt_dir/sources.list.d/execgate-src.sources"
    : >"$src_list"
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        sed -e 's/^Types:.*/Types: deb-src/' "$f" >>"$src_list"
        echo >>"$src_list"
    done
    local legacy="$apt_dir/sources.list.d/execgate-src.list"
    : >"$legacy"
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        sed -n -e 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >>"$legacy"
    done
    shopt -u nullglob
    local opts=(-o "Dir::Etc::SourceList=/dev/null"
                -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
                -o "Dir::State::Lists=$apt_dir/lists"
                -o "Dir::Cache=$apt_dir/cache"
                -o "APT::Sandbox::User=root")
    mkdir -p "$apt_dir/cache/archives/partial"
    apt-get "${opts[@]}" -qq update
    rm -rf "$work/src"
    mkdir -p "$work/src"
    (cd "$work/src" && apt-get "${opts[@]}" -qq source "zsh=5.9-*" >/dev/null 2>&1 \
        || apt-get "${opts[@]}" -qq source zsh)
}

if [[ ! -d "$work/src" ]] || ! ls -d "$work"/src/zsh-5.9 >/dev/null 2>&1; then
    echo "build-zsh: fetching Debian's zsh source"
    fetch_source
fi
src=$(ls -d "$work"/src/zsh-5.9 | head -n1)

rm -rf "$tree"
cp -a "$src" "$tree"
if [[ $variant != stock ]]; then
    patch -d "$tree" -p1 --forward --quiet <"$patch"
fi

echo "build-zsh: building $variant zsh into $installed"
cd "$tree"

# Runs one build step with its output in a log; on failure shows the log's end.
step() {
    local name=$1 started=$SECONDS
    shift
    "$@" >"$work/$name-$variant.log" 2>&1 \
        || { tail -n 60 "$work/$name-$variant.log" >&2; echo "build-zsh: $name failed" >&2; exit 1; }
    echo "build-zsh: $name took $((SECONDS - started)) s"
}

# Debian's patches touch configure.ac: regenerate first, so that make does not
# run configure a second time.
step autoconf sh -c 'autoconf && autoheader && touch stamp-h.in'
# -O1: half the compile time of -O2 on this machine; the shell's own speed is
# dwarfed by the fork, exec and wrapper round trip of every command it runs.
link_libs=()
if [[ $variant != stock ]]; then
    # A private copy, so that a later cargo build cannot change what zsh's
    # make links behind the stamp; then the system libraries Rust's std needs
    # (`--print native-static-libs`).
    cp "$client_lib" "$work/libexecgate_zsh_client.a"
    link_libs=(LIBS="$work/libexecgate_zsh_client.a -lpthread -ldl -lm -lrt -lutil -lgcc_s")
fi
# -z now, as Debian links its zsh: every symbol is bound once at start-up.
# Lazily bound, each forked child would look up (and page in) again every
# library function the shell had not called yet: the client's socket calls
# for every command.
# No zsh of ours reads /etc/zsh: a session's startup is execgate's (a
# system zshenv that moves ZDOTDIR would undo --no-rcs and the prompt
# marker, and one that runs programs would ask before every `run`). The
# package's finds the completions other packages install (its own
# `_execgate` among them), as Debian's zsh does (debian/rules).
system_dirs=(--enable-etcdir="$prefix/etc")
if [[ $variant == package ]]; then
    system_dirs+=(--enable-site-fndir=/usr/local/share/zsh/site-functions
        --enable-additional-fpath=/usr/share/zsh/vendor-functions,/usr/share/zsh/vendor-completions)
fi
step configure ./configure --prefix="$prefix" "${system_dirs[@]}" \
    --disable-gdbm --disable-pcre --disable-cap --with-tcsetpgrp \
    --with-term-lib="ncursesw tinfo" CFLAGS="-O1" LDFLAGS="-Wl,-z,now -Wl,-z,relro" \
    "${link_libs[@]}"
step make make -j"$(nproc)"
rm -rf "$installed"
# The function library too (install.fns: compinit, promptinit, colors,
# vcs_info, ...): `execgate shell` users' .zshrc autoloads them from the
# fpath compiled in (PREFIX/share/zsh/5.9/functions).
step install make DESTDIR="$destdir" install.bin install.modules install.fns
echo "$want" >"$installed/.stamp"
echo "$want_client" >"$installed/.client-stamp"
echo "build-zsh: done: $installed/bin/zsh"
