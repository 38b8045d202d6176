/* A library that exports a symbol named like abi_stable's root module (so it passes the export
 * check) and calls a function that nothing defines, through the PLT. Linked with -z lazy, it
 * opens fine with RTLD_LAZY and kills the process ("symbol lookup error", exit 127) on the first
 * call; with RTLD_NOW the open itself fails, naming the symbol, before the constructor runs.
 * The constructor's mark is `<dir>/lazy-undefined` (see not_a_plugin.c for <dir>). */
#include <stdio.h>
#include <stdlib.h>

#ifndef MARKER_DIR
#error "compile with -DMARKER_DIR='\"/path\"'"
#endif

extern int trusted_loading_missing_function(int);

const char _1as_0lib_1header_0root_bmodule_bloader[64] = {0};

__attribute__((constructor)) static void leave_mark(void) {
    const char *dir = getenv("TRUSTED_LOADING_MARKER_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/lazy-undefined", dir ? dir : MARKER_DIR);
    FILE *mark = fopen(path, "w");
    if (mark) {
        fputs("constructor ran\n", mark);
        fclose(mark);
    }
}

int calls_missing(int x) { return trusted_loading_missing_function(x) + 1; }
