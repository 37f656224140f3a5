#!/bin/sh
# Install, reinstall under, trigger, remove and purge ganeti-http-shim in a
# Debian 12 root that holds Debian's Ganeti 3.0, checking after each step.
#
#   check_deb_in_root.sh ROOT SHIM_DEB GANETI_DEB [OLDER_SHIM_DEB]
#
# ROOT: an extracted root (mmdebstrap) with the packages ganeti,
# lighttpd, lighttpd-mod-openssl and python3-pycurl; it is changed.
# GANETI_DEB: the .deb of the ganeti-3.0 installed in ROOT (its md5sums
# are the reference for "Ganeti's files, byte for byte"; it is also what
# the reinstall installs).  OLDER_SHIM_DEB, if given, is installed first
# and then upgraded to SHIM_DEB.  Run it as root, in network, UTS, PID and mount
# namespaces of its own (unshare --net --uts --pid --mount --fork): it
# starts Ganeti's node daemon on 127.0.0.1 (daemon-util, with NODED_ARGS
# set in the root's /etc/default/ganeti) and needs no other network.
# Prints one line per check; exits non-zero at the first failure.
set -eu
# The daemons here log where a node's do, whatever the caller's environment
# says (the test suite points GANETI_HTTP_LOG_DIR at a directory of its own).
unset GANETI_HTTP_LOG_DIR

ROOT=$1
SHIM_DEB=$2
GANETI_DEB=$3
OLDER_SHIM_DEB=${4:-}
SHIM=ganeti-http-shim
SHIM_TREE=/usr/lib/ganeti-http-shim/ganeti/http
TREE=/usr/share/ganeti/3.0/ganeti/http
WORK=$(mktemp -d "$ROOT/tmp/check-deb.XXXXXX")
mount -t proc proc "$ROOT/proc"
trap 'umount "$ROOT/proc"; rm -rf "$WORK"' EXIT
INSIDE=${WORK#"$ROOT"}

ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; exit 1; }
in_root() { chroot "$ROOT" "$@"; }

# No service may start in this root.
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
cp "$SHIM_DEB" "$WORK/shim.deb"
cp "$GANETI_DEB" "$WORK/ganeti.deb"
if [ -n "$OLDER_SHIM_DEB" ]; then
  cp "$OLDER_SHIM_DEB" "$WORK/older.deb"
fi
dpkg-deb --field "$GANETI_DEB" Package | grep -qx ganeti-3.0 ||
  fail "$GANETI_DEB is not ganeti-3.0"
dpkg-deb --ctrl-tarfile "$GANETI_DEB" | tar -x -O ./md5sums > "$WORK/ganeti.md5sums"

# Every file under /usr/share/ganeti (compiled files by name only), with
# its checksum or link target: what must come back after a removal.
snapshot() {
  in_root find /usr/share/ganeti \( -type f -o -type l \) | sort |
    while read -r path; do
      case $path in
        *.pyc) echo "$path" ;;
        *) if [ -L "$ROOT$path" ]; then
             echo "$path -> $(readlink "$ROOT$path")"
           else
             echo "$path $(md5sum < "$ROOT$path" | cut -d' ' -f1)"
           fi ;;
      esac
    done
}

# Ganeti's files, at their names or where the shim diverted them, are the
# .deb's, byte for byte.
check_ganeti_files() {
  in_root dpkg-divert --list |
    sed -n "s|^diversion of /\(.*\) to /\(.*\) by $SHIM\$|\1 \2|p" > "$WORK/diverted"
  awk -v root="$ROOT" '
    FILENAME == ARGV[1] { truename[$1] = $2; next }
    { path = ($2 in truename) ? truename[$2] : $2; print $1 "  " root "/" path }
  ' "$WORK/diverted" "$WORK/ganeti.md5sums" | md5sum --check --quiet ||
    fail "Ganeti's files differ from $GANETI_DEB ($1)"
  ok "every file of ganeti-3.0 is the .deb's, byte for byte ($1)"
}

check_deployed() {
  VERSION=$(in_root dpkg-query --show --showformat '${Version}' "$SHIM")
  for file in $(cd "$ROOT$SHIM_TREE" && find . -type f ! -path '*/__pycache__/*' |
                sed 's|^\./||'); do
    [ "$(readlink "$ROOT$TREE/$file")" = "$SHIM_TREE/$file" ] ||
      fail "$TREE/$file is not the shim's ($1)"
    [ "$(in_root dpkg-divert --listpackage "$TREE/$file")" = "$SHIM" ] ||
      fail "$TREE/$file is not diverted by $SHIM ($1)"
  done
  [ -z "$(find "$ROOT$TREE" -type f -name '*.py')" ] ||
    fail "a module of Ganeti's own is left among the shim's in $TREE ($1)"
  [ -z "$(in_root find -L "$TREE" -type l)" ] ||
    fail "links to files the shim no longer has are left in $TREE ($1)"
  for path in $(in_root dpkg-divert --list "$TREE/*" |
                sed -n "s|^diversion of \(.*\) to .* by $SHIM\$|\1|p"); do
    [ -e "$ROOT$SHIM_TREE/${path#"$TREE"/}" ] || [ -e "$ROOT$path.distrib" ] ||
      fail "$path stays diverted, but neither the shim nor Ganeti has it ($1)"
  done
  # As Ganeti's programs import it: the version directory first on the path.
  found=$(in_root env PYTHONPATH=/usr/share/ganeti/3.0 python3 -c '
import ganeti.http, ganeti.http.client, ganeti.http.backends.fastcgi.flup_gateway, flup
print(ganeti.http.SHIM_VERSION, ganeti.http.__file__, flup.__file__)')
  [ "$found" = "$VERSION $TREE/__init__.py /usr/lib/ganeti-http-shim/python/flup/__init__.py" ] ||
    fail "Ganeti's Python imports something else: $found ($1)"
  in_root gnt-cluster --version 2>&1 | grep -q '^gnt-cluster (ganeti .*) 3\.0\.' ||
    fail "gnt-cluster does not run ($1)"
  ok "the shim $VERSION is Ganeti 3.0's ganeti.http, flup from the private directory ($1)"
}

check_stock() {
  [ -z "$(in_root dpkg-divert --list | grep " by $SHIM\$" || true)" ] ||
    fail "diversions by $SHIM are left ($1)"
  snapshot > "$WORK/after"
  diff -u "$WORK/stock" "$WORK/after" ||
    fail "/usr/share/ganeti differs from before the installation ($1)"
  ok "/usr/share/ganeti is as before the installation, no diversion left ($1)"
  check_ganeti_files "$1"
}

# What noded needs to start in this root: a name, loopback, Ganeti's
# directories, its certificate, 127.0.0.1 as its address.
prepare_noded() {
  ip link set lo up
  grep -q node1 "$ROOT/etc/hosts" || echo "127.0.0.1 node1" >> "$ROOT/etc/hosts"
  hostname node1
  mkdir -p "$ROOT/run/ganeti" "$ROOT/run/lock" "$ROOT/var/lib/ganeti" \
    "$ROOT/var/log/ganeti"
  sed -i 's/^NODED_ARGS=""$/NODED_ARGS="-b 127.0.0.1"/' "$ROOT/etc/default/ganeti"
  if [ ! -f "$ROOT/var/lib/ganeti/server.pem" ]; then
    in_root openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=node1 \
      -keyout /var/lib/ganeti/server.pem -out "$INSIDE/cert.pem" 2>/dev/null
    cat "$WORK/cert.pem" >> "$ROOT/var/lib/ganeti/server.pem"
  fi
}

# On fastcgi: lighttpd's error log, which noded writes next to its own log,
# through a rotation as Ganeti's logrotate configuration does it (rename,
# "create 640", then its postrotate command: daemon-util rotate-all-logs,
# SIGHUP to each daemon); a TLS client without certificate is named there
# with its address, in the new file.
check_lighttpd_log() {
  log=$ROOT/var/log/ganeti/lighttpd-noded.log
  for _ in $(seq 50); do
    grep -q "server started" "$log" 2>/dev/null && break
    sleep 0.2
  done
  grep -q '^lighttpd| .*(server\.c\.[0-9]*) server started' "$log" ||
    fail "no start line in lighttpd-noded.log: $(cat "$log" 2>&1)"
  # 0600 as the daemon makes it, 0640 as an earlier rotation left it
  case $(stat -c %a:%U "$log") in
    600:root|640:root) ;;
    *) fail "lighttpd-noded.log is $(stat -c %a:%U "$log"), not 0600 root" ;;
  esac
  postrotate=$(sed -n '/postrotate/,/endscript/{/postrotate/d;/endscript/d;s/^[[:space:]]*//;p}' \
    "$ROOT/etc/logrotate.d/ganeti")
  [ -n "$postrotate" ] || fail "no postrotate command in /etc/logrotate.d/ganeti"
  refused='peer did not return a certificate (127.0.0.1)'
  before=$(grep -cF "$refused" "$log" || true)
  mv "$log" "$log.1"
  install -m 640 /dev/null "$log"
  in_root sh -c "$postrotate" || fail "$postrotate"
  in_root python3 -c '
import socket, ssl
context = ssl._create_unverified_context()
try:
  with socket.create_connection(("127.0.0.1", 1811), timeout=10) as sock:
    with context.wrap_socket(sock) as tls:
      tls.sendall(b"POST /version HTTP/1.1\r\n\r\n")
      tls.recv(1)
except OSError:
  pass'
  for _ in $(seq 50); do
    grep -qF "$refused" "$log" && break
    sleep 0.2
  done
  grep -qF "$refused" "$log" ||
    fail "no refused client in the new lighttpd-noded.log: $(cat "$log")"
  [ "$(grep -cF "$refused" "$log.1" || true)" = "$before" ] ||
    fail "the refused client went to the rotated lighttpd-noded.log.1"
  ok "lighttpd-noded.log: root's, not group-writable, start line, reopened after $postrotate, a client without certificate named with its address"
}


# POST to noded's RPC $1 with body $2, print "STATUS BODY"; retries while
# the connection is refused unless $3 is "once".
rpc() {
  in_root python3 -c '
import http.client, ssl, sys, time
context = ssl._create_unverified_context()
context.load_cert_chain("/var/lib/ganeti/server.pem")
for _ in range(1 if sys.argv[3:] == ["once"] else 100):
  try:
    connection = http.client.HTTPSConnection("127.0.0.1", 1811, context=context)
    connection.request("POST", sys.argv[1], body=sys.argv[2])
    break
  except OSError:
    time.sleep(0.2)
response = connection.getresponse()
print(response.status, response.read().decode().strip())' "$@" 2>&1
}

# Ganeti 3.0's node daemon on backend $1 (with $2 FastCGI worker processes,
# default 1), started and stopped by Ganeti's daemon-util (daemonized: umask
# 077, start-stop-daemon): the start returns (the daemonization pipe is
# closed in every process the daemon forked), its start line names the
# backend and the shim's version, it answers an RPC; a restart during an
# RPC loses nothing (the stop's time is printed).
check_noded() {
  processes=${2:-1}
  conffile=$ROOT/etc/ganeti/http-backend.conf
  cp "$conffile" "$WORK/conffile"
  sed -i "s/^# noded = fastcgi\$/noded = $1/" "$conffile"
  if [ "$processes" != 1 ]; then
    sed -i "s/^# processes = 2\$/processes = $processes/" "$conffile"
    grep -qx "processes = $processes" "$conffile" ||
      fail "the conffile has no processes line to set"
  fi
  prepare_noded
  : > "$ROOT/var/log/ganeti/node-daemon.log"
  status=0
  in_root timeout 60 /usr/lib/ganeti/daemon-util start ganeti-noded || status=$?
  [ "$status" = 0 ] ||
    fail "daemon-util start ganeti-noded on $1 ($processes process(es)) exited with $status (124: did not return within 60 s): $(tail -5 "$ROOT/var/log/ganeti/node-daemon.log")"
  answer=$(rpc /version '[]')
  lighttpd_user=$(in_root ps -o user= -C lighttpd || true)
  if [ "$1" = fastcgi ]; then
    check_lighttpd_log
  fi
  # A restart while an RPC runs (5 s): the stop returns before the RPC
  # does, the restarted daemon answers meanwhile, the RPC its result.
  rpc /test_delay '[5]' once > "$WORK/delayed" &
  delayed=$!
  sleep 1
  stop_started=$(date +%s%N)
  in_root timeout 60 /usr/lib/ganeti/daemon-util stop ganeti-noded ||
    fail "daemon-util stop ganeti-noded on $1"
  stop_ms=$(( ($(date +%s%N) - stop_started) / 1000000 ))
  kill -0 "$delayed" 2>/dev/null ||
    fail "daemon-util stop on $1 waited for the RPC in flight ($stop_ms ms): $(cat "$WORK/delayed")"
  in_root timeout 60 /usr/lib/ganeti/daemon-util start ganeti-noded ||
    fail "daemon-util start ganeti-noded on $1 during an RPC of the stopped one"
  restarted=$(rpc /version '[]')
  wait "$delayed" || true
  [ "$restarted" = "200 [true, 3000000]" ] ||
    fail "the restarted noded on $1 answered: $restarted"
  [ "$(cat "$WORK/delayed")" = "200 [true, null]" ] ||
    fail "the RPC in flight during the restart on $1 got: $(cat "$WORK/delayed")"
  in_root timeout 60 /usr/lib/ganeti/daemon-util stop ganeti-noded ||
    fail "daemon-util stop ganeti-noded on $1"
  for _ in $(seq 50); do
    [ -n "$(in_root ps -o pid= -C lighttpd,ganeti-noded || true)" ] || break
    sleep 0.2
  done
  [ -z "$(in_root ps -o pid= -C lighttpd,ganeti-noded || true)" ] ||
    fail "noded or its lighttpd outlived daemon-util stop on $1 by 10 s"
  cp "$WORK/conffile" "$conffile"
  [ "$answer" = "200 [true, 3000000]" ] ||
    fail "noded on $1 answered: $answer"
  grep -q "HTTP backend of noded: $1 (from .*), $SHIM $VERSION\$" \
    "$ROOT/var/log/ganeti/node-daemon.log" ||
    fail "noded's log does not name backend $1 and the shim's version: $(cat "$ROOT/var/log/ganeti/node-daemon.log")"
  if [ "$1" = fastcgi ]; then
    [ "$lighttpd_user" = ganeti-http ] ||
      fail "lighttpd ran as ${lighttpd_user:-nobody}, not as ganeti-http"
  fi
  ok "Ganeti 3.0's noded on $1 ($processes process(es)) started by daemon-util answers an RPC, logs the backend and $SHIM $VERSION${lighttpd_user:+, lighttpd as $lighttpd_user}; restarted during an RPC, which returned its result (daemon-util stop took $stop_ms ms)"
}

# The operator's command on a noded that daemon-util runs: status, a flip
# to fastcgi with --restart, check, and back with unset.
check_ganeti_http() {
  conffile=$ROOT/etc/ganeti/http-backend.conf
  cp "$conffile" "$WORK/conffile"
  prepare_noded
  in_root timeout 60 /usr/lib/ganeti/daemon-util start ganeti-noded ||
    fail "daemon-util start ganeti-noded (legacy)"
  # the status file is written once noded serves
  for _ in $(seq 100); do
    [ -f "$ROOT/run/ganeti/ganeti-http-noded.json" ] && break
    sleep 0.2
  done
  in_root ganeti-http status > "$WORK/out" || fail "ganeti-http status: $(cat "$WORK/out")"
  grep -q "^  running:    legacy (chosen from key 'default' in section \[backends\] of /etc/ganeti/http-backend.conf), ganeti-http-shim $VERSION\$" "$WORK/out" ||
    fail "ganeti-http status does not show noded running legacy: $(cat "$WORK/out")"
  ok "ganeti-http status: noded runs legacy"

  in_root timeout 120 ganeti-http set noded fastcgi --restart > "$WORK/out" 2>&1 ||
    fail "ganeti-http set noded fastcgi --restart: $(cat "$WORK/out")"
  grep -q "^noded: restarting: /usr/lib/ganeti/daemon-util stop ganeti-noded && /usr/lib/ganeti/daemon-util start ganeti-noded\$" "$WORK/out" ||
    fail "set --restart did not restart with daemon-util: $(cat "$WORK/out")"
  for _ in $(seq 100); do
    grep -q '"fastcgi"' "$ROOT/run/ganeti/ganeti-http-noded.json" 2>/dev/null && break
    sleep 0.2
  done
  running=$(in_root ganeti-http status noded --json | in_root python3 -c '
import json, sys
entry = json.load(sys.stdin)["daemons"][0]
running = entry["running"]
comm = [open("/proc/%d/comm" % pid).read().strip() for pid in running["lighttpd_pids"]]
print(running["backend"], running["pid"] == int(open("/run/ganeti/ganeti-noded.pid").read()),
      comm, running["address"][1], entry["restart_needed"], entry["problems"])')
  [ "$running" = "fastcgi True ['lighttpd'] 1811 [] []" ] ||
    fail "ganeti-http status after the flip: $running"
  ok "ganeti-http set noded fastcgi --restart: status shows noded on fastcgi, its lighttpd, port 1811"

  in_root ganeti-http check > "$WORK/out" 2>&1 || fail "ganeti-http check: $(cat "$WORK/out")"
  [ "$(cat "$WORK/out")" = "no problem found" ] || fail "ganeti-http check said: $(cat "$WORK/out")"
  chmod 0777 "$ROOT/run/ganeti-http"
  if in_root ganeti-http check > "$WORK/out" 2>&1; then
    fail "ganeti-http check passed a runtime directory anybody can write"
  fi
  chmod 0755 "$ROOT/run/ganeti-http"
  grep -q "^noded: .*/run/ganeti-http is writable by other accounts" "$WORK/out" ||
    fail "ganeti-http check did not name the runtime directory: $(cat "$WORK/out")"
  ok "ganeti-http check: no problem, and a problem once there is one"

  in_root timeout 120 ganeti-http unset noded --restart > "$WORK/out" 2>&1 ||
    fail "ganeti-http unset noded --restart: $(cat "$WORK/out")"
  cmp -s "$conffile" "$WORK/conffile" ||
    fail "the conffile differs after set and unset: $(diff "$WORK/conffile" "$conffile")"
  for _ in $(seq 100); do
    grep -q '"legacy"' "$ROOT/run/ganeti/ganeti-http-noded.json" 2>/dev/null && break
    sleep 0.2
  done
  in_root ganeti-http status noded > "$WORK/out" || fail "ganeti-http status"
  grep -q "^  running:    legacy " "$WORK/out" ||
    fail "noded not back on legacy after unset --restart: $(cat "$WORK/out")"
  in_root timeout 60 /usr/lib/ganeti/daemon-util stop ganeti-noded ||
    fail "daemon-util stop ganeti-noded"
  [ ! -e "$ROOT/run/ganeti/ganeti-http-noded.json" ] ||
    fail "noded's status file outlived its stop"
  [ -z "$(in_root ps -o pid= -C lighttpd,ganeti-noded || true)" ] ||
    fail "noded or its lighttpd outlived daemon-util stop"
  ok "ganeti-http unset noded --restart: the conffile byte for byte as before, noded on legacy; status file removed on stop"
}

# A Ganeti version installed after the shim: a package with its own tree.
fake_ganeti() {
  mkdir -p "$WORK/fake/DEBIAN" "$WORK/fake/usr/share/ganeti/9.9/ganeti/http"
  printf 'Package: ganeti-9.9-fake\nVersion: 9.9\nArchitecture: all\nMaintainer: test <test@example.org>\nDescription: a Ganeti tree for the test\n' \
    > "$WORK/fake/DEBIAN/control"
  echo '# the fake version' > "$WORK/fake/usr/share/ganeti/9.9/ganeti/__init__.py"
  for module in __init__ client rpc_only; do
    echo "# Ganeti 9.9's $module" > "$WORK/fake/usr/share/ganeti/9.9/ganeti/http/$module.py"
  done
  dpkg-deb --root-owner-group --build "$WORK/fake" "$WORK/fake.deb" > /dev/null
}

check_ganeti_files "stock"
snapshot > "$WORK/stock"

if [ -n "$OLDER_SHIM_DEB" ]; then
  in_root dpkg -i "$INSIDE/older.deb" || fail "dpkg -i $OLDER_SHIM_DEB"
  check_deployed "older version installed"
fi
in_root dpkg -i "$INSIDE/shim.deb" || fail "dpkg -i $SHIM_DEB"
check_deployed "installed"
check_ganeti_files "installed"
in_root dpkg --verify ganeti-3.0 || fail "dpkg --verify ganeti-3.0"
ok "dpkg --verify ganeti-3.0 finds nothing changed"
in_root getent passwd ganeti-http | grep -q ':/usr/sbin/nologin$' ||
  fail "no system account ganeti-http"
grep -qx 'frontend-user = ganeti-http' "$ROOT/etc/ganeti/http-backend.conf" ||
  fail "the conffile does not name ganeti-http as the frontend user"
[ "$(stat -c %a:%U "$ROOT/run/ganeti-http")" = 755:root ] ||
  fail "/run/ganeti-http is not 0755 root"
[ "$(in_root stat -c %a:%U:%G /run/ganeti-http/gnt-rapi)" = 700:gnt-rapi:gnt-rapi ] ||
  fail "/run/ganeti-http/gnt-rapi is not 0700 gnt-rapi:gnt-rapi"
ok "account ganeti-http, /run/ganeti-http 0755, /run/ganeti-http/gnt-rapi 0700, conffile"
check_noded legacy
# As after a reboot on a host without systemd-tmpfiles: noded (root, umask
# 077 from Ganeti's daemonization) makes /run/ganeti-http again, 0755, so
# that lighttpd's account reaches its state directory.
rm -r "$ROOT/run/ganeti-http"
check_noded fastcgi
[ "$(stat -c %a:%U "$ROOT/run/ganeti-http")" = 755:root ] ||
  fail "noded made /run/ganeti-http $(stat -c %a:%U "$ROOT/run/ganeti-http"), not 0755 root"
ok "noded on fastcgi remade a missing /run/ganeti-http 0755 under umask 077"
check_noded fastcgi 2
check_ganeti_http

in_root dpkg -i "$INSIDE/ganeti.deb" || fail "reinstalling ganeti-3.0"
ok "reinstalled ganeti-3.0"
check_deployed "after reinstalling ganeti-3.0"
check_ganeti_files "after reinstalling ganeti-3.0"

fake_ganeti
in_root dpkg -i "$INSIDE/fake.deb" || fail "installing a later Ganeti version"
FAKE=/usr/share/ganeti/9.9/ganeti/http
[ "$(readlink "$ROOT$FAKE/server.py")" = "$SHIM_TREE/server.py" ] ||
  fail "the trigger did not put the shim into $FAKE"
[ "$(cat "$ROOT$FAKE/rpc_only.py.distrib")" = "# Ganeti 9.9's rpc_only" ] ||
  fail "Ganeti 9.9's module that the shim lacks is not diverted"
ok "a Ganeti version installed later got the shim (dpkg trigger)"
in_root dpkg -r ganeti-9.9-fake || fail "removing the later Ganeti version"
[ ! -e "$ROOT/usr/share/ganeti/9.9" ] ||
  fail "/usr/share/ganeti/9.9 is left after its Ganeti was removed"
[ -z "$(in_root dpkg-divert --list "/usr/share/ganeti/9.9/*")" ] ||
  fail "diversions in /usr/share/ganeti/9.9 are left"
ok "its removal took the shim, the diversions and the directories with it"

# The shim's noded, stopped just before the removal, leaves its port to a
# keeper for the next daemon; the removal ends the keeper, so that
# Ganeti's own noded, started next, binds the port.
prepare_noded
in_root timeout 60 /usr/lib/ganeti/daemon-util start ganeti-noded ||
  fail "daemon-util start ganeti-noded before the removal"
[ "$(rpc /version '[]')" = "200 [true, 3000000]" ] ||
  fail "noded did not answer before the removal"
in_root timeout 60 /usr/lib/ganeti/daemon-util stop ganeti-noded ||
  fail "daemon-util stop ganeti-noded before the removal"
[ -S "$ROOT/run/ganeti-http/handover/noded@inet@127.0.0.1@1811" ] ||
  fail "noded's stop left its port to no keeper: $(ls -l "$ROOT/run/ganeti-http/handover")"
in_root dpkg -r "$SHIM" || fail "dpkg -r $SHIM"
: > "$ROOT/var/log/ganeti/node-daemon.log"
# (No compiled files of its own: /usr/share/ganeti is compared below.)
in_root env PYTHONDONTWRITEBYTECODE=1 timeout 60 \
    /usr/lib/ganeti/daemon-util start ganeti-noded ||
  fail "Ganeti's own noded did not start after the removal: $(tail -5 "$ROOT/var/log/ganeti/node-daemon.log")"
answer=$(rpc /version '[]')
in_root timeout 60 /usr/lib/ganeti/daemon-util stop ganeti-noded ||
  fail "daemon-util stop of Ganeti's own noded"
[ "$answer" = "200 [true, 3000000]" ] ||
  fail "Ganeti's own noded after the removal answered: $answer"
ok "removed right after the shim's noded stopped: Ganeti's own noded binds its port and answers"
check_stock "removed"
[ -f "$ROOT/etc/ganeti/http-backend.conf" ] ||
  fail "the conffile went with a removal (only a purge removes it)"

in_root dpkg -i "$INSIDE/shim.deb" || fail "dpkg -i $SHIM_DEB again"
check_deployed "installed again"
in_root dpkg -P "$SHIM" || fail "dpkg -P $SHIM"
check_stock "purged"
[ ! -e "$ROOT/etc/ganeti/http-backend.conf" ] || fail "the conffile outlived the purge"
[ ! -e "$ROOT/run/ganeti-http" ] || fail "/run/ganeti-http outlived the purge"
[ ! -e "$ROOT/usr/lib/ganeti-http-shim" ] || fail "/usr/lib/ganeti-http-shim outlived the purge"
ok "purged: conffile, /run/ganeti-http and the package's directory gone"
echo "PASS"
