#!/usr/bin/env bash
# Proof on arm64 (issue 15, section 6): install jamd[cpu] in an arm64 Debian
# bookworm userland, run `jamd generate` with the shipped models and the tests
# that need no JACK, all under QEMU user-mode emulation. Results: docs/ARM64.md.
#
# Needs: root on a Debian/Ubuntu x86_64 machine that can reach Debian's mirror
# and PyPI, and binfmt_misc (a kernel feature; a container may have to mount
# it, which this script tries). Slow: every arm64 instruction is emulated.
#
#   sudo bash .ci/arm64_qemu.sh                  # the default test subset
#   sudo ARM64_TESTS=all bash .ci/arm64_qemu.sh  # every test not marked jack/train/network
#   sudo bash .ci/arm64_qemu.sh tests/test_tokens.py -k bar   # these pytest arguments instead
#
# Settings (environment):
#   ARM64_ROOT    the arm64 root file system, built once and reused (default /tmp/jamd-arm64)
#   ARM64_MIRROR  Debian mirror (default: the first one in this machine's apt sources)
#   ARM64_CPUS    CPUs the emulation may use, a taskset list (default 0: one core)
#   ARM64_QEMU_CPU  the emulated core (default cortex-a72, a Raspberry Pi 4's; cortex-a76 is a Pi 5's)
#   ARM64_TESTS   'all', or the default fast subset below
# The working tree (tracked and untracked, not ignored files) is copied to
# $ARM64_ROOT/src/jamd and installed non-editable into $ARM64_ROOT/opt/jamd-venv.
# Each step's time in seconds is printed, and again in a summary at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROOT=${ARM64_ROOT:-/tmp/jamd-arm64}
CPUS=${ARM64_CPUS:-0}
QCPU=${ARM64_QEMU_CPU:-cortex-a72}
VENV=/opt/jamd-venv
# quick unit tests that cover tokens, MIDI files, the models through onnxruntime,
# the harmony contract and the engine with in-memory ports
SUBSET=(tests/test_tokens.py tests/test_midifile.py tests/test_sampling.py tests/test_generate.py
        tests/test_generate_harmony.py tests/test_harmonizer.py tests/test_voicing.py tests/test_scheduler.py
        tests/test_engine.py tests/test_config.py)

[ "$(id -u)" -eq 0 ] || { echo "arm64_qemu: needs root (mmdebstrap, binfmt_misc, chroot)" >&2; exit 2; }
SUMMARY=()
step() {  # step NAME command...: run, time, remember
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  echo "== $name"
  "$@"
  local s; s=$(echo "$(date +%s.%N) - $t0" | bc)
  printf '== %s: %.1f s\n' "$name" "$s"
  SUMMARY+=("$(printf '%-28s %8.1f s' "$name" "$s")")
}

# 1. the host's tools
need=""
command -v qemu-aarch64-static >/dev/null || need="$need qemu-user-static"
command -v update-binfmts >/dev/null || need="$need binfmt-support"
command -v mmdebstrap >/dev/null || need="$need mmdebstrap"
command -v bc >/dev/null || need="$need bc"
if [ -n "$need" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi

# 2. binfmt_misc, so that the kernel hands every arm64 program (python, and the
# processes it starts: pip's build backend, the CLI in tests) to qemu. The F
# flag makes the kernel open qemu now, so the chroot needs no copy of it.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || {
    echo "arm64_qemu: cannot mount binfmt_misc (a container without that privilege); see docs/ARM64.md" >&2; exit 3; }
fi
update-binfmts --enable qemu-aarch64 2>/dev/null || true
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null || {
  echo "arm64_qemu: binfmt entry qemu-aarch64 missing or without the F flag:" >&2
  cat /proc/sys/fs/binfmt_misc/qemu-aarch64 >&2 2>/dev/null || true; exit 3; }

# 3. the arm64 userland: Debian bookworm (Python 3.11, as on Raspberry Pi OS bookworm).
# libasound2: python-rtmidi's wheel links libasound.so.2 without bundling it
# (Raspberry Pi OS has it; a minimal Debian does not)
PACKAGES="python3 python3-venv ca-certificates libasound2"
# the first Debian archive in apt's sources (deb822 "URIs:" or one-line "deb"), not comments
mirror=${ARM64_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
  2>/dev/null | sed -nE 's/^(URIs:|deb( \[[^]]*\])?)[[:space:]]+(https?:\/\/[^ ]*\/debian\/?)([[:space:]].*)?$/\3/p' | head -1 || true)}
mirror=${mirror:-http://deb.debian.org/debian}
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  if [ -n "$(ls -A "$ROOT" 2>/dev/null)" ]; then
    echo "arm64_qemu: $ROOT is not empty and has no usr/bin/python3: remove it or set ARM64_ROOT" >&2; exit 2
  fi
  step rootfs nice -n 10 mmdebstrap --arch=arm64 --variant=minbase --include="${PACKAGES// /,}" \
    bookworm "$ROOT" "$mirror"
fi

# 4. mounts the chroot needs, undone on exit
cleanup() {
  for m in dev sys proc; do
    mountpoint -q "$ROOT/$m" && umount -R "$ROOT/$m"
  done
  return 0
}
trap cleanup EXIT
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
mountpoint -q "$ROOT/sys" || mount -t sysfs sysfs "$ROOT/sys"
mountpoint -q "$ROOT/dev" || { mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev"; }
# qemu-user 7.2 passes this machine's /proc/cpuinfo (x86 text) through to arm64
# programs; ONNX Runtime's CPU detection (pytorch/cpuinfo) then crashes with a
# segmentation fault while its module loads. An arm64 one, as the kernel of a
# Pi writes it, goes over it (one entry per CPU of this machine).
case $QCPU in
  cortex-a53) part=0xd03 ;; cortex-a57) part=0xd07 ;; cortex-a76) part=0xd0b ;; neoverse-n1) part=0xd0c ;;
  *) part=0xd08 ;;  # cortex-a72, and max
esac
for ((i = 0; i < $(nproc --all); i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
  printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' "$part"
done > "$ROOT/etc/arm64-cpuinfo"
mountpoint -q "$ROOT/proc/cpuinfo" || mount --bind "$ROOT/etc/arm64-cpuinfo" "$ROOT/proc/cpuinfo"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# this machine's CA bundle: it may hold a proxy's CA that the arm64 one lacks
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/ssl/host-ca.crt"

in_arm64() {  # in_arm64 'shell command': run it in the arm64 root, niced, on $CPUS
  nice -n 10 taskset -c "$CPUS" chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 QEMU_CPU="$QCPU" \
    PATH=$VENV/bin:/usr/bin:/bin PIP_CERT=/etc/ssl/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 TF_CPP_MIN_LOG_LEVEL=2 /bin/bash -euo pipefail -c "$1"
}

# 5. the working tree, installed as users get it
rm -rf "$ROOT/src/jamd" && mkdir -p "$ROOT/src/jamd"
git -C "$REPO" ls-files -z --cached --others --exclude-standard | \
  (cd "$REPO" && tar --null -T - -cf - 2>/dev/null) | tar -xf - -C "$ROOT/src/jamd"
# MIDI test files the tests read from ../shared/cases beside the clone, when there
if [ -d "$REPO/../shared/cases" ]; then
  rm -rf "$ROOT/src/shared" && mkdir -p "$ROOT/src/shared" && cp -r "$REPO/../shared/cases" "$ROOT/src/shared/"
fi
in_arm64 "uname -m; python3 --version"
in_arm64 "dpkg -s $PACKAGES >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $PACKAGES >/dev/null; }"
[ -x "$ROOT$VENV/bin/python" ] || step venv in_arm64 "python3 -m venv $VENV"
# + onnx: the tests build small fixture models with it (it is in the train
# extra, whose TensorFlow the tests run here do not need)
onnx_req='import tomllib; print(next(r for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["train"] if r.startswith("onnx")))'
step "pip install .[cpu,dev] onnx" in_arm64 \
  "cd /src/jamd && pip install -q --no-cache-dir '.[cpu,dev]' \"\$(python3 -c '$onnx_req')\""
in_arm64 "python -c 'import platform, numpy, onnxruntime, music21
print(platform.machine(), platform.python_version(), \"numpy\", numpy.__version__,
      \"onnxruntime\", onnxruntime.__version__, \"music21\", music21.__version__)'"

# 6. generate with the shipped models
describe='import hashlib, sys, mido
f = mido.MidiFile(sys.argv[1])
for t in f.tracks:
    notes = [m for m in t if m.type == "note_on" and m.velocity > 0]
    print(f"  track {t.name!r}: {len(notes)} notes", [m.note for m in notes][:12])
print("  md5", hashlib.md5(open(sys.argv[1], "rb").read()).hexdigest())'
step "generate lstm" in_arm64 "cd /tmp && jamd generate --model lstm --bars 8 --random-seed 1 --out /tmp/arm64-lstm.mid"
in_arm64 "python -c '$describe' /tmp/arm64-lstm.mid"
step "generate --harmony" in_arm64 \
  "cd /tmp && jamd generate --model lstm --bars 8 --random-seed 1 --harmony --out /tmp/arm64-harmony.mid"
in_arm64 "python -c '$describe' /tmp/arm64-harmony.mid"

# 7. the tests that need no JACK (nor TensorFlow, nor PyPI)
if [ $# -gt 0 ]; then tests=("$@")
elif [ "${ARM64_TESTS:-}" = all ]; then tests=()
else tests=("${SUBSET[@]}")
fi
step pytest in_arm64 "cd /src/jamd && python -m pytest -q -p no:cacheprovider -x -rs \
  -m 'not jack and not train and not network' ${tests[*]}"

echo "== arm64 ($QCPU) under QEMU ($(qemu-aarch64-static --version | head -1)), host CPUs $CPUS, root $ROOT"
printf '%s\n' "${SUMMARY[@]}"
