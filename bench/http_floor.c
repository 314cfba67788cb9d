/* The floor for the HTTP figures: the least an epoll event loop must do to
 * answer keep-alive requests, with nothing else. For each request head read
 * (counted by its blank line, across reads), one canned answer of the
 * server's size is written. No parsing, no routing, no limits, no
 * timeouts, no Date made. Two shapes:
 *   - WORKERS 0: one thread, one edge-triggered epoll set, doing it all;
 *   - WORKERS n: the server's shape: a dispatcher waits on one epoll set
 *     with connections registered for one event at a time (EPOLLONESHOT)
 *     and queues each ready one for n workers (mutex, condition variable),
 *     which read, answer and re-arm it.
 * bench/run.py measures it with the same wrk command as the server, on the
 * same machine in the same run: what is left between the two is ours; what
 * the floor itself cannot reach is the machine's and the client's.
 *
 * Usage: http_floor PORT [WORKERS]. Listens on 127.0.0.1; runs until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
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

/* Reads what `fd` has, answering each complete head; 0 at end of input or
 * on an error (the caller closes it), 1 once the socket is drained. */
static int serve(int fd, char *buf, size_t size) {
    for (;;) {
        ssize_t got = read(fd, buf, size);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0 && errno == EAGAIN) {
            return 1;
        }
        if (got <= 0) {
            return 0;
        }
        for (int heads = heads_in(fd, buf, got); heads > 0; heads--) {
            /* Small answers into an empty socket buffer: whole. */
            if (write(fd, ANSWER, sizeof ANSWER - 1) < 0) {
                return 0;
            }
        }
    }
}

static int epoll_fd, workers;

/* The queue of ready connections, for the workers: a connection is in it
 * at most once (one-shot), and the bench opens 50. */
#define QUEUE 4096
static int queue[QUEUE];
static unsigned head_at, tail_at;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;

static void *work(void *unused) {
    (void)unused;
    static __thread char buf[16384];
    for (;;) {
        pthread_mutex_lock(&lock);
        while (head_at == tail_at) {
            pthread_cond_wait(&ready, &lock);
        }
        int fd = queue[head_at++ % QUEUE];
        pthread_mutex_unlock(&lock);
        if (serve(fd, buf, sizeof buf)) {
            struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.fd = fd};
            epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &e);
        } else {
            close(fd);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: http_floor PORT [WORKERS]\n");
        return 2;
    }
    workers = argc == 3 ? atoi(argv[2]) : 0;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in address = {
        .sin_family = AF_INET,
        .sin_port = htons(atoi(argv[1])),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 1024)) {
        perror("http_floor: listen");
        return 1;
    }
    epoll_fd = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener};
    if (epoll_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &event)) {
        perror("http_floor: epoll");
        return 1;
    }
    for (int i = 0; i < workers; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, work, NULL)) {
            perror("http_floor: pthread_create");
            return 1;
        }
    }
    uint32_t interest = workers ? EPOLLIN | EPOLLRDHUP | EPOLLONESHOT : EPOLLIN | EPOLLRDHUP | EPOLLET;
    struct epoll_event events[256];
    static char buf[16384];
    for (;;) {
        int n = epoll_wait(epoll_fd, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int conn;
                while ((conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (conn >= MAX_FD) {
                        close(conn);
                        continue;
                    }
                    matched[conn] = 0;
                    struct epoll_event e = {.events = interest, .data.fd = conn};
                    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, conn, &e);
                }
            } else if (workers) {
                pthread_mutex_lock(&lock);
                queue[tail_at++ % QUEUE] = fd;
                pthread_mutex_unlock(&lock);
                pthread_cond_signal(&ready);
            } else if (!serve(fd, buf, sizeof buf)) {
                close(fd);
            }
        }
    }
}
