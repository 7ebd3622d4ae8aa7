#!/bin/sh
# tiny calibration: pure user loop, fork+exec loop, one gcc compile. Output to $1
O=$1; : > $O
cd /tmp
printf 'int main(void){return 0;}\n' > /tmp/h.c
/usr/bin/time -f "user_loop %e %U %S" -a -o $O dash -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'
/usr/bin/time -f "fork_exec_300 %e %U %S" -a -o $O dash -c 'i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done'
/usr/bin/time -f "gcc_hello %e %U %S" -a -o $O gcc -O2 -o /tmp/h /tmp/h.c
cat $O
