# Shared helpers for script/server and script/test. Every step is idempotent: it checks first and
# installs or starts only what is missing, so the scripts are safe to run again and again.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CARTRIDGE_VENV:-$ROOT/.venv}"
STATE_DIR="${CARTRIDGE_STATE_DIR:-$ROOT/var}"
APT_UPDATED=""

say() { printf '==> %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    say "this step installs system packages and must run as root"
    exit 1
  fi
}

apt_install() {
  # apt_install PACKAGE... : installs the packages that are not installed yet.
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root
  if [ -z "$APT_UPDATED" ]; then
    say "apt-get update"
    apt-get update -qq
    APT_UPDATED=1
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_python() {
  if ! command -v python3 >/dev/null || ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    apt_install python3
  fi
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  local stamp="$VENV/.cartridge-deps"
  local want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python dependencies"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e "$ROOT[dev]"
    echo "$want" > "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

wait_for() {
  # wait_for SECONDS DESCRIPTION COMMAND... : polls COMMAND until it succeeds.
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq 1 $((seconds * 4))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  say "$what did not come up in ${seconds}s"
  return 1
}

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    return 0
  fi
  apt_install postgresql postgresql-client
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n1)"
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # The tests connect as postgres over loopback without a password.
  if ! grep -q "cartridge-tests" "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust # cartridge-tests\nhost all all ::1/128 trust # cartridge-tests' "$hba"
  fi
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  wait_for 30 "PostgreSQL" pg_isready -q -h 127.0.0.1 -p 5432
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    return 0
  fi
  apt_install redis-server redis-tools
  say "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/cartridge.log
  wait_for 15 "Redis" redis-cli -h 127.0.0.1 -p 6379 ping
}

ensure_docker() {
  apt_install docker.io
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  need_root
  say "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/cartridge-dockerd.log 2>&1 &
  wait_for 60 "dockerd" docker info
}

ensure_build_tools() {
  # tini (its tini-static is every image's pid 1) and musl-tools (the launcher's shim is
  # compiled static with musl-gcc, a gcc wrapper): see workers/pipeline/launcher. iptables: the
  # build network's deny list (workers/pipeline/firewall.py).
  apt_install git docker-registry nginx-light skopeo busybox-static ca-certificates curl \
    docker-compose tini musl-tools gcc debootstrap iptables
}

ensure_base_image() {
  # The installation's default base image, made from busybox: no public registry is involved.
  local image="${1:-cartridge/base:latest}"
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  say "building base image $image from busybox-static"
  local context
  context="$(mktemp -d)"
  cp /bin/busybox "$context/busybox"
  cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /usr/bin /tmp /etc && ln -s /bin/env /usr/bin/env \
 && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && echo 'root:x:0:' > /etc/group
ENV PATH=/usr/local/bin:/usr/bin:/bin
DOCKERFILE
  docker build -q -t "$image" "$context" >/dev/null
  rm -rf "$context"
}

ensure_browser() {
  # Debian's chromium, driven by Playwright for Python (pinned in the dev extras); Playwright's
  # own browser downloads are never used.
  apt_install chromium
}
