// SPDX-License-Identifier: GPL-2.0
/*
 * mremap_merge: which 6.18.y mremap() merge behaviour does this kernel have?
 *
 *   mremap_merge MODE TARGET     MODE: uaf | fork    TARGET: adjacent | apart
 *
 * 61f67c230a5e ("mm/vma: fix anon_vma UAF on mremap() faulted, unfaulted merge") makes
 * an unfaulted VMA that absorbs a moved faulted VMA take its anon_vma (dup_anon_vma);
 * 3b617fd3d317 ("mm/vma: enforce VMA fork limit on unfaulted,faulted mremap merge
 * too") refuses that merge when the moved VMA was forked.  Both are in v6.19 and
 * 6.18.8; 6.16 .. 6.18.7 have neither.
 *
 * uaf:  A (6 pages) is written, moved away, B (3 pages) is mapped unfaulted before A's
 *       old place, and A's first half is moved there with MREMAP_DONTUNMAP (TARGET
 *       adjacent) or to a place with no neighbour (apart); then B's first page is
 *       written.  With 61f67c230a5e B holds A's anon_vma after the merge (one AVC
 *       cloned, no allocation at the write); without it B has none (no clone, and the
 *       write allocates an anon_vma and an AVC).  Only half of A is moved, so A keeps
 *       its anon_vma_chain and the anon_vma stays alive even on a kernel without the
 *       fix: this probe never frees an anon_vma a page points to.
 * fork: A (3 pages) is written and the process forks; the child, which writes nothing,
 *       moves A away, maps B unfaulted before A's old place and moves A back there with
 *       MREMAP_DONTUNMAP (adjacent) or elsewhere (apart).  With 3b617fd3d317 the
 *       forked A does not merge into B.  The moved pages belong to the parent's
 *       anon_vma, which the waiting parent keeps alive.
 *
 * Everything happens inside a PROT_NONE reservation at BASE, so no other mapping is a
 * neighbour.  The process that did the moves prints the VMAs of the reservation from
 * /proc/self/maps ("vma FIRST END PERMS", pages from BASE).  perf counts the program;
 * the adjacent run minus the apart run is what the merge changed, which the model of
 * rmaplab/measure/mremap.py predicts for each rule.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE		4096UL
#define PAGES		32
#define BASE		((char *)0x7E0000000000UL)
#define FAR		20	/* where A waits while B is mapped */
#define APART		12	/* a target with PROT_NONE on both sides */

static void die(const char *what)
{
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "mremap_merge: %s: %s\n", what,
			 strerror(errno));

	if (write(2, buf, n) < 0)
		_exit(3);
	_exit(2);
}

static char *page(long i)
{
	return BASE + i * PAGE;
}

static void map_rw(long first, long count)
{
	if (mmap(page(first), count * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != page(first))
		die("mmap");
}

static void move(long from, long count, long to, int flags)
{
	if (mremap(page(from), count * PAGE, count * PAGE,
		   MREMAP_MAYMOVE | MREMAP_FIXED | flags, page(to)) != page(to))
		die("mremap");
}

/* A write fault on page i (the store is to mapped memory: it is not elided). */
static void touch(long i)
{
	page(i)[0] = 1;
}

/* Print the VMAs inside the reservation, as pages from BASE. */
static void print_vmas(void)
{
	static char maps[1 << 16];
	unsigned long lo = (unsigned long)BASE;
	unsigned long hi = lo + PAGES * PAGE;
	ssize_t len = 0, n;
	char *line, *next;
	int fd;

	fd = open("/proc/self/maps", O_RDONLY);
	if (fd < 0)
		die("open /proc/self/maps");
	while ((n = read(fd, maps + len, sizeof(maps) - 1 - len)) > 0)
		len += n;
	if (n < 0)
		die("read /proc/self/maps");
	close(fd);
	maps[len] = '\0';
	for (line = maps; *line; line = next) {
		unsigned long start, end;
		char perms[5], out[64];
		int m;

		next = strchr(line, '\n');
		next = next ? next + 1 : line + strlen(line);
		if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) != 3)
			continue;
		if (end <= lo || start >= hi)
			continue;
		m = snprintf(out, sizeof(out), "vma %lu %lu %s\n",
			     (start - lo) / PAGE, (end - lo) / PAGE, perms);
		if (write(1, out, m) != m)
			die("write");
	}
}

static void uaf(long target)
{
	map_rw(4, 6);
	touch(4);
	move(4, 6, FAR, 0);
	map_rw(1, 3);
	move(FAR, 3, target, MREMAP_DONTUNMAP);
	touch(1);
	print_vmas();
}

static void forked(long target)
{
	pid_t pid;
	int status;

	map_rw(4, 3);
	touch(4);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		move(4, 3, FAR, 0);
		map_rw(1, 3);
		move(FAR, 3, target, MREMAP_DONTUNMAP);
		print_vmas();
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		_exit(4);
}

int main(int argc, char **argv)
{
	long target;

	if (argc != 3 || (strcmp(argv[2], "adjacent") && strcmp(argv[2], "apart"))) {
		fprintf(stderr, "usage: mremap_merge uaf|fork adjacent|apart\n");
		return 2;
	}
	target = strcmp(argv[2], "adjacent") ? APART : 4;
	if (mmap(BASE, PAGES * PAGE, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != BASE)
		die("mmap reservation");
	if (!strcmp(argv[1], "uaf"))
		uaf(target);
	else if (!strcmp(argv[1], "fork"))
		forked(target);
	else {
		fprintf(stderr, "mremap_merge: unknown mode %s\n", argv[1]);
		return 2;
	}
	return 0;
}
