#!/usr/bin/env bash
# A throwaway redis-server for tests, benchmarks and the demo: loopback only, no persistence.
#
#   scripts/redis.sh install        install Debian's redis-server when no server is on PATH
#   scripts/redis.sh start [PORT]   start one on PORT (default: a free port); prints "PORT PID"
#   scripts/redis.sh stop PID       stop the server with that PID (and only it)
#
# Valkey (the BSD fork) is taken when it is what is installed or what apt offers.
set -euo pipefail

server_bin() {
  command -v redis-server || command -v valkey-server || true
}

install() {
  if [ -n "$(server_bin)" ]; then return 0; fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "redis.sh: no redis-server on PATH and not root; install redis-server (or valkey-server)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # A fresh container has no package lists: fetch them only when apt knows neither package.
  if ! apt-cache policy redis-server valkey-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq
  fi
  local pkg=redis-server
  if apt-cache policy redis-server 2>/dev/null | grep -q 'Candidate: (none)' &&
    apt-cache policy valkey-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    pkg=valkey-server
  fi
  apt-get install -y -qq --no-install-recommends "$pkg" >&2
  # Debian's package starts a system service on 6379 where an init system runs; ours never use it.
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

start() {
  install
  local port="${1:-$(free_port)}"
  local bin
  bin="$(server_bin)"
  local log="${TMPDIR:-/tmp}/or-balancer-redis-$port.log"
  "$bin" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --protected-mode yes --dir "${TMPDIR:-/tmp}" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "redis.sh: redis-server exited; see $log" >&2
      exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port $pid"
      return 0
    fi
    sleep 0.05
  done
  kill "$pid" 2>/dev/null || true
  echo "redis.sh: redis-server did not listen on $port within 5 s; see $log" >&2
  exit 1
}

# Gone, or a zombie: the server outlives the shell that started it, and whoever inherits it may
# be slow to reap it.
gone() {
  ! kill -0 "$1" 2>/dev/null || [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" = "Z" ]
}

stop() {
  local pid="${1:?usage: redis.sh stop PID}"
  kill "$pid" 2>/dev/null || exit 0
  for _ in $(seq 1 250); do
    gone "$pid" && exit 0
    sleep 0.02
  done
  kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *)
    echo "usage: redis.sh install | start [PORT] | stop PID" >&2
    exit 2
    ;;
esac
