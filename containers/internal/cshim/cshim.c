//go:build linux && cgo

/*
 * skiff's container shim, small by construction. See package containers
 * (shim_linux.go) for the protocol; in short, the runtime runs
 *
 *   skiff containers-shim SPEC       (fd 3: the report pipe to the runtime)
 *
 * which is Go: it creates and starts the container through libcontainer
 * with its stdout and stderr on pipes, and then execs the same binary as
 *
 *   skiff containers-shim-c SPEC PID STARTED MEMCG LOG MAXSIZE MAXFILES EXIT OUT ERR REPORT
 *
 * with the pipes' read ends on fds OUT and ERR and the report pipe on fd
 * REPORT, left open across the exec where they were. So is the
 * container's lock, which nothing here closes: it stays held to the end,
 * and the destroy inherits it (no other shim creates the container
 * before it is gone).
 * The exec keeps the pid, so the container stays our child. This
 * constructor runs before the Go runtime of the binary starts; when
 * argv[1] is "containers-shim-c" it never returns to Go: it writes the
 * report, copies the pipes into the rotating CRI log, waits for the
 * container, writes its exit record atomically, runs "containers-destroy
 * SPEC" (Go again, for a moment) and exits.
 *
 * Single-threaded: one poll loop over the two pipes and a signalfd for
 * SIGCHLD. Nothing is allocated but a FILE to read the OOM count.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHIM_ARG "containers-shim-c"
#define NARGS 11 /* after SHIM_ARG: SPEC PID STARTED MEMCG LOG MAXSIZE MAXFILES EXIT OUT ERR REPORT */
#define MAX_LINE (16 << 10) /* maxLogLine in logs.go */
#define PATH_MAX_ 4096

struct shimlog {
	char path[PATH_MAX_];
	long long max_size;
	int files;
	int fd; /* -1 while the log is not open: never a closed descriptor */
	long long size;
	int failing; /* the last open or rotation failed (said once on stderr) */
};

struct stream {
	const char *name;
	int fd; /* -1 at EOF */
	size_t len;
	char buf[MAX_LINE];
};

static void die(const char *what)
{
	fprintf(stderr, "shim: %s: %s\n", what, strerror(errno));
	_exit(1);
}

/* rfc3339nano formats t as Go's time.RFC3339Nano in UTC. */
static void rfc3339nano(const struct timespec *t, char *out, size_t n)
{
	struct tm tm;
	gmtime_r(&t->tv_sec, &tm);
	size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
	if (t->tv_nsec != 0) {
		char frac[16];
		snprintf(frac, sizeof frac, ".%09ld", t->tv_nsec);
		int e = strlen(frac);
		while (e > 1 && frac[e - 1] == '0')
			frac[--e] = 0;
		snprintf(out + k, n - k, "%s", frac);
		k += e;
	}
	snprintf(out + k, n - k, "Z");
}

static int write_all(int fd, const char *b, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		b += w;
		n -= w;
	}
	return 0;
}

/* log_open opens the log for appending; on failure l->fd is -1. */
static int log_open(struct shimlog *l)
{
	l->fd = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (l->fd < 0)
		return -1;
	struct stat st;
	if (fstat(l->fd, &st) < 0) {
		int e = errno;
		close(l->fd);
		l->fd = -1;
		errno = e;
		return -1;
	}
	l->size = st.st_size;
	return 0;
}

/* log_rotate is logWriter.rotate: path -> path.1 -> ... -> path.(files-1).
 * The log is closed first and l->fd is -1 until it is open again: on a
 * failure (truncate or open) it stays -1, and the next line tries again. */
static int log_rotate(struct shimlog *l)
{
	close(l->fd);
	l->fd = -1;
	if (l->files <= 1) {
		if (truncate(l->path, 0) < 0)
			return -1;
		return log_open(l);
	}
	char from[PATH_MAX_ + 16], to[PATH_MAX_ + 16];
	for (int i = l->files - 1; i >= 1; i--) {
		if (i > 1)
			snprintf(from, sizeof from, "%s.%d", l->path, i - 1);
		else
			snprintf(from, sizeof from, "%s", l->path);
		snprintf(to, sizeof to, "%s.%d", l->path, i);
		rename(from, to);
	}
	return log_open(l);
}

/* log_failed says on stderr, once per run of failures, that lines are lost. */
static void log_failed(struct shimlog *l, const char *what)
{
	if (!l->failing)
		fprintf(stderr, "shim: %s %s: %s (lines are dropped until it works again)\n", what, l->path, strerror(errno));
	l->failing = 1;
}

/* log_line is logWriter.writeLine: one CRI line, rotating first if it would
 * not fit. A failed write loses the line, not the shim. A log that could
 * not be opened again (after a failed rotation, say) is opened again at
 * the next line; while it cannot be, or while the file cannot be rotated,
 * lines are dropped rather than written past the size budget. */
static void log_line(struct shimlog *l, const char *stream, const char *line, size_t n, int partial)
{
	static char out[MAX_LINE + 128];
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	char ts[64];
	rfc3339nano(&now, ts, sizeof ts);
	int h = snprintf(out, sizeof out, "%s %s %s ", ts, stream, partial ? "P" : "F");
	memcpy(out + h, line, n);
	out[h + n] = '\n';
	size_t total = h + n + 1;
	if (l->fd < 0 && log_open(l) < 0) {
		log_failed(l, "open log");
		return;
	}
	if (l->size > 0 && l->size + (long long)total > l->max_size) {
		if (log_rotate(l) < 0) {
			log_failed(l, "rotate log"); /* l->fd is -1: the next line retries */
			return;
		}
	}
	if (l->failing) {
		fprintf(stderr, "shim: log %s works again\n", l->path);
		l->failing = 0;
	}
	if (write_all(l->fd, out, total) == 0)
		l->size += total;
}

/* stream_read reads what is there and logs its full lines, as copyLines
 * does with a bufio.Reader of MAX_LINE bytes. */
static void stream_read(struct stream *s, struct shimlog *l)
{
	ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		if (s->len > 0)
			log_line(l, s->name, s->buf, s->len, 0);
		s->len = 0;
		close(s->fd);
		s->fd = -1;
		return;
	}
	s->len += n;
	size_t start = 0;
	for (;;) {
		char *nl = memchr(s->buf + start, '\n', s->len - start);
		if (!nl)
			break;
		size_t end = nl - s->buf;
		log_line(l, s->name, s->buf + start, end - start, 0);
		start = end + 1;
	}
	if (start > 0) {
		memmove(s->buf, s->buf + start, s->len - start);
		s->len -= start;
	}
	if (s->len == sizeof s->buf) {
		log_line(l, s->name, s->buf, s->len, 1);
		s->len = 0;
	}
}

/* oom_killed reads oom_kill from the memory cgroup (v1 memory.oom_control,
 * v2 memory.events), as fs.OOMKillCount does. */
static int oom_killed(const char *memcg)
{
	if (!memcg[0])
		return 0;
	static const char *files[] = {"memory.oom_control", "memory.events"};
	for (int i = 0; i < 2; i++) {
		char p[PATH_MAX_ + 32];
		snprintf(p, sizeof p, "%s/%s", memcg, files[i]);
		FILE *f = fopen(p, "re");
		if (!f)
			continue;
		char key[64];
		unsigned long long v;
		int found = 0;
		while (fscanf(f, "%63s %llu", key, &v) == 2) {
			if (strcmp(key, "oom_kill") == 0) {
				found = v > 0;
				break;
			}
		}
		fclose(f);
		return found;
	}
	return 0;
}

/* write_atomic is atomicfile.Write: a temporary file and a rename. */
static int write_atomic(const char *path, const char *b, size_t n)
{
	char tmp[PATH_MAX_ + 32];
	snprintf(tmp, sizeof tmp, "%s.tmp-shim", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (write_all(fd, b, n) < 0 || close(fd) < 0) {
		unlink(tmp);
		return -1;
	}
	return rename(tmp, path);
}

/* spawn runs "containers-VERB SPEC" (Go) with the default signal mask and
 * dispositions. */
static pid_t spawn(const char *verb, const char *spec)
{
	pid_t p = fork();
	if (p != 0)
		return p;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	char arg[64], name[64];
	snprintf(arg, sizeof arg, "containers-%s", verb);
	snprintf(name, sizeof name, "skiff-shim-%s", verb);
	execl("/proc/self/exe", name, arg, spec, (char *)NULL);
	fprintf(stderr, "shim: exec %s: %s\n", arg, strerror(errno));
	_exit(127);
}

static int shim_main(char **arg)
{
	const char *spec = arg[0], *f_started = arg[2], *f_memcg = arg[3], *f_exit = arg[7];
	pid_t cpid = atoi(arg[1]);
	const int out = atoi(arg[8]), errp = atoi(arg[9]), report = atoi(arg[10]);
	fcntl(out, F_SETFD, FD_CLOEXEC);
	fcntl(errp, F_SETFD, FD_CLOEXEC);
	prctl(PR_SET_NAME, "skiff-shim", 0, 0, 0); /* in ps and top, not "exe" */
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_SETMASK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		/* Without it the container could not be waited for. */
		dprintf(report, "{\"error\":\"shim: signalfd: %s\"}\n", strerror(errno));
		kill(cpid, SIGKILL);
		int st;
		while (waitpid(cpid, &st, 0) < 0 && errno == EINTR)
			;
		pid_t d = spawn("destroy", spec);
		while (d > 0 && waitpid(d, &st, 0) < 0 && errno == EINTR)
			;
		return 1;
	}
	struct shimlog l = {.max_size = atoll(arg[5]), .files = atoi(arg[6]), .fd = -1};
	snprintf(l.path, sizeof l.path, "%s", arg[4]);
	if (log_open(&l) < 0) {
		dprintf(report, "{\"error\":\"shim: open log: %s\"}\n", strerror(errno));
		kill(cpid, SIGKILL);
	} else {
		dprintf(report, "{\"pid\":%d,\"started_at\":\"%s\"}\n", cpid, f_started);
	}
	close(report);
	fcntl(out, F_SETFL, O_NONBLOCK);
	fcntl(errp, F_SETFL, O_NONBLOCK);
	static struct stream so = {.name = "stdout"}, se = {.name = "stderr"};
	so.fd = out;
	se.fd = errp;
	int reaped = 0, status = 0;
	struct timespec finished = {0};
	for (;;) {
		/* Reap every child: the container, and whatever libcontainer left. */
		for (;;) {
			int st;
			pid_t w = waitpid(-1, &st, WNOHANG);
			if (w <= 0)
				break;
			if (w == cpid) {
				reaped = 1;
				status = st;
				clock_gettime(CLOCK_REALTIME, &finished);
			}
		}
		if (reaped && so.fd < 0 && se.fd < 0)
			break;
		struct pollfd pfd[3] = {{.fd = so.fd, .events = POLLIN}, {.fd = se.fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
		if (poll(pfd, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (pfd[0].revents)
			stream_read(&so, &l);
		if (pfd[1].revents)
			stream_read(&se, &l);
		if (pfd[2].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) > 0)
				;
		}
	}
	if (l.fd >= 0)
		close(l.fd);

	int code = -1, sig = 0;
	if (WIFEXITED(status))
		code = WEXITSTATUS(status);
	else if (WIFSIGNALED(status)) {
		sig = WTERMSIG(status);
		code = 128 + sig;
	}
	char fin[64];
	rfc3339nano(&finished, fin, sizeof fin);
	char ex[512];
	int n = snprintf(ex, sizeof ex, "{\"pid\":%d,\"exit_code\":%d", cpid, code);
	if (sig)
		n += snprintf(ex + n, sizeof ex - n, ",\"signal\":%d", sig);
	if (oom_killed(f_memcg))
		n += snprintf(ex + n, sizeof ex - n, ",\"oom_killed\":true");
	n += snprintf(ex + n, sizeof ex - n, ",\"started_at\":\"%s\",\"finished_at\":\"%s\"}", f_started, fin);
	if (write_atomic(f_exit, ex, n) < 0)
		fprintf(stderr, "shim: write exit: %s\n", strerror(errno));

	pid_t d = spawn("destroy", spec);
	if (d > 0) {
		int hst;
		while (waitpid(d, &hst, 0) < 0 && errno == EINTR)
			;
	}
	return 0;
}

/* shim_args reads argv from /proc/self/cmdline (not every libc hands argv
 * to constructors) and, when this process is the C shim, points arg at
 * the NARGS arguments after SHIM_ARG and returns 1. */
static int shim_args(char **arg)
{
	static char buf[4 * PATH_MAX_ + 512];
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t len = 0, n;
	while ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += n;
	close(fd);
	buf[len] = 0;
	char *end = buf + len, *a = buf + strlen(buf) + 1; /* argv[1] */
	if (a >= end || strcmp(a, SHIM_ARG) != 0)
		return 0;
	a += strlen(a) + 1;
	for (int i = 0; i < NARGS; i++) {
		if (a >= end) {
			fprintf(stderr, "shim: usage: %s SPEC PID STARTED MEMCG LOG MAXSIZE MAXFILES EXIT OUT ERR REPORT\n", SHIM_ARG);
			_exit(2);
		}
		arg[i] = a;
		a += strlen(a) + 1;
	}
	return 1;
}

__attribute__((constructor)) static void skiff_shim(void)
{
	char *arg[NARGS];
	if (!shim_args(arg))
		return;
	_exit(shim_main(arg));
}
