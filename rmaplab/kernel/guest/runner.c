// SPDX-License-Identifier: GPL-2.0
/*
 * rmaplab-runner: the job loop of rmaplab's User-Mode Linux guest.
 *
 *   runner JOBDIR
 *
 * /init execs it, so it runs as PID 1.  For NNNN = 0001, 0002, ... until
 * JOBDIR/NNNN is missing, it reads
 *
 *   NNNN/policy   a reuse policy name, written to RMAP_POLICY below
 *   NNNN/argv     the command: NUL-terminated arguments, argv[0] absolute
 *   NNNN/env      NUL-terminated NAME=VALUE strings (may be empty)
 *   NNNN/cwd      the working directory
 *
 * creates NNNN/started, runs the command with its output in NNNN/stdout
 * and NNNN/stderr, and writes NNNN/result:
 *
 *   status exited N | status signaled N | status exec-failed ERRNO
 *                          | status chdir-failed ERRNO
 *   strays N                 processes still alive after the command
 *   before                   then the snapshot taken before the command
 *   after                    and the one taken after it
 *
 * A snapshot is /proc/rmaplab_counters followed by "slab CACHE STAT VALUE"
 * lines (SLUB_STATS).  When every job is done it writes JOBDIR/done and
 * powers the guest off.
 *
 * The counting window: both snapshots are read into buffers touched
 * before the first one; the command starts with vfork() + execve(), so
 * the runner's mm is never copied; after the second snapshot stray
 * descendants are killed.  Between the snapshots the runner allocates
 * nothing and faults in no new memory, so in this otherwise idle guest
 * the difference is what the command and its exec allocated.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RMAP_POLICY	"/sys/module/rmap/parameters/reuse_policy"
#define COUNTERS	"/proc/rmaplab_counters"
#define SPEC_MAX	(256 * 1024)
#define MAX_ARGS	4096
#define SNAP_MAX	(16 * 1024)

static const char * const slab_caches[] = {
	"anon_vma", "anon_vma_chain", "vm_area_struct",
};
static const char * const slab_stats[] = {
	"alloc_fastpath", "alloc_slowpath",
};

/* Everything the window touches is static and pre-faulted in main(). */
static char argv_buf[SPEC_MAX], env_buf[SPEC_MAX], cwd_buf[4096];
static char *job_argv[MAX_ARGS + 1], *job_env[MAX_ARGS + 1];
static char snap_before[SNAP_MAX], snap_after[SNAP_MAX];
static char scratch[512];
static volatile int exec_errno, chdir_failed;
static const char *jobdir;

static void fail(const char *fmt, ...);

static void power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

/* Read a whole file into buf (NUL-terminated); -1 if it does not exist. */
static ssize_t read_file(const char *path, char *buf, size_t size)
{
	ssize_t n, len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return -1;
		fail("open %s: %s", path, strerror(errno));
	}
	while ((n = read(fd, buf + len, size - 1 - len)) > 0)
		len += n;
	if (n < 0)
		fail("read %s: %s", path, strerror(errno));
	if ((size_t)len == size - 1)
		fail("%s is larger than %zu bytes", path, size - 2);
	close(fd);
	buf[len] = '\0';
	return len;
}

static void write_all(int fd, const char *buf, size_t len, const char *what)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail("write %s: %s", what, strerror(errno));
		}
		buf += n;
		len -= n;
	}
}

static void write_file(const char *path, const char *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		fail("create %s: %s", path, strerror(errno));
	write_all(fd, buf, len, path);
	if (close(fd))
		fail("close %s: %s", path, strerror(errno));
}

/* Record a fatal error for the host and power off: PID 1 must not exit. */
static void fail(const char *fmt, ...)
{
	char path[4096], msg[1024];
	va_list ap;
	int fd, len;

	va_start(ap, fmt);
	len = vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	if (len < 0)
		len = 0;
	if (len > (int)sizeof(msg) - 2)
		len = sizeof(msg) - 2;
	msg[len++] = '\n';
	snprintf(path, sizeof(path), "%s/error", jobdir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, msg, len) < 0)
			len = 0;
		close(fd);
	}
	if (write(2, msg, len) < 0)
		len = 0;
	power_off();
}

/* Split NUL-terminated strings into a NULL-terminated vector. */
static int split(char *buf, ssize_t len, char **vec)
{
	int n = 0;
	char *p = buf;

	while (p < buf + len) {
		if (n == MAX_ARGS)
			fail("more than %d arguments", MAX_ARGS);
		vec[n++] = p;
		p += strlen(p) + 1;
	}
	vec[n] = NULL;
	return n;
}

static size_t append(char *buf, size_t len, const char *text)
{
	size_t n = strlen(text);

	if (len + n >= SNAP_MAX)
		fail("snapshot larger than %d bytes", SNAP_MAX);
	memcpy(buf + len, text, n + 1);
	return len + n;
}

/* The counters file, then one "slab CACHE STAT VALUE" line per statistic. */
static size_t snapshot(char *buf)
{
	size_t len, i, j;
	ssize_t n;

	n = read_file(COUNTERS, buf, SNAP_MAX);
	if (n < 0)
		fail("%s missing: not an rmaplab kernel", COUNTERS);
	len = n;
	for (i = 0; i < sizeof(slab_caches) / sizeof(slab_caches[0]); i++) {
		for (j = 0; j < sizeof(slab_stats) / sizeof(slab_stats[0]); j++) {
			char path[128];

			snprintf(path, sizeof(path), "/sys/kernel/slab/%s/%s",
				 slab_caches[i], slab_stats[j]);
			if (read_file(path, scratch, sizeof(scratch)) < 0)
				fail("%s missing: no SLUB_STATS?", path);
			/* "TOTAL C0=..." : keep the total only */
			scratch[strcspn(scratch, " \n")] = '\0';
			len = append(buf, len, "slab ");
			len = append(buf, len, slab_caches[i]);
			len = append(buf, len, " ");
			len = append(buf, len, slab_stats[j]);
			len = append(buf, len, " ");
			len = append(buf, len, scratch);
			len = append(buf, len, "\n");
		}
	}
	return len;
}

static void set_policy(const char *dir)
{
	char path[4096], name[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/policy", dir);
	n = read_file(path, name, sizeof(name));
	if (n <= 0)
		fail("%s missing or empty", path);
	fd = open(RMAP_POLICY, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail("open %s: %s", RMAP_POLICY, strerror(errno));
	if (write(fd, name, n) != n)
		fail("policy %s refused: %s", name, strerror(errno));
	close(fd);
}

static int open_output(const char *dir, const char *name)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail("create %s: %s", path, strerror(errno));
	return fd;
}

/* Kill and reap whatever the command left running; return how many. */
static int reap_strays(void)
{
	int strays = 0;

	kill(-1, SIGKILL);	/* all but PID 1; ESRCH if there are none */
	while (waitpid(-1, NULL, 0) > 0)
		strays++;
	return strays;
}

static void run_job(const char *dir)
{
	char path[4096], status[128];
	size_t before, after;
	int out, err, wstatus, fd;
	ssize_t n;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/started", dir);
	write_file(path, "", 0);
	set_policy(dir);
	snprintf(path, sizeof(path), "%s/argv", dir);
	n = read_file(path, argv_buf, sizeof(argv_buf));
	if (n <= 0)
		fail("%s missing or empty", path);
	split(argv_buf, n, job_argv);
	snprintf(path, sizeof(path), "%s/env", dir);
	n = read_file(path, env_buf, sizeof(env_buf));
	split(env_buf, n < 0 ? 0 : n, job_env);
	snprintf(path, sizeof(path), "%s/cwd", dir);
	if (read_file(path, cwd_buf, sizeof(cwd_buf)) <= 0)
		strcpy(cwd_buf, "/");
	out = open_output(dir, "stdout");
	err = open_output(dir, "stderr");
	exec_errno = 0;
	chdir_failed = 0;

	before = snapshot(snap_before);
	pid = vfork();
	if (pid == 0) {
		if (chdir(cwd_buf))
			chdir_failed = 1;
		else if (dup2(out, 1) == 1 && dup2(err, 2) == 2)
			execve(job_argv[0], job_argv, job_env);
		exec_errno = errno;
		_exit(127);
	}
	if (pid < 0)
		fail("vfork: %s", strerror(errno));
	while (waitpid(pid, &wstatus, 0) < 0) {
		if (errno != EINTR)
			fail("waitpid: %s", strerror(errno));
	}
	after = snapshot(snap_after);

	close(out);
	close(err);
	if (exec_errno)
		snprintf(status, sizeof(status), "status %s-failed %s\n",
			 chdir_failed ? "chdir" : "exec",
			 strerrorname_np(exec_errno));
	else if (WIFSIGNALED(wstatus))
		snprintf(status, sizeof(status), "status signaled %d\n",
			 WTERMSIG(wstatus));
	else
		snprintf(status, sizeof(status), "status exited %d\n",
			 WEXITSTATUS(wstatus));
	snprintf(path, sizeof(path), "%s/result", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail("create %s: %s", path, strerror(errno));
	write_all(fd, status, strlen(status), path);
	snprintf(status, sizeof(status), "strays %d\nbefore\n", reap_strays());
	write_all(fd, status, strlen(status), path);
	write_all(fd, snap_before, before, path);
	write_all(fd, "after\n", 6, path);
	write_all(fd, snap_after, after, path);
	if (close(fd))
		fail("close %s: %s", path, strerror(errno));
}

int main(int argc, char **argv)
{
	char dir[4096], path[4096];
	struct stat st;
	int i;

	jobdir = argc > 1 ? argv[1] : "/job";
	/* Pre-fault every buffer the counting window writes to. */
	memset(snap_before, 0, sizeof(snap_before));
	memset(snap_after, 0, sizeof(snap_after));
	memset(scratch, 0, sizeof(scratch));
	exec_errno = 0;
	chdir_failed = 0;
	if (argc != 2)
		fail("usage: runner JOBDIR");
	for (i = 1; i < 10000; i++) {
		snprintf(dir, sizeof(dir), "%s/%04d", jobdir, i);
		if (stat(dir, &st) < 0)
			break;
		run_job(dir);
	}
	snprintf(path, sizeof(path), "%s/done", jobdir);
	snprintf(dir, sizeof(dir), "%d\n", i - 1);
	write_file(path, dir, strlen(dir));
	power_off();
	return 0;
}
