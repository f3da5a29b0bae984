/* A pthread ABBA deadlock: "lock-a-then-b" takes A then B, "lock-b-then-a" takes B then A;
 * a barrier makes sure each holds its first lock before asking for the second, so they
 * deadlock every time.  The program exits by itself after SECONDS.
 *
 * Usage: abba SECONDS [shared|rwlock]
 *   two threads of this process (the main thread does not take part), or, with "shared",
 *   two child processes and PTHREAD_PROCESS_SHARED mutexes in a shared mapping (the
 *   futexes are then shared ones, and the owner is a thread of the other process), or,
 *   with "rwlock", two threads and two pthread_rwlock_t, each write-locked by one thread
 *   and then wanted by the other (by "lock-a-then-b" for reading).
 * Prints "a=ADDR b=ADDR" (the same address in every process), and with "shared" also
 * "ab=PID ba=PID". */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

struct locks {
	pthread_mutex_t a, b;
	pthread_barrier_t both_hold_one;
	pthread_rwlock_t rw_a, rw_b;
	int rwlock;
};

static struct locks private_locks = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};

static void lock(struct locks *l, int which, int read)
{
	pthread_rwlock_t *rw = which ? &l->rw_b : &l->rw_a;

	if (!l->rwlock)
		pthread_mutex_lock(which ? &l->b : &l->a);
	else if (read)
		pthread_rwlock_rdlock(rw);
	else
		pthread_rwlock_wrlock(rw);
}

/* the second lock of "lock-a-then-b" is a read lock: one waiter of each kind */
static void take(struct locks *l, int first, int second)
{
	lock(l, first, 0);
	pthread_barrier_wait(&l->both_hold_one);
	lock(l, second, first == 0);    /* never returns */
}

static void *ab(void *arg)
{
	struct locks *l = arg;

	pthread_setname_np(pthread_self(), "lock-a-then-b");
	take(l, 0, 1);
	return NULL;
}

static void *ba(void *arg)
{
	struct locks *l = arg;

	pthread_setname_np(pthread_self(), "lock-b-then-a");
	take(l, 1, 0);
	return NULL;
}

static pid_t child(struct locks *l, void *(*fn)(void *))
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);       /* never outlive the scenario */
		fn(l);
		_exit(0);
	}
	return pid;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 30;
	struct locks *l = &private_locks;
	pthread_mutexattr_t ma;
	pthread_barrierattr_t ba_attr;
	pthread_t t1, t2;
	pid_t p1, p2;

	if (argc > 2 && !strcmp(argv[2], "shared")) {
		l = mmap(NULL, sizeof(*l), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (l == MAP_FAILED)
			return 1;
		pthread_mutexattr_init(&ma);
		pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
		pthread_mutex_init(&l->a, &ma);
		pthread_mutex_init(&l->b, &ma);
		pthread_barrierattr_init(&ba_attr);
		pthread_barrierattr_setpshared(&ba_attr, PTHREAD_PROCESS_SHARED);
		pthread_barrier_init(&l->both_hold_one, &ba_attr, 2);
		p1 = child(l, ab);
		p2 = child(l, ba);
		printf("a=%p b=%p ab=%d ba=%d\n", (void *)&l->a, (void *)&l->b, p1, p2);
		fflush(stdout);
		sleep(seconds);
		kill(p1, SIGKILL);
		kill(p2, SIGKILL);
		waitpid(p1, NULL, 0);
		waitpid(p2, NULL, 0);
		return 0;
	}
	pthread_barrier_init(&l->both_hold_one, NULL, 2);
	if (argc > 2 && !strcmp(argv[2], "rwlock")) {
		l->rwlock = 1;
		pthread_rwlock_init(&l->rw_a, NULL);
		pthread_rwlock_init(&l->rw_b, NULL);
	}
	pthread_create(&t1, NULL, ab, l);
	pthread_create(&t2, NULL, ba, l);
	if (l->rwlock)
		printf("a=%p b=%p\n", (void *)&l->rw_a, (void *)&l->rw_b);
	else
		printf("a=%p b=%p\n", (void *)&l->a, (void *)&l->b);
	fflush(stdout);
	sleep(seconds);
	return 0;                       /* exit() ends the deadlocked threads too */
}
