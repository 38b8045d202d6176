/* A valid shared library that is not a plugin and whose constructor leaves a mark.
 *
 * The loader must decide "not a plugin" from the file's bytes: opening the library would run
 * `leave_mark` first. The mark is `<dir>/not-a-plugin`, where <dir> is $TRUSTED_LOADING_MARKER_DIR
 * when set (the control run in a child process) and MARKER_DIR (baked in at compile time)
 * otherwise. */
#include <stdio.h>
#include <stdlib.h>

#ifndef MARKER_DIR
#error "compile with -DMARKER_DIR='\"/path\"'"
#endif

__attribute__((constructor)) static void leave_mark(void) {
    const char *dir = getenv("TRUSTED_LOADING_MARKER_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/not-a-plugin", dir ? dir : MARKER_DIR);
    FILE *mark = fopen(path, "w");
    if (mark) {
        fputs("constructor ran\n", mark);
        fclose(mark);
    }
}

int not_a_plugin_answer(void) { return 42; }
