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

# Ganeti 3.0's node daemon on backend $1, started and stopped by Ganeti's
# daemon-util (daemonized: umask 077, start-stop-daemon): its start line
# names the backend and the shim's version, and it answers an RPC.
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

check_noded() {
  conffile=$ROOT/etc/ganeti/http-backend.conf
  cp "$conffile" "$WORK/conffile"
  sed -i "s/^# noded = fastcgi\$/noded = $1/" "$conffile"
  prepare_noded
  : > "$ROOT/var/log/ganeti/node-daemon.log"
  in_root timeout 60 /usr/lib/ganeti/daemon-util start ganeti-noded ||
    fail "daemon-util start ganeti-noded on $1: $(tail -5 "$ROOT/var/log/ganeti/node-daemon.log")"
  answer=$(in_root python3 -c '
import http.client, ssl, time
context = ssl._create_unverified_context()
context.load_cert_chain("/var/lib/ganeti/server.pem")
for _ in range(100):
  try:
    connection = http.client.HTTPSConnection("127.0.0.1", 1811, context=context)
    connection.request("POST", "/version", body="[]")
    break
  except OSError:
    time.sleep(0.2)
response = connection.getresponse()
print(response.status, response.read().decode().strip())' 2>&1)
  lighttpd_user=$(in_root ps -o user= -C lighttpd || true)
  in_root timeout 60 /usr/lib/ganeti/daemon-util stop ganeti-noded ||
    fail "daemon-util stop ganeti-noded on $1"
  [ -z "$(in_root ps -o pid= -C lighttpd,ganeti-noded || true)" ] ||
    fail "noded or its lighttpd outlived daemon-util stop on $1"
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
  ok "Ganeti 3.0's noded on $1 answers an RPC, logs the backend and $SHIM $VERSION${lighttpd_user:+, lighttpd as $lighttpd_user}"
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
  grep -q "^noded: runtime-dir /run/ganeti-http is writable by others" "$WORK/out" ||
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
ok "account ganeti-http, /run/ganeti-http 0755, conffile"
check_noded legacy
check_noded fastcgi
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

in_root dpkg -r "$SHIM" || fail "dpkg -r $SHIM"
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
