/* A lock holder that does not let go, and why: "held-holder" (a child process) takes a
 * process-shared pthread mutex and then MODE:
 *   busy   spins on its CPU (a long critical section);
 *   sleep  sleeps (nanosleep), holding the lock -- stop it with kill -STOP, or attach a
 *          tracer, to make it a stopped holder;
 *   write  writes to PATH, which blocks when PATH is on a frozen filesystem;
 *   pulse  holds it 50 ms at a time busy, letting go in between (the look-alike: the
 *          waiter gets the lock again and again).
 * "held-waiter" (the parent's main thread) then blocks on the mutex.  Both end after
 * SECONDS: the parent by alarm(), the child by its parent's death (PR_SET_PDEATHSIG), so
 * that a stopped or traced child ends too.
 *
 * Usage: held SECONDS MODE [PATH]
 * Prints "holder=TID waiter=TID mutex=ADDR" once the holder holds the lock. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile unsigned long work;

/* busy in its own code: the clock is read once every million steps */
static void spin(double until)
{
	do {
		for (int i = 0; i < 1000000; i++)
			work += i;
	} while (now() < until);
}

int main(int argc, char **argv)
{
	pthread_mutexattr_t attr;
	pthread_mutex_t *m;
	int seconds, ready[2];
	const char *mode;
	double deadline;
	pid_t parent = getpid(), child;
	char c;

	if (argc < 3)
		return 2;
	seconds = atoi(argv[1]);
	mode = argv[2];
	deadline = now() + seconds;
	m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || pipe(ready))
		return 1;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(m, &attr);
	alarm(seconds);
	child = fork();
	if (child < 0)
		return 1;
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		prctl(PR_SET_NAME, "held-holder");
		alarm(seconds);
		if (!strcmp(mode, "pulse")) {
			if (write(ready[1], "x", 1) != 1)
				_exit(1);
			while (now() < deadline) {
				pthread_mutex_lock(m);
				spin(now() + 0.05);
				pthread_mutex_unlock(m);
				usleep(2000);
			}
			_exit(0);
		}
		pthread_mutex_lock(m);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		if (!strcmp(mode, "busy")) {
			spin(deadline);
		} else if (!strcmp(mode, "write") && argc > 3) {
			int fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0600);

			if (fd >= 0 && write(fd, "data\n", 5) < 0)
				_exit(1);
		}
		while (now() < deadline)
			usleep(100000);
		_exit(0);
	}
	if (read(ready[0], &c, 1) != 1)
		return 1;
	prctl(PR_SET_NAME, "held-waiter");
	printf("holder=%d waiter=%ld mutex=%p\n", child, (long)syscall(SYS_gettid), (void *)m);
	fflush(stdout);
	while (now() < deadline) {
		pthread_mutex_lock(m);
		pthread_mutex_unlock(m);
		usleep(1000);
	}
	return 0;
}
