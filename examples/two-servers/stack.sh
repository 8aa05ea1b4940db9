#!/usr/bin/env bash
# `make up` / `make down`: the two-server example in the background on fixed ports, for exploring
# by hand. Run from the repository root after `make build venv npm`.
#
#   Envoy + scopegate   127.0.0.1:10000 (admin 9901)   examples/two-servers/envoy.yaml (`render envoy` output: make example-envoy)
#   scopegate-broker    127.0.0.1:8080 public, 8081 internal   examples/two-servers/scopegate.yaml
#   oidc-provider       127.0.0.1:9000 (the downstream identity provider; demo-user logs in by itself)
#   MCP servers         127.0.0.1:9101 support-assistant, 127.0.0.1:9102 ops-console
#
# Pid files, logs, the broker's database and the generated secrets (encryption key, downstream
# client secret; mode 600) live in .run/, which git ignores.
set -euo pipefail
RUN=.run
ENVOY=.venv/bin/envoy
BROKER=target/debug/scopegate-broker
MCP=target/debug/scopegate-example-mcp
AUTHZ=examples/two-servers/authz
NAMES=(envoy broker support-assistant ops-console authz)

# Starts "$@" in its own session (it outlives this shell) with output in .run/NAME.log.
start() {
  local name=$1; shift
  setsid nohup "$@" >"$RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "    $name is up on 127.0.0.1:$port"
      return 0
    fi
    if ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      echo "error: $name exited; its log ($RUN/$name.log):" >&2
      tail -n 30 "$RUN/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "error: $name did not open 127.0.0.1:$port in 30 s (log: $RUN/$name.log)" >&2
  return 1
}

secret() { # NAME: 32 random bytes as hex in .run/NAME, made once, mode 600
  local f="$RUN/$1"
  if [[ ! -s $f ]]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$f")
  fi
  chmod 600 "$f"
  cat "$f"
}

up() {
  for f in "$ENVOY" "$BROKER" "$MCP" target/wasm32-wasip1/release/scopegate_filter.wasm "$AUTHZ/node_modules/oidc-provider"; do
    [[ -e $f ]] || { echo "error: $f is missing: run make build venv npm" >&2; exit 1; }
  done
  mkdir -p "$RUN"
  for name in "${NAMES[@]}"; do
    if [[ -f $RUN/$name.pid ]] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      echo "error: $name is already running (pid $(cat "$RUN/$name.pid")); run make down first" >&2
      exit 1
    fi
  done
  for port in 10000 9901 8080 8081 9000 9101 9102; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "error: 127.0.0.1:$port is already in use" >&2
      exit 1
    fi
  done
  local key downstream_secret
  key=$(secret encryption.key)
  downstream_secret=$(secret downstream-client-secret)
  (umask 077 && cat >"$RUN/authz.json" <<JSON
{
  "host": "127.0.0.1",
  "port": 9000,
  "issuer": "http://127.0.0.1:9000",
  "accessTokenTTL": 600,
  "clients": [{
    "client_id": "scopegate-saas",
    "client_secret": "$downstream_secret",
    "redirect_uris": ["http://127.0.0.1:10000/callback"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "client_secret_basic",
    "scope": "openid offline_access tickets.read tickets.write accounts.read admin.read"
  }],
  "resources": {"https://api.example.com": {"scope": "tickets.read tickets.write accounts.read admin.read", "accessTokenTTL": 600}}
}
JSON
  )
  echo "==> starting the two-server example in the background (logs and pids in $RUN/)"
  (cd "$AUTHZ" && start_authz)
  wait_port authz 9000
  start support-assistant "$MCP" --name support-assistant --listen 127.0.0.1:9101
  start ops-console "$MCP" --name ops-console --listen 127.0.0.1:9102
  wait_port support-assistant 9101
  wait_port ops-console 9102
  # The broker runs in .run/ so the document's relative `database` lands there.
  (
    cd "$RUN"
    export SAAS_CLIENT_SECRET=$downstream_secret SCOPEGATE_ENCRYPTION_KEY=$key
    RUN=.
    start broker "../$BROKER" serve --config ../examples/two-servers/scopegate.yaml
  )
  wait_port broker 8080
  wait_port broker 8081
  start envoy "$ENVOY" -c examples/two-servers/envoy.yaml --concurrency 1 --disable-hot-restart \
    --file-flush-interval-msec 200
  wait_port envoy 10000
  # The filter fetches the broker's keys after start; until then a token gets 503. Wait until
  # a (bogus) token is judged instead: 401.
  local code=""
  for _ in $(seq 1 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'authorization: Bearer x.y.z' \
      http://127.0.0.1:10000/support-assistant/mcp || true)
    [[ $code == 401 ]] && break
    sleep 0.2
  done
  if [[ $code != 401 ]]; then
    echo "error: the filter did not load the broker's keys in 30 s (last answer: $code; see $RUN/envoy.log)" >&2
    exit 1
  fi
  echo "    the filter has the broker's signing keys"
  echo "==> up: MCP servers at http://127.0.0.1:10000/support-assistant/mcp and http://127.0.0.1:10000/ops-console/mcp"
  echo "    try: target/debug/scopegate-walkthrough --gateway http://127.0.0.1:10000"
  echo "    access log: $RUN/access.log; stop with: make down"
}

start_authz() { # from examples/two-servers/authz
  RUN=../../../.run
  start authz node server.mjs --config "$RUN/authz.json"
}

down() {
  local any=0
  for name in "${NAMES[@]}"; do
    local f="$RUN/$name.pid"
    [[ -f $f ]] || continue
    any=1
    local pid
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
      echo "    stopped $name (pid $pid)"
    fi
    rm -f "$f"
  done
  [[ $any == 1 ]] || echo "    nothing was running"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
