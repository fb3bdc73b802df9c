# shellcheck shell=bash
# Helpers shared by image/build.sh and image/test.sh (sourced, not run).

# The project version, declared once in CMakeLists.txt: project(vigil VERSION x.y.z ...).
project_version() {
  sed -n 's/^project(vigil VERSION \([0-9][0-9.]*\).*/\1/p' "$1/CMakeLists.txt"
}

# containers/image (inside buildah and podman) keeps a blob-info cache in
# /var/lib/containers/cache when run as root, whatever --root says. Prints the shallowest of
# those paths that does not exist yet, if any: removing it afterwards leaves nothing behind.
system_cache_to_remove() {
  local path
  for path in /var/lib/containers /var/lib/containers/cache \
    /var/lib/containers/cache/blob-info-cache-v1.boltdb; do
    if [[ ! -e $path ]]; then
      echo "$path"
      return
    fi
  done
}
