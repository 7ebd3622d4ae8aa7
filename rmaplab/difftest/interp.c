// SPDX-License-Identifier: GPL-2.0-only
/*
 * interp.c - run an rmaplab difftest program on a real kernel.
 *
 *   interp [-c COUNTERS_FILE] PROGRAM
 *
 * A program is one operation a line (rmaplab/difftest/interpreter.py writes
 * it from an event trace):
 *
 *   rmaplab-interp 1                 header
 *   files N PAGES                    N memfds of PAGES pages for file mappings
 *   fork SLOT CHILD                  fork(): CHILD is a new process
 *   exit SLOT                        _exit()
 *   mmap SLOT START END PROT FILE PGOFF [stack]   MAP_PRIVATE at START, replacing
 *                                    what is there (MAP_FIXED_NOREPLACE, else MAP_FIXED);
 *                                    anonymous if FILE is "-", else memfd FILE;
 *                                    "stack": with MAP_STACK
 *   munmap SLOT START END
 *   mprotect SLOT START END PROT     PROT: - r rw rx rwx
 *   madvise SLOT START END ADVICE    dontfork dofork wipeonfork keeponfork dontneed
 *                                    hugepage nohugepage
 *   mremap SLOT START END NSTART NEND   in place if NSTART == START, else
 *                                    MREMAP_MAYMOVE|MREMAP_FIXED to NSTART
 *   touch SLOT ADDR w|r              write (or read) one byte: a page fault
 *
 * One process per program process ("slot").  The coordinator (the process
 * started by the caller) parses the program, creates the memfds and a shared
 * command area, and starts slot 0 by fork+exec of this binary with --worker:
 * a fresh mm holding nothing but this binary's segments, the stack, the vdso
 * and the command area.  The worker writes to every private writable VMA it
 * has (so each holds an anon_vma, as after any exec), prints
 * /proc/self/smaps, and waits.  Then the counting window opens and the
 * coordinator hands out the operations one by one, in program order: each
 * process waits on a futex in its own slot of the command area, runs one
 * operation with raw system calls and bumps a "done" futex.  A fork's child
 * takes its new slot and waits there; an exit is complete when the process's
 * pidfd polls readable (exit_mm() has run).  So the kernel sees exactly the
 * program's events in the program's order, and nothing else: this binary is
 * freestanding (no libc: no heap, no TLS, no RELRO, no start-up allocations),
 * so its own VMAs never change while the program runs.
 *
 * Counting window: with RMAPLAB_PERF_CTL and RMAPLAB_PERF_ACK (perf stat
 * --control fifo:CTL,ACK -D -1) the coordinator enables perf's counters
 * after set-up and disables them before tear-down.  With a counters file
 * (-c FILE, or RMAPLAB_COUNTERS_FILE: "name value" lines, e.g. a UML guest's
 * /proc/rmaplab_counters) it reads the file at both ends and prints the
 * differences as one JSON object on a "counts" line (and writes the object
 * to RMAPLAB_COUNTS_OUT if that names a file).
 *
 * Output on stdout: the header line, the worker's smaps between
 * "smaps-begin" and "smaps-end", the "counts" line if any, then
 * "events N" and "ok".  Errors: one line on stderr naming the program line
 * and the errno; exit status 2 for a bad program, 3 for a failed operation.
 *
 * x86_64 only (the system call stubs below).
 */
#include <asm/errno.h>
#include <asm/signal.h>
#include <asm/unistd.h>
#include <linux/fcntl.h>
#include <linux/futex.h>
#include <linux/mman.h>
#include <linux/poll.h>
#include <linux/prctl.h>
#include <linux/types.h>

#ifndef __x86_64__
#error "interp.c has system call stubs for x86_64 only"
#endif

typedef __u64 u64;
typedef __u32 u32;

/* The kernel's own spellings (include/linux/compiler*.h, kernel.h). */
#define __noreturn	__attribute__((noreturn))
#define __used		__attribute__((used))
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define READ_ONCE(x)	(*(const volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v)	(*(volatile typeof(x) *)&(x) = (v))

#define PAGE_SIZE	4096UL
/* Program addresses must lie here: below UML's 512 GiB user space, away from us. */
#define REGION_LO	0x1000000000UL
#define REGION_HI	0x7000000000UL
/* The command area, mapped by every process at a fixed place below the region. */
#define SHM_ADDR	0x0f00000000UL
#define MAX_SLOTS	1024
#define MAX_FILES	8
#define MAX_COUNTERS	64
#define WAIT_NS		50000000L	/* how often a waiting coordinator checks for a dead process */

enum op_kind { OP_FORK, OP_EXIT, OP_MMAP, OP_MUNMAP, OP_MPROTECT, OP_MADVISE, OP_MREMAP,
	       OP_TOUCH };

static const char *const op_names[] = {
	"fork", "exit", "mmap", "munmap", "mprotect", "madvise", "mremap", "touch",
};

struct op {
	u32 kind;
	u32 slot;
	u32 line;
	u32 child;		/* fork */
	u64 start, end;		/* touch: start is the address */
	u64 new_start, new_end;	/* mremap */
	u64 pgoff;		/* mmap, in pages */
	int prot;		/* mmap, mprotect */
	int file;		/* mmap: memfd index or -1 */
	int stack;		/* mmap: MAP_STACK */
	int advice;		/* madvise */
	int write;		/* touch */
};

struct slot {
	u32 seq;		/* futex: bumped by the coordinator for each command */
	u32 pad;
	long pid;		/* set by the forking parent */
	struct op op;
};

struct shared {
	u32 done;		/* futex: bumped by a process when its command is done */
	u32 pad;
	long result;		/* 0 or -errno of the last command */
	struct slot slot[MAX_SLOTS];
};

struct kernel_timespec {
	long tv_sec;
	long tv_nsec;
};

/* ---------------------------------------------------------------- system calls */

static long syscall6(long nr, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;

	__asm__ volatile ("syscall"
			  : "=a"(ret)
			  : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			  : "rcx", "r11", "memory");
	return ret;
}

#define SYS(nr, a, b, c, d, e, f) \
	syscall6(nr, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

static long sys_read(int fd, void *buf, u64 len) { return SYS(__NR_read, fd, buf, len, 0, 0, 0); }
static long sys_write(int fd, const void *buf, u64 len) { return SYS(__NR_write, fd, buf, len, 0, 0, 0); }
static long sys_open(const char *path, int flags) { return SYS(__NR_open, path, flags, 0, 0, 0, 0); }
static long sys_close(int fd) { return SYS(__NR_close, fd, 0, 0, 0, 0, 0); }
static long sys_fork(void) { return SYS(__NR_fork, 0, 0, 0, 0, 0, 0); }
static long sys_kill(long pid, int sig) { return SYS(__NR_kill, pid, sig, 0, 0, 0, 0); }
static long sys_wait_any(void) { return SYS(__NR_wait4, -1, 0, 0, 0, 0, 0); }
static long sys_pidfd_open(long pid) { return SYS(__NR_pidfd_open, pid, 0, 0, 0, 0, 0); }
static long sys_memfd(const char *name) { return SYS(__NR_memfd_create, name, 0, 0, 0, 0, 0); }
static long sys_ftruncate(int fd, u64 len) { return SYS(__NR_ftruncate, fd, len, 0, 0, 0, 0); }
static long sys_munmap(u64 start, u64 len) { return SYS(__NR_munmap, start, len, 0, 0, 0, 0); }

static long sys_mmap(u64 addr, u64 len, int prot, int flags, int fd, u64 off)
{
	return SYS(__NR_mmap, addr, len, prot, flags, fd, off);
}

static long sys_mprotect(u64 start, u64 len, int prot)
{
	return SYS(__NR_mprotect, start, len, prot, 0, 0, 0);
}

static long sys_madvise(u64 start, u64 len, int advice)
{
	return SYS(__NR_madvise, start, len, advice, 0, 0, 0);
}

static long sys_mremap(u64 old, u64 old_len, u64 new_len, int flags, u64 new_addr)
{
	return SYS(__NR_mremap, old, old_len, new_len, flags, new_addr, 0);
}

static long sys_poll(struct pollfd *fds, long n, int timeout_ms)
{
	return SYS(__NR_poll, fds, n, timeout_ms, 0, 0, 0);
}

static long futex_wait(u32 *uaddr, u32 val, const struct kernel_timespec *timeout)
{
	return SYS(__NR_futex, uaddr, FUTEX_WAIT, val, timeout, 0, 0);
}

static long futex_wake(u32 *uaddr)
{
	return SYS(__NR_futex, uaddr, FUTEX_WAKE, 1, 0, 0, 0);
}

static long sys_execve(const char *path, char *const argv[], char *const envp[])
{
	return SYS(__NR_execve, path, argv, envp, 0, 0, 0);
}

static void __noreturn sys_exit(int status)
{
	for (;;)
		SYS(__NR_exit_group, status, 0, 0, 0, 0, 0);
}

/* gcc may emit calls to these even in freestanding code. */
void *memset(void *s, int c, unsigned long n)
{
	unsigned char *p = s;

	while (n--)
		*p++ = c;
	return s;
}

void *memcpy(void *dst, const void *src, unsigned long n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

/* ---------------------------------------------------------------- output */

static char out_buf[4096];
static u64 out_len;

static void out_flush(int fd)
{
	u64 done = 0;

	while (done < out_len) {
		long n = sys_write(fd, out_buf + done, out_len - done);

		if (n <= 0)
			sys_exit(4);
		done += n;
	}
	out_len = 0;
}

static void out_str(const char *s)
{
	while (*s) {
		if (out_len == sizeof(out_buf))
			out_flush(1);
		out_buf[out_len++] = *s++;
	}
}

static void out_num(long v)
{
	char tmp[24];
	int i = sizeof(tmp) - 1;
	unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;

	tmp[i] = 0;
	do {
		tmp[--i] = '0' + u % 10;
		u /= 10;
	} while (u);
	if (v < 0)
		tmp[--i] = '-';
	out_str(tmp + i);
}

static const struct {
	int nr;
	const char *name;
} errno_names[] = {
	{ EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { ESRCH, "ESRCH" }, { EINTR, "EINTR" },
	{ EBADF, "EBADF" }, { ECHILD, "ECHILD" }, { EAGAIN, "EAGAIN" }, { ENOMEM, "ENOMEM" },
	{ EACCES, "EACCES" }, { EFAULT, "EFAULT" }, { EBUSY, "EBUSY" }, { EEXIST, "EEXIST" },
	{ EINVAL, "EINVAL" }, { ENFILE, "ENFILE" }, { EMFILE, "EMFILE" }, { EFBIG, "EFBIG" },
	{ ENOSPC, "ENOSPC" }, { ETIMEDOUT, "ETIMEDOUT" },
};

/* One line on stderr: "interp: WHERE: WHAT: errno N (ENAME)", then exit. */
static void __noreturn fail(int status, const char *where, long line,
					   const char *what, long err)
{
	out_flush(1);
	out_str("interp: ");
	out_str(where);
	if (line) {
		out_str(":");
		out_num(line);
	}
	out_str(": ");
	out_str(what);
	if (err) {
		out_str(": errno ");
		out_num(err);
		for (unsigned int i = 0; i < ARRAY_SIZE(errno_names); i++)
			if (errno_names[i].nr == err) {
				out_str(" (");
				out_str(errno_names[i].name);
				out_str(")");
			}
	}
	out_str("\n");
	out_flush(2);
	sys_exit(status);
}

/* ---------------------------------------------------------------- small helpers */

static int str_eq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

static int starts_with(const char *s, const char *prefix)
{
	while (*prefix)
		if (*s++ != *prefix++)
			return 0;
	return 1;
}

static char *getenv_from(char **envp, const char *name)
{
	for (; *envp; envp++) {
		const char *e = *envp, *n = name;

		while (*n && *e == *n) {
			e++;
			n++;
		}
		if (!*n && *e == '=')
			return (char *)e + 1;
	}
	return 0;
}

static int parse_base(char **p, u64 *val, int base)
{
	char *s = *p;
	u64 v = 0;
	int digits = 0;

	for (;; s++, digits++) {
		int d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else
			break;
		v = v * base + d;
	}
	*p = s;
	*val = v;
	return digits > 0;
}

/* Parse a number ("0x.." hex or decimal) at *p; return 0 if there is none. */
static int parse_num(char **p, u64 *val)
{
	if ((*p)[0] == '0' && (*p)[1] == 'x') {
		*p += 2;
		return parse_base(p, val, 16);
	}
	return parse_base(p, val, 10);
}

/* Read a whole file into buf (NUL-terminated); returns its length or -errno. */
static long read_file(const char *path, char *buf, u64 size)
{
	long fd = sys_open(path, O_RDONLY), n;
	u64 len = 0;

	if (fd < 0)
		return fd;
	while ((n = sys_read(fd, buf + len, size - 1 - len)) > 0)
		len += n;
	sys_close(fd);
	if (n < 0)
		return n;
	buf[len] = 0;
	return len;
}

/* ---------------------------------------------------------------- the program */

struct program {
	struct op *ops;
	long nops;
	int files;
	u64 file_pages;
	u32 slots;
	const char *path;
};

static char *next_token(char **p)
{
	char *s = *p, *start;

	while (*s == ' ' || *s == '\t')
		s++;
	start = s;
	while (*s && *s != ' ' && *s != '\t' && *s != '\n')
		s++;
	if (*s == ' ' || *s == '\t')
		*s++ = 0;
	*p = s;
	return start;
}

static u64 need_num(const struct program *prog, char **p, long line)
{
	char *tok = next_token(p);
	u64 v;

	if (!parse_num(&tok, &v) || *tok)
		fail(2, prog->path, line, "expected a number", 0);
	return v;
}

static u32 need_slot(const struct program *prog, char **p, long line)
{
	u64 v = need_num(prog, p, line);

	if (v >= MAX_SLOTS)
		fail(2, prog->path, line, "process slot out of range", 0);
	return v;
}

static int parse_prot(const struct program *prog, const char *s, long line)
{
	static const char *const prots[] = { "-", "r", "rw", "rx", "rwx" };
	static const int values[] = {
		PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC,
		PROT_READ | PROT_WRITE | PROT_EXEC,
	};

	for (unsigned int i = 0; i < ARRAY_SIZE(prots); i++)
		if (str_eq(s, prots[i]))
			return values[i];
	fail(2, prog->path, line, "bad protection (- r rw rx rwx)", 0);
}

static int parse_advice(const struct program *prog, const char *s, long line)
{
	static const char *const names[] = {
		"dontfork", "dofork", "wipeonfork", "keeponfork", "dontneed", "hugepage",
		"nohugepage",
	};
	static const int values[] = {
		MADV_DONTFORK, MADV_DOFORK, MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_DONTNEED,
		MADV_HUGEPAGE, MADV_NOHUGEPAGE,
	};

	for (unsigned int i = 0; i < ARRAY_SIZE(names); i++)
		if (str_eq(s, names[i]))
			return values[i];
	fail(2, prog->path, line, "bad madvise advice", 0);
}

static void check_range(const struct program *prog, u64 start, u64 end, long line)
{
	if (start % PAGE_SIZE || end % PAGE_SIZE || start >= end ||
	    start < REGION_LO || end > REGION_HI)
		fail(2, prog->path, line, "range not page-aligned or outside the program region", 0);
}

static void parse_op(struct program *prog, struct op *op, char *text, long line)
{
	char *p = text, *name = next_token(&p), *tok;
	u32 kind;

	for (kind = 0; kind < ARRAY_SIZE(op_names); kind++)
		if (str_eq(name, op_names[kind]))
			break;
	if (kind == ARRAY_SIZE(op_names))
		fail(2, prog->path, line, "unknown operation", 0);
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->line = line;
	op->slot = need_slot(prog, &p, line);
	switch (kind) {
	case OP_FORK:
		op->child = need_slot(prog, &p, line);
		break;
	case OP_EXIT:
		break;
	case OP_TOUCH:
		op->start = need_num(prog, &p, line);
		op->end = (op->start & ~(PAGE_SIZE - 1)) + PAGE_SIZE;
		check_range(prog, op->start & ~(PAGE_SIZE - 1), op->end, line);
		tok = next_token(&p);
		if (!str_eq(tok, "w") && !str_eq(tok, "r"))
			fail(2, prog->path, line, "touch wants w or r", 0);
		op->write = str_eq(tok, "w");
		break;
	default:
		op->start = need_num(prog, &p, line);
		op->end = need_num(prog, &p, line);
		check_range(prog, op->start, op->end, line);
		if (kind == OP_MMAP) {
			op->prot = parse_prot(prog, next_token(&p), line);
			tok = next_token(&p);
			op->file = -1;
			if (!str_eq(tok, "-")) {
				u64 f;

				if (!parse_num(&tok, &f) || *tok || f >= (u64)prog->files)
					fail(2, prog->path, line, "no such file", 0);
				op->file = f;
			}
			op->pgoff = need_num(prog, &p, line);
			tok = next_token(&p);
			if (*tok && !str_eq(tok, "stack"))
				fail(2, prog->path, line, "mmap: only \"stack\" may follow PGOFF", 0);
			op->stack = str_eq(tok, "stack");
		} else if (kind == OP_MPROTECT) {
			op->prot = parse_prot(prog, next_token(&p), line);
		} else if (kind == OP_MADVISE) {
			op->advice = parse_advice(prog, next_token(&p), line);
		} else if (kind == OP_MREMAP) {
			op->new_start = need_num(prog, &p, line);
			op->new_end = need_num(prog, &p, line);
			check_range(prog, op->new_start, op->new_end, line);
		}
	}
	if (*next_token(&p))
		fail(2, prog->path, line, "trailing text", 0);
}

enum { SLOT_UNUSED, SLOT_ALIVE, SLOT_DEAD };

/* An operation on a process that is not alive, or a fork into a used slot, is an error. */
static void check_alive(struct program *prog, unsigned char *state, const struct op *op)
{
	if (state[op->slot] != SLOT_ALIVE)
		fail(2, prog->path, op->line, "process slot is not alive", 0);
	if (op->kind == OP_FORK) {
		if (state[op->child] != SLOT_UNUSED)
			fail(2, prog->path, op->line, "fork: child slot already used", 0);
		state[op->child] = SLOT_ALIVE;
	} else if (op->kind == OP_EXIT) {
		state[op->slot] = SLOT_DEAD;
	}
	if (op->slot >= prog->slots)
		prog->slots = op->slot + 1;
	if (op->kind == OP_FORK && op->child >= prog->slots)
		prog->slots = op->child + 1;
}

static void load_program(struct program *prog, const char *path)
{
	static unsigned char state[MAX_SLOTS];
	long size, line = 0, n = 0;
	char *text, *p;

	prog->path = path;
	size = 1 << 24;
	text = (char *)sys_mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((long)text < 0 && (long)text > -4096)
		fail(2, path, 0, "cannot allocate", -(long)text);
	size = read_file(path, text, size);
	if (size < 0)
		fail(2, path, 0, "cannot read", -size);
	for (p = text; *p; p++)
		n += *p == '\n';
	prog->ops = (struct op *)sys_mmap(0, (n + 1) * sizeof(struct op), PROT_READ | PROT_WRITE,
					  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((long)prog->ops < 0 && (long)prog->ops > -4096)
		fail(2, path, 0, "cannot allocate", -(long)prog->ops);
	state[0] = SLOT_ALIVE;
	prog->slots = 1;
	for (p = text; *p; ) {
		char *eol = p, *tok;
		u64 v;

		while (*eol && *eol != '\n')
			eol++;
		if (*eol)
			*eol++ = 0;
		line++;
		if (*p == '#' || !*p) {
			p = eol;
			continue;
		}
		if (line == 1) {
			if (!str_eq(p, "rmaplab-interp 1"))
				fail(2, path, line, "not an rmaplab-interp 1 program", 0);
		} else if (starts_with(p, "files ")) {
			tok = p + 6;
			if (!parse_num(&tok, &v) || v > MAX_FILES)
				fail(2, path, line, "bad files line", 0);
			prog->files = v;
			prog->file_pages = need_num(prog, &tok, line);
		} else {
			parse_op(prog, &prog->ops[prog->nops], p, line);
			check_alive(prog, state, &prog->ops[prog->nops]);
			prog->nops++;
		}
		p = eol;
	}
	if (!line)
		fail(2, path, 0, "empty program", 0);
}

/* ---------------------------------------------------------------- the worker */

static struct shared *shm;
static int file_fds[MAX_FILES];

static long run_op(const struct op *op)
{
	u64 len = op->end - op->start;
	long ret;

	switch (op->kind) {
	case OP_MMAP: {
		int flags = MAP_PRIVATE;
		int fd = -1;

		if (op->file < 0)
			flags |= MAP_ANONYMOUS;
		else
			fd = file_fds[op->file];
		if (op->stack)
			flags |= MAP_STACK;
		/*
		 * The trace's mmap maps at its address, replacing what is there.  Ask
		 * not to replace first: that check fails before anything changes, and
		 * then MAP_FIXED takes the mmap_region() path that unmaps first.
		 */
		ret = sys_mmap(op->start, len, op->prot, flags | MAP_FIXED_NOREPLACE, fd,
			       op->pgoff * PAGE_SIZE);
		if (ret == -EEXIST)
			ret = sys_mmap(op->start, len, op->prot, flags | MAP_FIXED, fd,
				       op->pgoff * PAGE_SIZE);
		if (ret < 0 && ret > -4096)
			return ret;
		return (u64)ret == op->start ? 0 : -EFAULT;
	}
	case OP_MUNMAP:
		return sys_munmap(op->start, len);
	case OP_MPROTECT:
		return sys_mprotect(op->start, len, op->prot);
	case OP_MADVISE:
		return sys_madvise(op->start, len, op->advice);
	case OP_MREMAP:
		if (op->new_start == op->start)
			ret = sys_mremap(op->start, len, op->new_end - op->new_start, 0, 0);
		else
			ret = sys_mremap(op->start, len, op->new_end - op->new_start,
					 MREMAP_MAYMOVE | MREMAP_FIXED, op->new_start);
		if (ret < 0 && ret > -4096)
			return ret;
		return (u64)ret == op->new_start ? 0 : -EFAULT;
	case OP_TOUCH:
		if (op->write)
			WRITE_ONCE(*(char *)op->start, 1);
		else
			(void)READ_ONCE(*(char *)op->start);
		return 0;
	}
	return -EINVAL;
}

static void report(long result)
{
	shm->result = result;
	__atomic_fetch_add(&shm->done, 1, __ATOMIC_RELEASE);
	futex_wake(&shm->done);
}

static void __noreturn worker_loop(u32 self)
{
	u32 seen = 0;

	for (;;) {
		struct slot *s = &shm->slot[self];
		u32 seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
		struct op op;
		long ret;

		if (seq == seen) {
			futex_wait(&s->seq, seen, 0);
			continue;
		}
		seen = seq;
		op = s->op;
		if (op.kind == OP_EXIT)
			sys_exit(0);
		if (op.kind == OP_FORK) {
			ret = sys_fork();
			if (ret == 0) {
				/* The child: wait in its own slot, never used before. */
				self = op.child;
				seen = 0;
				continue;
			}
			if (ret > 0) {
				shm->slot[op.child].pid = ret;
				ret = 0;
			}
		} else {
			ret = run_op(&op);
		}
		report(ret);
	}
}

/* Fault in every private writable VMA (all then hold an anon_vma), then show them. */
static void worker_setup(void)
{
	static char maps[65536];
	long len = read_file("/proc/self/maps", maps, sizeof(maps));
	char *p = maps;

	if (len < 0)
		fail(3, "/proc/self/maps", 0, "cannot read", -len);
	while (*p) {
		u64 start, end;
		char *perms;

		parse_base(&p, &start, 16);
		p++;
		parse_base(&p, &end, 16);
		perms = p + 1;
		if (perms[1] == 'w' && perms[3] == 'p')
			WRITE_ONCE(*(char *)start, READ_ONCE(*(char *)start));
		while (*p && *p != '\n')
			p++;
		if (*p)
			p++;
	}
	len = read_file("/proc/self/smaps", maps, sizeof(maps));
	if (len < 0)
		fail(3, "/proc/self/smaps", 0, "cannot read", -len);
	out_str("smaps-begin\n");
	out_flush(1);
	if (sys_write(1, maps, len) != len)
		sys_exit(4);
	out_str("smaps-end\n");
	out_flush(1);
}

/* argv: interp --worker SHMFD FILEFD... */
static void __noreturn worker_main(int argc, char **argv)
{
	u64 fd;
	long ret;
	char *p;

	for (int i = 3; i < argc && i - 3 < MAX_FILES; i++) {
		p = argv[i];
		parse_num(&p, &fd);
		file_fds[i - 3] = fd;
	}
	p = argv[2];
	parse_num(&p, &fd);
	ret = sys_mmap(SHM_ADDR, sizeof(struct shared), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	if (ret < 0 && ret > -4096)
		fail(3, "worker", 0, "cannot map the command area", -ret);
	shm = (struct shared *)SHM_ADDR;
	sys_close(fd);
	worker_setup();
	report(0);
	worker_loop(0);
}

/* ---------------------------------------------------------------- counters */

struct counters {
	int n;
	char name[MAX_COUNTERS][48];
	long value[MAX_COUNTERS];
};

static void read_counters(const char *path, struct counters *c)
{
	static char text[16384];
	long len = read_file(path, text, sizeof(text));
	char *p = text;

	if (len < 0)
		fail(3, path, 0, "cannot read the counters file", -len);
	c->n = 0;
	while (*p && c->n < MAX_COUNTERS) {
		char *name = next_token(&p);
		int i;
		u64 v;

		for (i = 0; i < 47 && name[i] && name[i] != '\n'; i++)
			c->name[c->n][i] = name[i];
		c->name[c->n][i] = 0;
		if (!parse_num(&p, &v))
			fail(3, path, c->n + 1, "expected 'name value'", 0);
		c->value[c->n++] = v;
		while (*p && *p != '\n')
			p++;
		if (*p)
			p++;
	}
}

static void print_deltas(const struct counters *a, const struct counters *b, char **envp)
{
	char *path = getenv_from(envp, "RMAPLAB_COUNTS_OUT");
	u64 from;

	out_str("counts ");
	out_flush(1);
	from = out_len;
	out_str("{");
	for (int i = 0; i < b->n; i++) {
		for (int j = 0; j < a->n; j++) {
			if (!str_eq(a->name[j], b->name[i]))
				continue;
			out_str(i ? ", \"" : "\"");
			out_str(b->name[i]);
			out_str("\": ");
			out_num(b->value[i] - a->value[j]);
		}
	}
	out_str("}\n");
	if (path) {
		long fd = SYS(__NR_open, path, O_WRONLY | O_CREAT | O_TRUNC, 0644, 0, 0, 0);

		if (fd < 0)
			fail(3, path, 0, "cannot write", -fd);
		if (sys_write(fd, out_buf + from, out_len - from) != (long)(out_len - from))
			fail(3, path, 0, "cannot write", 0);
		sys_close(fd);
	}
}

/* perf stat --control fifo:CTL,ACK: send a command, wait for "ack". */
static void perf_control(char **envp, const char *cmd)
{
	char *ctl = getenv_from(envp, "RMAPLAB_PERF_CTL");
	char *ack = getenv_from(envp, "RMAPLAB_PERF_ACK");
	char buf[16];
	long fd, n;
	u64 len = 0;

	if (!ctl || !ack)
		return;
	while (cmd[len])
		len++;
	fd = sys_open(ctl, O_WRONLY);
	if (fd < 0 || sys_write(fd, cmd, len) != (long)len)
		fail(3, ctl, 0, "cannot write to perf's control fifo", fd < 0 ? -fd : 0);
	sys_close(fd);
	fd = sys_open(ack, O_RDONLY);
	if (fd < 0)
		fail(3, ack, 0, "cannot open perf's ack fifo", -fd);
	n = sys_read(fd, buf, sizeof(buf));
	sys_close(fd);
	if (n < 3 || buf[0] != 'a' || buf[1] != 'c' || buf[2] != 'k')
		fail(3, ack, 0, "perf did not acknowledge", n < 0 ? -n : 0);
}

/* ---------------------------------------------------------------- the coordinator */

static int pidfds[MAX_SLOTS];
static long pids[MAX_SLOTS];

static void kill_all(const struct program *prog)
{
	for (u32 i = 0; i < prog->slots; i++)
		if (pids[i] > 0)
			sys_kill(pids[i], SIGKILL);
	while (sys_wait_any() != -ECHILD)
		;
}

static int exited(int pidfd, int timeout_ms)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

	return sys_poll(&pfd, 1, timeout_ms) > 0;
}

/* Wait until the command's process reports; fail if it dies instead. */
static void wait_done(const struct program *prog, const struct op *op, u32 want)
{
	static const struct kernel_timespec tick = { 0, WAIT_NS };

	for (;;) {
		u32 done = __atomic_load_n(&shm->done, __ATOMIC_ACQUIRE);

		if (done == want)
			break;
		if (futex_wait(&shm->done, done, &tick) == -ETIMEDOUT &&
		    exited(pidfds[op->slot], 0)) {
			pids[op->slot] = 0;
			kill_all(prog);
			fail(3, prog->path, op->line, "the process died (signal)", 0);
		}
	}
	if (shm->result) {
		kill_all(prog);
		fail(3, prog->path, op->line, op_names[op->kind], -shm->result);
	}
}

static void send(const struct op *op)
{
	struct slot *s = &shm->slot[op->slot];

	s->op = *op;
	__atomic_fetch_add(&s->seq, 1, __ATOMIC_RELEASE);
	futex_wake(&s->seq);
}

static void exit_slot(const struct op *op)
{
	send(op);
	while (!exited(pidfds[op->slot], -1))
		;
	sys_close(pidfds[op->slot]);
	pids[op->slot] = 0;
}

static void run_program(const struct program *prog, u32 *done)
{
	for (long i = 0; i < prog->nops; i++) {
		const struct op *op = &prog->ops[i];
		long fd;

		if (op->kind == OP_EXIT) {
			exit_slot(op);
			continue;
		}
		send(op);
		wait_done(prog, op, ++*done);
		if (op->kind != OP_FORK)
			continue;
		pids[op->child] = shm->slot[op->child].pid;
		fd = sys_pidfd_open(pids[op->child]);
		if (fd < 0) {
			kill_all(prog);
			fail(3, prog->path, op->line, "pidfd_open", -fd);
		}
		pidfds[op->child] = fd;
	}
}

static void tear_down(const struct program *prog)
{
	struct op op = { .kind = OP_EXIT };

	for (u32 i = 0; i < prog->slots; i++) {
		if (!pids[i])
			continue;
		op.slot = i;
		exit_slot(&op);
	}
	while (sys_wait_any() != -ECHILD)
		;
}

static void start_worker(const struct program *prog, char **argv, char **envp, long shm_fd,
			 long *fds, u32 *done)
{
	static char numbers[MAX_FILES + 1][24];
	char *wargv[MAX_FILES + 4];
	long pid, fd;
	int i;

	for (i = 0; i <= prog->files; i++) {
		long v = i ? fds[i - 1] : shm_fd;
		int k = 22;

		numbers[i][23] = 0;
		do {
			numbers[i][k--] = '0' + v % 10;
			v /= 10;
		} while (v);
		wargv[2 + i] = &numbers[i][k + 1];
	}
	wargv[0] = argv[0];
	wargv[1] = "--worker";
	wargv[3 + prog->files] = 0;
	out_flush(1);
	pid = sys_fork();
	if (pid < 0)
		fail(3, "fork", 0, "cannot start the first process", -pid);
	if (!pid) {
		long err = sys_execve(argv[0], wargv, envp);

		fail(3, argv[0], 0, "cannot exec the worker", -err);
	}
	pids[0] = pid;
	fd = sys_pidfd_open(pid);
	if (fd < 0)
		fail(3, "pidfd_open", 0, "cannot watch the first process", -fd);
	pidfds[0] = fd;
	for (;;) {
		if (__atomic_load_n(&shm->done, __ATOMIC_ACQUIRE) == 1)
			break;
		if (exited(fd, 0)) {
			pids[0] = 0;
			kill_all(prog);
			fail(3, argv[0], 0, "the first process died during set-up", 0);
		}
		futex_wait(&shm->done, 0, &(struct kernel_timespec){ 0, WAIT_NS });
	}
	*done = 1;
}

/* A memfd of size bytes, inherited by the worker across exec (no MFD_CLOEXEC). */
static long new_memfd(const char *name, u64 size)
{
	long fd = sys_memfd(name), ret;

	if (fd < 0)
		fail(3, "memfd_create", 0, name, -fd);
	ret = sys_ftruncate(fd, size);
	if (ret < 0)
		fail(3, "ftruncate", 0, name, -ret);
	return fd;
}

static int coordinator_main(int argc, char **argv, char **envp)
{
	static struct program prog;
	static struct counters before, after;
	const char *counters = getenv_from(envp, "RMAPLAB_COUNTERS_FILE");
	const char *path = 0;
	long shm_fd, fds[MAX_FILES], ret;
	u32 done;

	for (int i = 1; i < argc; i++) {
		if (str_eq(argv[i], "-c") && i + 1 < argc)
			counters = argv[++i];
		else if (!path && argv[i][0] != '-')
			path = argv[i];
		else
			fail(2, "usage", 0, "interp [-c COUNTERS_FILE] PROGRAM", 0);
	}
	if (!path)
		fail(2, "usage", 0, "interp [-c COUNTERS_FILE] PROGRAM", 0);
	load_program(&prog, path);
	out_str("rmaplab-interp 1\n");

	/* Orphans are re-parented to us, so everything can be reaped at the end. */
	ret = SYS(__NR_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0, 0);
	if (ret < 0)
		fail(3, "prctl", 0, "PR_SET_CHILD_SUBREAPER", -ret);
	shm_fd = new_memfd("rmaplab-interp-commands", sizeof(struct shared));
	ret = sys_mmap(SHM_ADDR, sizeof(struct shared), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED_NOREPLACE, shm_fd, 0);
	if (ret < 0 && ret > -4096)
		fail(3, "mmap", 0, "command area", -ret);
	shm = (struct shared *)SHM_ADDR;
	for (int i = 0; i < prog.files; i++)
		fds[i] = new_memfd("rmaplab-interp-file", prog.file_pages * PAGE_SIZE);
	start_worker(&prog, argv, envp, shm_fd, fds, &done);

	if (counters)
		read_counters(counters, &before);
	perf_control(envp, "enable\n");
	run_program(&prog, &done);
	perf_control(envp, "disable\n");
	if (counters) {
		read_counters(counters, &after);
		print_deltas(&before, &after, envp);
	}
	tear_down(&prog);
	out_str("events ");
	out_num(prog.nops);
	out_str("\nok\n");
	out_flush(1);
	return 0;
}

/* ---------------------------------------------------------------- entry */

int __used start_c(long *sp)
{
	int argc = sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;

	if (argc >= 3 && str_eq(argv[1], "--worker"))
		worker_main(argc, argv);
	sys_exit(coordinator_main(argc, argv, envp));
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	xor %rbp, %rbp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call start_c\n"
	"	hlt\n");
