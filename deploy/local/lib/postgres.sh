# shellcheck shell=bash
# PostgreSQL lifecycle on loopback. PostgreSQL refuses to run as root, so as root every
# server-side command runs as the "postgres" user (created by Debian's postgresql package);
# as a normal user it runs as that user. Call find_pg_bindir (or ensure_packages) first.

MDM_PG_USER="postgres"

# pg_as COMMAND...: runs a PostgreSQL program as the server's OS user, from "/" so an
# unreadable current directory does not matter.
pg_as() {
    if is_root; then
        id -u "$MDM_PG_USER" >/dev/null 2>&1 ||
            die "OS user '$MDM_PG_USER' does not exist (Debian's postgresql package creates it)"
        (cd / && runuser -u "$MDM_PG_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

# pg_own PATH...: hands files/directories to the server's OS user when running as root.
pg_own() {
    if is_root; then
        chown "$MDM_PG_USER:$MDM_PG_USER" "$@"
    fi
}

# pg_prepare_dir DIR: creates DIR (mode 0700) owned by the server's OS user and checks that
# user can reach it (every parent directory must be searchable by it).
pg_prepare_dir() {
    local dir="$1"
    mkdir -p "$dir"
    chmod 700 "$dir"
    pg_own "$dir"
    if ! pg_as test -w "$dir"; then
        local who
        who="$(id -un)"
        is_root && who="$MDM_PG_USER"
        die "user '$who' cannot write $dir; every parent directory must be searchable by it (for example: chmod o+x on the parents)"
    fi
}

# pg_initdb DATADIR LOGFILE INITDB_ARGS...: initialises a cluster with superuser "postgres".
pg_initdb() {
    local data="$1" log="$2"
    shift 2
    pg_prepare_dir "$data"
    if ! pg_as "$MDM_PG_BINDIR/initdb" -D "$data" -U postgres -E UTF8 --locale=C "$@" >"$log" 2>&1; then
        show_log_tail "$log" 40
        die "initdb failed for $data (log: $log)"
    fi
}

pg_initialized() { [[ -f "$1/PG_VERSION" ]]; }

# pg_start DATADIR PORT SOCKETDIR LOGFILE [-c name=value]...: starts the server listening on
# 127.0.0.1:PORT and on a Unix socket in SOCKETDIR; waits until it accepts connections.
# Returns non-zero (without exiting) when it does not start, e.g. the port was taken.
pg_start() {
    local data="$1" port="$2" sock="$3" log="$4"
    shift 4
    local opts arg
    opts="-c listen_addresses=127.0.0.1 -p $port -k $(shell_quote "$sock")"
    for arg in "$@"; do
        opts+=" $(shell_quote "$arg")"
    done
    touch "$log"
    pg_own "$log"
    pg_as "$MDM_PG_BINDIR/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$opts" start >/dev/null
}

# pg_running DATADIR: true when a postmaster is running for DATADIR.
pg_running() {
    [[ -f "$1/postmaster.pid" ]] || return 1
    pg_as "$MDM_PG_BINDIR/pg_ctl" -D "$1" status >/dev/null 2>&1
}

# Line 1 of postmaster.pid is the postmaster pid, line 4 its port.
pg_pid() { sed -n 1p "$1/postmaster.pid" 2>/dev/null; }
pg_port() { sed -n 4p "$1/postmaster.pid" 2>/dev/null; }

# pg_stop DATADIR MODE: stops the postmaster of DATADIR (MODE: smart, fast, immediate).
pg_stop() {
    local data="$1" mode="$2"
    pg_running "$data" || return 0
    pg_as "$MDM_PG_BINDIR/pg_ctl" -D "$data" -m "$mode" -w -t 120 stop >/dev/null
}

# pg_ready PORT: the server on 127.0.0.1:PORT accepts connections.
pg_ready() {
    local isready="$MDM_PG_BINDIR/pg_isready"
    [[ -x "$isready" ]] || isready="pg_isready"
    "$isready" -q -h 127.0.0.1 -p "$1" -t 2
}

# pg_psql SOCKETDIR PORT PSQL_ARGS...: psql as superuser "postgres" over the Unix socket.
pg_psql() {
    local sock="$1" port="$2"
    shift 2
    local psql="$MDM_PG_BINDIR/psql"
    [[ -x "$psql" ]] || psql="psql"
    pg_as "$psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d postgres "$@"
}
