/* The floor for "server CPU per probe run": the least a program must do to
 * run a command every period and see it finish, with nothing else. Each run:
 * posix_spawn `/bin/sh -c CMD` as a new process group, its stdout and stderr
 * on a pipe; poll the pipe until end of file; waitpid; sleep to the next
 * period. bench/run.py measures it as it measures the server (schedstat of
 * its own threads), on the same machine in the same run.
 *
 * Usage: floor PERIOD_MS CMD. Runs until killed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor PERIOD_MS CMD\n");
        return 2;
    }
    long period_ns = atol(argv[1]) * 1000000L;
    char *args[] = {"/bin/sh", "-c", argv[2], NULL};
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        int out[2];
        if (pipe2(out, O_CLOEXEC) != 0) {
            perror("pipe2");
            return 1;
        }
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out[1], 1);
        posix_spawn_file_actions_adddup2(&actions, out[1], 2);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
        posix_spawnattr_setpgroup(&attr, 0);
        pid_t pid;
        int rc = posix_spawn(&pid, args[0], &actions, &attr, args, environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        close(out[1]);
        if (rc != 0) {
            fprintf(stderr, "posix_spawn: %d\n", rc);
            return 1;
        }
        char buffer[8192];
        struct pollfd fd = {.fd = out[0], .events = POLLIN};
        while (poll(&fd, 1, -1) > 0 && read(out[0], buffer, sizeof buffer) > 0) {
        }
        close(out[0]);
        int status;
        waitpid(pid, &status, 0);
        next.tv_nsec += period_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec += 1;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
}
