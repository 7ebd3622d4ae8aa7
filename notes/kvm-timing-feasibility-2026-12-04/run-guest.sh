#!/bin/sh
# usage: [ACCEL=tcg] run-guest.sh OUTDIR [PLAN] [extra kernel args]
# ACCEL=kvm (default) or tcg (emulated: functional checks only, times mean nothing)
set -e
K=${KERNEL:-/work/s30/kvm/obj/arch/x86/boot/bzImage}
OUT=$1; PLAN=$2; shift 2 || true
mkdir -p "$OUT"
if [ "${ACCEL:-kvm}" = tcg ]; then
  ACCEL_ARGS="-accel tcg,thread=multi -cpu ${CPU:-max}"
else
  ACCEL_ARGS="-enable-kvm -cpu ${CPU:-host,-arch-capabilities,-cx16}"
fi
exec qemu-system-x86_64 $ACCEL_ARGS -smp 2 -m ${MEM:-6G} \
  -nographic -no-reboot -display none -serial stdio -monitor none -net none \
  -kernel $K \
  -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
  -fsdev local,id=out,path="$OUT",security_model=none,multidevs=remap \
  -device virtio-9p-pci,fsdev=out,mount_tag=out \
  ${TREE:+-fsdev local,id=tree,path=$TREE,security_model=none,multidevs=remap -device virtio-9p-pci,fsdev=tree,mount_tag=tree} \
  -append "console=ttyS0 root=hostroot rootfstype=9p rootflags=trans=virtio,version=9p2000.L,cache=loose,msize=512000 ro init=/work/s30/kvm/guest-init.sh panic=-1 ${PLAN:+rmaplab.plan=$PLAN} $*"
