/*
 * Cartridge's shim: pid 2 of every Cartridge image, between the init (tini, pid 1) and the
 * application (pid 3).
 *
 *   shim STOP_SIGNAL PROGRAM [ARGUMENT...]
 *
 * It starts PROGRAM as its only child, with every signal disposition at its default and an empty
 * signal mask (a POSIX shell cannot do that: it starts background commands with SIGINT and
 * SIGQUIT ignored), then forwards every signal it receives to that child, SIGTERM translated to
 * STOP_SIGNAL (a name such as QUIT), so that `docker stop` asks each role to stop the way it
 * expects. It exits with the child's status (128 + the signal number when a signal ended it).
 *
 * It reaps only its own child: orphans of the application are re-parented to pid 1, whose job
 * reaping them is. It stays out of the child's process group and terminal: the child inherits
 * both, so an interactive role keeps its terminal.
 *
 * Built static (musl-gcc -static -Os -s), so it needs no library from the base image.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

struct named_signal {
	const char *name;
	int number;
};

static const struct named_signal STOP_SIGNALS[] = {
	{"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"HUP", SIGHUP},   {"INT", SIGINT},
	{"KILL", SIGKILL}, {"QUIT", SIGQUIT}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
	{"USR2", SIGUSR2}, {"WINCH", SIGWINCH},
};

static void complain(const char *what, const char *detail)
{
	/* stdio stays out: write(2) is all a static binary this small needs. */
	const char *prefix = "cartridge shim: ";
	(void)!write(2, prefix, strlen(prefix));
	(void)!write(2, what, strlen(what));
	if (detail != NULL) {
		(void)!write(2, ": ", 2);
		(void)!write(2, detail, strlen(detail));
	}
	(void)!write(2, "\n", 1);
}

static int stop_signal_named(const char *name)
{
	if (strncmp(name, "SIG", 3) == 0)
		name += 3;
	for (size_t i = 0; i < sizeof(STOP_SIGNALS) / sizeof(STOP_SIGNALS[0]); i++)
		if (strcmp(name, STOP_SIGNALS[i].name) == 0)
			return STOP_SIGNALS[i].number;
	return -1;
}

static void reset_signals(const sigset_t *mask)
{
	struct sigaction action;
	memset(&action, 0, sizeof(action));
	action.sa_handler = SIG_DFL;
	for (int number = 1; number < NSIG; number++)
		sigaction(number, &action, NULL); /* fails harmlessly for KILL, STOP and reserved ones */
	sigprocmask(SIG_SETMASK, mask, NULL);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		complain("usage", "shim STOP_SIGNAL PROGRAM [ARGUMENT...]");
		return 2;
	}
	int stop_signal = stop_signal_named(argv[1]);
	if (stop_signal < 0) {
		complain("unknown stop signal", argv[1]);
		return 2;
	}

	/* Every signal is blocked and taken synchronously with sigwaitinfo: no handler races. */
	sigset_t all, empty;
	sigfillset(&all);
	sigemptyset(&empty);
	sigprocmask(SIG_SETMASK, &all, NULL);

	pid_t child = fork();
	if (child < 0) {
		complain("fork failed", strerror(errno));
		return 126;
	}
	if (child == 0) {
		reset_signals(&empty);
		execvp(argv[2], argv + 2);
		complain(argv[2], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}

	for (;;) {
		siginfo_t info;
		int number = sigwaitinfo(&all, &info);
		if (number < 0)
			continue; /* EINTR */
		if (number != SIGCHLD) {
			/* A signal the kernel raised (a terminal's ^C or resize) went to the whole
			 * foreground process group, the child included: forwarding it would repeat it. */
			if (info.si_code <= 0)
				kill(child, number == SIGTERM ? stop_signal : number);
			continue;
		}
		int status;
		pid_t done;
		while ((done = waitpid(-1, &status, WNOHANG)) > 0) {
			if (done != child)
				continue;
			if (WIFEXITED(status))
				return WEXITSTATUS(status);
			if (WIFSIGNALED(status))
				return 128 + WTERMSIG(status);
		}
	}
}
