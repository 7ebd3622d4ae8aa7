#!/bin/sh
# PID 1 of the KVM guest: root is the host's / over 9p (read-only).  Plan from the
# kernel command line: rmaplab.plan=v5.4:sh,v5.5:bash,...  rmaplab.tree=unpack|none
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C LC_ALL=C
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o size=5G tmp /tmp
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /mnt
OUT=/mnt
plan=$(sed -n 's/.*rmaplab\.plan=\([^ ]*\).*/\1/p' /proc/cmdline)
target=$(sed -n "s/.*rmaplab\.target=\([^ ]*\).*/\1/p" /proc/cmdline)
jobs=$(sed -n 's/.*rmaplab\.jobs=\([^ ]*\).*/\1/p' /proc/cmdline); jobs=${jobs:-2}
P=/sys/module/rmap/parameters/reuse_policy
{
echo "boot_uptime $(cut -d' ' -f1 /proc/uptime)"
echo "cmdline $(cat /proc/cmdline)"
echo "nproc $(nproc) memtotal $(grep MemTotal /proc/meminfo)"
echo "policy_at_boot $(cat $P 2>&1)"
echo "thp $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>&1)"
} | tee $OUT/guest-info.txt
grep -q rmaplab.bench /proc/cmdline && /work/s30/kvm/bench.sh $OUT/bench.txt
if [ -n "$plan" ]; then
  mkdir -p /tmp/w/linux-source-6.12 && cd /tmp/w
  if grep -q rmaplab.tree9p /proc/cmdline; then
    # tree shared read-write from the host (tag "tree"), already tinyconfig'd
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 tree /tmp/w/linux-source-6.12
  else
    t0=$(cut -d' ' -f1 /proc/uptime)
    tar -xJf /usr/src/linux-source-6.12.tar.xz
    echo "unpack_s $(echo "$(cut -d' ' -f1 /proc/uptime) - $t0" | bc)" | tee -a $OUT/guest-info.txt
  fi
  cd linux-source-6.12
  [ -f .config ] || make -s tinyconfig >/dev/null
  echo "warm-up build (uncounted)"
  grep -q rmaplab.nowarm /proc/cmdline || { make -s -j$jobs >/tmp/warm.log 2>&1; echo "warm rc=$?"; }
  echo "i,policy,shell,rc,real,user,sys,policy_read" > $OUT/runs.csv
  i=0
  for job in $(echo "$plan" | tr ',' ' '); do
    i=$((i+1)); pol=${job%%:*}; sh=${job#*:}
    make -s clean >/dev/null 2>&1
    echo "$pol" > $P
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
    extra=""; [ "$sh" = bash ] && extra="SHELL=/bin/bash"
    /usr/bin/time -f "%e,%U,%S" -o /tmp/t make -s -j$jobs $extra $target >/tmp/b.log 2>&1; rc=$?
    line="$i,$pol,$sh,$rc,$(cat /tmp/t | tail -1),$(cat $P)"
    echo "$line" | tee -a $OUT/runs.csv
    [ -f /proc/rmaplab_counters ] && { echo "# $i $pol $sh"; cat /proc/rmaplab_counters; } >> $OUT/counters.txt
  done
fi
echo "done_uptime $(cut -d' ' -f1 /proc/uptime)" | tee -a $OUT/guest-info.txt
sync
umount /mnt
# init exits -> panic -> panic=-1 reboots -> qemu -no-reboot exits
