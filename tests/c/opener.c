/* The control: opens a library the way a careless loader would, in a child process.
 *
 *   opener lazy PATH        dlopen(PATH, RTLD_LAZY | RTLD_LOCAL)
 *   opener now PATH         dlopen(PATH, RTLD_NOW | RTLD_LOCAL)
 *   opener lazy-call PATH   RTLD_LAZY, then call `calls_missing` (dies if it is unresolved)
 *
 * Prints "opened" (and "called") on success; prints dlerror() and exits 1 on failure. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: opener lazy|now|lazy-call PATH\n");
        return 2;
    }
    int now = strcmp(argv[1], "now") == 0;
    void *library = dlopen(argv[2], (now ? RTLD_NOW : RTLD_LAZY) | RTLD_LOCAL);
    if (!library) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    puts("opened");
    fflush(stdout);
    if (strcmp(argv[1], "lazy-call") == 0) {
        int (*call)(int) = (int (*)(int))dlsym(library, "calls_missing");
        if (!call) {
            fprintf(stderr, "%s\n", dlerror());
            return 1;
        }
        printf("called: %d\n", call(1));
    }
    return 0;
}
