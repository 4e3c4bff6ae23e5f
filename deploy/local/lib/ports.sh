# shellcheck shell=bash
# Port probing. Ports handed out in this shell are remembered in MDM_RESERVED_PORTS so two
# components chosen before either has bound never get the same port.

MDM_RESERVED_PORTS=" "
# shellcheck disable=SC2034 # output variable, read by the callers
PICKED_PORT=""

reserve_port() { MDM_RESERVED_PORTS+="$1 "; }
port_reserved() { [[ "$MDM_RESERVED_PORTS" == *" $1 "* ]]; }

# port_in_use PORT: true when any TCP socket (IPv4 or IPv6, any address, any state except
# TIME_WAIT/CLOSE) is bound to PORT in this network namespace. Falls back to a connect
# probe on 127.0.0.1 when /proc/net/tcp is unavailable.
port_in_use() {
    local port="$1" hex files=()
    printf -v hex '%04X' "$port"
    [[ -r /proc/net/tcp ]] && files+=(/proc/net/tcp)
    [[ -r /proc/net/tcp6 ]] && files+=(/proc/net/tcp6)
    if ((${#files[@]} > 0)); then
        # Column 2 is local "ADDR:PORT" in hex, column 4 the state (06 TIME_WAIT, 07 CLOSE).
        awk -v p="$hex" 'FNR > 1 { n = split($2, a, ":"); if (a[n] == p && $4 != "06" && $4 != "07") { found = 1; exit } }
            END { exit !found }' "${files[@]}"
        return
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

port_available() {
    local port="$1"
    ! port_reserved "$port" && ! port_in_use "$port"
}

# pick_port PREFERRED: PREFERRED when available, else the next available port above it
# (up to +999), else a random free one. Reserves it and stores it in PICKED_PORT (not printed:
# a command substitution would run in a subshell and lose the reservation).
pick_port() {
    local preferred="$1" p
    for ((p = preferred; p < preferred + 1000 && p < 65536; p++)); do
        if port_available "$p"; then
            reserve_port "$p"
            # shellcheck disable=SC2034 # output variable
            PICKED_PORT="$p"
            return 0
        fi
    done
    pick_free_port
}

# pick_free_port: stores in PICKED_PORT a random available port in 15000-32767, below
# Linux's ephemeral range (32768-60999), so outgoing connections do not take it between
# probe and bind.
pick_free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((15000 + (RANDOM % 17768)))
        if port_available "$p"; then
            reserve_port "$p"
            # shellcheck disable=SC2034 # output variable
            PICKED_PORT="$p"
            return 0
        fi
    done
    die "no free TCP port found in 15000-32767"
}
