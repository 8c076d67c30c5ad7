/* The benchmark's stand-in for CTP's own thread (bench/worker_stages.py compiles and loads it).
 *
 * In production the market-data library calls the SPI's virtual OnRtnDepthMarketData on a thread
 * of its own, which Python never created: openctp-ctp's SWIG director takes the interpreter lock
 * (PyGILState_Ensure: on such a thread, a thread state made for the call), wraps the struct's
 * pointer in a proxy, calls the Python method, and lets go. call_on_native_thread does the same
 * call, count times, from a new native thread, and returns that thread's CPU time: the director's
 * cost included, which no Python-side timing sees.
 *
 * fn: the address of SwigDirector_CThostFtdcMdSpi::OnRtnDepthMarketData (an exported symbol of the
 * binding, found by name), self: the director object (the SPI's C++ address), arg: a struct.
 * Returns the CPU seconds, or -1 when the thread could not be started.
 */
#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef void (*callback_fn)(void *self, void *arg);

struct job {
    callback_fn fn;
    void *self;
    void *arg;
    long count;
    double cpu_seconds;
};

static void *run(void *p) {
    struct job *job = p;
    struct timespec t0, t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    for (long i = 0; i < job->count; i++)
        job->fn(job->self, job->arg);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    job->cpu_seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return NULL;
}

/* Called through ctypes.CDLL, which lets go of the interpreter lock for the call: the director needs it. */
double call_on_native_thread(uintptr_t fn, uintptr_t self, uintptr_t arg, long count) {
    struct job job = {(callback_fn)fn, (void *)self, (void *)arg, count, -1.0};
    pthread_t thread;
    if (pthread_create(&thread, NULL, run, &job) != 0)
        return -1.0;
    pthread_join(thread, NULL);
    return job.cpu_seconds;
}
