/* A loopback UDP flood, bounded in time: sendmmsg() batches of 64-byte datagrams to a
 * socket of its own on 127.0.0.1 that it never reads (the receive path still runs, in the
 * NET_RX softirq, and drops), or to 127.0.0.1:PORT, another process's socket.
 * usage: udp_flood CPU SECONDS [NAME [PORT]] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(atoi(argv[1]), &set);
	sched_setaffinity(0, sizeof(set), &set);
	prctl(PR_SET_NAME, argc > 3 ? argv[3] : "udp-flood");
	double end = now() + atof(argv[2]);
	int r = socket(AF_INET, SOCK_DGRAM, 0), s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	if (r < 0 || s < 0 || bind(r, (void *)&a, sizeof(a)) || getsockname(r, (void *)&a, &al))
		return 1;
	if (argc > 4)
		a.sin_port = htons(atoi(argv[4]));
	char payload[64];
	memset(payload, 'x', sizeof(payload));
	struct iovec iov = {payload, sizeof(payload)};
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_name = &a;
		msgs[i].msg_hdr.msg_namelen = sizeof(a);
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	unsigned long sent = 0;
	while (now() < end) {
		int n = sendmmsg(s, msgs, BATCH, 0);
		if (n > 0)
			sent += n;
	}
	printf("%lu datagrams\n", sent);
	return 0;
}
