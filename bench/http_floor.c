/* The floor for the HTTP figures: the least an epoll event loop must do to
 * answer keep-alive requests, with nothing else. One thread, one
 * edge-triggered epoll set; for each request head read (counted by its
 * blank line, across reads), one canned answer of the server's size is
 * written. No parsing, no routing, no limits, no timeouts, no Date made.
 * bench/run.py measures it with the same wrk command as the server, on the
 * same machine in the same run: what is left between the two is ours; what
 * the floor itself cannot reach is the machine's and the client's.
 *
 * Usage: http_floor PORT. Listens on 127.0.0.1; runs until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char ANSWER[] =
    "HTTP/1.1 200 OK\r\n"
    "Date: Tue, 24 Nov 2026 15:24:42 GMT\r\n"
    "Server: exechealthz\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Length: 2\r\n"
    "\r\n"
    "ok";

#define MAX_FD 65536
/* Per descriptor: how much of "\r\n\r\n" the input read so far ends with. */
static unsigned char matched[MAX_FD];

static int heads_in(int fd, const char *buf, ssize_t len) {
    static const char END[] = "\r\n\r\n";
    int heads = 0, m = matched[fd];
    for (ssize_t i = 0; i < len; i++) {
        if (buf[i] == END[m]) {
            m++;
        } else {
            m = buf[i] == '\r';
        }
        if (m == 4) {
            heads++;
            m = 0;
        }
    }
    matched[fd] = m;
    return heads;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: http_floor PORT\n");
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {
        .sin_family = AF_INET,
        .sin_port = htons(atoi(argv[1])),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 1024)) {
        perror("http_floor: listen");
        return 1;
    }
    int epoll = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener};
    if (epoll < 0 || epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event)) {
        perror("http_floor: epoll");
        return 1;
    }
    struct epoll_event events[256];
    static char buf[16384];
    for (;;) {
        int n = epoll_wait(epoll, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int conn;
                while ((conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (conn >= MAX_FD) {
                        close(conn);
                        continue;
                    }
                    setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    matched[conn] = 0;
                    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = conn};
                    epoll_ctl(epoll, EPOLL_CTL_ADD, conn, &e);
                }
                continue;
            }
            for (;;) {
                ssize_t got = read(fd, buf, sizeof buf);
                if (got < 0 && errno == EINTR) {
                    continue;
                }
                if (got < 0 && errno == EAGAIN) {
                    break; /* wait for the next edge */
                }
                if (got <= 0) {
                    close(fd); /* end of input, or an error */
                    break;
                }
                for (int heads = heads_in(fd, buf, got); heads > 0; heads--) {
                    /* Small answers into an empty socket buffer: whole. */
                    if (write(fd, ANSWER, sizeof ANSWER - 1) < 0) {
                        break;
                    }
                }
            }
        }
    }
}
