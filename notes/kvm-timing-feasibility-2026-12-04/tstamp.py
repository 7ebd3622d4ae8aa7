import sys,time
t0=time.time()
for line in sys.stdin.buffer:
    sys.stdout.write("%8.2f %s\n"%(time.time()-t0,line.decode(errors="replace").rstrip()))
    sys.stdout.flush()
