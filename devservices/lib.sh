# Shared by devservices/up, down, restart and status. Sourced, not run.
# shellcheck shell=bash disable=SC2034  # (the settings below are used by the scripts that source this)

DS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$DS_DIR/.." && pwd -P)"
VAR_DIR="$REPO_ROOT/var/devservices"

DS_SERVERS=(kafka cassandra)

KAFKA_PORT="${DEVSERVICES_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${DEVSERVICES_KAFKA_CONTROLLER_PORT:-9093}"
CASSANDRA_NATIVE_PORT="${DEVSERVICES_CASSANDRA_PORT:-9042}"
CASSANDRA_STORAGE_PORT="${DEVSERVICES_CASSANDRA_STORAGE_PORT:-7000}"

KAFKA_TIMEOUT="${DEVSERVICES_KAFKA_TIMEOUT:-90}"
CASSANDRA_TIMEOUT="${DEVSERVICES_CASSANDRA_TIMEOUT:-180}"

# Fixed KRaft cluster id (22-char URL-safe base64 UUID) for the throw-away dev node.
KAFKA_CLUSTER_ID="9kTN8jkFReurNpGK2iyZnw"

MAVEN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

# Print the comment block at the top of a script (its usage text).
ds_usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"; }

log() { printf '[devservices] %s\n' "$*" >&2; }
die() { printf '[devservices] ERROR: %s\n' "$*" >&2; exit 1; }

ds_python() {
    local py="${DEVSERVICES_PYTHON:-$REPO_ROOT/.venv/bin/python}"
    [[ -x "$py" ]] || command -v "$py" >/dev/null 2>&1 \
        || die "no Python for the readiness checks at '$py': create the repo's .venv (it needs kafka-python and cassandra-driver) or set DEVSERVICES_PYTHON"
    printf '%s\n' "$py"
}

ds_java() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        printf '%s\n' "$JAVA_HOME/bin/java"
    else
        command -v java >/dev/null 2>&1 || die "java not found (Java 17 is needed): install it or set JAVA_HOME"
        command -v java
    fi
}

# Major version of a java binary: 17 for "17.0.15", 1 for "1.8.0".
ds_java_major() {
    "$1" -XshowSettings:properties -version 2>&1 \
        | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n1
}

# Kafka 4.1 needs Java 17 or newer; Cassandra 5.0 runs on Java 11 or 17 only (and its JVM
# options here are the Java 17 set): Java 17 suits both.
ds_check_java() {
    local server="$1" java major
    java="$(ds_java)"
    major="$(ds_java_major "$java")"
    case "$server" in
        kafka) [[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] \
            || die "kafka: $java is Java ${major:-?}; Kafka 4.1 needs Java 17 or newer: set JAVA_HOME to a JDK 17" ;;
        cassandra) [[ "$major" == 17 ]] \
            || die "cassandra: $java is Java ${major:-?}; Cassandra 5.0 is run here on Java 17: set JAVA_HOME to a JDK 17" ;;
    esac
}

server_dir()   { printf '%s\n' "$VAR_DIR/$1"; }
pid_file()     { printf '%s\n' "$VAR_DIR/$1/server.pid"; }
state_dir()    { printf '%s\n' "$VAR_DIR/$1/state"; }
lib_dir()      { printf '%s\n' "$VAR_DIR/$1/lib"; }
server_log()   { printf '%s\n' "$VAR_DIR/$1/state/logs/server.log"; }
main_class() {
    case "$1" in
        kafka) echo kafka.Kafka ;;
        cassandra) echo org.apache.cassandra.service.CassandraDaemon ;;
    esac
}
native_port() {
    case "$1" in
        kafka) echo "$KAFKA_PORT" ;;
        cassandra) echo "$CASSANDRA_NATIVE_PORT" ;;
    esac
}
server_timeout() {
    case "$1" in
        kafka) echo "$KAFKA_TIMEOUT" ;;
        cassandra) echo "$CASSANDRA_TIMEOUT" ;;
    esac
}

ds_valid_server() {
    local s
    for s in "${DS_SERVERS[@]}"; do [[ "$1" == "$s" ]] && return 0; done
    return 1
}

# Servers named on the command line, or all of them.
ds_parse_servers() {
    SERVERS=()
    local a
    for a in "$@"; do
        ds_valid_server "$a" || die "unknown server '$a' (expected: ${DS_SERVERS[*]})"
        SERVERS+=("$a")
    done
    ((${#SERVERS[@]})) || SERVERS=("${DS_SERVERS[@]}")
}

# The command line of a process, or nothing if it is gone.
proc_cmdline() {
    if [[ -r "/proc/$1/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null
    else
        ps -p "$1" -o args= 2>/dev/null
    fi
}

# True if $2 is a live process that is this repo's $1 server (guards against reused pids).
pid_is_server() {
    local server="$1" pid="$2" cmd state
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/stat" ]]; then
        state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
        [[ "$state" == Z ]] && return 1
    fi
    cmd="$(proc_cmdline "$pid")"
    [[ "$cmd" == *"$(main_class "$server")"* && "$cmd" == *"$VAR_DIR/$server/"* ]]
}

# Pid of the running server recorded in its pid file, or nothing.
running_pid() {
    local f pid
    f="$(pid_file "$1")"
    [[ -f "$f" ]] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    pid_is_server "$1" "$pid" || return 1
    printf '%s\n' "$pid"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Serialise up/down/restart of one server across processes (if flock is available).
# Uses fd 9; every process started while it is held must close it (9>&-).
ds_lock() {
    mkdir -p "$(server_dir "$1")"
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>"$(server_dir "$1")/.lock"
    flock -w 600 9 || die "could not lock $(server_dir "$1")/.lock within 600 s"
}
ds_unlock() {
    exec 9>&-
}

# Stop a server by its recorded pid: SIGTERM, wait, then SIGKILL.
stop_server() {
    local server="$1" f pid waited grace
    f="$(pid_file "$server")"
    if [[ ! -f "$f" ]]; then
        log "$server: not running (no pid file)"
        return 0
    fi
    if ! pid="$(running_pid "$server")"; then
        log "$server: pid file $(cat "$f" 2>/dev/null) is stale (no such $server process); removing it"
        rm -f "$f"
        return 0
    fi
    case "$server" in kafka) grace=45 ;; *) grace=60 ;; esac
    log "$server: stopping pid $pid (SIGTERM, up to ${grace}s)"
    kill -TERM "$pid" 2>/dev/null || true
    waited=0
    while pid_is_server "$server" "$pid" && ((waited < grace * 5)); do
        sleep 0.2
        waited=$((waited + 1))
    done
    if pid_is_server "$server" "$pid"; then
        log "$server: still alive after ${grace}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        waited=0
        while pid_is_server "$server" "$pid" && ((waited < 50)); do sleep 0.2; waited=$((waited + 1)); done
    fi
    rm -f "$f"
    log "$server: stopped"
}
