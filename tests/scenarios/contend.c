/* Mutex contention without deadlock: N threads take mutex A then mutex B (always in that
 * order), hold them HOLD_MS (2 by default), release, and start again, for SECONDS.  At any
 * moment several threads wait, and all of them progress; the mutex is free only while a
 * woken waiter is on its way to take it.  Usage: contend N SECONDS [HOLD_MS] */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
static int seconds, hold_ms = 2;

static void spin_ms(int ms)
{
	struct timespec s, n;

	clock_gettime(CLOCK_MONOTONIC, &s);
	do
		clock_gettime(CLOCK_MONOTONIC, &n);
	while ((n.tv_sec - s.tv_sec) * 1000 + (n.tv_nsec - s.tv_nsec) / 1000000 < ms);
}

static void *worker(void *arg)
{
	struct timespec s, n, rest = {0, 500000};

	(void)arg;
	pthread_setname_np(pthread_self(), "contender");
	clock_gettime(CLOCK_MONOTONIC, &s);
	do {
		pthread_mutex_lock(&a);
		pthread_mutex_lock(&b);
		spin_ms(hold_ms);
		pthread_mutex_unlock(&b);
		pthread_mutex_unlock(&a);
		nanosleep(&rest, NULL);
		clock_gettime(CLOCK_MONOTONIC, &n);
	} while (n.tv_sec - s.tv_sec < seconds);
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 8;
	pthread_t t[64];

	seconds = argc > 2 ? atoi(argv[2]) : 20;
	if (argc > 3)
		hold_ms = atoi(argv[3]);
	if (n > 64)
		n = 64;
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	return 0;
}
