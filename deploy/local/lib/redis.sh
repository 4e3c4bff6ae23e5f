# shellcheck shell=bash
# Redis lifecycle on loopback (redis-server daemonizes itself and writes a pid file).

redis_cli() {
    local port="$1"
    shift
    redis-cli -h 127.0.0.1 -p "$port" "$@"
}

# redis_server_pid PORT: the process_id reported by the server answering on PORT.
redis_server_pid() {
    redis_cli "$1" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p'
}

# redis_owned PORT PIDFILE: the redis-server named by PIDFILE is alive and is the one
# answering on 127.0.0.1:PORT (so a foreign Redis on that port is never mistaken for ours).
redis_owned() {
    local port="$1" pidfile="$2" pid
    pid="$(read_pidfile "$pidfile")" || return 1
    pid_alive "$pid" || return 1
    [[ "$(pid_cmdline "$pid")" == *redis-server* ]] || return 1
    [[ "$(redis_server_pid "$port")" == "$pid" ]]
}

# redis_start PORT DIR PIDFILE LOGFILE [redis-server args]...: starts a daemonized server on
# 127.0.0.1:PORT and waits until it answers. Returns non-zero when it does not come up.
redis_start() {
    local port="$1" dir="$2" pidfile="$3" log="$4"
    shift 4
    mkdir -p "$dir"
    rm -f "$pidfile"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
        --pidfile "$pidfile" --dir "$dir" --logfile "$log" "$@" >/dev/null || return 1
    wait_until 20 redis_owned "$port" "$pidfile"
}

# redis_stop PIDFILE LABEL: SIGTERM to the pid in PIDFILE when it is a redis-server.
redis_stop() {
    local pidfile="$1" label="$2" pid
    pid="$(read_pidfile "$pidfile")" || return 0
    if pid_alive "$pid" && [[ "$(pid_cmdline "$pid")" == *redis-server* ]]; then
        stop_pid "$pid" 60 "$label"
    fi
    rm -f "$pidfile"
}
