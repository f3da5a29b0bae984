/* Thousands of tasks for the memory bound test: N threads that each wake every PERIOD ms
 * for SECONDS seconds, then exit.  Usage: many_threads N PERIOD_MS SECONDS */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int period_ms, seconds;

static void *loop(void *arg)
{
	struct timespec ts = {period_ms / 1000, (period_ms % 1000) * 1000000L}, start, now;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		nanosleep(&ts, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec < seconds);
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	pthread_attr_t attr;
	pthread_t *t = calloc(n, sizeof(*t));
	int started = 0;

	period_ms = argc > 2 ? atoi(argv[2]) : 50;
	seconds = argc > 3 ? atoi(argv[3]) : 20;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], &attr, loop, NULL) == 0)
			started++;
	fprintf(stderr, "many_threads: %d threads\n", started);
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	return 0;
}
