/* fork() while another thread holds one of the locks of the layers above the heap core (the
 * debug hooks' quarantine, the free-list registry, the host installation lock): the child must
 * not start with the lock held by a thread that does not exist there. A thread frees blocks
 * through the debug hooks (every free takes the quarantine's lock) while the main thread forks
 * 300 times; each child frees a block too (taking the same lock) and exits. Run in a fresh
 * process with PYALLOC_DEBUG=1; a child that hangs is killed after 10 s and counted. */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>

static atomic_int stop;

static void *churn(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        void *v[64];
        for (int i = 0; i < 64; i++) v[i] = PyMem_Malloc(48 + (size_t)i);
        for (int i = 0; i < 64; i++) PyMem_Free(v[i]);
    }
    return NULL;
}

static int child_main(void) {
    pthread_t t;
    pthread_create(&t, NULL, churn, NULL);
    int hung = 0, forks = 300;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *p = PyMem_Malloc(64);
            PyMem_Free(p);
            _exit(0);
        }
        int st = 0, waited = 0;
        while (waitpid(pid, &st, WNOHANG) == 0) {
            if (++waited > 10000) { /* 10 s */
                kill(pid, SIGKILL);
                waitpid(pid, &st, 0);
                hung++;
                break;
            }
            usleep(1000);
        }
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("%d forks, %d children hung\n", forks, hung);
    return hung ? 5 : 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "child")) return child_main();
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 2;
    self[n] = 0;
    static char out[8192];
    char *env[] = {"PYALLOC_DEBUG=1", NULL};
    int st = run_exec(self, (char *[]){self, "child", NULL}, env, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(out, "0 children hung"),
          "fork while a thread frees through the debug hooks: no child hangs (status %#x) [%s]", st, out);
    TEST_MAIN_END();
}
