#!/usr/bin/env bash
# PostgreSQL with pgvector for the PostgreSQL gallery backend: install it, and run throwaway
# clusters on 127.0.0.1 for the tests and benchmarks.
#
#   bash scripts/postgres.sh install            # Debian's PostgreSQL 15 + pgvector, when missing
#   bash scripts/postgres.sh start DIR [PORT]   # initdb DIR (once), start it on 127.0.0.1:PORT
#   bash scripts/postgres.sh url DIR            # postgresql://mobileface@127.0.0.1:PORT/postgres
#   bash scripts/postgres.sh restart DIR        # pg_ctl restart -m fast
#   bash scripts/postgres.sh stop DIR           # pg_ctl stop -m fast (data kept)
#   bash scripts/postgres.sh remove DIR         # stop if running, then delete DIR
#
# pgvector is built from ../shared/vendor/pgvector-0.8.6.tar.gz (or $PGVECTOR_TARBALL), checked
# against its SHA-256. A cluster trusts its one user, `mobileface` (a superuser), on 127.0.0.1
# only, and keeps its socket in DIR. initdb refuses to run as root: as root, the cluster runs as
# the `postgres` OS user (created if missing). Extra server settings: $PG_SETTINGS, as
# "name=value name=value".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGVECTOR_TARBALL=${PGVECTOR_TARBALL:-$here/../../shared/vendor/pgvector-0.8.6.tar.gz}
PGVECTOR_SHA256=5743dac39fdfa740533cf95e71b033bd5513b71dda194b3cf19464ccbf76f3fb
PG_USER=mobileface

say() { echo "postgres.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
    if [ -x "/usr/lib/postgresql/$PG_MAJOR/bin/initdb" ]; then
        echo "/usr/lib/postgresql/$PG_MAJOR/bin"
        return
    fi
    local found
    found=$(command -v initdb || true)
    [ -n "$found" ] || return 1
    dirname "$(readlink -f "$found")"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "installing needs root (or passwordless sudo): $*"
    fi
}

cmd_install() {
    local bin
    bin=$(bindir || true)
    if [ -z "$bin" ] || [ ! -x "$bin/pg_config" ] \
        || [ ! -f "$("$bin/pg_config" --includedir-server)/postgres.h" ]; then
        command -v apt-get >/dev/null || die "no apt-get: install PostgreSQL $PG_MAJOR yourself"
        say "installing postgresql postgresql-server-dev-$PG_MAJOR (apt-get)"
        local pkgs=(postgresql "postgresql-server-dev-$PG_MAJOR" make gcc)
        apt_install() {
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${pkgs[@]}" >/dev/null
        }
        apt_install || { as_root apt-get update -qq >/dev/null && apt_install; } \
            || die "apt-get install failed"
        bin=$(bindir) || die "PostgreSQL installed but initdb not found"
    fi
    local share
    share=$("$bin/pg_config" --sharedir)
    if [ -f "$share/extension/vector.control" ]; then
        say "PostgreSQL $("$bin/pg_config" --version | cut -d' ' -f2) with pgvector: ready"
        return
    fi
    [ -f "$PGVECTOR_TARBALL" ] || die "pgvector is not installed and $PGVECTOR_TARBALL is missing"
    echo "$PGVECTOR_SHA256  $PGVECTOR_TARBALL" | sha256sum -c --quiet - \
        || die "$PGVECTOR_TARBALL: SHA-256 mismatch"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    say "building pgvector from $(basename "$PGVECTOR_TARBALL") (about a minute)"
    tar -xzf "$PGVECTOR_TARBALL" -C "$build" --strip-components=1
    make -s -C "$build" PG_CONFIG="$bin/pg_config" -j"$(nproc)" >"$build/build.log" 2>&1 \
        || { tail -20 "$build/build.log" >&2; die "building pgvector failed"; }
    as_root make -s -C "$build" PG_CONFIG="$bin/pg_config" install >/dev/null \
        || die "installing pgvector failed"
    say "pgvector installed into $share/extension"
}

# Run a PostgreSQL program as the cluster's OS user (not root: initdb and postgres refuse it).
run_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$(owner)" -- "$@"
    else
        "$@"
    fi
}

owner() {
    if [ "$(id -u)" -ne 0 ]; then id -un; return; fi
    id postgres >/dev/null 2>&1 \
        || useradd --system --no-create-home --shell /usr/sbin/nologin postgres >/dev/null
    echo postgres
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd_start() {
    local dir=${1:?usage: postgres.sh start DIR [PORT]} port=${2:-}
    local bin
    bin=$(bindir) || die "PostgreSQL not installed: run bash scripts/postgres.sh install"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        [ -n "$port" ] || port=$(free_port)
        echo "$port" >"$dir/port"
        chmod 700 "$dir"
        if [ "$(id -u)" -eq 0 ]; then chown "$(owner)" "$dir"; fi
        run_as_owner "$bin/initdb" -D "$dir/data" -U "$PG_USER" --auth=trust -E UTF8 \
            --locale=C.UTF-8 --no-instructions >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
        {
            echo "listen_addresses = '127.0.0.1'"
            echo "port = $port"
            echo "unix_socket_directories = '$dir'"
            echo "max_connections = 200"
            for setting in ${PG_SETTINGS:-}; do echo "${setting%%=*} = '${setting#*=}'"; done
        } >>"$dir/data/postgresql.conf"
        # Trust on loopback only (initdb's --auth=trust also covers the socket in DIR).
        echo "host all all 127.0.0.1/32 trust" >"$dir/data/pg_hba.conf"
        echo "local all all trust" >>"$dir/data/pg_hba.conf"
    fi
    port=$(cat "$dir/port")
    run_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { tail -20 "$dir/server.log" >&2; die "the server did not start"; }
    cmd_url "$dir"
}

cmd_url() {
    local dir=${1:?usage: postgres.sh url DIR}
    echo "postgresql://$PG_USER@127.0.0.1:$(cat "$dir/port")/postgres"
}

cmd_restart() {
    local dir=${1:?usage: postgres.sh restart DIR}
    run_as_owner "$(bindir)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 \
        restart >/dev/null
}

cmd_stop() {
    local dir=${1:?usage: postgres.sh stop DIR}
    run_as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

cmd_remove() {
    local dir=${1:?usage: postgres.sh remove DIR}
    [ -d "$dir" ] || return 0
    if [ -f "$dir/data/postmaster.pid" ]; then  # thrown away: no shutdown checkpoint needed
        run_as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    install) cmd_install ;;
    start | url | restart | stop | remove) "cmd_$1" "${@:2}" ;;
    *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
