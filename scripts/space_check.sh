#!/usr/bin/env bash
# Builds the Hugging Face Space from the Dockerfile, serves it, and runs the browser test
# (tests/test_browser.py) against it. Run as root on Debian 12, from anywhere:
#
#   scripts/space_check.sh             a container engine: docker build + docker run (default)
#   scripts/space_check.sh --user      no engine: the Dockerfile's steps replayed as a fresh
#                                      uid-1000 user with an empty home, then its CMD
#   options: --committed   build what `git push` of HEAD sends (git archive HEAD); default: the
#                          working tree's tracked files plus untracked ones git does not ignore
#            --fresh       docker build --no-cache (the base image is kept)
#            --keep        keep the image (docker) or the user and its home (--user)
#
# Docker mode uses the engine DOCKER_HOST (or the default socket) points at; without one it
# installs Debian's docker.io and runs a private dockerd (its own socket and data root under
# /var/lib/fedtext-space-check), stopped at the end. No image registry is needed: when the
# Dockerfile's FROM (python:3.11-slim-bookworm) is missing it is made from Debian's packages with
# mmdebstrap (python3.11 on PATH at /usr/local/bin, as in the real image).
# The browser test runs here, with the repository's .venv (scripts/setup.sh --test).
# Everything started is stopped on exit; the server must stop on SIGTERM leaving no TFF worker.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

mode=docker committed=0 fresh=0 keep=0
for arg in "$@"; do
  case $arg in
    --user) mode=user ;;
    --docker) mode=docker ;;
    --committed) committed=1 ;;
    --fresh) fresh=1 ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "space_check: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { printf '[space_check %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it starts an engine or creates a user)"
[ -x .venv/bin/python ] && .venv/bin/python -c 'import playwright' 2>/dev/null \
  || die "no test tools in .venv: run scripts/setup.sh --test"
[ -x /usr/bin/chromium ] || die "no /usr/bin/chromium: run scripts/setup.sh --test"

T0=$(date +%s)
WORK=$(mktemp -d /tmp/fedtext-space-check.XXXXXX)
chmod 755 "$WORK"
MARKER="FEDTEXT_SPACE_CHECK=$(basename "$WORK")"  # in the server's env; its TFF workers inherit it
IMAGE=fedtext-space:check
CONTAINER=""
DOCKERD_PID=""
SERVER_PID=""
SPACE_USER=""
OWN_USER=0

free_port() { .venv/bin/python -c 'import portpicker; print(portpicker.pick_unused_port())'; }

# TFF worker processes started under the server under test (found by the marker in their env).
workers() {
  local pid
  for pid in $(pgrep -f worker_binary || true); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "$MARKER"; then echo "$pid"; fi
  done
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$CONTAINER" ]; then
    $DOCKER rm -f "$CONTAINER" >/dev/null 2>&1
    [ $keep = 1 ] || $DOCKER rmi "$IMAGE" >/dev/null 2>&1
    # Our own engine keeps only the base image between runs: the next run builds afresh.
    [ $keep = 1 ] || [ -z "$DOCKERD_PID" ] || $DOCKER builder prune -af >/dev/null 2>&1
  fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL -- "-$SERVER_PID" 2>/dev/null
  fi
  for pid in $(workers); do kill -KILL "$pid" 2>/dev/null; done
  if [ -n "$DOCKERD_PID" ]; then
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL "$DOCKERD_PID" 2>/dev/null
  fi
  if [ $OWN_USER != 0 ] && [ $keep = 0 ]; then
    [ $OWN_USER = 1 ] && pkill -KILL -u "$SPACE_USER" 2>/dev/null  # never on a shared uid
    userdel -r "$SPACE_USER" 2>/dev/null
  fi
  rm -rf "$WORK"
  say "took $(($(date +%s) - T0)) s; exit $rc"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ the build context
CTX=$WORK/ctx
mkdir -p "$CTX"
if [ $committed = 1 ]; then
  git archive HEAD | tar -x -C "$CTX"
  say "context: HEAD $(git rev-parse --short HEAD) ($(git ls-tree -r HEAD | wc -l) files)"
else
  git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -x -C "$CTX"
  say "context: the working tree at $(git rev-parse --short HEAD)" \
    "($(find "$CTX" -type f | wc -l) files, $(git status --porcelain | wc -l) changed or new)"
fi
chmod -R a+rX "$CTX"
EXPOSED=$(awk 'toupper($1) == "EXPOSE" {print $2; exit}' Dockerfile)
EXPOSED=${EXPOSED%%/*}
[ -n "$EXPOSED" ] || die "no EXPOSE in the Dockerfile"

# ------------------------------------------------------------------ serve, test, stop

wait_for_health() {  # URL ALIVE-CHECK...: until the server answers /_stcore/health with "ok"
  local url=$1 deadline=$(($(date +%s) + 180))
  shift
  until [ "$(curl -s --max-time 2 "$url/_stcore/health" || true)" = ok ]; do
    "$@" 2>/dev/null || { tail -30 "$WORK/server.log" >&2; die "the server ended before serving"; }
    [ "$(date +%s)" -lt "$deadline" ] || die "no answer from $url/_stcore/health in 180 s"
    sleep 0.5
  done
}

browser_test() {  # $1 url
  say "browser test against $1"
  local t rc=0
  t=$(date +%s)
  FEDTEXT_BROWSER_URL=$1 FEDTEXT_BROWSER_MARKER=$MARKER \
    .venv/bin/python -m pytest tests/test_browser.py -p no:cacheprovider -s -q \
    --basetemp "$WORK/pytest" || rc=$?
  say "browser test: exit $rc in $(($(date +%s) - t)) s"
  return $rc
}

no_worker_left() {
  local left
  for _ in $(seq 1 30); do
    left=$(workers)
    [ -z "$left" ] && { say "no TFF worker of the server left"; return 0; }
    sleep 0.5
  done
  die "TFF worker(s) outlived the server: $left"
}

# ------------------------------------------------------------------ docker
running() { [ "$($DOCKER inspect -f '{{.State.Running}}' "$1")" = true ]; }

make_base_image() {  # the Dockerfile's FROM, made from Debian packages
  local from=$1 py suite
  [[ $from =~ ^python:([0-9]+\.[0-9]+)-slim-([a-z]+)$ ]] \
    || die "FROM $from is missing and only python:X.Y-slim-SUITE can be made here"
  py=${BASH_REMATCH[1]} suite=${BASH_REMATCH[2]}
  command -v mmdebstrap >/dev/null || apt-get install -y -qq mmdebstrap >/dev/null
  say "making $from from Debian $suite's python$py (mmdebstrap)"
  # This machine's egress proxy re-signs TLS with its own CA (in the host's trust store): the
  # stand-in image trusts the host's extra CAs and points SSL_CERT_FILE at the store, as the
  # host does, so that uv (which does not read the system store by default) can reach PyPI.
  # The real python image needs neither; the Dockerfile does not depend on them.
  local extra_env=()
  if [ -n "${SSL_CERT_FILE:-}" ]; then extra_env=(--change "ENV SSL_CERT_FILE=$SSL_CERT_FILE"); fi
  mmdebstrap --quiet --variant=minbase \
    --include="python$py,python$py-venv,ca-certificates,netbase,tzdata" \
    --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1' \
    --customize-hook="for n in python python3 python$py; do ln -sf /usr/bin/python$py \"\$1/usr/local/bin/\$n\"; done" \
    "$suite" - \
    "deb http://deb.debian.org/debian $suite main" \
    "deb http://deb.debian.org/debian $suite-updates main" \
    "deb http://deb.debian.org/debian-security $suite-security main" \
    | $DOCKER import \
      --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' "${extra_env[@]}" --change 'CMD ["python3"]' - "$from" >/dev/null
}

run_docker() {
  # The client of Debian's docker.io (20.10) builds with its built-in BuildKit; a newer client
  # elsewhere on PATH may lack the buildx plugin that BuildKit then needs.
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
  if ! $DOCKER info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || {
      say "installing Debian's docker.io"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
      DOCKER=/usr/bin/docker
    }
    local state=/var/lib/fedtext-space-check
    mkdir -p "$state"
    export DOCKER_HOST=unix://$WORK/docker.sock
    dockerd --host "$DOCKER_HOST" --data-root "$state/docker" --exec-root "$WORK/exec" \
      --pidfile "$WORK/dockerd.pid" >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do $DOCKER info >/dev/null 2>&1 && break; sleep 0.5; done
    $DOCKER info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log" >&2; die "dockerd did not start"; }
    say "started dockerd (pid $DOCKERD_PID, data root $state/docker)"
  fi
  local from
  from=$(awk 'toupper($1) == "FROM" {print $2; exit}' Dockerfile)
  $DOCKER image inspect "$from" >/dev/null 2>&1 || make_base_image "$from"

  say "docker build (engine $($DOCKER version -f '{{.Server.Version}}'))"
  local t nocache=()
  t=$(date +%s)
  [ $fresh = 1 ] && nocache=(--no-cache)
  DOCKER_BUILDKIT=1 $DOCKER build "${nocache[@]}" --progress=plain -t "$IMAGE" "$CTX" \
    >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; die "docker build"; }
  grep -E '^#[0-9]+ (\[|DONE|CACHED)' "$WORK/build.log" | grep -v sha256 | sed 's/^/  /' | tail -30
  say "built $IMAGE in $(($(date +%s) - t)) s," \
    "$($DOCKER image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1/1e9}')"

  local port
  port=$(free_port)
  CONTAINER=fedtext-space-check-$$
  t=$(date +%s)
  $DOCKER run -d --name "$CONTAINER" -e "$MARKER" -p "127.0.0.1:$port:$EXPOSED" "$IMAGE" >/dev/null
  local who
  # shellcheck disable=SC2016  # expanded in the container
  who=$($DOCKER exec "$CONTAINER" sh -c 'echo "uid $(id -u), $HOME/data"; test -w "$HOME/data"') \
    || die "the server's \$HOME/data is not writable: $who"
  [[ $who == "uid 1000,"* ]] || die "the server runs as $who, not uid 1000"
  say "container $CONTAINER: $who writable, port $EXPOSED at 127.0.0.1:$port"
  wait_for_health "http://127.0.0.1:$port" running "$CONTAINER"
  say "healthy after $(($(date +%s) - t)) s"
  local rc=0
  browser_test "http://127.0.0.1:$port" || rc=$?

  t=$(date +%s)
  $DOCKER stop -t 20 "$CONTAINER" >/dev/null  # SIGTERM, then SIGKILL after 20 s, as a Space would
  local code
  code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$CONTAINER")
  $DOCKER logs "$CONTAINER" >"$WORK/server.log" 2>&1
  say "docker stop: $(($(date +%s) - t)) s, exit code $code; the server's last lines:"
  tail -5 "$WORK/server.log" | sed 's/^/  /'
  no_worker_left
  [ "$code" != 137 ] || die "the server ignored SIGTERM for 20 s and was killed"
  return $rc
}

# ------------------------------------------------------------------ the Dockerfile, replayed
# Turns the Dockerfile into a shell script for its build steps and one for its CMD, so the two
# cannot drift: any instruction it does not know stops the check.
plan() {
  python3 - "$1" "$2" "$3" "$4" <<'PY'
import json, re, shlex, sys
dockerfile, ctx, home, port = sys.argv[1:]
lines, buf = [], ""
for raw in open(dockerfile):
    line = raw.rstrip("\n")
    if not buf and (not line.strip() or line.lstrip().startswith("#")):
        continue
    if line.endswith("\\"):
        buf += line[:-1] + " "
        continue
    lines.append(buf + line)
    buf = ""
build, user, cmd, env_names = ["set -eu"], "root", None, []
for line in lines:
    op, _, rest = line.strip().partition(" ")
    op, rest = op.upper(), rest.strip().replace("/home/user", home)
    if op == "FROM":
        build.append(f"# FROM {rest}: the host's python (see the RUNs)")
    elif op == "RUN" and user == "root":
        # The only root step allowed: the user's creation, done by the caller.
        if not re.fullmatch(r"useradd .*--uid 1000 user", rest):
            sys.exit(f"space_check: a root RUN it cannot replay: {rest}")
        build.append(f"# RUN {rest}: done by space_check")
    elif op == "USER":
        if rest != "user":
            sys.exit(f"space_check: USER {rest} is not the user it replays")
        user = rest
    elif op == "ENV":
        for pair in shlex.split(rest, posix=False):
            name, _, value = pair.partition("=")
            env_names.append(name)
            build.append(f"export {name}={value}")
    elif op == "WORKDIR":
        build.append(f"mkdir -p {rest} && cd {rest}")
    elif op == "COPY":
        words = shlex.split(rest)
        if words[0] != "--chown=user":
            sys.exit(f"space_check: COPY without --chown=user: {rest}")
        *sources, dest = words[1:]
        for src in sources:
            path = f"{ctx}/{src}".rstrip("/.") if src != "." else ctx
            into = dest if (len(sources) == 1 and src != ".") else dest.rstrip("/") + "/"
            build.append(
                f"if [ -d {path} ]; then mkdir -p {into} && cp -a {path}/. {into}; "
                f"else cp -a {path} {into}; fi"
            )
    elif op == "RUN":
        build.append(rest)
    elif op == "EXPOSE":
        build.append(f"# EXPOSE {rest}: served on {port}")
    elif op == "CMD":
        cmd = json.loads(rest)
    else:
        sys.exit(f"space_check: a Dockerfile instruction it cannot replay: {op}")
if cmd is None:
    sys.exit("space_check: no CMD in the Dockerfile")
served = [
    re.sub(r"^--server\.port=\d+$", f"--server.port={port}", word) for word in cmd
]
exports = [line for line in build if line.startswith(("export ", "mkdir -p"))]
print("\n".join(build), file=open(f"{ctx}/../build.sh", "w"))
print("\n".join(["set -eu", *exports, "exec " + shlex.join(served)]),
      file=open(f"{ctx}/../serve.sh", "w"))
PY
}

run_user() {
  command -v python3.11 >/dev/null || die "no python3.11 here (the image's FROM provides it)"
  # The Dockerfile's user: named user, uid 1000, home /home/user. Where that name or home is
  # taken, a fresh name and home (the plan maps /home/user to it); where uid 1000 is taken,
  # the fresh user shares it (useradd --non-unique), with its own empty home.
  SPACE_USER=user
  local home=/home/user
  if getent passwd user >/dev/null || [ -e /home/user ]; then
    SPACE_USER=space$$ home=/home/space$$
  fi
  local shares=()
  if getent passwd 1000 >/dev/null; then
    say "uid 1000 is $(getent passwd 1000 | cut -d: -f1)'s here: $SPACE_USER shares it"
    shares=(--non-unique)
  fi
  useradd --create-home --home-dir "$home" --uid 1000 "${shares[@]}" "$SPACE_USER"
  OWN_USER=1
  [ ${#shares[@]} = 0 ] || OWN_USER=2  # never pkill a shared uid; its server is killed by pid
  # Empty but for useradd's skeleton (/etc/skel).
  [ -z "$(find "$home" -mindepth 1 -maxdepth 1 ! -name .bashrc ! -name .profile \
    ! -name .bash_logout)" ] || die "$home is not empty"
  local port
  port=$(free_port)
  plan "$ROOT/Dockerfile" "$CTX" "$home" "$port"
  chmod a+r "$WORK/build.sh" "$WORK/serve.sh"
  sed 's/^/  /' "$WORK/build.sh"
  # The image's environment before the Dockerfile's ENV (python:3.11-slim's PATH and LANG); on
  # this machine also SSL_CERT_FILE, which its TLS-intercepting egress needs (see docs). No pip
  # configuration from /etc: the image has none.
  local base_env=(HOME="$home" USER="$SPACE_USER" LANG=C.UTF-8 PIP_CONFIG_FILE=/dev/null
    PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin)
  [ -z "${SSL_CERT_FILE:-}" ] || base_env+=(SSL_CERT_FILE="$SSL_CERT_FILE")
  say "replaying the Dockerfile as $SPACE_USER (uid $(id -u "$SPACE_USER"), home $home)"
  local t
  t=$(date +%s)
  (cd "$home" && runuser -u "$SPACE_USER" -- env -i "${base_env[@]}" bash "$WORK/build.sh") \
    >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; die "the Dockerfile's steps"; }
  tail -3 "$WORK/build.log" | sed 's/^/  /'
  say "built in $(($(date +%s) - t)) s, $(du -sh "$home" | cut -f1) in $home"

  t=$(date +%s)
  (cd "$home" && exec setsid runuser -u "$SPACE_USER" -- env -i "${base_env[@]}" "$MARKER" \
    bash "$WORK/serve.sh") >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  wait_for_health "http://127.0.0.1:$port" kill -0 "$SERVER_PID"
  say "healthy after $(($(date +%s) - t)) s (pid $SERVER_PID, port $port)"
  local rc=0
  browser_test "http://127.0.0.1:$port" || rc=$?

  t=$(date +%s)
  # SIGTERM to the CMD's process (runuser's child), as docker stop sends it to the container's.
  kill -TERM "$(pgrep -P "$SERVER_PID")"
  local code=0
  for _ in $(seq 1 40); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL -- "-$SERVER_PID"
    code=137
  fi
  wait "$SERVER_PID" 2>/dev/null || code=$?
  SERVER_PID=""
  say "SIGTERM: stopped in $(($(date +%s) - t)) s, exit code $code; the server's last lines:"
  tail -5 "$WORK/server.log" | sed 's/^/  /'
  no_worker_left
  [ "$code" != 137 ] || die "the server ignored SIGTERM for 20 s and was killed"
  return $rc
}

rc=0
if [ $mode = docker ]; then run_docker || rc=$?; else run_user || rc=$?; fi
[ $rc = 0 ] && say "PASSED ($mode)" || say "FAILED ($mode): the browser test, exit $rc"
exit $rc
