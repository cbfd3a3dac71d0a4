# Shared set-up for scripts/dev, scripts/test and scripts/bench. Source it; do not run it.
# It installs uv and the locked dependencies, and makes sure a RabbitMQ answers.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export METACHAT_AMQP_URL="${METACHAT_AMQP_URL:-amqp://guest:guest@localhost:5672/}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then return; fi
  if [ -x "$HOME/.local/bin/uv" ]; then export PATH="$HOME/.local/bin:$PATH"; return; fi
  say "installing uv (from PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check uv \
    || python3 -m pip install --quiet --user --disable-pip-version-check uv
  export PATH="$HOME/.local/bin:$PATH"
  command -v uv >/dev/null 2>&1 || { echo "could not install uv: run 'python3 -m pip install uv'" >&2; exit 1; }
}

ensure_deps() {
  say "installing the locked Python dependencies (uv sync)"
  uv sync --frozen --quiet
}

# host and port of METACHAT_AMQP_URL
amqp_host_port() {
  uv run --frozen python - <<'PY'
import os, urllib.parse
u = urllib.parse.urlparse(os.environ["METACHAT_AMQP_URL"])
print(u.hostname or "localhost", u.port or 5672)
PY
}

amqp_answers() {
  local host port
  read -r host port < <(amqp_host_port)
  uv run --frozen python - "$host" "$port" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

ensure_rabbitmq() {
  if amqp_answers; then return; fi
  if command -v rabbitmq-server >/dev/null 2>&1; then
    say "no RabbitMQ answers at $METACHAT_AMQP_URL; starting the local rabbitmq-server"
    rabbitmq-server -detached || true
    for _ in $(seq 1 60); do
      if amqp_answers; then return; fi
      sleep 1
    done
  fi
  cat >&2 <<MSG
No RabbitMQ answers at $METACHAT_AMQP_URL and none could be started here.
Start one, then run this script again. One of:
  sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached
  docker run -d --name rabbitmq -p 5672:5672 rabbitmq:3.13-management
or point METACHAT_AMQP_URL at a RabbitMQ you have.
MSG
  exit 1
}
