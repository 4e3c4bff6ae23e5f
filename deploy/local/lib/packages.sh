# shellcheck shell=bash
# Locating server binaries and installing the Debian packages that provide them.

# Sets MDM_PG_BINDIR to the newest /usr/lib/postgresql/*/bin holding initdb (Debian layout),
# else the directory of an initdb on PATH. Returns 1 when none is found.
find_pg_bindir() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] || continue
        if [[ -z "$best" ]] || [[ "$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n1)" == "$d" ]]; then
            best="$d"
        fi
    done
    if [[ -z "$best" ]] && command -v initdb >/dev/null 2>&1; then
        best="$(dirname "$(readlink -f "$(command -v initdb)")")"
    fi
    [[ -n "$best" ]] || return 1
    MDM_PG_BINDIR="$best"
}

# Resolves a command on PATH or in the sbin directories (nginx lives in /usr/sbin, which is
# not on a normal user's PATH). Prints the path.
find_command() {
    local name="$1" d
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return 0
    fi
    for d in /usr/sbin /sbin /usr/local/sbin; do
        if [[ -x "$d/$name" ]]; then
            printf '%s' "$d/$name"
            return 0
        fi
    done
    return 1
}

# _component_present NAME: checks one of: postgresql redis-server nginx curl openssl.
_component_present() {
    case "$1" in
    postgresql)
        find_pg_bindir || return 1
        local t
        for t in pg_isready psql; do
            [[ -x "$MDM_PG_BINDIR/$t" ]] || command -v "$t" >/dev/null 2>&1 || return 1
        done
        ;;
    redis-server) find_command redis-server >/dev/null && find_command redis-cli >/dev/null ;;
    *) find_command "$1" >/dev/null ;;
    esac
}

# ensure_packages PKG...: PKG is a Debian package name among postgresql, redis-server,
# nginx, curl, openssl. Missing ones are installed with apt-get when running as root;
# otherwise this fails naming the packages to install.
ensure_packages() {
    local pkg missing=()
    for pkg in "$@"; do
        _component_present "$pkg" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0

    if ! is_root; then
        die "missing Debian packages: ${missing[*]} (install them with: sudo apt-get install -y ${missing[*]})"
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages: ${missing[*]}, and apt-get is not available to install them"

    info "installing missing packages: ${missing[*]}"
    apt_install "${missing[@]}"

    for pkg in "${missing[@]}"; do
        _component_present "$pkg" || die "package $pkg was installed but its programs are still missing"
    done
}

# apt_install PKG...: apt-get update (once per shell) and a non-interactive install.
MDM_APT_UPDATED="${MDM_APT_UPDATED:-}"
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "$MDM_APT_UPDATED" ]]; then
        apt-get update -q || die "apt-get update failed"
        MDM_APT_UPDATED=1
    fi
    apt-get install -y -q --no-install-recommends "$@" || die "apt-get install $* failed"
}

# require_commands CMD...: fails when a basic tool (util-linux, coreutils) is missing.
require_commands() {
    local c missing=()
    for c in "$@"; do
        find_command "$c" >/dev/null || missing+=("$c")
    done
    ((${#missing[@]} == 0)) || die "required commands not found: ${missing[*]}"
}
