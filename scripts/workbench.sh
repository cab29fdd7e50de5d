#!/usr/bin/env bash
# Set up the workbench on a fresh machine (first run only) and then do one thing:
#
#   bash scripts/workbench.sh lab     open JupyterLab on notebooks/ (127.0.0.1, token authentication)
#   bash scripts/workbench.sh test    run the full test suite
#   bash scripts/workbench.sh docs    build the course site (docs/_build/site) from the notebooks
#   bash scripts/workbench.sh bench   run the benchmarks in benchmarks/
#   bash scripts/workbench.sh new NN short_name --paper N   scaffold notebook NN about paper N of shared/papers.md
#   bash scripts/workbench.sh sync [NAME ...]   sync notebooks/*.ipynb with their sources notebooks/src/*.py
#   bash scripts/workbench.sh time NN [--mode M]  time notebook NN in laptop mode from an empty cache; store it
#   bash scripts/workbench.sh setup   only install
#
# Environment:
#   WORKBENCH_VENV        where the virtual environment lives (default: .venv in the checkout)
#   WORKBENCH_TORCH_SPEC  how to ask pip for torch (default: torch; CI pins torch==2.13.0)
#   WORKBENCH_DATA_DIR    a local data mirror (optional; otherwise data comes from the Hugging Face hub)
#   WORKBENCH_MODE        smoke | laptop | paper (notebooks; default laptop)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${WORKBENCH_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
cmd=${1:-help}
shift || true

say() { printf '\033[1m[workbench]\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

apt_packages() {
  # optional system packages: Fashion-MNIST from Debian; Chromium for the browser tests; libGL for OpenCV
  command -v apt-get >/dev/null || return 0
  local want=()
  [ -d /usr/share/datasets/fashion-mnist ] || want+=(dataset-fashion-mnist)
  # OpenCV (under imagecorruptions, the tests' reference corruptions) needs libGL and glib
  ldconfig -p 2>/dev/null | grep -q "libGL.so.1 " || want+=(libgl1 libglib2.0-0)
  # the fonts wb.data.glyphs renders Aramaic and Hebrew letters from (notebook 30)
  [ -f /usr/share/fonts/truetype/noto/NotoSansImperialAramaic-Regular.ttf ] || want+=(fonts-noto-core)
  [ -d /usr/share/fonts/truetype/culmus ] || want+=(culmus)
  if [ "$#" -gt 0 ]; then want+=("$@"); fi
  [ "${#want[@]}" -gt 0 ] || return 0
  say "installing system packages: ${want[*]}"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null 2>&1; then
    as_root apt-get update -qq >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null \
      || say "could not install ${want[*]} (no root?); run: sudo apt-get install ${want[*]}"
  fi
}

setup() {
  # $1: the extras of pyproject.toml to install (default dev); the stamp remembers which are in
  local extras=${1:-dev}
  "$PY" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' 2>/dev/null \
    || { say "Python 3.10 or newer is needed (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.x"; exit 1; }
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtual environment $VENV"
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      as_root apt-get install -y -qq "python$ver-venv" >/dev/null 2>&1 || as_root apt-get install -y -qq python3-venv >/dev/null 2>&1 \
        || { say "venv is missing: run sudo apt-get install python3-venv, then try again"; exit 1; }
      "$PY" -m venv "$VENV"
    fi
  fi
  local vpy="$VENV/bin/python"
  local stamp="$VENV/.workbench-installed"
  local want_hash have_hash="" have_extras="" missing="" e
  want_hash=$(sha256sum < pyproject.toml | cut -c1-16)
  if [ -f "$stamp" ]; then
    read -r have_hash have_extras < "$stamp" || true
    [ -n "$have_extras" ] || have_extras=dev   # a stamp of an older script: .[dev] was installed
    [ "$have_hash" = "$want_hash" ] || have_extras=""
  fi
  for e in ${extras//,/ }; do
    case ",$have_extras," in *",$e,"*) ;; *) missing="$missing,$e" ;; esac
  done
  [ -n "$missing" ] || return 0
  "$vpy" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if ! "$vpy" -c 'import torch' 2>/dev/null; then
    say "installing ${WORKBENCH_TORCH_SPEC:-torch} (first, so the project does not pull another build)"
    "$vpy" -m pip install -q "${WORKBENCH_TORCH_SPEC:-torch}"
  fi
  say "installing the workbench and its dependencies (.[$extras])"
  "$vpy" -m pip install -q -e ".[$extras]"
  echo "$want_hash ${have_extras:+$have_extras,}${missing#,}" > "$stamp"
}

case "$cmd" in
  setup)
    apt_packages
    setup ;;
  lab)
    apt_packages
    setup
    args=(--ServerApp.ip=127.0.0.1 --ServerApp.root_dir="$ROOT/notebooks")
    [ "$(id -u)" = 0 ] && args+=(--allow-root)
    say "starting JupyterLab on http://127.0.0.1 (the URL with its token is printed below)"
    exec "$VENV/bin/jupyter" lab "${args[@]}" "$@" ;;
  test)
    if [ -x /usr/bin/chromium ]; then apt_packages; else apt_packages chromium; fi
    setup dev,sweep
    exec "$VENV/bin/python" -m pytest "$@" ;;
  docs)
    setup
    NO_MKDOCS_2_WARNING=1 exec "$VENV/bin/python" docs/build.py "$@" ;;
  new)
    setup
    exec "$VENV/bin/python" tools/new_notebook.py "$@" ;;
  sync)
    setup
    exec "$VENV/bin/python" tools/notebook_sources.py sync "$@" ;;
  time)
    setup
    exec "$VENV/bin/python" tools/time_notebook.py "$@" ;;
  bench)
    setup
    "$VENV/bin/python" -m pip install -q -e ".[dev,bench]"
    for b in benchmarks/bench_*.py; do say "$b"; "$VENV/bin/python" "$b" "$@"; done ;;
  *)
    sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    [ "$cmd" = help ] || exit 2 ;;
esac
