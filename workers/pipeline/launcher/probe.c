/*
 * Cartridge's HTTP smoke probe, copied into a role's container for the length of a smoke check
 * (it is not part of the image) and run there with `docker exec`, so it reaches the role on
 * loopback whatever network the container is on, `none` included.
 *
 *   probe PORT PATH
 *
 * Sends `GET PATH HTTP/1.0` to 127.0.0.1:PORT and prints the status line. Exits 0 for a 2xx or
 * 3xx answer, 1 for any other answer, 2 when nothing answers (refused, timed out, not HTTP).
 *
 * Built static (musl-gcc -static -Os -s), so it needs no library from the image.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3 || argv[2][0] != '/') {
		fprintf(stderr, "usage: probe PORT /PATH\n");
		return 2;
	}
	int port = atoi(argv[1]);
	if (port < 1 || port > 65535) {
		fprintf(stderr, "probe: bad port %s\n", argv[1]);
		return 2;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		printf("no answer: socket: %s\n", strerror(errno));
		return 2;
	}
	struct timeval timeout = {.tv_sec = 2, .tv_usec = 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	struct sockaddr_in address;
	memset(&address, 0, sizeof(address));
	address.sin_family = AF_INET;
	address.sin_port = htons((unsigned short)port);
	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
		printf("no answer on port %d: %s\n", port, strerror(errno));
		return 2;
	}
	char request[4096];
	int length = snprintf(request, sizeof(request),
			      "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n"
			      "User-Agent: cartridge-smoke\r\nConnection: close\r\n\r\n",
			      argv[2], port);
	if (length <= 0 || (size_t)length >= sizeof(request)) {
		fprintf(stderr, "probe: path too long\n");
		return 2;
	}
	if (write(fd, request, (size_t)length) != length) {
		printf("no answer on port %d: %s\n", port, strerror(errno));
		return 2;
	}
	char answer[512];
	size_t have = 0;
	while (have < sizeof(answer) - 1) {
		ssize_t got = read(fd, answer + have, sizeof(answer) - 1 - have);
		if (got <= 0)
			break;
		have += (size_t)got;
		if (memchr(answer, '\n', have) != NULL)
			break;
	}
	answer[have] = '\0';
	char *end = strpbrk(answer, "\r\n");
	if (end != NULL)
		*end = '\0';
	int status = 0;
	if (strncmp(answer, "HTTP/", 5) != 0 || sscanf(answer, "HTTP/%*s %d", &status) != 1) {
		printf("no HTTP answer on port %d%s%s\n", port, have ? ": " : "", answer);
		return 2;
	}
	printf("%s\n", answer);
	return status >= 200 && status < 400 ? 0 : 1;
}
