/*
 * dataset-workload: one kind of real work, duty-cycled on a schedule, that reports its
 * own progress rate, so the recorder can measure a co-located workload's slowdown.
 *
 * Each second it prints one JSON line to stdout:
 *
 *   {"t":<s since start>,"ops":<ops in the second>,"busy":<busy thread-seconds>,"duty":<d>}
 *
 * "busy" is the wall time its threads spent inside their work windows, so ops / busy is
 * the speed while working, independent of the duty cycle: the slowdown label compares it
 * with the same quantity measured solo.
 *
 * Kinds and what one op is:
 *   cpu     4096 rounds of a dependent integer hash (no memory traffic)
 *   cache   4096 dependent loads chasing a random cycle through --mib MiB (LLC-sized)
 *   membw   256 KiB streamed (read + write) through a --mib MiB buffer
 *   fsync   one 4 KiB write and fdatasync to a file in --dir
 *   ctxsw   one round trip of a byte between two threads over pipes (2 switches)
 *
 * Schedule: --schedule "T:D,T:D,..." gives the duty D (0..1) at second T; the duty is
 * interpolated linearly between points and held after the last one (two points with the
 * same T make a step). Up to MAX_POINTS points (a trace replay has several a second).
 * Within each 100 ms period a thread works for D of it and sleeps
 * for the rest; D = 0 is idle.
 *
 * --start-at E (Unix time in seconds) waits after set-up until then, so that the
 * workloads of one experiment share second 0 of their schedules.
 *
 * Usage: dataset-workload KIND [--threads N] [--mib N] [--dir DIR] [--schedule SPEC]
 *                              [--duration S] [--start-at E]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_POINTS 8192 /* a trace replay: several points per second */
#define MAX_THREADS 16
#define PERIOD 0.1

enum kind { CPU, CACHE, MEMBW, FSYNC, CTXSW };
static const char *const kind_names[] = {"cpu", "cache", "membw", "fsync", "ctxsw"};

static enum kind kind;
static size_t mib = 16;
static const char *dir = "/var/tmp";
static double *points_t, *points_d;
static int npoints;
static double start;
static volatile sig_atomic_t stop;

static _Atomic uint64_t total_ops;
static _Atomic uint64_t total_busy_ns;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_for(double seconds) {
    if (seconds <= 0)
        return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR && !stop)
        ;
}

static double duty_at(double t) {
    if (npoints == 0)
        return 1.0;
    if (t <= points_t[0])
        return points_d[0];
    for (int i = 1; i < npoints; i++) {
        if (t < points_t[i]) {
            double span = points_t[i] - points_t[i - 1];
            double f = span > 0 ? (t - points_t[i - 1]) / span : 1.0;
            return points_d[i - 1] + f * (points_d[i] - points_d[i - 1]);
        }
    }
    return points_d[npoints - 1];
}

static int parse_schedule(const char *spec) {
    char *buf = strdup(spec);
    points_t = calloc(MAX_POINTS, sizeof *points_t);
    points_d = calloc(MAX_POINTS, sizeof *points_d);
    if (!buf || !points_t || !points_d)
        return -1;
    npoints = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (!colon || npoints == MAX_POINTS)
            return -1;
        *colon = '\0';
        char *end1, *end2;
        double t = strtod(tok, &end1), d = strtod(colon + 1, &end2);
        if (*end1 || *end2 || t < 0 || d < 0 || d > 1 || (npoints && t < points_t[npoints - 1])) {
            free(buf);
            return -1;
        }
        points_t[npoints] = t;
        points_d[npoints] = d;
        npoints++;
    }
    free(buf);
    return npoints ? 0 : -1;
}

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Per-thread state for the kinds that need it. */
struct worker {
    int id;
    uint64_t seed;
    uint32_t *chase; /* cache: a random cycle of indices */
    size_t chase_len, chase_pos;
    char *buf;       /* membw */
    size_t buf_len, buf_pos;
    int fd;          /* fsync */
    int ping[2], pong[2]; /* ctxsw */
    char block[4096];
};

static volatile uint64_t sink;

static int op(struct worker *w) {
    switch (kind) {
    case CPU: {
        uint64_t x = w->seed;
        for (int i = 0; i < 4096; i++)
            x = xorshift(&x) * 0x2545f4914f6cdd1dull;
        w->seed = x | 1;
        sink = x;
        return 0;
    }
    case CACHE: {
        size_t p = w->chase_pos;
        for (int i = 0; i < 4096; i++)
            p = w->chase[p];
        w->chase_pos = p;
        return 0;
    }
    case MEMBW: {
        const size_t chunk = 256 * 1024;
        if (w->buf_pos + 2 * chunk > w->buf_len)
            w->buf_pos = 0;
        memcpy(w->buf + w->buf_pos + chunk, w->buf + w->buf_pos, chunk);
        w->buf_pos += chunk;
        return 0;
    }
    case FSYNC:
        w->block[0]++;
        if (pwrite(w->fd, w->block, sizeof w->block, 0) != (ssize_t)sizeof w->block)
            return -1;
        return fdatasync(w->fd);
    case CTXSW: {
        char c = 1;
        if (write(w->ping[1], &c, 1) != 1 || read(w->pong[0], &c, 1) != 1)
            return -1;
        return 0;
    }
    }
    return -1;
}

/* The other end of a ctxsw worker's pipes: echoes every byte back. */
static void *echo(void *arg) {
    struct worker *w = arg;
    char c;
    while (read(w->ping[0], &c, 1) == 1)
        if (write(w->pong[1], &c, 1) != 1)
            break;
    return NULL;
}

static int setup(struct worker *w) {
    w->seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)(w->id + 1) * 0x100000001b3ull;
    switch (kind) {
    case CPU:
        return 0;
    case CACHE: {
        w->chase_len = mib * 1024 * 1024 / sizeof(uint32_t);
        w->chase = malloc(w->chase_len * sizeof(uint32_t));
        if (!w->chase)
            return -1;
        /* Sattolo's shuffle: one cycle through every slot, so no prefetcher helps. */
        for (size_t i = 0; i < w->chase_len; i++)
            w->chase[i] = (uint32_t)i;
        for (size_t i = w->chase_len - 1; i > 0; i--) {
            size_t j = xorshift(&w->seed) % i;
            uint32_t tmp = w->chase[i];
            w->chase[i] = w->chase[j];
            w->chase[j] = tmp;
        }
        return 0;
    }
    case MEMBW:
        w->buf_len = mib * 1024 * 1024;
        w->buf = malloc(w->buf_len);
        if (!w->buf)
            return -1;
        memset(w->buf, 1, w->buf_len);
        return 0;
    case FSYNC: {
        char path[4096];
        snprintf(path, sizeof path, "%s/dataset-workload.%d.%d", dir, (int)getpid(), w->id);
        w->fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (w->fd < 0) {
            fprintf(stderr, "dataset-workload: cannot create %s: %s\n", path, strerror(errno));
            return -1;
        }
        unlink(path);
        return 0;
    }
    case CTXSW: {
        pthread_t t;
        if (pipe(w->ping) || pipe(w->pong) || pthread_create(&t, NULL, echo, w))
            return -1;
        return pthread_detach(t);
    }
    }
    return -1;
}

static void *run(void *arg) {
    struct worker *w = arg;
    while (!stop) {
        double period_start = now();
        double duty = duty_at(period_start - start);
        double work_end = period_start + duty * PERIOD;
        uint64_t ops = 0;
        double t = period_start;
        while (t < work_end && !stop) {
            if (op(w)) {
                fprintf(stderr, "dataset-workload: %s op failed: %s\n", kind_names[kind],
                        strerror(errno));
                exit(1);
            }
            ops++;
            t = now();
        }
        if (duty > 0) {
            atomic_fetch_add(&total_ops, ops);
            atomic_fetch_add(&total_busy_ns, (uint64_t)((t - period_start) * 1e9));
        }
        sleep_for(period_start + PERIOD - now());
    }
    return NULL;
}

static void on_term(int sig) {
    (void)sig;
    stop = 1;
}

static void usage(void) {
    fprintf(stderr, "usage: dataset-workload cpu|cache|membw|fsync|ctxsw [--threads N] "
                    "[--mib N] [--dir DIR] [--schedule T:D,...] [--duration S] [--start-at E]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2)
        usage();
    int found = 0;
    for (int k = CPU; k <= CTXSW; k++)
        if (strcmp(argv[1], kind_names[k]) == 0) {
            kind = (enum kind)k;
            found = 1;
        }
    if (!found)
        usage();
    int threads = 1;
    double duration = 0, start_at = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--mib") == 0)
            mib = (size_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--start-at") == 0)
            start_at = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--duration") == 0)
            duration = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--schedule") == 0) {
            if (parse_schedule(argv[i + 1])) {
                fprintf(stderr, "dataset-workload: bad --schedule %s: want T:D pairs, T "
                                "ascending, D in 0..1\n", argv[i + 1]);
                return 2;
            }
        } else
            usage();
    }
    if (threads < 1 || threads > MAX_THREADS || mib < 1)
        usage();
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);

    static struct worker workers[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        workers[i].id = i;
        if (setup(&workers[i])) {
            fprintf(stderr, "dataset-workload: %s set-up failed\n", kind_names[kind]);
            return 1;
        }
    }
    if (start_at > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        sleep_for(start_at - ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9));
    }
    start = now();
    pthread_t tids[MAX_THREADS];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tids[i], NULL, run, &workers[i]))
            return 1;

    uint64_t last_ops = 0, last_busy = 0;
    for (double next = start + 1.0; !stop; next += 1.0) {
        sleep_for(next - now());
        if (stop)
            break;
        uint64_t ops = atomic_load(&total_ops), busy = atomic_load(&total_busy_ns);
        double t = now() - start;
        printf("{\"t\":%.3f,\"ops\":%llu,\"busy\":%.6f,\"duty\":%.4f}\n", t,
               (unsigned long long)(ops - last_ops), (double)(busy - last_busy) / 1e9,
               duty_at(t));
        fflush(stdout);
        last_ops = ops;
        last_busy = busy;
        if (duration > 0 && t >= duration)
            break;
    }
    stop = 1;
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    return 0;
}
