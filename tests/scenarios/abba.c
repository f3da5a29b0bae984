/* A pthread ABBA deadlock: thread "lock-a-then-b" takes A then B, thread "lock-b-then-a"
 * takes B then A; a barrier makes sure each holds its first lock before asking for the
 * second, so they deadlock every time.  The process exits by itself after SECONDS (the
 * main thread does not take part).  Usage: abba SECONDS */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold_one;

static void *ab(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "lock-a-then-b");
	pthread_mutex_lock(&a);
	pthread_barrier_wait(&both_hold_one);
	pthread_mutex_lock(&b);         /* never returns */
	return NULL;
}

static void *ba(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "lock-b-then-a");
	pthread_mutex_lock(&b);
	pthread_barrier_wait(&both_hold_one);
	pthread_mutex_lock(&a);         /* never returns */
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t1, t2;

	pthread_barrier_init(&both_hold_one, NULL, 2);
	pthread_create(&t1, NULL, ab, NULL);
	pthread_create(&t2, NULL, ba, NULL);
	printf("a=%p b=%p\n", (void *)&a, (void *)&b);
	fflush(stdout);
	sleep(argc > 1 ? atoi(argv[1]) : 30);
	return 0;                       /* exit() ends the deadlocked threads too */
}
