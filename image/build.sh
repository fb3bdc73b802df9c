#!/usr/bin/env bash
# Builds the Vigil agent image as an OCI archive, with no container daemon:
#
#   1. ask the built binaries which shared libraries they load, and dpkg which Debian packages
#      ship those libraries;
#   2. debootstrap a minbase Debian root filesystem with those packages, apply the suite's
#      updates and security fixes, strip docs, man pages, locales and apt caches, and keep the
#      result as a tarball (the cache: a second build skips all of this);
#   3. buildah, on its own storage under the build tree: from scratch, unpack the root
#      filesystem, add the agent and the CLI, set the entrypoint and labels, and commit to an
#      oci-archive tagged localhost/vigil-agent:VERSION.
#
# Usage: image/build.sh BUILD_DIR        (as root; `make image` runs it after `make build`)
#
# Environment (all optional):
#   IMAGE_SUITE     Debian suite of the root filesystem (bookworm: the binaries are built on it)
#   IMAGE_MIRROR    Debian mirror (http://deb.debian.org/debian)
#   IMAGE_SECURITY_MIRROR  security mirror (http://deb.debian.org/debian-security)
#   IMAGE_EXTRA_PACKAGES   more Debian packages for the image, space-separated (none)
#   IMAGE_REFRESH=1 rebuild the cached root filesystem even if its key has not changed, to pick
#                   up Debian updates published since
#   IMAGE_STRIP=0   keep the debug information in the binaries (stripped by default)
#   IMAGE_SOURCE    value of the org.opencontainers.image.source label (default: the git
#                   remote "origin" of the source tree; no label when there is none)
set -euo pipefail
shopt -s inherit_errexit

# Bump when the way the root filesystem is made changes, so that old caches are not reused.
readonly ROOTFS_RECIPE=1
readonly IMAGE_REPOSITORY=localhost/vigil-agent

SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
readonly SRC_DIR
# shellcheck source=image/lib.sh
source "$SRC_DIR/image/lib.sh"
SUITE=${IMAGE_SUITE:-bookworm}
MIRROR=${IMAGE_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

log() { printf 'image: %s\n' "$*" >&2; }
die() {
  printf 'image: error: %s\n' "$*" >&2
  exit 1
}

[[ $# -eq 1 ]] || die "usage: $0 BUILD_DIR"
BUILD_DIR=$(realpath "$1")
readonly BUILD_DIR
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot and buildah's vfs storage)"
for tool in buildah debootstrap dpkg ldd sha256sum tar; do
  command -v "$tool" >/dev/null || die "$tool is missing: run 'make image-deps'"
done

AGENT=$BUILD_DIR/agent/vigil-agent
CLI=$BUILD_DIR/cli/vigil
for bin in "$AGENT" "$CLI"; do
  [[ -x $bin ]] || die "$bin is missing: run 'make build BUILD=$BUILD_DIR' first"
done

# The version is declared once, in CMakeLists.txt; a binary that reports another one is stale.
VERSION=$(project_version "$SRC_DIR")
[[ -n $VERSION ]] || die "no 'project(vigil VERSION x.y.z' line in $SRC_DIR/CMakeLists.txt"
readonly VERSION
for pair in "$AGENT:vigil-agent" "$CLI:vigil"; do
  got=$("${pair%%:*}" --version)
  [[ $got == "${pair##*:} $VERSION" ]] ||
    die "${pair%%:*} --version says '$got', CMakeLists.txt says $VERSION: rebuild"
done

OUT_DIR=$BUILD_DIR/image
CACHE_DIR=$OUT_DIR/cache
ARCHIVE=$OUT_DIR/vigil-agent-$VERSION.oci.tar
mkdir -p "$CACHE_DIR"

# --- 1. Runtime packages: the Debian package of every library the binaries load -------------

# Every spelling under which dpkg may have recorded FILE: with merged /usr, ldd reports
# /lib/... while the package may list /usr/lib/..., or the other way round, and a soname is
# a symlink to the versioned file.
spellings() {
  local file=$1 real
  real=$(realpath "$file")
  printf '%s\n' "$file" "/usr$file" "${file#/usr}" "$real" "${real#/usr}" "$(dirname "$file")/$(basename "$real")"
}

# Prints the Debian package of every shared library that the binaries load.
runtime_packages() {
  local bin libs lib spelling found
  local -a all=()
  local -A lib_spellings=() owner=()
  for bin in "$AGENT" "$CLI"; do
    libs=$(ldd "$bin")
    if grep -q 'not found' <<<"$libs"; then
      die "$bin needs a library missing on this machine: $(grep 'not found' <<<"$libs" | head -n1)"
    fi
    while read -r lib; do
      [[ -n ${lib_spellings[$lib]:-} ]] && continue
      lib_spellings[$lib]=$(spellings "$lib")
      mapfile -t -O "${#all[@]}" all <<<"${lib_spellings[$lib]}"
    done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs")
  done
  # One dpkg call for every spelling ("package:arch: /path" per match; misses are ignored).
  while IFS= read -r line; do
    [[ $line == diversion* ]] && continue
    owner[${line#*: }]=${line%%:*}
  done < <(dpkg -S "${all[@]}" 2>/dev/null || true)
  for lib in "${!lib_spellings[@]}"; do
    found=
    while read -r spelling; do
      if [[ -n ${owner[$spelling]:-} ]]; then
        found=${owner[$spelling]}
        break
      fi
    done <<<"${lib_spellings[$lib]}"
    [[ -n $found ]] || die "no Debian package ships $lib (the binaries load it)"
    echo "$found"
  done
}

read -ra EXTRA_PACKAGES <<<"${IMAGE_EXTRA_PACKAGES:-}"
PACKAGES=$( (
  runtime_packages
  printf '%s\n' "${EXTRA_PACKAGES[@]}"
) | sort -u | grep -v '^$' | tr '\n' ' ')
PACKAGES=${PACKAGES% }
readonly PACKAGES
log "version $VERSION; Debian packages for the binaries: $PACKAGES"

# --- 2. The root filesystem, cached ----------------------------------------------------------

KEY=$(printf '%s\n' "recipe $ROOTFS_RECIPE" "suite $SUITE" "mirror $MIRROR" \
  "security $SECURITY_MIRROR" "packages $PACKAGES" | sha256sum | cut -c1-16)
readonly KEY
ROOTFS_TAR=$CACHE_DIR/rootfs-$SUITE-$KEY.tar

WORK=$(mktemp -d "$OUT_DIR/work.XXXXXX")
STORAGE=$WORK/buildah
CONTAINER=
BUILDAH=(buildah --root "$STORAGE/root" --runroot "$STORAGE/run" --storage-driver vfs)
# buildah takes its CNI lock from containers.conf (default /etc/cni/net.d): point it at the
# build tree too.
export CONTAINERS_CONF=$STORAGE/containers.conf
SYSTEM_CACHE_CREATED=$(system_cache_to_remove)

cleanup() {
  local status=$?
  set +e
  if [[ -n $CONTAINER ]]; then
    "${BUILDAH[@]}" umount "$CONTAINER" >/dev/null 2>&1
    "${BUILDAH[@]}" rm "$CONTAINER" >/dev/null 2>&1
  fi
  [[ -n $SYSTEM_CACHE_CREATED ]] && rm -rf "$SYSTEM_CACHE_CREATED"
  rm -f "$ARCHIVE.tmp" "$ROOTFS_TAR.tmp"
  # Nothing may stay mounted below the work directory (debootstrap mounts /proc and /sys in
  # the root filesystem it makes) before it is removed.
  local mp
  findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r | while read -r mp; do umount -l "$mp"; done
  if findmnt -rn -o TARGET | grep -qF "$WORK/"; then
    log "left $WORK in place: something is still mounted below it"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed ($BASH_COMMAND, line $LINENO)"' ERR

make_rootfs() {
  local rootfs=$WORK/rootfs includes
  includes=$(tr ' ' ',' <<<"$PACKAGES")
  log "debootstrap --variant=minbase $SUITE from $MIRROR (cache miss: key $KEY)"
  if ! debootstrap --variant=minbase --include="$includes" "$SUITE" "$rootfs" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    [[ -f $rootfs/debootstrap/debootstrap.log ]] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (log above)"
  fi

  # The suite's point-release updates and security fixes, which debootstrap does not apply.
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  log "applying $SUITE-updates and $SUITE-security"
  if ! chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive sh -c \
    'apt-get update -qq && apt-get -y -qq -o Dpkg::Use-Pty=0 upgrade' >"$WORK/upgrade.log" 2>&1; then
    tail -n 30 "$WORK/upgrade.log" >&2
    die "apt-get upgrade in the root filesystem failed (log above)"
  fi

  log "root filesystem before shrinking: $(du -sh "$rootfs" | cut -f1)"
  # Package lists, downloaded .debs, logs, docs (copyright files stay), man pages, locales.
  rm -rf "${rootfs:?}"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/usr/share/lintian "$rootfs"/usr/share/linda "$rootfs"/debootstrap
  mkdir -p "$rootfs/var/lib/apt/lists/partial"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  # The container runtime provides /dev, the host name and DNS; none of the build machine's.
  rm -rf "${rootfs:?}"/dev/*
  rm -f "$rootfs/etc/hostname"
  : >"$rootfs/etc/resolv.conf"
  # What ended up inside, for the record (and for `cat` in a running container).
  # shellcheck disable=SC2016 # dpkg-query's format, not shell
  chroot "$rootfs" dpkg-query -W -f='${Package} ${Version}\n' >"$WORK/packages.txt"
  install -m 0644 "$WORK/packages.txt" "$rootfs/usr/share/doc/vigil-image-packages.txt"
  log "root filesystem after shrinking: $(du -sh "$rootfs" | cut -f1)," \
    "$(wc -l <"$WORK/packages.txt") Debian packages"

  tar --numeric-owner --xattrs --xattrs-include='*' -C "$rootfs" -cf "$ROOTFS_TAR.tmp" .
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf "$rootfs"
  # Only the current cache is kept.
  find "$CACHE_DIR" -maxdepth 1 -name 'rootfs-*.tar' ! -path "$ROOTFS_TAR" -delete
}

if [[ ${IMAGE_REFRESH:-0} == 1 || ! -f $ROOTFS_TAR ]]; then
  make_rootfs
else
  log "root filesystem from the cache: $ROOTFS_TAR"
fi

# --- 3. The image ----------------------------------------------------------------------------

# Stripped copies: the debug information is most of the binaries' size.
install_binary() {
  local src=$1 dst=$2
  if [[ ${IMAGE_STRIP:-1} != 0 ]] && command -v strip >/dev/null; then
    strip --strip-unneeded -o "$dst" "$src"
  else
    cp "$src" "$dst"
  fi
  chmod 0755 "$dst"
}
install_binary "$AGENT" "$WORK/vigil-agent"
install_binary "$CLI" "$WORK/vigil"

SOURCE=${IMAGE_SOURCE:-$(git -C "$SRC_DIR" remote get-url origin 2>/dev/null || true)}
LABELS=(
  --label "org.opencontainers.image.title=vigil-agent"
  --label "org.opencontainers.image.version=$VERSION"
  --label "org.opencontainers.image.description=Vigil: eBPF process and network observability and enforcement agent for Kubernetes nodes (vigil-agent, with the vigil CLI)"
)
if [[ -n $SOURCE ]]; then
  LABELS+=(--label "org.opencontainers.image.source=$SOURCE")
else
  log "no org.opencontainers.image.source label: set IMAGE_SOURCE (the tree has no git remote)"
fi

mkdir -p "$STORAGE"
printf '[network]\nnetwork_config_dir = "%s/cni"\n' "$STORAGE" >"$CONTAINERS_CONF"
CONTAINER=$("${BUILDAH[@]}" from --name "vigil-image-$$" scratch)
MOUNT=$("${BUILDAH[@]}" mount "$CONTAINER")
tar --numeric-owner --xattrs --xattrs-include='*' -C "$MOUNT" -xpf "$ROOTFS_TAR"
install -m 0755 "$WORK/vigil-agent" "$MOUNT/usr/bin/vigil-agent"
install -m 0755 "$WORK/vigil" "$MOUNT/usr/bin/vigil"
# The API socket's directory and the default policy directory (a ConfigMap is mounted there).
install -d -m 0700 "$MOUNT/run/vigil"
install -d -m 0755 "$MOUNT/etc/vigil/policies"
"${BUILDAH[@]}" umount "$CONTAINER" >/dev/null

"${BUILDAH[@]}" config \
  --os linux --arch amd64 \
  --entrypoint '["/usr/bin/vigil-agent"]' --cmd '' \
  --workingdir / \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --stop-signal SIGTERM \
  --created-by "image/build.sh: Debian $SUITE minbase, vigil-agent and vigil $VERSION" \
  "${LABELS[@]}" \
  "$CONTAINER"

rm -f "$ARCHIVE.tmp"
"${BUILDAH[@]}" commit --quiet --format oci --disable-compression=false --rm \
  "$CONTAINER" "oci-archive:$ARCHIVE.tmp:$IMAGE_REPOSITORY:$VERSION" >/dev/null
CONTAINER=
mv "$ARCHIVE.tmp" "$ARCHIVE"

log "wrote $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1), compressed layer)," \
  "image $IMAGE_REPOSITORY:$VERSION, root filesystem $(du -sh --apparent-size "$ROOTFS_TAR" | cut -f1)" \
  "+ binaries $(du -ch --apparent-size "$WORK/vigil-agent" "$WORK/vigil" | tail -n1 | cut -f1)"
