/*
 * avwork: micro workloads for the anon_vma model, one per rmaplab.workloads function.
 *
 *   avwork MODE K N      MODE: split sep chainw chainx dontfork wipeonfork brk mprotect-merge
 *                              wipeonfork-split dontfork-middle
 *   avwork forkcost K N STATE
 *                        time N fork+_exit+waitpid of a process with K one-page VMAs
 *                        (STATE 0: never written, no anon_vma; 1: written then
 *                        MADV_DONTNEED, an anon_vma but no page; 2: written, one page);
 *                        prints "ns K N STATE utime_us stime_us" (rusage of self+children)
 *
 * Each mode makes exactly the syscalls and page writes of the event trace that
 * rmaplab/workloads.py builds for (MODE, K, N), at the same addresses: a region inside
 * a PROT_NONE reservation at BASE (guard pages keep it from merging with anything
 * else).  perf counts the whole program; subtracting the K=0 run of the same mode and
 * N leaves what the region costs, which the model predicts.
 *
 * Nothing here allocates from the heap before the brk workload runs, so the heap VMA
 * that workload creates is the program's first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
/* Free on an x86-64 host and below UML's 512 GiB user address space. */
#define BASE ((char *)0x7000000000UL)

static void die(const char *what)
{
	/* No stdio: it would allocate.  One write, then exit. */
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "avwork: %s: %s\n", what, strerror(errno));
	if (write(2, buf, n) < 0)
		_exit(3);
	_exit(2);
}

static char *page(long i) { return BASE + i * PAGE; }

static void reserve(long pages)
{
	if (mmap(BASE, pages * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		 -1, 0) != BASE)
		die("mmap reservation");
}

static void protect(long first, long count, int prot)
{
	if (mprotect(page(first), count * PAGE, prot))
		die("mprotect");
}

static void touch(char *p) { *(volatile char *)p = 1; }

/* K VMAs sharing one anon_vma: one RW range, one write, every other page made R. */
static void split_region(long k)
{
	reserve(k + 2);
	if (!k)
		return;
	protect(1, k, PROT_READ | PROT_WRITE);
	touch(page(1));
	for (long i = 2; i <= k; i += 2)
		protect(i, 1, PROT_READ);
}

/* K one-page RW VMAs, each written, PROT_NONE pages between them. */
static void sep_region(long k)
{
	reserve(2 * k + 1);
	for (long i = 0; i < k; i++) {
		protect(2 * i + 1, 1, PROT_READ | PROT_WRITE);
		touch(page(2 * i + 1));
	}
}

static void wait_child(pid_t pid)
{
	int status;
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid");
}

static void forks(long n)
{
	for (long j = 0; j < n; j++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (!pid)
			_exit(0);
		wait_child(pid);
	}
}

/* Fork chains under a subreaper: gen i forks gen i+1; chainx parents exit at once. */
static void chain(long k, long d, int exit_early)
{
	pid_t reaper = getpid();
	if (prctl(PR_SET_CHILD_SUBREAPER, 1))
		die("prctl");
	pid_t gen0 = fork();
	if (gen0 < 0)
		die("fork");
	if (gen0) {
		/* The reaper waits for every generation (orphans are reparented to it). */
		while (wait(NULL) > 0 || errno == EINTR)
			;
		return;
	}
	split_region(k);
	for (long g = 0; g < d; g++) {
		pid_t child = fork();
		if (child < 0)
			die("fork");
		if (child) {
			if (exit_early)
				_exit(0);
			wait_child(child);
			_exit(0);
		}
		if (exit_early) {
			/* Fork only once the parent is gone and we belong to the reaper. */
			while (getppid() != reaper)
				usleep(100);
		}
	}
	_exit(0);
}

static void madvise_range(long first, long count, int advice)
{
	if (madvise(page(first), count * PAGE, advice))
		die("madvise");
}

static long usec(struct timeval tv) { return tv.tv_sec * 1000000L + tv.tv_usec; }

static int forkcost(long k, long n, int state)
{
	reserve(2 * k + 1);
	for (long i = 0; i < k; i++) {
		protect(2 * i + 1, 1, PROT_READ | PROT_WRITE);
		if (state >= 1)
			touch(page(2 * i + 1));
		if (state == 1)
			madvise_range(2 * i + 1, 1, MADV_DONTNEED);
	}
	struct rusage self0, kids0, self1, kids1;
	struct timespec t0, t1;
	getrusage(RUSAGE_SELF, &self0);
	getrusage(RUSAGE_CHILDREN, &kids0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	forks(n);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	getrusage(RUSAGE_SELF, &self1);
	getrusage(RUSAGE_CHILDREN, &kids1);
	long ns = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
	long ut = usec(self1.ru_utime) - usec(self0.ru_utime) + usec(kids1.ru_utime) - usec(kids0.ru_utime);
	long st = usec(self1.ru_stime) - usec(self0.ru_stime) + usec(kids1.ru_stime) - usec(kids0.ru_stime);
	char buf[160];
	int len = snprintf(buf, sizeof(buf), "%ld %ld %ld %d %ld %ld\n", ns, k, n, state, ut, st);
	return write(1, buf, len) == len ? 0 : 3;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "forkcost"))
		return forkcost(atol(argv[2]), atol(argv[3]), atoi(argv[4]));
	if (argc != 4) {
		static const char usage[] =
			"usage: avwork MODE K N  (split sep chainw chainx dontfork wipeonfork brk mprotect-merge"
			" wipeonfork-split dontfork-middle)\n";
		if (write(2, usage, sizeof(usage) - 1) < 0)
			return 3;
		return 2;
	}
	const char *mode = argv[1];
	long k = atol(argv[2]), n = atol(argv[3]);

	if (!strcmp(mode, "split")) {
		split_region(k);
		forks(n);
	} else if (!strcmp(mode, "sep")) {
		sep_region(k);
		forks(n);
	} else if (!strcmp(mode, "chainw")) {
		chain(k, n, 0);
	} else if (!strcmp(mode, "chainx")) {
		chain(k, n, 1);
	} else if (!strcmp(mode, "dontfork")) {
		split_region(k);
		if (k)
			madvise_range(1, k, MADV_DONTFORK);
		forks(n);
	} else if (!strcmp(mode, "wipeonfork")) {
		sep_region(k);
		for (long i = 0; i < k; i++)
			madvise_range(2 * i + 1, 1, MADV_WIPEONFORK);
		for (long j = 0; j < n; j++) {
			pid_t pid = fork();
			if (pid < 0)
				die("fork");
			if (!pid) {
				for (long i = 0; i < k; i++)
					touch(page(2 * i + 1));
				_exit(0);
			}
			wait_child(pid);
		}
	} else if (!strcmp(mode, "wipeonfork-split")) {
		split_region(k);
		if (k)
			madvise_range(1, k, MADV_WIPEONFORK);
		for (long j = 0; j < n; j++) {
			pid_t pid = fork();
			if (pid < 0)
				die("fork");
			if (!pid) {
				for (long i = 1; i <= k; i += 2)
					touch(page(i));
				_exit(0);
			}
			wait_child(pid);
		}
	} else if (!strcmp(mode, "dontfork-middle")) {
		split_region(k);
		if (k >= 2)
			madvise_range(2, 1, MADV_DONTFORK);
		forks(n);
	} else if (!strcmp(mode, "brk")) {
		char *heap = (char *)syscall(SYS_brk, 0);
		for (long s = 1; s <= k; s++) {
			if ((char *)syscall(SYS_brk, heap + s * PAGE) != heap + s * PAGE)
				die("brk");
			touch(heap + (s - 1) * PAGE);
		}
		forks(n);
	} else if (!strcmp(mode, "mprotect-merge")) {
		split_region(k);
		if (k)
			protect(1, k, PROT_READ | PROT_WRITE);
		forks(n);
	} else {
		errno = EINVAL;
		die(mode);
	}
	return 0;
}
