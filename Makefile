# Two commands matter: `make demo` and `make test`.  Both first set up what
# a fresh machine lacks: lighttpd (from Debian) and a .venv with this package.
# `make deb` builds the Debian package (docs/install.md).

VENV   := .venv
PYTHON := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup lighttpd test-tools demo test testbed migration-test bench deb

# This project's Debian package: tests/package checks it and the cluster
# test bed (tests/cluster) installs it into its legacy and fastcgi nodes.
SHIM_VERSION := $(shell sed -n 's/^SHIM_VERSION = "\(.*\)"$$/\1/p' ganeti/http/__init__.py)
DEB ?= dist/ganeti-http-shim_$(SHIM_VERSION)_all.deb

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

# tests/package and the cluster test bed (tests/cluster) build Debian 12
# roots with mmdebstrap and run them in namespaces (ip from iproute2;
# unshare and nsenter are in util-linux); lintian checks the .deb;
# tests/new/test_per_address_limit.py loads nftables rules in a namespace.
test-tools:
	@{ command -v dpkg-deb && command -v lintian && command -v mmdebstrap \
	    && { [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; } \
	    && { [ -x /usr/sbin/nft ] || [ -x /sbin/nft ]; }; } >/dev/null 2>&1 || { \
	  echo "Installing lintian, mmdebstrap, iproute2 and nftables" \
	    "(tests/package, tests/cluster, tests/new) with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    dpkg lintian mmdebstrap iproute2 nftables </dev/null; }

# The rolling migration takes minutes: only `make migration-test` runs it
# (CI runs it after `make test`: .ci/run).
MIGRATION_TEST := tests/cluster/test_migration.py

test: setup test-tools deb
	GANETI_HTTP_DEB=$(abspath $(DEB)) $(PYTHON) -m pytest -q tests \
	  --ignore=$(MIGRATION_TEST)

# Only the cluster test bed (docs/testbed.md).
testbed: setup test-tools deb
	GANETI_HTTP_DEB=$(abspath $(DEB)) $(PYTHON) -m pytest -q tests/cluster \
	  --ignore=$(MIGRATION_TEST)

# A three-node cluster flips node by node under load, and the same load
# across plain restarts on stock Ganeti (docs/operations.md); openssh-server
# joins the test bed's root.  The tables are printed (-s) and written to
# $(MIGRATION_REPORT).
MIGRATION_REPORT ?= dist/migration-report.md
migration-test: setup test-tools deb
	rm -f $(MIGRATION_REPORT)
	GANETI_HTTP_DEB=$(abspath $(DEB)) \
	  GANETI_HTTP_MIGRATION_REPORT=$(abspath $(MIGRATION_REPORT)) \
	  $(PYTHON) -m pytest -q -s $(MIGRATION_TEST)

# dist/ganeti-http-shim_<version>_all.deb (docs/install.md)
deb:
	@{ command -v dpkg-deb && command -v python3; } >/dev/null 2>&1 || { \
	  echo "Installing dpkg and python3 (shims/debian/build-deb) with apt-get"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    dpkg python3 </dev/null; }
	shims/debian/build-deb dist

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
