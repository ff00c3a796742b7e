#!/usr/bin/env bash
# The VM lab: small QEMU guests on this host, laid out in cgroups as libvirt lays out
# its machines, each running a workload that reports its own progress rate. See
# docs/lab.md for the guest, the progress lines, the command channel and the layout.
#
#   lab.sh up [N] [--workload KIND | --workloads K1,K2,..] [--vcpus 1|2] [--mem MIB]
#                 [--name-prefix P] [--phases SPEC] [--share DIR]
#   lab.sh status                      one line per VM
#   lab.sh down [NAME...]              stop VMs (all by default) and remove their traces
#   lab.sh workload NAME KIND [PHASES] change a running guest's workload
#   lab.sh exec NAME [--timeout S] -- COMMAND...   run a shell command in the guest
#   lab.sh migrate NAME [--timeout S]  live-migrate NAME to a new QEMU on this host
#   lab.sh incoming NAME ADDR:PORT     start NAME's next QEMU waiting for a migration
#                                      someone else drives (the agent), listening on
#                                      tcp:ADDR:PORT in the caller's network namespace
#   lab.sh adopt NAME [--timeout S]    after that migration: the new QEMU is NAME's
#   lab.sh pin NAME CPULIST            pin NAME's vCPU threads (taskset)
#   lab.sh qmp NAME COMMAND [JSON]     one QMP command, its return value printed
#   lab.sh build | setup               build the cached guest | install packages + build
#
# Environment: INTERFERENCE_LAB_RUN (run state, default /run/interference-lab),
# INTERFERENCE_LAB_CACHE (guest cache, default /var/cache/interference-lab),
# INTERFERENCE_LAB_ACCEL (auto|kvm|tcg|probe), INTERFERENCE_LAB_BOOT_TIMEOUT (s, 90),
# INTERFERENCE_LAB_QEMU (qemu-system-x86_64), INTERFERENCE_LAB_KERNEL_PKG,
# INTERFERENCE_LAB_QEMU_EXTRA (more QEMU arguments, split on spaces; the fault tests use
# `-S`, a guest whose CPUs never start, and an option QEMU refuses).
set -euo pipefail
shopt -s inherit_errexit

LAB_DIR=$(cd "$(dirname "$0")/lab" && pwd)
RUN=${INTERFERENCE_LAB_RUN:-/run/interference-lab}
CACHE=${INTERFERENCE_LAB_CACHE:-/var/cache/interference-lab}
QEMU=${INTERFERENCE_LAB_QEMU:-qemu-system-x86_64}
BOOT_TIMEOUT=${INTERFERENCE_LAB_BOOT_TIMEOUT:-90}
QMP_TIMEOUT=${INTERFERENCE_LAB_QMP_TIMEOUT:-5}
KVM_PROBE_TIMEOUT=${INTERFERENCE_LAB_KVM_PROBE_TIMEOUT:-30}
DISK_MIB=64
# Debian packages the lab needs on the host.
LAB_PACKAGES=(qemu-system-x86 busybox-static cpio gcc libc6-dev python3 e2fsprogs util-linux)
# v1 hierarchies that get libvirt's per-thread layout, and those that only get the
# process (at the scope's libvirt/ level). memory is left alone on purpose: moving QEMU
# out of the caller's memory cgroup would escape a sandbox's limit.
V1_THREAD_CONTROLLERS=(cpu cpuacct cpuset)
V1_PROCESS_CONTROLLERS=(blkio)

log() { printf 'lab: %s\n' "$*" >&2; }
warn() { printf 'lab: warning: %s\n' "$*" >&2; }
die() {
    printf 'lab: error: %s\n' "$*" >&2
    exit 1
}
labctl() { python3 "$LAB_DIR/labctl.py" "$@"; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

# ---------------------------------------------------------------- preflight

require_root() {
    [ "$(id -u)" -eq 0 ] || die "the lab needs root (cgroups, /dev/kvm); run it with sudo"
}

require_tools() {
    local missing=() tool
    command -v "$QEMU" >/dev/null || missing+=("$QEMU")
    for tool in python3 taskset truncate; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] ||
        die "missing ${missing[*]}: run ./scripts/lab.sh setup, or apt-get install ${LAB_PACKAGES[*]}"
    case "$RUN" in *,*) die "INTERFERENCE_LAB_RUN ($RUN) must not contain a comma (QEMU option syntax)" ;; esac
}

lock_run_dir() {
    mkdir -p "$RUN/vms" "$RUN/logs"
    exec 8>"$RUN/.lock"
    flock -w 300 8 || die "another lab.sh holds $RUN/.lock for more than 300 s"
}

# build_guest: the cached guest directory (vmlinuz, initramfs.cpio), built if needed.
build_guest() {
    INTERFERENCE_LAB_CACHE=$CACHE "$LAB_DIR/build-guest.sh" 8>&-
}

# ---------------------------------------------------------------- state

vm_dir() { echo "$RUN/vms/$1"; }

vm_exists() { [ -f "$(vm_dir "$1")/state" ]; }

# state_get NAME KEY: one value of the VM's key=value state file.
state_get() {
    local key value
    while IFS='=' read -r key value; do
        [ "$key" = "$2" ] && printf '%s\n' "$value" && return 0
    done <"$(vm_dir "$1")/state"
    return 1
}

# state_set NAME KEY=VALUE...: replaces or adds keys, atomically.
state_set() {
    local name=$1 file tmp kv key
    shift
    file="$(vm_dir "$name")/state"
    tmp="$file.tmp"
    touch "$file"
    cp "$file" "$tmp"
    for kv in "$@"; do
        key=${kv%%=*}
        grep -v "^$key=" "$tmp" >"$tmp.2" || true
        printf '%s\n' "$kv" >>"$tmp.2"
        mv "$tmp.2" "$tmp"
    done
    mv "$tmp" "$file"
}

vm_names() {
    [ -d "$RUN/vms" ] || return 0
    find "$RUN/vms" -mindepth 2 -maxdepth 2 -name state -printf '%h\n' | xargs -r -n1 basename | sort -V
}

# next_id: libvirt-style domain ids, increasing for the life of the run directory.
next_id() {
    local id=0
    [ -f "$RUN/next-id" ] && id=$(cat "$RUN/next-id")
    id=$((id + 1))
    echo "$id" >"$RUN/next-id"
    echo "$id"
}

# qemu_alive PID NAME: the process exists, is no zombie, and is NAME's QEMU.
qemu_alive() {
    local pid=$1 name=$2 state
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1) || return 1
    [ "$state" != Z ] || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qx -- "guest=$name,debug-threads=on"
}

# wait_gone PID NAME SECONDS
wait_gone() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        qemu_alive "$1" "$2" || return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- accelerator

kvm_modules() {
    local m found=()
    for m in kvm_intel kvm_amd kvm_pvm; do
        [ -d "/sys/module/$m" ] && found+=("$m")
    done
    echo "${found[*]:-none}"
}

# probe_kvm: boots the guest once under KVM and says whether it reached userspace. A
# nested or PVM-backed /dev/kvm runs a stock kernel so slowly that it looks hung after
# decompression; the probe gives up after KVM_PROBE_TIMEOUT seconds. The answer is
# cached until the host reboots.
probe_kvm() {
    local guest=$1 boot_id cached dir pid i ok=1
    boot_id=$(cat /proc/sys/kernel/random/boot_id)
    cached="$CACHE/kvm-probe"
    if [ -f "$cached" ] && [ "$(cut -d' ' -f1 "$cached")" = "$boot_id" ]; then
        [ "$(cut -d' ' -f2 "$cached")" = ok ]
        return
    fi
    dir=$(mktemp -d)
    log "probing KVM: booting a guest for up to ${KVM_PROBE_TIMEOUT} s"
    "$QEMU" -machine q35,accel=kvm -cpu host -m 128 -nodefaults -display none -no-reboot \
        -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio" \
        -append "console=ttyS0 panic=-1 lab.name=kvmprobe workload=idle" \
        -serial "file:$dir/serial.log" </dev/null >"$dir/qemu.log" 2>&1 8>&- &
    pid=$!
    for ((i = 0; i < KVM_PROBE_TIMEOUT * 5; i++)); do
        grep -q '^lab: ready' "$dir/serial.log" 2>/dev/null && ok=0 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    if [ $ok -eq 0 ]; then echo "$boot_id ok" >"$cached"; else echo "$boot_id hangs" >"$cached"; fi
    return $ok
}

# resolve_accel GUEST: sets ACCEL (kvm|tcg) and ACCEL_WHY.
resolve_accel() {
    local guest=$1 mode=${INTERFERENCE_LAB_ACCEL:-auto} modules
    modules=$(kvm_modules)
    case "$mode" in
    tcg) ACCEL=tcg ACCEL_WHY="INTERFERENCE_LAB_ACCEL=tcg" ;;
    kvm)
        [ -w /dev/kvm ] || die "INTERFERENCE_LAB_ACCEL=kvm but /dev/kvm is missing or not writable"
        ACCEL=kvm ACCEL_WHY="INTERFERENCE_LAB_ACCEL=kvm"
        ;;
    auto | probe)
        if [ ! -w /dev/kvm ]; then
            ACCEL=tcg ACCEL_WHY="no usable /dev/kvm"
        elif [ "$mode" = auto ] && [[ " $modules " != *" kvm_intel "* && " $modules " != *" kvm_amd "* ]]; then
            ACCEL=tcg ACCEL_WHY="/dev/kvm is backed by $modules, not kvm_intel/kvm_amd: a stock guest kernel hangs there"
        elif probe_kvm "$guest"; then
            ACCEL=kvm ACCEL_WHY="a guest boots under KVM ($modules)"
        else
            ACCEL=tcg ACCEL_WHY="a guest did not boot under KVM ($modules) within ${KVM_PROBE_TIMEOUT} s"
        fi
        ;;
    *) die "INTERFERENCE_LAB_ACCEL must be auto, kvm, tcg or probe, not '$mode'" ;;
    esac
}

# ---------------------------------------------------------------- QEMU

# gen_file NAME BASE GEN: per-generation file (a migrated VM is generation 1, 2, ...).
gen_file() {
    local dir
    dir=$(vm_dir "$1")
    case "$2" in
    qmp) [ "$3" -eq 0 ] && echo "$dir/qmp.sock" || echo "$dir/qmp.$3.sock" ;;
    cmd) [ "$3" -eq 0 ] && echo "$dir/cmd.sock" || echo "$dir/cmd.$3.sock" ;;
    pid) [ "$3" -eq 0 ] && echo "$dir/qemu.pid" || echo "$dir/qemu.$3.pid" ;;
    esac
}

# qemu_args NAME GEN [PORT]: the VM's QEMU command line (from its state) in QEMU_ARGS;
# with PORT (or ADDR:PORT), the destination of a migration.
qemu_args() {
    local name=$1 gen=$2 port=${3:-} guest accel cpu phases share disk
    guest=$(state_get "$name" guest)
    accel=$(state_get "$name" accel)
    phases=$(state_get "$name" phases || true)
    share=$(state_get "$name" share || true)
    disk=$(state_get "$name" disk)
    cpu=max
    [ "$accel" = kvm ] && cpu=host
    # shellcheck disable=SC2054 # commas separate QEMU's sub-options, not array elements
    QEMU_ARGS=(
        -name "guest=$name,debug-threads=on"
        -uuid "$(state_get "$name" uuid)"
        -machine "q35,accel=$accel"
        -cpu "$cpu"
        -smp "$(state_get "$name" vcpus)"
        -m "$(state_get "$name" mem_mib)"
        -nodefaults -display none -no-reboot
        -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio"
        -append "console=ttyS0 panic=-1 lab.name=$name workload=$(state_get "$name" boot_workload)${phases:+ phases=$phases}"
        -chardev "file,id=serial0,path=$(state_get "$name" serial),append=on" -serial chardev:serial0
        -chardev "socket,id=cmd0,path=$(gen_file "$name" cmd "$gen"),server=on,wait=off" -serial chardev:cmd0
        -qmp "unix:$(gen_file "$name" qmp "$gen"),server=on,wait=off"
        -device virtio-balloon-pci,id=balloon0
        -drive "file=$disk,if=none,id=disk0,format=raw,$(state_get "$name" disk_cache)"
        -device virtio-blk-pci,drive=disk0,serial=labdisk
        -daemonize -pidfile "$(gen_file "$name" pid "$gen")"
    )
    if [ -n "$share" ]; then
        # shellcheck disable=SC2054
        QEMU_ARGS+=(-drive "file=$share,if=none,id=share0,format=raw,readonly=on"
            -device virtio-blk-pci,drive=share0,serial=labshare)
    fi
    case "$port" in
    "") ;;
    *:*) QEMU_ARGS+=(-incoming "tcp:$port") ;;
    *) QEMU_ARGS+=(-incoming "tcp:127.0.0.1:$port") ;;
    esac
    if [ -n "${INTERFERENCE_LAB_QEMU_EXTRA:-}" ]; then
        local -a extra
        read -r -a extra <<<"$INTERFERENCE_LAB_QEMU_EXTRA"
        QEMU_ARGS+=("${extra[@]}")
    fi
}

# start_qemu NAME GEN [PORT]: starts QEMU in the background, prints its pid.
start_qemu() {
    local name=$1 gen=$2 port=${3:-} dir pidfile
    dir=$(vm_dir "$name")
    pidfile=$(gen_file "$name" pid "$gen")
    qemu_args "$name" "$gen" "$port"
    printf '%s\n' "$QEMU" "${QEMU_ARGS[@]}" >"$dir/qemu.$gen.argv"
    if ! "$QEMU" "${QEMU_ARGS[@]}" </dev/null >"$dir/qemu.$gen.log" 2>&1 8>&-; then
        die "QEMU did not start for $name: $(tail -n 3 "$dir/qemu.$gen.log" | tr '\n' ' ')(command line in $dir/qemu.$gen.argv)"
    fi
    [ -s "$pidfile" ] || die "QEMU for $name wrote no pidfile $pidfile"
    cat "$pidfile"
}

# disk_cache_mode FILE: O_DIRECT where the file system has it, so guest I/O reaches the
# host's block layer (and its per-cgroup accounting) from QEMU's own threads.
disk_cache_mode() {
    if dd if=/dev/zero of="$1" bs=4096 count=1 oflag=direct conv=notrunc status=none 2>/dev/null; then
        echo "cache=none,aio=threads"
    else
        echo "cache=writeback"
    fi
}

# make_share DIR IMAGE: a read-only ext4 image of DIR for the guest's /mnt/share.
make_share() {
    local src=$1 img=$2 kib
    [ -d "$src" ] || die "--share $src is not a directory"
    command -v mkfs.ext4 >/dev/null || die "--share needs mkfs.ext4: apt-get install e2fsprogs"
    kib=$(du -sk "$src" | cut -f1)
    truncate -s "$(((kib * 12 / 10 + 16384) / 1024))M" "$img"
    mkfs.ext4 -q -F -L labshare -d "$src" "$img" || die "mkfs.ext4 -d $src failed"
}

# ---------------------------------------------------------------- cgroups

# systemd_escape STRING: systemd's unit-name escaping (`-` becomes a literal `\x2d`).
systemd_escape() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case "$c" in
        [A-Za-z0-9:_.]) out+=$c ;;
        *) out+=$(printf '\\x%02x' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

scope_name() { printf 'machine-%s.scope' "$(systemd_escape "qemu-$1-$2")"; }

# cgroup_hierarchies: "KIND ROOT" lines, KIND one of v2, v1-thread, v1-process; v1
# hierarchies that are one mount (cpu,cpuacct) are listed once.
cgroup_hierarchies() {
    local c root seen=" "
    if [ -f /sys/fs/cgroup/unified/cgroup.procs ]; then
        echo "v2 /sys/fs/cgroup/unified"
    elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        echo "v2 /sys/fs/cgroup"
    fi
    for c in "${V1_THREAD_CONTROLLERS[@]}" "${V1_PROCESS_CONTROLLERS[@]}"; do
        [ -f "/sys/fs/cgroup/$c/tasks" ] || continue
        root=$(realpath "/sys/fs/cgroup/$c")
        [[ "$seen" == *" $root "* ]] && continue
        seen+="$root "
        if [[ " ${V1_THREAD_CONTROLLERS[*]} " == *" $c "* ]]; then
            echo "v1-thread $root"
        else
            echo "v1-process $root"
        fi
    done
}

cg_write() {
    local file=$1 value=$2
    if ! { printf '%s\n' "$value" >"$file"; } 2>/dev/null; then
        die "cannot write '$value' to $file"
    fi
}

# cg_mkdir DIR LIST: creates DIR (recording it in LIST) with a v1 cpuset's cpus and mems
# copied from its parent, without which it takes no task.
cg_mkdir() {
    local dir=$1 list=$2 f
    [ -d "$dir" ] && return 0
    mkdir "$dir" || die "cannot create cgroup $dir"
    printf '%s\n' "$dir" >>"$list"
    if [ -f "$dir/cpuset.cpus" ] && [ -f "$dir/tasks" ]; then
        for f in cpuset.cpus cpuset.mems; do
            cg_write "$dir/$f" "$(cat "$(dirname "$dir")/$f")"
        done
    fi
}

# v2_enable DIR CONTROLLER...: turns on those of the controllers DIR offers to its
# children (none on a hybrid host, whose v2 tree has no controllers).
v2_enable() {
    local dir=$1 c
    shift
    for c in "$@"; do
        grep -qw "$c" "$dir/cgroup.controllers" 2>/dev/null || continue
        { printf '+%s\n' "$c" >"$dir/cgroup.subtree_control"; } 2>/dev/null ||
            warn "cannot enable $c in $dir/cgroup.subtree_control"
    done
}

# place_in_cgroups NAME PID ID QMP LIST: libvirt's layout in every hierarchy,
#   machine.slice/machine-qemu\x2d<ID>\x2d<NAME>.scope/libvirt/{emulator,vcpuN}
# all of QEMU's threads in emulator, each vCPU thread in its vcpuN. Created
# directories are appended to LIST, parents first.
place_in_cgroups() {
    local name=$1 pid=$2 id=$3 qmp=$4 list=$5 vcpus kind root slice base idx tid
    vcpus=$(labctl --timeout "$QMP_TIMEOUT" vcpus "$qmp") || die "cannot list the vCPU threads of $name"
    [ -n "$vcpus" ] || die "QMP query-cpus-fast listed no vCPUs for $name"
    while read -r kind root; do
        slice="$root/machine.slice"
        if [ ! -d "$slice" ]; then
            cg_mkdir "$slice" "$RUN/slices"
        fi
        base="$slice/$(scope_name "$id" "$name")"
        cg_mkdir "$base" "$list"
        cg_mkdir "$base/libvirt" "$list"
        if [ "$kind" = v1-process ]; then
            cg_write "$base/libvirt/cgroup.procs" "$pid"
            continue
        fi
        cg_mkdir "$base/libvirt/emulator" "$list"
        while read -r idx tid; do
            cg_mkdir "$base/libvirt/vcpu$idx" "$list"
        done <<<"$vcpus"
        if [ "$kind" = v2 ]; then
            # vCPU threads leave the process's cgroup: libvirt/ is a threaded domain
            # whose emulator and vcpuN children are threaded, as libvirt makes them.
            cg_write "$base/libvirt/emulator/cgroup.type" threaded
            while read -r idx tid; do
                cg_write "$base/libvirt/vcpu$idx/cgroup.type" threaded
            done <<<"$vcpus"
            v2_enable "$slice" cpu cpuset io memory pids
            v2_enable "$base" cpu cpuset io memory pids
            v2_enable "$base/libvirt" cpu cpuset pids
        fi
        cg_write "$base/libvirt/emulator/cgroup.procs" "$pid"
        while read -r idx tid; do
            if [ "$kind" = v2 ]; then
                cg_write "$base/libvirt/vcpu$idx/cgroup.threads" "$tid"
            else
                cg_write "$base/libvirt/vcpu$idx/tasks" "$tid"
            fi
        done <<<"$vcpus"
    done < <(cgroup_hierarchies)
}

# remove_cgroups LIST: removes the listed directories deepest first, waiting up to 5 s
# for each to drain (threads of a killed QEMU leave their cgroups as they exit).
remove_cgroups() {
    local list=$1 dir i ok=0
    [ -f "$list" ] || return 0
    while IFS= read -r dir; do
        [ -d "$dir" ] || continue
        for ((i = 0; i < 50; i++)); do
            rmdir "$dir" 2>/dev/null && break
            sleep 0.1
        done
        [ -d "$dir" ] && warn "cannot remove cgroup $dir (still in use?)" && ok=1
    done < <(tac "$list")
    rm -f "$list"
    return $ok
}

# ---------------------------------------------------------------- VM life cycle

# stop_qemu NAME PID QMP: QMP quit, then SIGTERM, then SIGKILL, each with a bounded wait.
stop_qemu() {
    local name=$1 pid=$2 qmp=$3
    qemu_alive "$pid" "$name" || return 0
    labctl --timeout 3 qmp "$qmp" quit >/dev/null 2>&1 || true
    wait_gone "$pid" "$name" 5 && return 0
    warn "$name (pid $pid) did not quit over QMP; sending SIGTERM"
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
    wait_gone "$pid" "$name" 5 && return 0
    warn "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" "$name" 5 || warn "$name (pid $pid) is still there after SIGKILL"
}

# destroy_vm NAME: stops the VM and removes its cgroups, sockets, pidfiles and disks.
destroy_vm() {
    local name=$1 dir
    dir=$(vm_dir "$name")
    stop_qemu "$name" "$(state_get "$name" pid || true)" "$(state_get "$name" qmp || true)"
    local incoming
    incoming=$(state_get "$name" incoming_pid || true)
    if [ -n "$incoming" ]; then
        stop_qemu "$name" "$incoming" "$(gen_file "$name" qmp "$(state_get "$name" incoming_gen)")"
    fi
    remove_cgroups "$dir/cgroups" || true
    remove_cgroups "$dir/cgroups.next" || true
    rm -rf "$dir"
}

enable_balloon_stats() {
    labctl --timeout "$QMP_TIMEOUT" qmp "$1" qom-set \
        '{"path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval", "value": 2}' \
        >/dev/null || warn "cannot turn on balloon stats polling via $1"
}

# create_vm NAME KIND VCPUS MEM PHASES SHARE GUEST: state, disk, QEMU, cgroups.
create_vm() {
    local name=$1 kind=$2 vcpus=$3 mem=$4 phases=$5 share=$6 guest=$7 dir id pid
    dir=$(vm_dir "$name")
    mkdir -p "$dir"
    truncate -s "${DISK_MIB}M" "$dir/disk.raw"
    id=$(next_id)
    : >"$dir/state"
    state_set "$name" "name=$name" "id=$id" "uuid=$(cat /proc/sys/kernel/random/uuid)" "gen=0" \
        "accel=$ACCEL" "vcpus=$vcpus" "mem_mib=$mem" "workload=$kind" "boot_workload=$kind" \
        "phases=$phases" "guest=$guest" "disk=$dir/disk.raw" "disk_cache=$(disk_cache_mode "$dir/disk.raw")" \
        "serial=$RUN/logs/$name.log" "qmp=$(gen_file "$name" qmp 0)" "cmd=$(gen_file "$name" cmd 0)" \
        "scope=$(scope_name "$id" "$name")" "started=$(date +%s)"
    if [ -n "$share" ]; then
        make_share "$share" "$dir/share.img"
        state_set "$name" "share=$dir/share.img"
    fi
    : >"$RUN/logs/$name.log"
    pid=$(start_qemu "$name" 0)
    state_set "$name" "pid=$pid"
    place_in_cgroups "$name" "$pid" "$id" "$(state_get "$name" qmp)" "$dir/cgroups"
    enable_balloon_stats "$(state_get "$name" qmp)"
}

# wait_ready NAME DEADLINE: until the guest's first progress line; on failure says why,
# with the end of the serial log.
wait_ready() {
    local name=$1 deadline=$2 left log pid accel why
    log=$(state_get "$name" serial)
    pid=$(state_get "$name" pid)
    accel=$(state_get "$name" accel)
    left=$((deadline - $(date +%s)))
    [ "$left" -gt 0 ] || left=1
    why=$(labctl --timeout "$left" wait-ready "$log" "$pid" 2>&1 >/dev/null) && return 0
    why=${why#lab: error: }
    printf 'lab: error: %s did not boot (accelerator %s): %s\n' "$name" "$accel" "$why" >&2
    if [ -s "$log" ]; then
        printf 'lab: last lines of its serial log %s:\n' "$log" >&2
        tail -n 5 "$log" | sed 's/^/    /' >&2
    else
        printf 'lab: its serial log %s is empty: the kernel never got to print.\n' "$log" >&2
        [ "$accel" = kvm ] &&
            printf 'lab: a guest that hangs silently under KVM is the nested/PVM case; use INTERFERENCE_LAB_ACCEL=tcg\n' >&2
    fi
    return 1
}

# ---------------------------------------------------------------- commands

valid_kind() { [[ "$1" =~ ^(idle|cpu|mem|io|mixed)$ ]]; }

cmd_up() {
    local count='' kind=cpu kinds='' vcpus=1 mem=256 prefix=lab phases='' share='' i
    while [ $# -gt 0 ]; do
        case "$1" in
        --workload) kind=$2 && shift ;;
        --workloads) kinds=$2 && shift ;;
        --vcpus) vcpus=$2 && shift ;;
        --mem) mem=$2 && shift ;;
        --name-prefix) prefix=$2 && shift ;;
        --phases) phases=$2 && shift ;;
        --share) share=$(realpath "$2") && shift ;;
        -h | --help) usage ;;
        [0-9]*) count=$1 ;;
        *) die "up: unknown argument '$1' (see ./scripts/lab.sh --help)" ;;
        esac
        shift
    done
    local -a plan
    if [ -n "$kinds" ]; then IFS=, read -r -a plan <<<"$kinds"; else plan=("$kind"); fi
    [ -n "$count" ] || { [ -n "$kinds" ] && count=${#plan[@]} || count=2; }
    [[ "$count" =~ ^[0-9]+$ ]] && [ "$count" -ge 1 ] && [ "$count" -le 16 ] || die "up: N must be 1 to 16"
    [[ "$vcpus" =~ ^[12]$ ]] || die "up: --vcpus must be 1 or 2"
    [[ "$mem" =~ ^[0-9]+$ ]] && [ "$mem" -ge 96 ] || die "up: --mem must be at least 96 (MiB)"
    [[ "$prefix" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$ ]] || die "up: --name-prefix must be letters, digits, _ . - (at most 32)"
    for kind in "${plan[@]}"; do valid_kind "$kind" || die "up: unknown workload '$kind' (idle|cpu|mem|io|mixed)"; done

    require_root
    require_tools
    local guest
    guest=$(build_guest)
    lock_run_dir
    local -a names=()
    for ((i = 1; i <= count; i++)); do
        names+=("$prefix-$i")
        vm_exists "$prefix-$i" && die "$prefix-$i already exists in $RUN: run ./scripts/lab.sh down first, or use another --name-prefix"
    done
    resolve_accel "$guest"
    log "accelerator $ACCEL: $ACCEL_WHY"

    local start deadline
    start=$(date +%s.%N)
    UP_STARTED=()
    trap 'up_failed $?' EXIT
    for ((i = 0; i < count; i++)); do
        UP_STARTED+=("${names[i]}")
        create_vm "${names[i]}" "${plan[i % ${#plan[@]}]}" "$vcpus" "$mem" "$phases" "$share" "$guest"
    done
    deadline=$(($(date +%s) + BOOT_TIMEOUT))
    for name in "${names[@]}"; do
        wait_ready "$name" "$deadline" || exit 1
    done
    trap - EXIT
    log "$count VM(s) up in $(echo "$(date +%s.%N) $start" | awk '{printf "%.1f", $1 - $2}') s (to the first progress line); serial logs in $RUN/logs"
    cmd_status
}

# On a failed `up`, the VMs it started are stopped; their serial logs stay for reading.
up_failed() {
    local rc=$1 name
    [ "$rc" -eq 0 ] && return
    for name in "${UP_STARTED[@]}"; do
        vm_exists "$name" && destroy_vm "$name"
    done
    log "stopped the VMs this 'up' started; serial logs kept in $RUN/logs (./scripts/lab.sh down removes them)"
}

cmd_status() {
    local names name pid state qmp rate kind phase age
    names=$(vm_names)
    if [ -z "$names" ]; then
        echo "no lab VMs in $RUN"
        return 0
    fi
    printf '%-16s %-8s %-12s %-5s %-5s %-10s %12s %5s  %s\n' NAME PID STATE ACCEL VCPUS WORKLOAD RATE AGE QMP
    for name in $names; do
        pid=$(state_get "$name" pid || echo -)
        qmp=$(state_get "$name" qmp || echo -)
        if ! qemu_alive "$pid" "$name"; then
            state=dead
        elif state=$(labctl --timeout 2 qmp "$qmp" query-status 2>/dev/null); then
            state=$(printf '%s' "$state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
        else
            state=unresponsive
        fi
        read -r rate kind phase age < <(labctl last-progress "$(state_get "$name" serial)")
        [ "$kind" = mixed ] && kind="mixed:$phase"
        [ "$kind" = - ] && kind=$(state_get "$name" workload)
        printf '%-16s %-8s %-12s %-5s %-5s %-10s %12s %5s  %s\n' "$name" "$pid" "$state" \
            "$(state_get "$name" accel)" "$(state_get "$name" vcpus)" "$kind" "$rate" "${age}s" "$qmp"
    done
}

cmd_down() {
    local names name
    if [ ! -d "$RUN" ]; then
        log "nothing to stop in $RUN"
        return 0
    fi
    require_root
    lock_run_dir
    if [ $# -gt 0 ]; then names="$*"; else names=$(vm_names); fi
    for name in $names; do
        vm_exists "$name" || die "down: no VM named $name in $RUN"
        destroy_vm "$name"
        log "stopped $name"
    done
    [ -n "$(vm_names)" ] && return 0
    # Nothing left: remove what the lab created around the VMs, then the run directory.
    # A machine.slice that still has scopes (another lab's, libvirt's) stays.
    if [ -f "$RUN/slices" ]; then
        tac "$RUN/slices" | while IFS= read -r dir; do rmdir "$dir" 2>/dev/null || true; done
        rm -f "$RUN/slices"
    fi
    rm -rf "$RUN/vms" "$RUN/logs" "$RUN/next-id" "$RUN/.lock"
    rmdir "$RUN" 2>/dev/null || true
}

# running_vm NAME: dies unless NAME is a live VM of this lab.
running_vm() {
    vm_exists "$1" || die "no VM named $1 in $RUN (see ./scripts/lab.sh status)"
    qemu_alive "$(state_get "$1" pid)" "$1" || die "$1 is dead (pid $(state_get "$1" pid)); ./scripts/lab.sh down $1 cleans it up"
}

cmd_workload() {
    [ $# -ge 2 ] || die "usage: lab.sh workload NAME idle|cpu|mem|io|mixed [PHASES]"
    local name=$1 kind=$2 phases=${3:-}
    valid_kind "$kind" || die "unknown workload '$kind' (idle|cpu|mem|io|mixed)"
    running_vm "$name"
    labctl --timeout 20 send "$(state_get "$name" cmd)" "$(state_get "$name" serial)" workload "$kind" ${phases:+"$phases"} >/dev/null
    lock_run_dir
    state_set "$name" "workload=$kind"
    log "$name now runs $kind${phases:+ ($phases)}"
}

cmd_exec() {
    local name=${1:-} timeout=60
    [ -n "$name" ] || die "usage: lab.sh exec NAME [--timeout S] -- COMMAND..."
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
        --timeout) timeout=$2 && shift 2 ;;
        --) shift && break ;;
        *) break ;;
        esac
    done
    [ $# -gt 0 ] || die "usage: lab.sh exec NAME [--timeout S] -- COMMAND..."
    running_vm "$name"
    labctl --timeout "$timeout" exec "$(state_get "$name" cmd)" "$(state_get "$name" serial)" "$*"
}

cmd_migrate() {
    local name=${1:-} timeout=120
    [ -n "$name" ] || die "usage: lab.sh migrate NAME [--timeout S]"
    shift
    [ "${1:-}" = --timeout ] && timeout=$2
    require_root
    running_vm "$name"
    lock_run_dir
    local dir gen new_gen port old_pid new_pid new_id old_qmp new_qmp result
    dir=$(vm_dir "$name")
    gen=$(state_get "$name" gen)
    new_gen=$((gen + 1))
    old_pid=$(state_get "$name" pid)
    old_qmp=$(state_get "$name" qmp)
    new_qmp=$(gen_file "$name" qmp "$new_gen")
    port=$(labctl free-port)
    new_id=$(next_id)
    new_pid=$(start_qemu "$name" "$new_gen" "$port")
    # The destination is placed before any guest code runs on it, as libvirt does.
    trap 'migrate_failed "$name" "$new_pid" "$new_qmp" "$new_gen"' EXIT
    place_in_cgroups "$name" "$new_pid" "$new_id" "$new_qmp" "$dir/cgroups.next"
    log "migrating $name: pid $old_pid -> $new_pid over tcp:127.0.0.1:$port"
    result=$(labctl --timeout "$timeout" migrate "$old_qmp" "$new_qmp" "$port")
    trap - EXIT
    stop_qemu "$name" "$old_pid" "$old_qmp"
    remove_cgroups "$dir/cgroups" || true
    mv "$dir/cgroups.next" "$dir/cgroups"
    rm -f "$old_qmp" "$(gen_file "$name" cmd "$gen")" "$(gen_file "$name" pid "$gen")"
    state_set "$name" "pid=$new_pid" "gen=$new_gen" "id=$new_id" "qmp=$new_qmp" \
        "cmd=$(gen_file "$name" cmd "$new_gen")" "scope=$(scope_name "$new_id" "$name")"
    enable_balloon_stats "$new_qmp"
    log "migrated $name: now pid $new_pid ($result)"
}

cmd_incoming() {
    [ $# -eq 2 ] || die "usage: lab.sh incoming NAME ADDR:PORT"
    local name=$1 listen=$2 dir gen new_gen new_id new_pid new_qmp
    case "$listen" in *:*) ;; *) die "incoming: $listen is not ADDR:PORT" ;; esac
    require_root
    running_vm "$name"
    lock_run_dir
    dir=$(vm_dir "$name")
    [ -z "$(state_get "$name" incoming_pid || true)" ] || die "$name already has an incoming QEMU"
    gen=$(state_get "$name" gen)
    new_gen=$((gen + 1))
    new_qmp=$(gen_file "$name" qmp "$new_gen")
    new_id=$(next_id)
    new_pid=$(start_qemu "$name" "$new_gen" "$listen")
    place_in_cgroups "$name" "$new_pid" "$new_id" "$new_qmp" "$dir/cgroups.next"
    state_set "$name" "incoming_pid=$new_pid" "incoming_gen=$new_gen" "incoming_id=$new_id"
    log "$name: QEMU pid $new_pid waits for a migration on tcp:$listen"
    echo "$new_pid"
}

cmd_adopt() {
    local name=${1:-} timeout=120 pid gen new_gen new_pid new_id new_qmp dir deadline status
    [ -n "$name" ] || die "usage: lab.sh adopt NAME [--timeout S]"
    shift
    [ "${1:-}" = --timeout ] && timeout=$2
    require_root
    vm_exists "$name" || die "no VM named $name in $RUN"
    lock_run_dir
    dir=$(vm_dir "$name")
    new_pid=$(state_get "$name" incoming_pid || true)
    [ -n "$new_pid" ] || die "$name has no incoming QEMU (lab.sh incoming)"
    new_gen=$(state_get "$name" incoming_gen)
    new_id=$(state_get "$name" incoming_id)
    new_qmp=$(gen_file "$name" qmp "$new_gen")
    pid=$(state_get "$name" pid)
    gen=$(state_get "$name" gen)
    deadline=$((SECONDS + timeout))
    while :; do
        status=$(labctl --timeout 5 qmp "$new_qmp" query-status 2>/dev/null |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || echo unknown)
        [ "$status" = running ] && break
        [ $SECONDS -lt $deadline ] || die "adopt: $name's incoming QEMU is '$status', not running, after ${timeout} s"
        sleep 0.2
    done
    # The migration's driver quits the source; whatever is left of it goes.
    stop_qemu "$name" "$pid" "$(state_get "$name" qmp)"
    remove_cgroups "$dir/cgroups" || true
    mv "$dir/cgroups.next" "$dir/cgroups"
    rm -f "$(state_get "$name" qmp)" "$(gen_file "$name" cmd "$gen")" "$(gen_file "$name" pid "$gen")"
    state_set "$name" "pid=$new_pid" "gen=$new_gen" "id=$new_id" "qmp=$new_qmp" \
        "cmd=$(gen_file "$name" cmd "$new_gen")" "scope=$(scope_name "$new_id" "$name")" \
        "incoming_pid=" "incoming_gen=" "incoming_id="
    enable_balloon_stats "$new_qmp"
    log "$name now runs as pid $new_pid (was $pid)"
}

migrate_failed() {
    local name=$1 pid=$2 qmp=$3 gen=$4 dir
    dir=$(vm_dir "$name")
    stop_qemu "$name" "$pid" "$qmp"
    remove_cgroups "$dir/cgroups.next" || true
    rm -f "$qmp" "$(gen_file "$name" cmd "$gen")" "$(gen_file "$name" pid "$gen")"
    log "migration of $name failed; the source (pid $(state_get "$name" pid)) keeps running"
}

cmd_pin() {
    [ $# -eq 2 ] || die "usage: lab.sh pin NAME CPULIST"
    local name=$1 cpus=$2 idx tid
    running_vm "$name"
    while read -r idx tid; do
        taskset -pc "$cpus" "$tid" >/dev/null || die "taskset -pc $cpus $tid failed"
        log "$name vCPU $idx (tid $tid) pinned to CPU $cpus"
    done < <(labctl --timeout "$QMP_TIMEOUT" vcpus "$(state_get "$name" qmp)")
}

cmd_qmp() {
    [ $# -ge 2 ] || die "usage: lab.sh qmp NAME COMMAND [JSON-ARGUMENTS]"
    running_vm "$1"
    labctl --timeout "$QMP_TIMEOUT" qmp "$(state_get "$1" qmp)" "$2" ${3:+"$3"}
}

cmd_setup() {
    require_root
    local missing=() p
    for p in "${LAB_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    build_guest
}

main() {
    local cmd=${1:-}
    [ $# -gt 0 ] && shift
    case "$cmd" in
    up) cmd_up "$@" ;;
    status) cmd_status ;;
    down) cmd_down "$@" ;;
    workload) cmd_workload "$@" ;;
    exec) cmd_exec "$@" ;;
    migrate) cmd_migrate "$@" ;;
    incoming) cmd_incoming "$@" ;;
    adopt) cmd_adopt "$@" ;;
    pin) cmd_pin "$@" ;;
    qmp) cmd_qmp "$@" ;;
    build) require_tools && build_guest ;;
    setup) cmd_setup ;;
    -h | --help | help) usage ;;
    '') usage 2 ;;
    *) die "unknown command '$cmd' (see ./scripts/lab.sh --help)" ;;
    esac
}

main "$@"
