/*
 * lab-workload: the VM lab's guest workload. It does one kind of work and prints its
 * own progress rate once a second, so the host can read the slowdown a VM suffers:
 *
 *   progress t=<uptime s> workload=<kind> phase=<kind now> rate=<ops/s> ops=<total>
 *
 * Kinds and what one "op" is:
 *   idle   nothing (rate=0.0)
 *   cpu    1024 rounds of a dependent integer hash (xorshift-multiply)
 *   mem    1 MiB copied between two buffers of --mem-mib MiB in total
 *   io     one 4 KiB O_DIRECT read or write at a random offset of --disk
 *   mixed  the phases of --phases in turn, e.g. cpu:10,mem:10,io:10,idle:5 (seconds)
 *
 * Usage: lab-workload KIND [--phases SPEC] [--disk DEV] [--mem-mib N]
 * Built with `gcc -static -O2` on the host and put into the guest's initramfs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_PHASES 16
#define IO_BLOCK 4096

enum kind { IDLE, CPU, MEM, IO, MIXED };
static const char *const kind_names[] = {"idle", "cpu", "mem", "io", "mixed"};

struct phase {
    enum kind kind;
    int seconds;
};

static volatile sig_atomic_t tick;
static volatile sig_atomic_t stop;

static void on_alarm(int sig) { (void)sig; tick = 1; }
static void on_term(int sig) { (void)sig; stop = 1; }

static int parse_kind(const char *s, enum kind *out) {
    for (int k = IDLE; k <= MIXED; k++) {
        if (strcmp(s, kind_names[k]) == 0) {
            *out = (enum kind)k;
            return 0;
        }
    }
    return -1;
}

/* "cpu:10,mem:5" -> phases; mixed is not allowed inside a phase list. */
static int parse_phases(const char *spec, struct phase *out, int *n) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        if (!colon || *n == MAX_PHASES)
            return -1;
        *colon = '\0';
        enum kind k;
        int secs = atoi(colon + 1);
        if (parse_kind(tok, &k) || k == MIXED || secs <= 0)
            return -1;
        out[*n].kind = k;
        out[*n].seconds = secs;
        (*n)++;
    }
    return *n ? 0 : -1;
}

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One write per line, so lines from other writers on the console never split it. */
static void report(enum kind configured, enum kind phase, double rate, uint64_t total) {
    char line[160];
    int len = snprintf(line, sizeof line, "progress t=%.1f workload=%s phase=%s rate=%.1f ops=%llu\n",
                       now(CLOCK_BOOTTIME), kind_names[configured], kind_names[phase], rate,
                       (unsigned long long)total);
    if (write(STDOUT_FILENO, line, (size_t)len) < 0 && errno == EIO)
        exit(1);
}

static uint64_t cpu_state = 0x9e3779b97f4a7c15ull;

static void cpu_op(void) {
    uint64_t x = cpu_state;
    for (int i = 0; i < 1024; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x *= 0x2545f4914f6cdd1dull;
    }
    cpu_state = x;
}

struct mem_state {
    char *a, *b;
    size_t size, pos;
};

static int mem_init(struct mem_state *m, size_t mib) {
    m->size = mib * 1024 * 1024 / 2;
    m->pos = 0;
    m->a = malloc(m->size);
    m->b = malloc(m->size);
    if (!m->a || !m->b)
        return -1;
    memset(m->a, 1, m->size);
    memset(m->b, 2, m->size);
    return 0;
}

static void mem_op(struct mem_state *m) {
    const size_t chunk = 1024 * 1024;
    if (m->pos + chunk > m->size)
        m->pos = 0;
    memcpy(m->b + m->pos, m->a + m->pos, chunk);
    m->a[m->pos] ^= m->b[m->pos + chunk - 1];
    m->pos += chunk;
}

struct io_state {
    int fd;
    uint64_t blocks;
    void *buf;
    uint64_t seed;
    unsigned n;
};

static int io_init(struct io_state *s, const char *disk) {
    s->fd = open(disk, O_RDWR | O_DIRECT);
    if (s->fd < 0) {
        fprintf(stderr, "lab-workload: cannot open %s: %s\n", disk, strerror(errno));
        return -1;
    }
    uint64_t bytes = 0;
    if (ioctl(s->fd, BLKGETSIZE64, &bytes) < 0 || bytes < IO_BLOCK) {
        fprintf(stderr, "lab-workload: cannot size %s\n", disk);
        return -1;
    }
    s->blocks = bytes / IO_BLOCK;
    if (posix_memalign(&s->buf, IO_BLOCK, IO_BLOCK))
        return -1;
    memset(s->buf, 0x5a, IO_BLOCK);
    s->seed = 88172645463325252ull;
    s->n = 0;
    return 0;
}

static int io_op(struct io_state *s) {
    s->seed ^= s->seed << 13;
    s->seed ^= s->seed >> 7;
    s->seed ^= s->seed << 17;
    off_t off = (off_t)(s->seed % s->blocks) * IO_BLOCK;
    ssize_t r = (s->n++ & 1) ? pread(s->fd, s->buf, IO_BLOCK, off)
                             : pwrite(s->fd, s->buf, IO_BLOCK, off);
    return r == IO_BLOCK ? 0 : -1;
}

static void usage(void) {
    fprintf(stderr, "usage: lab-workload idle|cpu|mem|io|mixed [--phases cpu:10,mem:10] "
                    "[--disk /dev/vda] [--mem-mib 32]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2)
        usage();
    enum kind configured;
    if (parse_kind(argv[1], &configured))
        usage();
    const char *phases_spec = "cpu:10,mem:10,io:10,idle:5";
    const char *disk = NULL;
    size_t mem_mib = 32;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--phases") == 0 && argv[i + 1][0])
            phases_spec = argv[i + 1];
        else if (strcmp(argv[i], "--disk") == 0)
            disk = argv[i + 1];
        else if (strcmp(argv[i], "--mem-mib") == 0)
            mem_mib = (size_t)atoi(argv[i + 1]);
        else
            usage();
    }

    struct phase phases[MAX_PHASES];
    int nphases = 1;
    phases[0].kind = configured;
    phases[0].seconds = 1 << 30;
    if (configured == MIXED && parse_phases(phases_spec, phases, &nphases)) {
        fprintf(stderr, "lab-workload: bad --phases '%s'\n", phases_spec);
        return 2;
    }

    int need_mem = 0, need_io = 0;
    for (int i = 0; i < nphases; i++) {
        need_mem |= phases[i].kind == MEM;
        need_io |= phases[i].kind == IO;
    }
    struct mem_state mem = {0};
    struct io_state io = {.fd = -1};
    if (need_mem && (mem_mib < 2 || mem_init(&mem, mem_mib))) {
        fprintf(stderr, "lab-workload: cannot allocate %zu MiB\n", mem_mib);
        return 1;
    }
    if (need_io && (!disk || io_init(&io, disk))) {
        fprintf(stderr, "lab-workload: io needs a disk (--disk)\n");
        return 1;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct itimerval every_second = {{1, 0}, {1, 0}};
    setitimer(ITIMER_REAL, &every_second, NULL);

    int p = 0, left = phases[0].seconds;
    uint64_t ops = 0, total = 0;
    double last = now(CLOCK_MONOTONIC);
    while (!stop) {
        enum kind k = phases[p].kind;
        switch (k) {
        case IDLE:
            pause();
            break;
        case CPU:
            cpu_op();
            ops++;
            break;
        case MEM:
            mem_op(&mem);
            ops++;
            break;
        case IO:
            if (io_op(&io)) {
                fprintf(stderr, "lab-workload: I/O error: %s\n", strerror(errno));
                return 1;
            }
            ops++;
            break;
        case MIXED:
            return 1;
        }
        if (!tick)
            continue;
        tick = 0;
        double t = now(CLOCK_MONOTONIC);
        total += ops;
        report(configured, k, t > last ? (double)ops / (t - last) : 0.0, total);
        ops = 0;
        last = t;
        if (--left <= 0) {
            p = (p + 1) % nphases;
            left = phases[p].seconds;
        }
    }
    return 0;
}
