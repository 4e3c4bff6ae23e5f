# shellcheck shell=bash
# shellcheck source-path=SCRIPTDIR
# Shared helpers for the deploy/local scripts (stack, test) and .ci/run.
# Source this file; it sources the other lib/*.sh files. Requires bash >= 4.4.

MDM_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck disable=SC2034 # used by the scripts that source this file
MDM_REPO_ROOT="$(cd "$MDM_LIB_DIR/../../.." && pwd -P)"
MDM_SCRIPT_NAME="${MDM_SCRIPT_NAME:-$(basename "$0")}"

# --- messages ---------------------------------------------------------------

info() { printf '%s: %s\n' "$MDM_SCRIPT_NAME" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$MDM_SCRIPT_NAME" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$MDM_SCRIPT_NAME" "$*" >&2
    exit 1
}

# Prints the last lines of a log file, indented, to stderr.
show_log_tail() {
    local file="$1" lines="${2:-25}"
    if [[ -r "$file" ]]; then
        printf '%s: --- last %s lines of %s ---\n' "$MDM_SCRIPT_NAME" "$lines" "$file" >&2
        tail -n "$lines" "$file" | sed 's/^/    /' >&2
        printf '%s: --- end of %s ---\n' "$MDM_SCRIPT_NAME" "$file" >&2
    fi
}

# --- misc -------------------------------------------------------------------

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Current time in milliseconds (bash 5 EPOCHREALTIME, no fork).
now_ms() {
    local t="${EPOCHREALTIME/[.,]/}"
    printf '%s' "$((t / 1000))"
}

# Formats a millisecond duration as "12.3s".
fmt_ms() {
    local ms="$1"
    printf '%d.%ds' "$((ms / 1000))" "$(((ms % 1000) / 100))"
}

# Runs "$@" and prints how long it took. Returns the command's status.
timed() {
    local label="$1"
    shift
    local start rc=0
    start="$(now_ms)"
    info "==> $label"
    "$@" || rc=$?
    local took
    took="$(fmt_ms "$(($(now_ms) - start))")"
    if ((rc == 0)); then
        info "<== $label: ok ($took)"
    else
        info "<== $label: FAILED with status $rc ($took)"
    fi
    return "$rc"
}

# wait_until TIMEOUT_SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_until() {
    local timeout="$1"
    shift
    local deadline=$(($(now_ms) + timeout * 1000))
    while ! "$@"; do
        if (($(now_ms) >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

# Quotes a value for a shell-sourceable KEY=VALUE line; plain when no quoting is needed.
shell_quote() {
    local v="$1"
    if [[ "$v" =~ ^[A-Za-z0-9_./:@%+=,?-]*$ ]]; then
        printf '%s' "$v"
    else
        printf "'%s'" "${v//\'/\'\\\'\'}"
    fi
}

# --- process helpers --------------------------------------------------------

# pid_alive PID: the process exists and is not a zombie (an exited child nobody reaped yet).
pid_alive() {
    local pid="$1" stat
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/stat" ]] && read -r stat <"/proc/$pid/stat" 2>/dev/null; then
        stat="${stat##*) }"
        [[ "${stat:0:1}" != Z ]] || return 1
    fi
    return 0
}

# Reads a pid file; prints the pid when the file holds one.
read_pidfile() {
    local file="$1" pid
    [[ -r "$file" ]] || return 1
    read -r pid <"$file" || true
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    printf '%s' "$pid"
}

# The command line of a process with NULs turned into spaces.
pid_cmdline() {
    local pid="$1"
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline"
}

# pid_has_env PID NAME=VALUE: true when the process environment holds exactly that entry.
pid_has_env() {
    local pid="$1" entry="$2"
    [[ -r "/proc/$pid/environ" ]] || return 1
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -Fxq -- "$entry"
}

# close_inherited_fds: closes every descriptor above 2 in the current (sub)shell, so a
# long-lived server started from it holds no lock files or pipes of its caller.
close_inherited_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd="${fd##*/}"
        [[ "$fd" =~ ^[0-9]+$ ]] || continue
        ((fd > 2)) || continue
        eval "exec ${fd}>&-" 2>/dev/null || true
    done
}

# stop_pid PID GRACE_SECONDS LABEL: SIGTERM, wait, then SIGKILL.
stop_pid() {
    local pid="$1" grace="$2" label="$3"
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    if ! wait_until "$grace" _pid_gone "$pid"; then
        warn "$label (pid $pid) did not exit within ${grace}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_until 10 _pid_gone "$pid" || warn "$label (pid $pid) is still alive after SIGKILL"
    fi
}
_pid_gone() { ! pid_alive "$1"; }

# HTTP status code of a GET (000 when nothing answers).
http_code() {
    local url="$1" code
    code="$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$url" 2>/dev/null)" || true
    printf '%s' "${code:-000}"
}

# shellcheck source=ports.sh
source "$MDM_LIB_DIR/ports.sh"
# shellcheck source=packages.sh
source "$MDM_LIB_DIR/packages.sh"
# shellcheck source=postgres.sh
source "$MDM_LIB_DIR/postgres.sh"
# shellcheck source=redis.sh
source "$MDM_LIB_DIR/redis.sh"
