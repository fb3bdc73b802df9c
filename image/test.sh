#!/usr/bin/env bash
# Checks the OCI image archive that image/build.sh wrote, from the outside in:
#
#   1. layout: oci-layout, index.json -> manifest -> config and layers, every blob's sha256
#      and size as its descriptor says;
#   2. config: entrypoint, os, architecture, labels, one diff_id per layer;
#   3. root filesystem: the layers unpacked in order (whiteouts honoured); in a chroot of it,
#      the agent and the CLI print their version, --help works and every shared library
#      resolves;
#   4. podman: the archive loaded into a throw-away podman storage and the agent run the way
#      the DaemonSet runs it (privileged, host pid and network, bpffs, BTF and cgroupfs from
#      the host); `vigil status` inside the container must show the agent with its
#      process-event programs attached. Then everything is stopped and removed, and the
#      check is that nothing is left. Skipped, with the reason, where podman cannot work.
#
# Usage: image/test.sh BUILD_DIR       (as root; `make image-test` builds the image first)
# IMAGE_TEST_PODMAN=0 skips step 4.
set -euo pipefail
shopt -s inherit_errexit

readonly IMAGE_REPOSITORY=localhost/vigil-agent
readonly AGENT_PATH=/usr/bin/vigil-agent
readonly CLI_PATH=/usr/bin/vigil

SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
readonly SRC_DIR
# shellcheck source=image/lib.sh
source "$SRC_DIR/image/lib.sh"
[[ $# -eq 1 ]] || {
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
}
BUILD_DIR=$(realpath "$1")
VERSION=$(project_version "$SRC_DIR")
readonly BUILD_DIR VERSION
ARCHIVE=$BUILD_DIR/image/vigil-agent-$VERSION.oci.tar
IMAGE=$IMAGE_REPOSITORY:$VERSION

passed=0
failed=0
skipped=0
summary() { echo "image-test: $passed passed, $failed failed, $skipped skipped"; }
ok() {
  echo "ok    $1"
  passed=$((passed + 1))
}
fail() { # WHAT EXPECTED FOUND
  echo "FAIL  $1"
  echo "        expected: $2"
  echo "        found:    $3"
  failed=$((failed + 1))
}
skip() {
  echo "skip  $1"
  skipped=$((skipped + 1))
}
check_eq() { # WHAT EXPECTED FOUND
  if [[ $2 == "$3" ]]; then ok "$1: $3"; else fail "$1" "$2" "$3"; fi
}
# A check that the rest depends on: stop here when it fails.
fatal() {
  fail "$@"
  summary
  exit 1
}

for tool in jq sha256sum tar gzip chroot; do
  command -v "$tool" >/dev/null || fatal "tool $tool" "installed (make image-deps)" "missing"
done
[[ $(id -u) -eq 0 ]] || fatal "user" "root (chroot, podman)" "uid $(id -u)"

TMP=$(mktemp -d /tmp/vigil-image-test.XXXXXX)
PODMAN=()
SYSTEM_CACHE_CREATED=
CONTAINER_NAME=vigil-image-test-$$

cleanup() {
  local status=$? mp
  set +e
  if ((${#PODMAN[@]})); then
    "${PODMAN[@]}" rm -f -t 5 "$CONTAINER_NAME" >/dev/null 2>&1
    "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1
  fi
  [[ -n $SYSTEM_CACHE_CREATED ]] && rm -rf "$SYSTEM_CACHE_CREATED"
  findmnt -rn -o TARGET | grep -F "$TMP/" | sort -r | while read -r mp; do umount -l "$mp"; done
  if findmnt -rn -o TARGET | grep -qF "$TMP/"; then
    echo "image-test: left $TMP in place: something is still mounted below it" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "image-test: $ARCHIVE (image $IMAGE)"

# --- 1. OCI layout ---------------------------------------------------------------------------

[[ -s $ARCHIVE ]] || fatal "archive" "a non-empty file $ARCHIVE (make image)" "nothing there"
ok "archive exists: $(du -h "$ARCHIVE" | cut -f1)"

LAYOUT=$TMP/oci
mkdir -p "$LAYOUT"
tar -C "$LAYOUT" -xf "$ARCHIVE" || fatal "archive" "a tar file" "tar cannot read it"
check_eq "oci-layout version" "1.0.0" "$(jq -r .imageLayoutVersion "$LAYOUT/oci-layout" 2>&1)"
[[ -f $LAYOUT/index.json ]] || fatal "index.json" "present" "missing"

# Every blob's content must hash to its name.
bad_blobs=
for blob in "$LAYOUT"/blobs/sha256/*; do
  [[ $(sha256sum "$blob" | cut -d' ' -f1) == "$(basename "$blob")" ]] || bad_blobs+="${bad_blobs:+ }$(basename "$blob")"
done
check_eq "blobs whose sha256 differs from their name" "none" "${bad_blobs:-none}"

# blob_path DESCRIPTOR_JSON WHAT VAR: sets VAR to the blob a descriptor names, after checking
# that it exists and has the size the descriptor gives.
blob_path() {
  local digest size path
  digest=$(jq -r .digest <<<"$1")
  size=$(jq -r .size <<<"$1")
  [[ $digest == sha256:* ]] || fatal "$2 digest" "sha256:..." "$digest"
  path=$LAYOUT/blobs/sha256/${digest#sha256:}
  [[ -f $path ]] || fatal "$2 blob" "$path" "missing"
  [[ $(stat -c %s "$path") == "$size" ]] ||
    fatal "$2 size" "$size bytes (descriptor)" "$(stat -c %s "$path") bytes"
  printf -v "$3" '%s' "$path"
}

refs=$(jq -r '[.manifests[].annotations["org.opencontainers.image.ref.name"]] | join(" ")' \
  "$LAYOUT/index.json")
manifest_desc=$(jq -c --arg ref "$IMAGE" \
  '[.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $ref)] | first' \
  "$LAYOUT/index.json")
[[ $manifest_desc != null ]] || fatal "index.json tag" "$IMAGE" "${refs:-no tag}"
ok "index.json tag: $IMAGE"
check_eq "manifest media type" "application/vnd.oci.image.manifest.v1+json" \
  "$(jq -r .mediaType <<<"$manifest_desc")"
blob_path "$manifest_desc" manifest MANIFEST
config_desc=$(jq -c .config "$MANIFEST")
check_eq "config media type" "application/vnd.oci.image.config.v1+json" \
  "$(jq -r .mediaType <<<"$config_desc")"
blob_path "$config_desc" config CONFIG
layer_count=$(jq '.layers | length' "$MANIFEST")
((layer_count > 0)) || fatal "layers" "at least one" "none"
LAYER_PATHS=()
LAYER_TYPES=()
for ((i = 0; i < layer_count; i++)); do
  desc=$(jq -c ".layers[$i]" "$MANIFEST")
  blob_path "$desc" "layer $i" "LAYER_PATHS[$i]"
  LAYER_TYPES+=("$(jq -r .mediaType <<<"$desc")")
done
ok "manifest, config and $layer_count layer(s) present with the sizes their descriptors give"

# --- 2. Config -------------------------------------------------------------------------------

check_eq "entrypoint" "[\"$AGENT_PATH\"]" "$(jq -c .config.Entrypoint "$CONFIG")"
check_eq "os" "linux" "$(jq -r .os "$CONFIG")"
check_eq "architecture" "amd64" "$(jq -r .architecture "$CONFIG")"
check_eq "label org.opencontainers.image.version" "$VERSION" \
  "$(jq -r '.config.Labels["org.opencontainers.image.version"]' "$CONFIG")"
check_eq "label org.opencontainers.image.title" "vigil-agent" \
  "$(jq -r '.config.Labels["org.opencontainers.image.title"]' "$CONFIG")"
check_eq "diff_ids (one per layer)" "$layer_count" "$(jq '.rootfs.diff_ids | length' "$CONFIG")"

# --- 3. Root filesystem ----------------------------------------------------------------------

ROOTFS=$TMP/rootfs
mkdir -p "$ROOTFS"

# Applies the whiteouts of the layer tar LIST (its member names) to ROOTFS: ".wh.NAME" deletes
# NAME from the lower layers, ".wh..wh..opq" empties its directory.
apply_whiteouts() {
  local member dir base
  while IFS= read -r member; do
    member=${member#./}
    base=${member##*/}
    [[ $base == .wh.* ]] || continue
    [[ /$member/ != */../* ]] || fatal "layer member" "a path without '..'" "$member"
    dir=$(dirname "$member")
    if [[ $base == .wh..wh..opq ]]; then
      find "$ROOTFS/$dir" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    else
      rm -rf "${ROOTFS:?}/$dir/${base#.wh.}"
    fi
  done <<<"$1"
}

for ((i = 0; i < layer_count; i++)); do
  case ${LAYER_TYPES[$i]} in
    *.tar) decompress=(cat) ;;
    *.tar+gzip) decompress=(gzip -dc) ;;
    *.tar+zstd) decompress=(zstd -dc) ;;
    *) fatal "layer $i media type" "an OCI tar layer (plain, gzip or zstd)" "${LAYER_TYPES[$i]}" ;;
  esac
  plain=$TMP/layer.tar
  "${decompress[@]}" <"${LAYER_PATHS[$i]}" >"$plain" ||
    fatal "layer $i" "a ${LAYER_TYPES[$i]} stream" "${decompress[0]} cannot read it"
  check_eq "layer $i diff_id" "$(jq -r ".rootfs.diff_ids[$i]" "$CONFIG")" \
    "sha256:$(sha256sum "$plain" | cut -d' ' -f1)"
  apply_whiteouts "$(tar -tf "$plain")"
  tar --numeric-owner --xattrs --xattrs-include='*' --exclude='.wh.*' -C "$ROOTFS" -xpf "$plain" ||
    fatal "layer $i" "unpacks" "tar failed"
  rm -f "$plain"
done
ok "layers unpacked: $(du -sh "$ROOTFS" | cut -f1) root filesystem"

for path in "$AGENT_PATH" "$CLI_PATH"; do
  if [[ -f $ROOTFS$path && -x $ROOTFS$path ]]; then ok "$path is an executable file"; else
    fail "$path" "an executable file" "$(ls -ld "$ROOTFS$path" 2>&1)"
  fi
done

in_chroot() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@" 2>&1; }

check_eq "chroot: vigil-agent --version" "vigil-agent $VERSION" "$(in_chroot "$AGENT_PATH" --version)"
check_eq "chroot: vigil --version" "vigil $VERSION" "$(in_chroot "$CLI_PATH" --version)"
for path in "$AGENT_PATH" "$CLI_PATH"; do
  if out=$(in_chroot "$path" --help); then ok "chroot: $path --help exits 0"; else
    fail "chroot: $path --help" "exit status 0" "exit status $?: $(head -n3 <<<"$out")"
  fi
  # The image's own ldd: every library must resolve inside the image.
  if libs=$(in_chroot ldd "$path"); then status=0; else status=$?; fi
  missing=$(grep 'not found' <<<"$libs" | sed 's/^[[:space:]]*//' | paste -sd' ' || true)
  ((status == 0)) || missing+=" (ldd exit status $status: $(tail -n1 <<<"$libs"))"
  check_eq "chroot: libraries of $path that do not resolve" "none" "${missing:-none}"
done
leftovers=$(find "$ROOTFS/var/lib/apt/lists" "$ROOTFS/var/cache/apt" -type f 2>/dev/null | wc -l)
check_eq "apt lists and caches left in the image (files)" "0" "$leftovers"

# --- 4. Run under podman, as the DaemonSet runs it -----------------------------------------

# What podman or the agent could leave on the host, listed before and after.
host_traces() {
  ls -d /var/lib/containers /run/containers /run/libpod /etc/cni/net.d/cni.lock /var/lib/cni \
    2>/dev/null || true
  find /var/lib/containers -maxdepth 2 2>/dev/null || true
  find /dev/shm -maxdepth 1 -name '*libpod*' 2>/dev/null || true
  findmnt -rn -o TARGET | grep -E '^/sys/fs/bpf|containers|libpod' || true
  find /sys/fs/bpf/vigil 2>/dev/null || true
}

podman_check() {
  local podman_tmp=$TMP/podman run_dir=$TMP/run traces_before status_json state out i
  command -v podman >/dev/null || {
    skip "podman: not installed (make image-deps installs it)"
    return
  }
  command -v runc >/dev/null || {
    skip "podman: the runc runtime is not installed (make image-deps installs it)"
    return
  }
  [[ -r /sys/kernel/btf/vmlinux ]] || {
    skip "podman: the kernel has no BTF (/sys/kernel/btf/vmlinux), the agent cannot run"
    return
  }
  traces_before=$(host_traces)
  mkdir -p "$podman_tmp/cni" "$run_dir"
  # Podman's CNI lock and tmp files go under the test's directory, like its storage.
  # File locks instead of /dev/shm/libpod_lock.
  printf '[network]\nnetwork_config_dir = "%s/cni"\n[engine]\ntmp_dir = "%s/tmp"\nlock_type = "file"\n' \
    "$podman_tmp" "$podman_tmp" >"$podman_tmp/containers.conf"
  SYSTEM_CACHE_CREATED=$(system_cache_to_remove)
  export CONTAINERS_CONF=$podman_tmp/containers.conf
  # This VM has hybrid cgroups and no systemd cgroup manager: cgroupfs and runc work.
  PODMAN=(podman --root "$podman_tmp/root" --runroot "$podman_tmp/runroot" --storage-driver vfs
    --runtime runc --cgroup-manager cgroupfs --events-backend file)

  local started=$SECONDS
  if ! out=$("${PODMAN[@]}" load -q -i "$ARCHIVE" 2>&1); then
    fail "podman load" "the archive loads" "$out"
    return
  fi
  if "${PODMAN[@]}" image exists "$IMAGE"; then ok "podman load: $IMAGE"; else
    fail "podman load" "image $IMAGE" "$out; images: $("${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}' | tr '\n' ' ')"
    return
  fi

  # The DaemonSet's privileges and host paths, and its socket on a host directory.
  if ! out=$("${PODMAN[@]}" run -d --name "$CONTAINER_NAME" --privileged --pid=host --net=host \
    --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
    -v /sys/fs/bpf:/sys/fs/bpf -v /sys/kernel/btf:/sys/kernel/btf:ro \
    -v /sys/fs/cgroup:/sys/fs/cgroup -v "$run_dir:/run/vigil" \
    "$IMAGE" --flow-interfaces none 2>&1); then
    fail "podman run" "the agent container starts" "$out"
    return
  fi

  # Wait for the API: `vigil status` inside the container, at most 30 s.
  status_json=
  for ((i = 0; i < 60; i++)); do
    state=$("${PODMAN[@]}" inspect -f '{{.State.Status}}' "$CONTAINER_NAME" 2>&1)
    [[ $state == running ]] || break
    if status_json=$("${PODMAN[@]}" exec "$CONTAINER_NAME" vigil status -o json 2>/dev/null); then
      break
    fi
    status_json=
    sleep 0.5
  done
  if [[ -z $status_json ]]; then
    fail "podman: vigil status in the container" "the agent answering within 30 s" \
      "container $state; agent log: $("${PODMAN[@]}" logs "$CONTAINER_NAME" 2>&1 | tail -n 5)"
  else
    ok "podman: agent running, \`vigil status\` answers inside the container ($((SECONDS - started)) s after load)"
    check_eq "podman: status version" "$VERSION" "$(jq -r .version <<<"$status_json")"
    check_eq "podman: process-event programs attached" "vigil_exec vigil_exit vigil_fork" \
      "$(jq -r '[.programs[].name | select(test("^vigil_(exec|exit|fork)$"))] | sort | join(" ")' \
        <<<"$status_json")"
    check_eq "podman: capabilities in use for process events" "ring_buffer tp_btf" \
      "$(jq -r '[.capabilities[] | select(.in_use and (.name | test("^(ring_buffer|tp_btf|raw_tracepoint)$"))) | .name] | sort | join(" ")' \
        <<<"$status_json")"
    # The socket is on the host directory too, as a hostPath volume would share it.
    if [[ -S $run_dir/vigil.sock ]]; then ok "podman: API socket on the host at run/vigil.sock"; else
      fail "podman: API socket" "$run_dir/vigil.sock" "$(find "$run_dir" -mindepth 1 | paste -sd' ')"
    fi
  fi
  local prog_ids=
  [[ -z $status_json ]] || prog_ids=$(jq -r '.programs[].id' <<<"$status_json" | tr '\n' ' ')

  # Stop as Kubernetes would (SIGTERM), then remove the container, the image, the storage.
  "${PODMAN[@]}" stop -t 15 "$CONTAINER_NAME" >/dev/null 2>&1 || true
  check_eq "podman: agent exit status after SIGTERM" "0" \
    "$("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' "$CONTAINER_NAME" 2>&1)"
  "${PODMAN[@]}" rm -f "$CONTAINER_NAME" >/dev/null 2>&1 || true
  "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
  local left
  left=$("${PODMAN[@]}" ps -a --format '{{.Names}}' 2>&1 | tr '\n' ' ')
  check_eq "podman: containers left" "none" "${left:-none}"
  PODMAN=()
  if [[ -n $SYSTEM_CACHE_CREATED ]]; then
    rm -rf "$SYSTEM_CACHE_CREATED"
    SYSTEM_CACHE_CREATED=
  fi
  unset CONTAINERS_CONF
  local mounts
  mounts=$(findmnt -rn -o TARGET | grep -F "$TMP/" | tr '\n' ' ' || true)
  check_eq "podman: mounts left under the test directory" "none" "${mounts:-none}"
  rm -rf "$podman_tmp"
  local alive=
  for i in $prog_ids; do
    if command -v bpftool >/dev/null && bpftool prog show id "$i" >/dev/null 2>&1; then alive+=" $i"; fi
  done
  check_eq "podman: agent's BPF programs still loaded" "none" "${alive:-none}"
  check_eq "podman: traces on the host (storage, locks, bpffs pins, mounts)" \
    "$(paste -sd' ' <<<"$traces_before")" "$(host_traces | paste -sd' ')"
  ok "podman: whole check took $((SECONDS - started)) s"
}

if [[ ${IMAGE_TEST_PODMAN:-1} == 0 ]]; then
  skip "podman: IMAGE_TEST_PODMAN=0"
else
  podman_check
fi

summary
((failed == 0))
