#!/usr/bin/env bash
# install_torch VERSION: install torch==VERSION into the active environment, never a CUDA build on a
# machine without an NVIDIA GPU. Sourced by scripts/setup.sh; the sources, in order (the first that has
# it wins):
#   1. the local sources pip is configured with (find-links in pip.conf or PIP_FIND_LINKS, e.g. a
#      folder of wheels), with --no-index --no-deps: nothing is downloaded (torch's own small
#      dependencies come with the package's install afterwards);
#   2. on Linux without an NVIDIA GPU (`nvidia-smi -L` lists none): PyTorch's CPU index
#      https://download.pytorch.org/whl/cpu, and nothing else (PyPI's Linux wheel is the CUDA build);
#   3. with an NVIDIA GPU, or off Linux (PyPI's macOS and Windows wheels are CPU builds): the
#      default index.

has_nvidia_gpu() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '
}

install_torch() {
    local version="$1" cpu_index="https://download.pytorch.org/whl/cpu"
    local quiet=(--quiet --disable-pip-version-check)
    if python -m pip install "${quiet[@]}" --no-index --no-deps "torch==$version" >/dev/null 2>&1; then
        echo "[setup] torch $version: from pip's configured local sources" >&2
    elif has_nvidia_gpu || [[ "$(uname -s)" != Linux ]]; then
        echo "[setup] torch $version: from the default index (an NVIDIA GPU, or PyPI's CPU build for $(uname -s))" >&2
        python -m pip install "${quiet[@]}" "torch==$version"
    else
        echo "[setup] torch $version: the CPU build from $cpu_index (no NVIDIA GPU found)" >&2
        python -m pip install "${quiet[@]}" "torch==$version" --index-url "$cpu_index" || {
            echo "[setup] could not install torch $version from $cpu_index; without an NVIDIA GPU the" \
                 "default index is not tried (its Linux wheel is the multi-GB CUDA build). Fix: install" \
                 "a CPU build of torch into $VIRTUAL_ENV yourself (https://pytorch.org/get-started/locally/)" \
                 "or point pip at a wheel (PIP_FIND_LINKS=DIR), then run the command again" >&2
            return 1
        }
    fi
}
