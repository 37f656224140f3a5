# Two commands matter: `make demo` and `make test`.  Both first set up what
# a fresh machine lacks: lighttpd (from Debian) and a .venv with this package.

VENV   := .venv
PYTHON := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# This project's Debian package, which the cluster test bed (tests/cluster)
# installs into its legacy and fastcgi nodes.
DEB ?=

.PHONY: setup lighttpd testbed-tools demo test testbed bench

setup: lighttpd $(VENV)/.installed

lighttpd:
	@if ! command -v lighttpd >/dev/null 2>&1 && [ ! -x /usr/sbin/lighttpd ] \
	    || [ ! -e /usr/lib/lighttpd/mod_openssl.so ]; then \
	  echo "Installing lighttpd and lighttpd-mod-openssl with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    lighttpd lighttpd-mod-openssl </dev/null && \
	  if [ -d /run/systemd/system ]; then \
	    echo "Stopping the lighttpd.service Debian just started on port 80:" \
	      "each daemon runs a lighttpd of its own"; \
	    $(SUDO) systemctl disable --now lighttpd.service; \
	  fi; \
	fi

$(VENV)/.installed: setup.py
	@python3 -c 'import ensurepip' 2>/dev/null || { \
	  echo "Installing python3-venv (python3 -m venv needs it) with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    python3-venv </dev/null; }
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -e '.[test]'
	touch $@

# The cluster test bed builds a Debian 12 root with mmdebstrap and runs it
# in namespaces (ip from iproute2; unshare and nsenter are in util-linux).
testbed-tools:
	@if ! command -v mmdebstrap >/dev/null 2>&1 \
	    || { [ ! -x /usr/sbin/ip ] && [ ! -x /sbin/ip ]; }; then \
	  echo "Installing mmdebstrap and iproute2 (the cluster test bed)" \
	    "with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    mmdebstrap iproute2 </dev/null; \
	fi

test: setup testbed-tools
	GANETI_HTTP_DEB=$(DEB) $(PYTHON) -m pytest -q tests

# Only the cluster test bed (docs/testbed.md).
testbed: setup testbed-tools
	GANETI_HTTP_DEB=$(DEB) $(PYTHON) -m pytest -q tests/cluster

demo: setup
	$(PYTHON) -m shims.demo $(DEMO_ARGS)

bench: setup
	@{ command -v ab && command -v curl && [ -x /usr/bin/time ]; } \
	    >/dev/null 2>&1 || { \
	  echo "Installing apache2-utils (ab, the load generator), curl and" \
	    "time (peak memory of the clients) with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    apache2-utils curl time </dev/null; }
	$(PYTHON) bench/run.py $(BENCH_ARGS)
