#!/usr/bin/env bash
# Puts Debian's Prometheus server binary (and promtool) into DEST_DIR, for the metrics test,
# without installing the package: the package would start a system service and pull in the
# web console's libraries, and the test only needs a server it starts itself on loopback.
# The .deb comes from the machine's apt sources (signed, as every Debian download), and only
# its two binaries are kept. Idempotent.
set -euo pipefail

dest=${1:?usage: fetch-prometheus.sh DEST_DIR}
mkdir -p "$dest"
if [ -x "$dest/prometheus" ] && "$dest/prometheus" --version >/dev/null 2>&1; then
  echo "prometheus: $("$dest/prometheus" --version 2>&1 | head -1) already in $dest"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# `apt-get download` verifies the package against the signed index; the index may be missing
# on a machine whose lists were cleaned, so update once and retry.
if ! apt-get download prometheus >/dev/null 2>&1; then
  apt-get update -qq
  apt-get download prometheus
fi
deb=$(ls prometheus_*.deb)
dpkg-deb -x "$deb" root
cd - >/dev/null
install -m 0755 "$work/root/usr/bin/prometheus" "$work/root/usr/bin/promtool" "$dest/"
echo "prometheus: $("$dest/prometheus" --version 2>&1 | head -1) put in $dest (from $deb)"
