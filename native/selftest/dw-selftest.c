// The sensor's self-test payload: execs itself from every place drift comes
// from, inside a throwaway overlay that only exists in its own mount namespace.
//
//   dw-selftest <dir>      run the probes (dir: an empty directory, removed by the caller)
//   dw-selftest --probe …  what each probe runs: exits 0 at once
//
// <dir> holds the image (lower) and the container layer (upper) on the data
// dir's own filesystem, where the sensor looks them up as it does for any
// container; the overlay and tmpfs mounts exist only in the namespace and
// vanish with it. The probes run chrooted into the overlay in their own pid
// namespace, so the sensor sees them as a container.
// Without CAP_SYS_ADMIN (the DaemonSet grants BPF and PERFMON, not that) the
// namespaces are made inside a new user namespace, where overlay and tmpfs
// mounts are allowed (Linux 5.11+).
//
// Protocol on stdout, one line each: "probe <check>" before a probe runs,
// "done" when all ran, "error <step>: <reason>" when a step failed. The probe
// processes' parent (the namespace's init) then waits for stdin to close, so
// the sensor can still look at the container's root while it judges the events.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROBE_ARG "--probe"

/* This program, opened before the chroot (no /proc in there). */
static int self_fd = -1;

static void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(1, line, n);
}

static int fail(const char *step)
{
	say("error %s: %s", step, strerror(errno));
	return 1;
}

static int write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	size_t len = strlen(text);
	int ok = write(fd, text, len) == (ssize_t)len;
	close(fd);
	return ok ? 0 : -1;
}

/* Copies this program (the same bytes the sensor can hash) to fd. */
static int copy_self_to_fd(int dst)
{
	struct stat st;
	if (fstat(self_fd, &st) < 0)
		return -1;
	off_t off = 0; /* sendfile with an offset leaves self_fd's position alone */
	while (off < st.st_size)
		if (sendfile(dst, self_fd, &off, st.st_size - off) <= 0)
			return -1;
	return 0;
}

static int copy_self(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (fd < 0)
		return -1;
	int r = copy_self_to_fd(fd);
	close(fd);
	return r;
}

/* Runs one probe and waits for it; "probe <check>" is said first. */
static int run_probe(const char *check, const char *path, int memfd)
{
	char *argv[] = {(char *)path, PROBE_ARG, (char *)check, NULL};
	char *envp[] = {NULL};
	say("probe %s", check);
	pid_t pid = fork();
	if (pid < 0)
		return fail("fork");
	if (pid == 0) {
		if (memfd >= 0)
			syscall(SYS_execveat, memfd, "", argv, envp, AT_EMPTY_PATH);
		else
			execve(path, argv, envp);
		_exit(127);
	}
	int status;
	if (waitpid(pid, &status, 0) < 0)
		return fail("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		say("error exec %s: exit status %d", check, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return 1;
	}
	return 0;
}

/* The namespace's init: builds the overlay, runs the probes, waits for stdin to close. */
static int container_init(const char *dir)
{
	char path[4096];
	/* Our mounts must not propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return fail("make / private");
	const char *dirs[] = {"lower", "lower/bin", "lower/shm", "upper", "work", "merged"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, dirs[i]);
		if (mkdir(path, 0755) < 0)
			return fail("mkdir");
	}
	/* The image: this program twice, one to run as is (the script's
	 * interpreter), one to be copied up. */
	snprintf(path, sizeof(path), "%s/lower/bin/probe", dir);
	if (copy_self(path) < 0)
		return fail("write image file");
	snprintf(path, sizeof(path), "%s/lower/bin/copied", dir);
	if (copy_self(path) < 0)
		return fail("write image file");
	char opts[4096 * 3 + 64];
	snprintf(opts, sizeof(opts), "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", dir, dir, dir);
	snprintf(path, sizeof(path), "%s/merged", dir);
	if (mount("overlay", path, "overlay", 0, opts) < 0)
		return fail("mount overlay");
	snprintf(path, sizeof(path), "%s/merged/shm", dir);
	if (mount("dw-selftest-shm", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=8m") < 0)
		return fail("mount tmpfs in the overlay");
	snprintf(path, sizeof(path), "%s/merged", dir);
	if (chroot(path) < 0 || chdir("/") < 0)
		return fail("chroot into the overlay");

	int rc = 0;
	if (copy_self("/bin/new") < 0)
		return fail("write upper file");
	rc |= run_probe("upper", "/bin/new", -1);

	if (chmod("/bin/copied", 0750) < 0) /* a metadata change copies the file up */
		return fail("copy up");
	rc |= run_probe("copied_up", "/bin/copied", -1);

	int mfd = memfd_create("dw-selftest", MFD_CLOEXEC);
	if (mfd < 0 || copy_self_to_fd(mfd) < 0)
		return fail("memfd");
	rc |= run_probe("memfd", "/proc/self/fd/memfd", mfd);
	close(mfd);

	if (copy_self("/shm/probe") < 0)
		return fail("write tmpfs file");
	rc |= run_probe("tmpfs", "/shm/probe", -1);

	/* The interpreter is the image's; only the script itself is drift. */
	if (write_file("/bin/script", "#!/bin/probe " PROBE_ARG "\n", 0755) < 0)
		return fail("write script");
	say("probe script");
	pid_t pid = fork();
	if (pid == 0) {
		char *argv[] = {"/bin/script", "script", NULL};
		char *envp[] = {NULL};
		execve("/bin/script", argv, envp);
		_exit(127);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		say("error exec script: exit status %d", pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		rc = 1;
	}
	say("done");
	/* Stay until the sensor has judged the events (it closes our stdin). */
	char c;
	while (read(0, &c, 1) > 0)
		;
	return rc;
}

static int map_user(uid_t uid, gid_t gid)
{
	char text[64];
	snprintf(text, sizeof(text), "0 %u 1\n", uid);
	if (write_file("/proc/self/uid_map", text, 0) < 0)
		return -1;
	if (write_file("/proc/self/setgroups", "deny\n", 0) < 0 && errno != ENOENT)
		return -1;
	snprintf(text, sizeof(text), "0 %u 1\n", gid);
	return write_file("/proc/self/gid_map", text, 0);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], PROBE_ARG) == 0)
		return 0;
	if (argc >= 3 && strcmp(argv[2], PROBE_ARG) == 0) /* as a #! interpreter: probe --probe script */
		return 0;
	if (argc != 2) {
		fprintf(stderr, "usage: dw-selftest <empty dir>\n");
		return 2;
	}
	self_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (self_fd < 0)
		return fail("open /proc/self/exe");
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(CLONE_NEWNS | CLONE_NEWPID) < 0) {
		if (errno != EPERM)
			return fail("unshare");
		/* No CAP_SYS_ADMIN: the same inside a user namespace of our own. */
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) < 0)
			return fail("unshare (no CAP_SYS_ADMIN, and user namespaces are not allowed)");
		if (map_user(uid, gid) < 0)
			return fail("map user namespace");
		say("userns");
	}
	pid_t pid = fork();
	if (pid < 0)
		return fail("fork");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(container_init(argv[1]));
	}
	int status;
	if (waitpid(pid, &status, 0) < 0)
		return fail("waitpid");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
