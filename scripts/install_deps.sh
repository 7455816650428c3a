#!/bin/sh
# install_deps.sh - install the Debian 12 packages ksa.c needs, only if missing.
#
#   scripts/install_deps.sh            build, run, test and default-data packages
#   scripts/install_deps.sh --torch    also PyTorch/h5py/numpy for `make crosscheck`
#   scripts/install_deps.sh --fuzz     also clang with libFuzzer for `make fuzz`
#   scripts/install_deps.sh --check    exit 1 if anything is missing, install nothing
#
# Idempotent: when every package is present it only runs dpkg-query and exits.
set -eu

CORE="build-essential pkg-config clang-format \
libopenblas-dev libopenblas-openmp-dev \
libopenmpi-dev openmpi-bin \
libhdf5-openmpi-dev hdf5-tools \
libcmocka-dev libxxhash-dev libcjson-dev libpcre2-dev libutf8proc-dev nodejs time strace \
bible-kjv bible-kjv-text"
PYTHON="python3-numpy python3-h5py python3-matplotlib"
TORCH="python3-torch"
# clang 14, and its libFuzzer and sanitizer runtimes (only a Recommends of clang, which
# --no-install-recommends skips)
FUZZ="clang libclang-rt-14-dev"

want="$CORE $PYTHON"
check_only=0
for arg in "$@"; do
    case "$arg" in
        --torch) want="$want $TORCH" ;;
        --fuzz) want="$want $FUZZ" ;;
        --check) check_only=1 ;;
        *) echo "install_deps.sh: unknown option '$arg' (known: --torch, --fuzz, --check)" >&2; exit 2 ;;
    esac
done

missing=""
for pkg in $want; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $pkg" ;;
    esac
done

# npm comes with Node.js from some sources and as Debian's own package from Debian: the
# command is what `make tokenizer-ref` needs
command -v npm >/dev/null 2>&1 || missing="$missing npm"

[ -z "$missing" ] && exit 0
if [ "$check_only" = 1 ]; then
    echo "missing Debian packages:$missing" >&2
    exit 1
fi

echo "install_deps.sh: installing$missing" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install_deps.sh: need root (or sudo) to install:$missing" >&2; exit 1; }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
