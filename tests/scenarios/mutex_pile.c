/* A pile of waiters on one pthread mutex, not a deadlock: "pile-holder" locks the mutex and
 * sleeps; N threads ("pile-waiter", 64 KiB stacks) then block in pthread_mutex_lock() on
 * it.  Every waiter waits for the holder, and the holder waits for nothing: a wait-for
 * chain of length one, N times over.  The program exits by itself after SECONDS.
 *
 * Usage: mutex_pile N SECONDS
 * Prints "lock=ADDR holder=TID started=N" once every waiter thread is created. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_mutex_t pile = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t held;
static int seconds;
static pid_t holder_tid;

static void *holder(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "pile-holder");
	pthread_mutex_lock(&pile);
	holder_tid = (pid_t)syscall(SYS_gettid);
	pthread_barrier_wait(&held);
	sleep(seconds);                 /* holds the mutex the whole time */
	return NULL;
}

static void *waiter(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "pile-waiter");
	pthread_mutex_lock(&pile);      /* never returns before the holder exits */
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	pthread_attr_t attr;
	pthread_t h, w;
	int started = 0;

	seconds = argc > 2 ? atoi(argv[2]) : 30;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	pthread_barrier_init(&held, NULL, 2);
	pthread_create(&h, &attr, holder, NULL);
	pthread_barrier_wait(&held);
	for (int i = 0; i < n; i++)
		if (pthread_create(&w, &attr, waiter, NULL) == 0)
			started++;
	printf("lock=%p holder=%d started=%d\n", (void *)&pile, holder_tid, started);
	fflush(stdout);
	sleep(seconds);
	return 0;                       /* exit() ends the waiters too */
}
