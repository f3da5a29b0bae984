/* A priority inversion on one CPU: "pi-holder" (SCHED_OTHER) takes a normal (non-PI)
 * pthread mutex and works; "pi-waiter" (SCHED_FIFO WAITER_PRIO, or SCHED_OTHER when it is
 * 0: the look-alike) blocks on the mutex; then "pi-middle" (SCHED_FIFO MIDDLE_PRIO) spins,
 * keeping the holder from the CPU except for what RT throttling (or the fair server) leaves
 * it.  All three are pinned to CPU; everything ends after SECONDS.
 *
 * Usage: prio_inversion SECONDS CPU WAITER_PRIO MIDDLE_PRIO
 * Prints "holder=TID waiter=TID middle=TID mutex=ADDR" once the middle task spins. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static volatile int holder_tid, waiter_tid, middle_tid, locked;
static double deadline;
static int cpu, waiter_prio, middle_prio;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void setup(const char *name, int policy, int prio)
{
	cpu_set_t set;
	struct sched_param sp = {.sched_priority = prio};

	pthread_setname_np(pthread_self(), name);
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) || sched_setscheduler(0, policy, &sp)) {
		perror(name);
		exit(1);
	}
}

/* the state letter of one of our threads, from /proc */
static char state_of(int tid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return '?';
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	return p && p[1] && p[2] ? p[2] : '?';
}

static void *holder(void *arg)
{
	(void)arg;
	setup("pi-holder", SCHED_OTHER, 0);
	holder_tid = syscall(SYS_gettid);
	pthread_mutex_lock(&mutex);
	locked = 1;
	while (now() < deadline)        /* the work it must finish before it lets go */
		;
	pthread_mutex_unlock(&mutex);
	return NULL;
}

static void *waiter(void *arg)
{
	(void)arg;
	setup("pi-waiter", waiter_prio ? SCHED_FIFO : SCHED_OTHER, waiter_prio);
	waiter_tid = syscall(SYS_gettid);
	pthread_mutex_lock(&mutex);
	pthread_mutex_unlock(&mutex);
	return NULL;
}

static void *middle(void *arg)
{
	(void)arg;
	setup("pi-middle", SCHED_FIFO, middle_prio);
	middle_tid = syscall(SYS_gettid);
	printf("holder=%d waiter=%d middle=%d mutex=%p\n", holder_tid, waiter_tid, middle_tid, (void *)&mutex);
	fflush(stdout);
	while (now() < deadline)
		;
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t h, w, m;

	if (argc != 5)
		return 2;
	deadline = now() + atof(argv[1]);
	cpu = atoi(argv[2]);
	waiter_prio = atoi(argv[3]);
	middle_prio = atoi(argv[4]);
	pthread_create(&h, NULL, holder, NULL);
	while (!locked)
		usleep(1000);
	pthread_create(&w, NULL, waiter, NULL);
	/* the waiter sleeps on the mutex (state S) before the middle task takes the CPU */
	while (!waiter_tid || state_of(waiter_tid) != 'S')
		usleep(1000);
	pthread_create(&m, NULL, middle, NULL);
	pthread_join(m, NULL);
	pthread_join(w, NULL);
	pthread_join(h, NULL);
	return 0;
}
