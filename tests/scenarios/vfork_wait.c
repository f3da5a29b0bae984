/* A parent blocked in D state for N seconds: vfork() suspends the parent in
 * wait_for_vfork_done() (TASK_KILLABLE, shown as D) until the child exits or execs;
 * the child sleeps N seconds, then exits.  Usage: vfork_wait SECONDS */
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	unsigned int secs = argc > 1 ? (unsigned int)atoi(argv[1]) : 30;
	pid_t child = vfork();

	if (child == 0) {
		sleep(secs);
		_exit(0);
	}
	return child < 0;
}
